"""Vision and neuron layers against PyTorch on the CPU, an independent reference, forward and
backward (autograd), in float64. Only cases where Caffe's and torch's rules agree are compared
(torch's ceil mode drops a last window starting past the input even without padding; Caffe
only with padding), or torch is told Caffe's rule (count_include_pad for AVE's divisor)."""
import numpy as np
import pytest

from harness import make_layer, run

torch = pytest.importorskip("torch")
F = torch.nn.functional


def run_layer(text, arrays, params=None, seed=0):
    """-> (tops, bottom diffs, param diffs, params, top diffs) of one forward and backward in float64."""
    r = run(text, arrays, params=params, seed=seed)
    dx = r.backward(seed=seed + 1)
    return r.y, dx, r.param_diffs, r.params, r.top_diffs


def torch_reference(fn, arrays, params, dy):
    """fn(*tensors) with autograd: (y, grads of every input and param) for top diff dy."""
    leaves = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in list(arrays) + list(params)]
    y = fn(*leaves)
    grads = torch.autograd.grad(y, leaves, torch.tensor(dy))
    return y.detach().numpy(), [g.numpy() for g in grads]


def assert_same(ours, theirs):
    (tops, dx, dp, params, dys) = ours
    y, grads = theirs
    np.testing.assert_allclose(tops[0], y, rtol=1e-10, atol=1e-12)
    for a, b in zip(dx + dp, grads):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


def conv_text(type_, num_output, **fields):
    body = " ".join(f"{k}: {v}" for k, vs in fields.items() for v in (vs if isinstance(vs, tuple) else (vs,)))
    return f'name: "c" type: "{type_}" convolution_param {{ num_output: {num_output} {body} }}'


# -- Convolution, Deconvolution, Im2col --------------------------------------------------------------
@pytest.mark.parametrize("fields,shape,torch_args", [
    (dict(kernel_size=3), (2, 3, 6, 5), dict()),
    (dict(kernel_h=3, kernel_w=2, stride_h=2, stride_w=1, pad_h=1, pad_w=2), (2, 4, 7, 6),
     dict(stride=(2, 1), padding=(1, 2))),
    (dict(kernel_size=3, dilation=2, pad=2, group=2), (2, 4, 7, 7), dict(dilation=2, padding=2, groups=2)),
    (dict(kernel_size=(3, 1), stride=(1, 2), dilation=(1, 3), group=4), (1, 4, 6, 8),
     dict(stride=(1, 2), dilation=(1, 3), groups=4)),
    (dict(kernel_size=1, stride=2), (2, 4, 5, 5), dict(stride=2)),
    (dict(kernel_size=1, group=2), (2, 4, 3, 3), dict(groups=2)),
])
def test_convolution_matches_torch(fields, shape, torch_args):
    num_output = 4
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    ours = run_layer(conv_text("Convolution", num_output, **fields), [x])
    w, b = ours[3]
    theirs = torch_reference(lambda x, w, b: F.conv2d(x, w, b, **torch_args), [x], [w, b], ours[4][0])
    assert_same(ours, theirs)


def test_3d_convolution_matches_torch():
    x = np.random.default_rng(2).standard_normal((1, 2, 4, 5, 6))
    ours = run_layer(conv_text("Convolution", 4, kernel_size=(2, 3, 3), stride=(1, 2, 1), pad=(1, 0, 1), group=2), [x])
    theirs = torch_reference(lambda x, w, b: F.conv3d(x, w, b, stride=(1, 2, 1), padding=(1, 0, 1), groups=2),
                             [x], ours[3], ours[4][0])
    assert_same(ours, theirs)


@pytest.mark.parametrize("fields,shape,torch_args", [
    (dict(kernel_size=4, stride=2, pad=1), (2, 3, 4, 5), dict(stride=2, padding=1)),
    (dict(kernel_size=3, stride=2, dilation=2, group=2), (1, 4, 3, 4), dict(stride=2, dilation=2, groups=2)),
    (dict(kernel_h=2, kernel_w=3, stride_h=3, stride_w=1, pad_h=0, pad_w=1), (2, 2, 3, 3),
     dict(stride=(3, 1), padding=(0, 1))),
])
def test_deconvolution_matches_torch_conv_transpose(fields, shape, torch_args):
    """Caffe's deconvolution weights are (C_in, num_output/group, kh, kw): torch's layout too."""
    x = np.random.default_rng(3).standard_normal(shape)
    ours = run_layer(conv_text("Deconvolution", 4, **fields), [x])
    assert ours[3][0].shape[:2] == (shape[1], 4 // torch_args.get("groups", 1))
    theirs = torch_reference(lambda x, w, b: F.conv_transpose2d(x, w, b, **torch_args), [x], ours[3], ours[4][0])
    assert_same(ours, theirs)


@pytest.mark.parametrize("dilation", [1, 2])
def test_im2col_matches_torch_unfold(dilation):
    """Caffe's Im2col orders the top channels (c, kh, kw), as torch's unfold does."""
    x = np.random.default_rng(4).standard_normal((2, 3, 6, 5))
    ours = run_layer(f'name: "i" type: "Im2col" convolution_param {{ kernel_size: 3 stride: 2 pad: 1 '
                     f'dilation: {dilation} }}', [x])
    out = ours[0][0]
    theirs = torch_reference(lambda x: F.unfold(x, 3, dilation=dilation, stride=2, padding=1).reshape(out.shape),
                             [x], [], ours[4][0])
    assert_same(ours, theirs)


# -- Pooling ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("fields,shape,torch_args", [
    ("kernel_size: 3 stride: 2", (2, 3, 6, 6), dict(kernel_size=3, stride=2, ceil_mode=True)),
    ("kernel_size: 3 stride: 2 pad: 1", (2, 3, 7, 8), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 1", (1, 2, 6, 5),
     dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), ceil_mode=True)),
    ("kernel_size: 2 stride: 2 round_mode: FLOOR", (2, 2, 7, 5), dict(kernel_size=2, stride=2)),
    ("kernel_size: 3 stride: 3", (1, 2, 8, 7), dict(kernel_size=3, stride=3, ceil_mode=True)),
])
@pytest.mark.parametrize("pool", ["MAX", "AVE"])
def test_pooling_matches_torch(pool, fields, shape, torch_args):
    x = np.random.default_rng(5).standard_normal(shape)
    ours = run_layer(f'name: "p" type: "Pooling" pooling_param {{ pool: {pool} {fields} }}', [x])
    if pool == "MAX":
        fn = lambda x: F.max_pool2d(x, **torch_args)        # noqa: E731
    else:   # Caffe's divisor: the window clipped to the padded input, padding counted
        fn = lambda x: F.avg_pool2d(x, count_include_pad=True, **torch_args)    # noqa: E731
    theirs = torch_reference(fn, [x], [], ours[4][0])
    assert ours[0][0].shape == theirs[0].shape
    assert_same(ours, theirs)


def test_global_pooling_matches_torch():
    x = np.random.default_rng(6).standard_normal((2, 3, 5, 4))
    for pool, fn in (("MAX", lambda x: F.adaptive_max_pool2d(x, 1)), ("AVE", lambda x: F.adaptive_avg_pool2d(x, 1))):
        ours = run_layer(f'name: "p" type: "Pooling" pooling_param {{ pool: {pool} global_pooling: true }}', [x])
        assert_same(ours, torch_reference(fn, [x], [], ours[4][0]))


# -- LRN -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size,k", [(5, 1.0), (3, 2.0), (9, 1.0)])
def test_lrn_across_channels_matches_torch(size, k):
    x = np.random.default_rng(7).standard_normal((2, 6, 3, 4))
    ours = run_layer(f'name: "n" type: "LRN" lrn_param {{ local_size: {size} alpha: 0.5 beta: 0.75 k: {k} }}', [x])
    p = make_layer(f'name: "n" type: "LRN" lrn_param {{ alpha: 0.5 beta: 0.75 k: {k} }}').lp.lrn_param
    theirs = torch_reference(lambda x: F.local_response_norm(x, size, alpha=p.alpha, beta=p.beta, k=p.k),
                             [x], [], ours[4][0])
    assert_same(ours, theirs)


def test_lrn_within_channel_matches_torch_pooling_composition():
    """Caffe's WITHIN_CHANNEL: x * (1 + alpha * AVE-pool(x^2, size, pad (size-1)/2))^-beta."""
    x = np.random.default_rng(8).standard_normal((2, 3, 5, 6))
    ours = run_layer('name: "n" type: "LRN" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 '
                     'norm_region: WITHIN_CHANNEL }', [x])

    def within(x):
        pooled = F.avg_pool2d(x * x, 3, stride=1, padding=1, count_include_pad=True)
        return x * (1 + 0.5 * pooled) ** -0.75
    assert_same(ours, torch_reference(within, [x], [], ours[4][0]))


# -- neuron layers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text,fn", [
    ('type: "ReLU"', F.relu),
    ('type: "ReLU" relu_param { negative_slope: 0.125 }', lambda x: F.leaky_relu(x, 0.125)),
    ('type: "ELU" elu_param { alpha: 0.5 }', lambda x: F.elu(x, 0.5)),
    ('type: "ELU"', F.elu),
    ('type: "Sigmoid"', torch.sigmoid),
    ('type: "TanH"', torch.tanh),
    ('type: "AbsVal"', torch.abs),
    ('type: "BNLL"', F.softplus),
    ('type: "Clip" clip_param { min: -0.5 max: 0.75 }', lambda x: torch.clamp(x, -0.5, 0.75)),
    ('type: "Swish"', F.silu),
    ('type: "Swish" swish_param { beta: 1.5 }', lambda x: x * torch.sigmoid(1.5 * x)),
    ('type: "Power" power_param { power: 3 scale: 0.5 shift: 0.25 }', lambda x: (0.25 + 0.5 * x) ** 3),
    ('type: "Power" power_param { power: 2 scale: -1 }', lambda x: (-x) ** 2),
    ('type: "Power" power_param { power: 0.5 scale: 2 shift: 3 }', lambda x: (3 + 2 * x) ** 0.5),
    ('type: "Exp" exp_param { base: 2 scale: 0.5 shift: 0.25 }', lambda x: 2.0 ** (0.25 + 0.5 * x)),
    ('type: "Exp"', torch.exp),
    ('type: "Log" log_param { base: 10 scale: 2 shift: 5 }', lambda x: torch.log10(5 + 2 * x)),
    ('type: "Log"', torch.log),
])
def test_neuron_matches_torch(text, fn):
    x = np.random.default_rng(9).standard_normal((2, 3, 4, 5))
    for kink in (0.0, -0.5, 0.75):      # away from the kinks of ReLU, AbsVal, Clip
        x[np.abs(x - kink) < 1e-2] += 0.05
    if "Log" in text or "power: 0.5" in text:
        x = np.abs(x) + 0.1             # inside the domain
    ours = run_layer(f'name: "n" {text}', [x])
    assert_same(ours, torch_reference(fn, [x], [], ours[4][0]))


@pytest.mark.parametrize("shared", [False, True])
def test_prelu_matches_torch(shared):
    x = np.random.default_rng(10).standard_normal((2, 3, 4, 5))
    slope = np.array([0.3]) if shared else np.array([0.1, -0.2, 0.4])
    ours = run_layer(f'name: "n" type: "PReLU" prelu_param {{ channel_shared: {str(shared).lower()} }}', [x],
                     params=[slope])
    theirs = torch_reference(F.prelu, [x], [slope], ours[4][0])
    assert_same(ours, theirs)
