"""Vision layers against BVLC Caffe: the hand-computed expectations of Caffe's own layer tests
(test_pooling_layer.cpp, test_convolution_layer.cpp, test_lrn_layer.cpp) and the quirks of its
shape rules (pooling's pad clip, C integer division, empty windows), each shown by a case."""
import numpy as np
import pytest

from harness import check_layer, make_layer, param_shapes, run
from netspec import caffe_pb2
from netspec.errors import LayerError
from netspec.layers.base import ShapeContext
from netspec.ops.windows import conv_out, pool_out

FLT_LOWEST = np.finfo(np.float32).min
MAGIC6 = np.array([[35, 1, 6, 26, 19, 24], [3, 32, 7, 21, 23, 25], [31, 9, 2, 22, 27, 20],
                   [8, 28, 33, 17, 10, 15], [30, 5, 34, 12, 14, 16], [4, 36, 29, 13, 18, 11]], float)


def pooling(body, tops=1):
    extra = ' top: "y" top: "mask"' if tops == 2 else ""
    return make_layer(f'name: "p" type: "Pooling" pooling_param {{ {body} }}' + extra)


def top_shapes(layer, *shapes):
    ctx = ShapeContext(layer.phase)
    return layer.infer([tuple(s) for s in shapes], ctx), ctx


def tile(plane, num=2, channels=2):
    """Caffe's tests fill every (num, channel) plane with the same values."""
    return np.broadcast_to(plane, (num, channels) + plane.shape).copy()


# -- Caffe's pooling test cases ---------------------------------------------------------------------
@pytest.mark.parametrize("body,plane,values,mask", [
    ("pool: MAX kernel_size: 2",       # TestForwardSquare
     np.array([[1, 2, 5, 2, 3], [9, 4, 1, 4, 8], [1, 2, 5, 2, 3]], float),
     [[9, 5, 5, 8], [9, 5, 5, 8]], [[5, 2, 2, 9], [5, 12, 12, 9]]),
    ("pool: MAX kernel_h: 3 kernel_w: 2", MAGIC6,      # TestForwardRectHigh
     [[35, 32, 26, 27, 27], [32, 33, 33, 27, 27], [31, 34, 34, 27, 27], [36, 36, 34, 18, 18]],
     [[0, 7, 3, 16, 16], [7, 20, 20, 16, 16], [12, 26, 26, 16, 16], [31, 31, 26, 34, 34]]),
    ("pool: MAX kernel_h: 2 kernel_w: 3", MAGIC6,      # TestForwardRectWide
     [[35, 32, 26, 26], [32, 32, 27, 27], [33, 33, 33, 27], [34, 34, 34, 17], [36, 36, 34, 18]],
     [[0, 7, 3, 3], [7, 7, 16, 16], [20, 20, 20, 16], [26, 26, 26, 21], [31, 31, 26, 34]]),
])
def test_caffe_max_pooling_cases_with_their_mask_top(body, plane, values, mask):
    y, m = run(pooling(body, tops=2), [tile(plane)]).y
    np.testing.assert_array_equal(y, tile(np.array(values, float)))
    np.testing.assert_array_equal(m, tile(np.array(mask, float)))


def test_caffe_max_pooling_padded_case():
    """TestForwardMaxPadded: kernel 3, stride 2, pad 2 on a 3x3 map gives 3x3."""
    x = np.array([[1, 2, 4], [2, 3, 2], [4, 2, 1]], float).reshape(1, 1, 3, 3)
    (y,) = run(pooling("pool: MAX kernel_size: 3 stride: 2 pad: 2"), [x]).y
    np.testing.assert_array_equal(y[0, 0], [[1, 4, 4], [4, 4, 4], [4, 4, 1]])


def test_caffe_ave_pooling_padded_case():
    """TestForwardAve: kernel 3, stride 1, pad 1 on a 3x3 map of 2s: the divisor is always 9
    (the window clipped to the padded input), so the borders average in the zeros."""
    (y,) = run(pooling("pool: AVE kernel_size: 3 stride: 1 pad: 1"), [np.full((1, 1, 3, 3), 2.0)]).y
    np.testing.assert_allclose(y[0, 0], [[8 / 9, 4 / 3, 8 / 9], [4 / 3, 2, 4 / 3], [8 / 9, 4 / 3, 8 / 9]])


def test_caffe_pooling_setup_shapes():
    """TestSetup / TestSetupPadded on a 6x5 bottom: 3x2, and 4x3 with pad 1."""
    assert top_shapes(pooling("pool: MAX kernel_size: 3 stride: 2"), (2, 3, 6, 5))[0] == [(2, 3, 3, 2)]
    assert top_shapes(pooling("pool: AVE kernel_size: 3 stride: 2 pad: 1"), (2, 3, 6, 5))[0] == [(2, 3, 4, 3)]


# -- quirks of Caffe's pooling shape rule ---------------------------------------------------------
def test_padding_on_one_axis_clips_the_last_window_on_both():
    """Caffe drops a last window that starts past the input on EVERY axis once any pad is set:
    width 5, kernel 1, stride 3 gives ceil(4/3) + 1 = 3 windows unpadded, but 2 when pad_h is 1."""
    assert pool_out(5, 1, 3, 0) == 3 and pool_out(5, 1, 3, 0, padded=True) == 2
    unpadded = pooling("pool: MAX kernel_h: 3 kernel_w: 1 stride: 3")
    padded = pooling("pool: MAX kernel_h: 3 kernel_w: 1 stride: 3 pad_h: 1 pad_w: 0")
    assert top_shapes(unpadded, (1, 1, 4, 5))[0] == [(1, 1, 2, 3)]
    assert top_shapes(padded, (1, 1, 4, 5))[0] == [(1, 1, 2, 2)]
    assert any("dropped as another axis is padded -> 2" in n for n in top_shapes(padded, (1, 1, 4, 5))[1].notes)
    x = np.arange(20.0).reshape(1, 1, 4, 5)
    (y,) = run(padded, [x]).y
    np.testing.assert_array_equal(y[0, 0], [[5, 8], [15, 18]])     # rows -1..1 and 2..4, columns 0 and 3


@pytest.mark.parametrize("pool,expected", [("MAX", 3.0), ("AVE", 1.5)])
def test_a_kernel_overhanging_the_input_by_less_than_the_stride_keeps_one_window(pool, expected):
    """ceil((2 - 3)/2) + 1 = 1: Caffe pools the whole 2x2 map (AVE divides by the 2x2 it covers)."""
    layer = pooling(f"pool: {pool} kernel_size: 3 stride: 2")
    (shape,), ctx = top_shapes(layer, (1, 1, 2, 2))
    assert shape == (1, 1, 1, 1)
    assert any("larger than the padded input" in w for w in ctx.warnings)
    (y,) = run(layer, [np.arange(4.0).reshape(1, 1, 2, 2)]).y
    assert y.item() == expected
    check_layer(pooling(f"pool: {pool} kernel_size: 3 stride: 2"),
                   [np.array([[[[0.1, 0.7], [0.4, -0.3]]]])])


def test_a_kernel_overhanging_by_the_stride_or_more_is_an_error():
    with pytest.raises(LayerError, match="larger than the padded input 2 \\+ 2\\*0 = 2"):
        top_shapes(pooling("pool: MAX kernel_size: 4 stride: 2"), (1, 1, 2, 2))   # ceil(-1) + 1 = 0


def test_an_empty_window_gives_minus_one_in_the_mask_top():
    """Kernel 1, stride 3 on 8x8: the 4th window starts at 9, past the input; Caffe leaves its
    value at -FLT_MAX and its mask at -1."""
    y, m = run(pooling("pool: MAX kernel_size: 1 stride: 3", tops=2), [np.arange(64.0).reshape(1, 1, 8, 8)]).y
    assert y.shape == (1, 1, 4, 4)
    np.testing.assert_array_equal(m[0, 0, :3, :3], np.arange(64).reshape(8, 8)[::3, ::3])
    assert (m[0, 0, 3] == -1).all() and (m[0, 0, :, 3] == -1).all()
    assert (y[0, 0, 3] == FLT_LOWEST).all()


# -- convolution: C integer division --------------------------------------------------------------
def test_convolution_output_truncates_toward_zero_as_caffe_does():
    """(2 - 3)/2 + 1 is 0 + 1 = 1 in C (not floor(-0.5) + 1 = 0): a 3x3 stride-2 kernel on a 2x2
    map gives one output over the part of the kernel that meets the input."""
    assert conv_out(2, 3, 2) == 1 and conv_out(2, 3, 1) == 0 and conv_out(2, 4, 2) == 0
    assert conv_out(7, 3, 2) == 3 and conv_out(8, 3, 2, 1) == 4
    text = 'name: "c" type: "Convolution" convolution_param { num_output: 1 kernel_size: 3 stride: 2 bias_term: false }'
    layer = make_layer(text)
    (shape,), ctx = top_shapes(layer, (1, 1, 2, 2))
    assert shape == (1, 1, 1, 1) and ctx.warnings
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    w = np.arange(9.0).reshape(1, 1, 3, 3)
    (y,) = run(layer, [x], params=[w]).y
    assert y.item() == 1 * 0 + 2 * 1 + 3 * 3 + 4 * 4
    check_layer(make_layer(text), [x])
    with pytest.raises(LayerError, match="kernel extent 3 is larger than the padded input 2"):
        top_shapes(make_layer(text.replace("stride: 2", "stride: 1")), (1, 1, 2, 2))


def test_caffe_simple_convolution_case():
    """TestSimpleConvolution's arithmetic: constant input 1, weights 1, bias 0.1, 3x3 stride 2
    over 3 channels gives 27.1 everywhere; with group 3, 9.1."""
    x = np.ones((2, 3, 6, 4))
    for group, value in ((1, 27.1), (3, 9.1)):
        text = (f'name: "c" type: "Convolution" convolution_param {{ num_output: {3 if group == 3 else 4} '
                f'kernel_size: 3 stride: 2 group: {group} }}')
        layer = make_layer(text)
        (shape,), _ = top_shapes(layer, x.shape)
        assert shape == ((2, 3, 2, 1) if group == 3 else (2, 4, 2, 1))
        w = np.ones(param_shapes(layer, [x.shape])[0])
        (y,) = run(layer, [x], params=[w, np.full(shape[1], 0.1)]).y
        np.testing.assert_allclose(y, value)


# -- LRN: the reference of test_lrn_layer.cpp, as a loop ------------------------------------------
def reference_lrn(x, size, alpha, beta, k, region):
    """Caffe's test reference: across channels, scale = k + alpha/size * sum of x^2 over the
    channels clipped to the blob; within a channel, 1 + alpha/size^2 * sum over the clipped
    size x size window."""
    n_, c_, h_, w_ = x.shape
    pre = (size - 1) // 2
    y = np.empty_like(x)
    for n in range(n_):
        for c in range(c_):
            for h in range(h_):
                for w in range(w_):
                    if region == "ACROSS_CHANNELS":
                        window = x[n, max(c - pre, 0):min(c - pre + size, c_), h, w]
                        scale = k + alpha / size * (window ** 2).sum()
                    else:
                        rows = slice(max(h - pre, 0), min(h - pre + size, h_))
                        window = x[n, c, rows, max(w - pre, 0):min(w - pre + size, w_)]
                        scale = 1 + alpha / size ** 2 * (window ** 2).sum()
                    y[n, c, h, w] = x[n, c, h, w] * scale ** -beta
    return y


@pytest.mark.parametrize("region,size,k", [("ACROSS_CHANNELS", 5, 1.0), ("ACROSS_CHANNELS", 15, 2.0),
                                           ("WITHIN_CHANNEL", 3, 1.0), ("WITHIN_CHANNEL", 5, 7.0)])
def test_lrn_matches_caffes_reference(region, size, k):
    """Caffe's LRN tests run on a 2x7x3x3 Gaussian bottom, local_size 5 (15 for the large
    region); WITHIN_CHANNEL ignores k (Caffe builds it from Power layers with shift 1)."""
    x = np.random.default_rng(3).standard_normal((2, 7, 3, 3))
    layer = make_layer(f'name: "n" type: "LRN" lrn_param {{ local_size: {size} alpha: 0.3 beta: 0.75 k: {k} '
                       f'norm_region: {region} }}')
    (y,) = run(layer, [x]).y
    p = layer.lp.lrn_param      # float32 fields: alpha is 0.3 to float precision
    np.testing.assert_allclose(y, reference_lrn(x, size, p.alpha, p.beta, p.k, region), rtol=1e-12)


# -- SPP: the pyramid geometry of spp_layer.cpp ---------------------------------------------------
def test_spp_level_geometry_matches_caffe():
    """Level l: bins 2^l, kernel ceil(size/bins), pad (kernel*bins - size + 1)/2, stride kernel.
    On 9x8: level 2 has kernels 3x2 and pads 2x0 -> pooled 4x4 (the clip drops none)."""
    layer = make_layer('name: "s" type: "SPP" spp_param { pyramid_height: 3 pool: MAX }')
    levels = layer.levels((1, 1, 9, 8))
    assert [tuple(w.kernel) for w, _ in levels] == [(9, 8), (5, 4), (3, 2)]
    assert [tuple(w.pad) for w, _ in levels] == [(0, 0), (1, 0), (2, 0)]
    assert [out for _, out in levels] == [(1, 1), (2, 2), (4, 4)]
    (shape,), _ = top_shapes(layer, (2, 3, 9, 8))
    assert shape == (2, 3 * (1 + 4 + 16))


def test_spp_stochastic_levels_sample_even_in_test_phase():
    """Caffe's SPP makes its Pooling layers from a fresh LayerParameter (phase TRAIN), so a
    STOCHASTIC pyramid picks elements of its input in TEST too, not the weighted average."""
    x = np.random.default_rng(4).uniform(0.1, 1.0, (1, 2, 4, 4))
    layer = make_layer('name: "s" type: "SPP" spp_param { pyramid_height: 2 pool: STOCHASTIC }',
                       phase=caffe_pb2.TEST)
    (y,) = run(layer, [x]).y
    assert y.shape == (1, 2 * 5)
    assert all(np.isin(v, x).item() for v in y.ravel())      # sampled values, not averages
    check_layer(make_layer('name: "s" type: "SPP" spp_param { pyramid_height: 2 pool: STOCHASTIC }',
                              phase=caffe_pb2.TEST), [x])


def test_zero_d_convolution_is_a_product_over_the_last_axis():
    """Caffe's Test0DConvolution: axis 3 of a 2x3x6x4 bottom leaves no spatial axis; no kernel is
    needed, weights are (num_output, channels) and each position gets bias + W @ x."""
    text = 'name: "c" type: "Convolution" convolution_param { num_output: 3 axis: 3 }'
    layer = make_layer(text)
    (shape,), _ = top_shapes(layer, (2, 3, 6, 4))
    assert shape == (2, 3, 6, 3) and param_shapes(layer, [(2, 3, 6, 4)]) == [(3, 4), (3,)]
    assert layer.window([(2, 3, 6, 4)]) is None
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((2, 3, 6, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)
    (y,) = run(layer, [x], params=[w, b]).y
    np.testing.assert_allclose(y, np.einsum("nchk,dk->nchd", x, w) + b, rtol=1e-12)
    check_layer(make_layer(text), [rng.standard_normal((2, 1, 2, 4))])
    with pytest.raises(LayerError, match="kernel size is not set"):
        top_shapes(make_layer('name: "c" type: "Convolution" convolution_param { num_output: 3 }'), (2, 3, 6, 4))
    deconv = make_layer('name: "d" type: "Deconvolution" convolution_param { num_output: 3 axis: 1 }')
    w = rng.standard_normal((4, 3))           # deconvolution weights: (channels, num_output)
    (y,) = run(deconv, [x[:, 0, 0]], params=[w, b]).y
    np.testing.assert_allclose(y, x[:, 0, 0] @ w + b, rtol=1e-12)


def test_caffe_simple_deconvolution_case():
    """TestSimpleDeconvolution: ones in, weights 1, bias 0.1, kernel 3 stride 2 over 3 channels:
    3.1 where one window lands, 6.1 where two overlap (even interior row or column), 12.1 where four."""
    layer = make_layer('name: "d" type: "Deconvolution" convolution_param { num_output: 4 kernel_size: 3 stride: 2 }')
    (shape,), _ = top_shapes(layer, (2, 3, 6, 4))
    assert shape == (2, 4, 13, 9)
    (y,) = run(layer, [np.ones((2, 3, 6, 4))], params=[np.ones((3, 4, 3, 3)), np.full(4, 0.1)]).y
    rows = [(h % 2 == 0 and 0 < h < 12) for h in range(13)]
    cols = [(w % 2 == 0 and 0 < w < 8) for w in range(9)]
    expected = 3.1 + np.array([[9 if r and c else 3 if r or c else 0 for c in cols] for r in rows])
    np.testing.assert_allclose(y, np.broadcast_to(expected, y.shape), rtol=1e-12)
    with pytest.raises(LayerError, match="no spatial axis after the channel axis 1"):
        top_shapes(make_layer('name: "i" type: "Im2col" convolution_param { axis: 1 }'), (2, 4))
