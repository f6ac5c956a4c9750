"""The array kernels in netspec.ops against naive loops written here, on NumPy."""
import itertools

import numpy as np
import pytest

from netspec.ops import lrn, pooling
from netspec.ops.im2col import col2im, col_shape, im2col
from netspec.ops.windows import Window, conv_out, deconv_out, pool_out
from netspec.ops.workspace import scratch


def window(kernel, stride=1, pad=0, dilation=1, n=2):
    as_tuple = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v,) * n  # noqa: E731
    return Window(as_tuple(kernel), as_tuple(stride), as_tuple(pad), as_tuple(dilation))


# -- output sizes -----------------------------------------------------------------------------------
def test_conv_out_floors():
    assert conv_out(224, 11, 4, 0) == 54          # (224 - 11)/4 + 1 = 54.25
    assert conv_out(227, 11, 4, 0) == 55
    assert conv_out(224, 11, 4, 2) == 55
    assert conv_out(7, 3, 1, 2, dilation=2) == 7   # extent 5
    assert conv_out(4, 5, 1, 0) == 0               # kernel larger than input: nothing left


def test_deconv_out():
    assert deconv_out(13, 4, 2, 1) == 26           # 2*12 + 4 - 2
    assert deconv_out(5, 3, 1, 0, dilation=2) == 9


def test_pool_out_ceil_and_pad_clip():
    assert pool_out(112, 3, 2, 0) == 56            # ceil(54.5) + 1
    assert pool_out(112, 3, 2, 0, ceil_mode=False) == 55
    assert pool_out(55, 3, 2, 0) == 27
    # ceil gives 4, but the 4th window would start at 3*2 - 1 = 5 = 5 + 1 - 1 inside the padding
    assert pool_out(5, 2, 2, 1) == 3
    assert pool_out(6, 3, 2, 1) == 4


# -- im2col / col2im -------------------------------------------------------------------------------
def naive_im2col(x, win):
    n, c = x.shape[:2]
    out = win.out_shape(x.shape[2:])
    col = np.zeros(col_shape(x.shape, win, out))
    for tap in itertools.product(*(range(k) for k in win.kernel)):
        for o in itertools.product(*(range(s) for s in out)):
            pos = [oi * s - p + t * d for oi, s, p, t, d in zip(o, win.stride, win.pad, tap, win.dilation)]
            if all(0 <= q < size for q, size in zip(pos, x.shape[2:])):
                col[(slice(None),) + tap + (slice(None),) + o] = x[(slice(None), slice(None)) + tuple(pos)].T
    return col


@pytest.mark.parametrize("shape,win", [
    ((2, 3, 6, 7), window(3, 1, 1)),
    ((2, 2, 9, 8), window((3, 2), (2, 3), (1, 0), (2, 1))),
    ((1, 2, 5, 5), window(4, 3, 3)),                      # taps that read only padding
    ((2, 3, 11), window(3, 2, 1, n=1)),                   # 1-d
    ((1, 2, 5, 4, 6), window((2, 3, 2), (1, 2, 2), (1, 1, 0), n=3)),   # 3-d
])
def test_im2col_matches_naive_and_col2im_is_its_adjoint(shape, win):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    out = win.out_shape(shape[2:])
    expected = naive_im2col(x, win)
    garbage = np.full(expected.shape, np.nan)            # a reused buffer: every cell must be written
    np.testing.assert_array_equal(im2col(np, x, win, out, garbage), expected)
    c = rng.standard_normal(expected.shape)
    back = col2im(np, c, x.shape, win, np.full(shape, np.nan))
    assert np.isclose(np.sum(expected * c), np.sum(x * back))


# -- pooling ---------------------------------------------------------------------------------------
def naive_pool(x, kernel, stride, pad, method):
    """Caffe's Forward_cpu loops, for 2-d."""
    n, c, h, w = x.shape
    oh, ow = (pool_out(s, k, st, p) for s, k, st, p in zip((h, w), kernel, stride, pad))
    y = np.zeros((n, c, oh, ow))
    for i, j in itertools.product(range(oh), range(ow)):
        hs, ws = i * stride[0] - pad[0], j * stride[1] - pad[1]
        he, we = min(hs + kernel[0], h + pad[0]), min(ws + kernel[1], w + pad[1])
        area = (he - hs) * (we - ws)
        hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
        patch = x[:, :, hs:he, ws:we].reshape(n, c, -1)
        y[:, :, i, j] = patch.max(-1) if method == "max" else patch.sum(-1) / area
    return y


@pytest.mark.parametrize("shape,kernel,stride,pad", [
    ((2, 3, 7, 8), (3, 3), (2, 2), (0, 0)),
    ((1, 2, 6, 9), (3, 3), (2, 2), (1, 1)),
    ((2, 1, 5, 7), (2, 3), (1, 2), (1, 1)),
    ((1, 2, 8, 8), (3, 3), (3, 3), (1, 1)),
    ((2, 3, 7, 6), (3, 3), (1, 1), (1, 1)),        # stride 1: the flat-grid path
    ((2, 2, 5, 5), (2, 3), (1, 1), (0, 1)),
])
def test_pooling_matches_caffe_loops(shape, kernel, stride, pad):
    x = np.random.default_rng(1).permutation(np.prod(shape)).reshape(shape).astype(float)
    win = Window(kernel, stride, pad, (1, 1))
    out = tuple(pool_out(s, k, st, p) for s, k, st, p in zip(shape[2:], kernel, stride, pad))
    y, _ = pooling.max_pool(np, x, win, out)
    np.testing.assert_array_equal(y, naive_pool(x, kernel, stride, pad, "max"))
    np.testing.assert_allclose(pooling.ave_pool(np, x, win, out), naive_pool(x, kernel, stride, pad, "ave"))


@pytest.mark.parametrize("pad", [0, 1])
def test_stride_1_max_pool_backward_routes_to_the_argmax(pad):
    """The flat-grid path (stride 1) against Caffe's rule written out: each output's gradient
    goes to the first maximum of its window (ties from a ReLU's zeros included)."""
    rng = np.random.default_rng(3)
    x = np.maximum(rng.standard_normal((2, 3, 6, 5)), 0)          # many tied zeros
    win = window(3, 1, pad)
    out = tuple(pool_out(s, 3, 1, pad) for s in x.shape[2:])
    y, arg = pooling.max_pool(np, x, win, out)
    dy = rng.standard_normal(y.shape)
    dx = pooling.max_pool_backward(np, dy, arg, x.shape[2:], win)
    want = np.zeros_like(x)
    for n, c, i, j in itertools.product(*(range(d) for d in y.shape)):
        hs, ws = i - pad, j - pad
        cells = [(h, w) for h in range(hs, hs + 3) for w in range(ws, ws + 3)
                 if 0 <= h < x.shape[2] and 0 <= w < x.shape[3]]
        h, w = max(cells, key=lambda hw: (x[n, c, hw[0], hw[1]], -cells.index(hw)))
        assert y[n, c, i, j] == x[n, c, h, w]
        want[n, c, h, w] += dy[n, c, i, j]
    np.testing.assert_allclose(dx, want)


@pytest.mark.parametrize("shape, kernel", [((2, 3, 6, 4), (2, 2)), ((2, 2, 6, 4, 6), (3, 2, 3)), ((1, 2, 6, 6), (3, 3))])
def test_tiling_max_pool_backward_matches_the_tap_loop(monkeypatch, shape, kernel):
    """kernel = stride, no pad, exact fit: each tap's share written once; the same dx as the
    general loop (forced with a non-contiguous dx), ties from a ReLU's zeros included."""
    rng = np.random.default_rng(5)
    x = np.maximum(rng.standard_normal(shape), 0)
    win = window(kernel, kernel, n=len(kernel))
    out = tuple(s // k for s, k in zip(shape[2:], kernel))
    y, arg = pooling.max_pool(np, x, win, out)
    dy = rng.standard_normal(y.shape)
    assert pooling._tiles(shape[2:], out, win)
    tiled = pooling.max_pool_backward(np, dy, arg, shape[2:], win, out=np.full(shape, np.nan))
    looped = np.full(shape[:1] + (shape[1] + 1,) + shape[2:], np.nan)[:, :shape[1]]     # not contiguous
    pooling.max_pool_backward(np, dy, arg, shape[2:], win, out=looped)
    np.testing.assert_array_equal(tiled, looped)
    assert np.count_nonzero(tiled) == np.count_nonzero(dy)     # one element per window gets its gradient


def test_max_pool_ties_go_to_the_first_element():
    x = np.array([[[[1., 3., 3.], [3., 0., 3.]]]])
    y, arg = pooling.max_pool(np, x, window((2, 3), 1), (1, 1))
    assert y[0, 0, 0, 0] == 3 and arg[0, 0, 0, 0] == 1
    dx = pooling.max_pool_backward(np, np.ones((1, 1, 1, 1)), arg, (2, 3), window((2, 3), 1))
    np.testing.assert_array_equal(dx[0, 0], [[0, 1, 0], [0, 0, 0]])


def test_max_pool_skips_nan_like_caffe():
    x = np.array([[[[np.nan, 1., 2., 0.]]]])
    y, arg = pooling.max_pool(np, x, window((1, 3), 1), (1, 2))
    np.testing.assert_array_equal(y[0, 0, 0], [2, 2])
    np.testing.assert_array_equal(arg[0, 0, 0], [2, 1])


def test_max_pool_with_more_than_255_taps():
    x = np.random.default_rng(2).standard_normal((1, 2, 18, 18))
    x[0, 0, 16, 16] = 10                      # tap 16*17 + 16 = 288 of output (0, 0)
    win = window(17, 1)
    y, arg = pooling.max_pool(np, x, win, (2, 2))
    np.testing.assert_array_equal(y, naive_pool(x, (17, 17), (1, 1), (0, 0), "max"))
    assert arg[0, 0, 0, 0] == 288
    assert pooling.argmax_to_input_index(np, arg, (18, 18), win)[0, 0, 0, 0] == 16 * 18 + 16


def test_argmax_as_input_index():
    x = np.arange(20.).reshape(1, 1, 4, 5)
    win = window(2, 2, 1)
    y, arg = pooling.max_pool(np, x, win, (3, 3))
    index = pooling.argmax_to_input_index(np, arg, (4, 5), win)
    np.testing.assert_array_equal(x.reshape(-1)[index], y)


def test_stochastic_test_mode_is_the_probability_weighted_average():
    x = np.array([[[[1., 3.], [0., 0.]]]])
    y, _ = pooling.stochastic_pool_test(np, x, window((1, 2), 1), (2, 1))
    np.testing.assert_allclose(y[0, 0, :, 0], [(1 + 9) / 4, 0])


# -- LRN -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("beta", [0.75, 0.5, 1.0, 0.6])
def test_neg_pow(beta):
    s = np.linspace(1, 50, 101).astype(np.float32)
    np.testing.assert_allclose(lrn.neg_pow(np, s, beta), s ** -beta, rtol=2e-6)


@pytest.mark.parametrize("channels,size", [(6, 5), (3, 5), (1, 3), (4, 1)])
def test_channel_window_sum(channels, size):
    a = np.random.default_rng(3).standard_normal((2, channels, 2, 3))
    pre = (size - 1) // 2
    expected = np.stack([a[:, max(0, c - pre):c - pre + size].sum(1) for c in range(channels)], axis=1)
    np.testing.assert_allclose(lrn.channel_window_sum(a, size), expected)


# -- scratch buffers -------------------------------------------------------------------------------
def test_scratch_reuses_and_grows():
    a = scratch(np, "test", (4, 5), np.float32)
    b = scratch(np, "test", (2, 3), np.float32)
    assert np.shares_memory(a, b)
    c = scratch(np, "test", (10, 10), np.float32)
    assert c.shape == (10, 10)
    assert not np.shares_memory(scratch(np, "other", (2, 3), np.float32), c)


@pytest.mark.parametrize("shape,o,kernel,stride,pad,dilation,group", [
    ((3, 4, 9, 8), 6, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((2, 4, 11, 10), 4, (3, 2), (2, 1), (0, 1), (1, 2), 2),
    ((2, 3, 6, 7), 3, (3, 3), (1, 1), (2, 2), (1, 1), 3),         # depthwise, taps that read only padding
])
def test_conv_batch_last_columns_match_the_batch_inner_layout(monkeypatch, shape, o, kernel, stride, pad,
                                                              dilation, group):
    """NumPy's two column layouts give the same forward, weight, bias and input gradients,
    with columns kept from forward and recomputed."""
    from netspec.ops import conv
    rng = np.random.default_rng(4)
    win = Window(kernel, stride, pad, dilation)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((o, shape[1] // group) + kernel)
    b = rng.standard_normal(o)
    out_shape = win.out_shape(shape[2:])
    dy = rng.standard_normal((shape[0], o) + out_shape)
    results = []
    for width in (0, 1000):                 # 0: never batch-last; 1000: always (batch > 1)
        monkeypatch.setattr(conv, "BATCH_LAST_WIDTH", width)
        for keep in (True, False):
            col = np.full(col_shape(shape, win, out_shape), np.nan) if keep else None
            y = np.full((shape[0], o) + out_shape, np.nan)
            conv.conv_forward(np, x, w, b, win, group, y, col)
            dw, db, dx = np.zeros_like(w), np.zeros_like(b), np.full(shape, np.nan)
            conv.conv_backward(np, x, w, dy, win, group, col=col, dw=dw, db=db, dx=dx)
            results.append((y, dw, db, dx))
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


# -- Winograd F(2x2, 3x3) --------------------------------------------------------------------------
@pytest.mark.parametrize("shape,o,pad,group,bias", [
    ((2, 4, 8, 8), 6, (1, 1), 1, True),              # even map: whole 2x2 blocks
    ((3, 3, 7, 9), 5, (1, 1), 1, True),              # odd edges: the last blocks cut
    ((2, 4, 6, 5), 4, (0, 2), 2, False),             # no pad on one axis, 2 on the other; groups
    ((1, 2, 4, 4), 3, (2, 2), 1, True),              # pad that leaves border tiles all padding
])
def test_winograd_matches_the_columns(monkeypatch, shape, o, pad, group, bias):
    """F(2x2, 3x3) gives the im2col path's forward and gradients (weights accumulated onto
    what is there), whole and in batch chunks, to float64 rounding."""
    from netspec.ops import conv, winograd
    rng = np.random.default_rng(7)
    win = Window((3, 3), (1, 1), pad, (1, 1))
    x = rng.standard_normal(shape)
    w = rng.standard_normal((o, shape[1] // group, 3, 3))
    b = rng.standard_normal(o) if bias else None
    out_shape = win.out_shape(shape[2:])
    dy = rng.standard_normal((shape[0], o) + out_shape)
    dw0 = rng.standard_normal(w.shape)

    def both():
        y, dw, dx = np.full((shape[0], o) + out_shape, np.nan), dw0.copy(), np.full(shape, np.nan)
        conv.conv_forward(np, x, w, b, win, group, y)
        conv.conv_backward(np, x, w, dy, win, group, dw=dw, dx=dx)
        return y, dw, dx
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "MIN_SIZE", 1)
    assert winograd.suits(np, shape, w.shape, win, group)
    fast = both()
    monkeypatch.setattr(winograd, "TILE_BYTES", 1)                  # one image at a time
    chunked = both()
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 10 ** 6)
    want = both()
    for got in (fast, chunked):
        for a, e in zip(got, want):
            np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-10)


def test_winograd_gradients_one_at_a_time(monkeypatch):
    """Backward asked for dx alone or dw alone writes only that."""
    from netspec.ops import conv, winograd
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "MIN_SIZE", 1)
    rng = np.random.default_rng(8)
    win = Window((3, 3), (1, 1), (1, 1), (1, 1))
    x, w, dy = rng.standard_normal((2, 3, 5, 6)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal((2, 4, 5, 6))
    dw, dx = np.zeros_like(w), np.full(x.shape, np.nan)
    conv.conv_backward(np, x, w, dy, win, 1, dw=dw, dx=dx)
    dw_alone, dx_alone = np.zeros_like(w), np.full(x.shape, np.nan)
    conv.conv_backward(np, x, w, dy, win, 1, dw=dw_alone)
    conv.conv_backward(np, x, w, dy, win, 1, dx=dx_alone)
    np.testing.assert_allclose(dw_alone, dw, rtol=1e-12)
    np.testing.assert_allclose(dx_alone, dx, rtol=1e-12)


@pytest.mark.parametrize("x_shape,o,kernel,stride,dilation,group,xp_name,expected", [
    ((8, 128, 28, 28), 128, (3, 3), (1, 1), (1, 1), 1, "numpy", True),
    ((10, 384, 13, 13), 384, (3, 3), (1, 1), (1, 1), 2, "numpy", True),      # 192 per group
    ((8, 64, 56, 56), 64, (3, 3), (1, 1), (1, 1), 1, "numpy", True),
    ((8, 48, 56, 56), 64, (3, 3), (1, 1), (1, 1), 1, "numpy", False),        # few channels
    ((8, 512, 7, 7), 512, (3, 3), (1, 1), (1, 1), 1, "numpy", False),        # small map
    ((8, 128, 28, 28), 128, (3, 3), (2, 2), (1, 1), 1, "numpy", False),      # strided
    ((8, 128, 28, 28), 128, (3, 3), (1, 1), (2, 2), 1, "numpy", False),      # dilated
    ((8, 128, 28, 28), 128, (5, 5), (1, 1), (1, 1), 1, "numpy", False),      # 5x5
    ((8, 128, 28, 28), 128, (3, 3), (1, 1), (1, 1), 1, "cupy", False),       # NumPy only
])
def test_winograd_runs_where_it_pays(x_shape, o, kernel, stride, dilation, group, xp_name, expected):
    from netspec.ops import winograd
    xp = np if xp_name == "numpy" else object()
    win = Window(kernel, stride, (1, 1), dilation)
    assert winograd.suits(xp, x_shape, (o, x_shape[1] // group) + kernel, win, group) is expected
