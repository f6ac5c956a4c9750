"""Each CuPy kernel (netspec.ops.cuda) against its NumPy twin; skipped where no GPU exists."""
import numpy as np
import pytest

from netspec.backend import gpu_available
from netspec.ops import lrn, pooling
from netspec.ops.im2col import col2im, im2col
from netspec.ops.windows import Window, pool_out

pytestmark = pytest.mark.skipif(not gpu_available(), reason="no CuPy/GPU here")

CONV_WINDOWS = [
    ((2, 3, 9, 8), Window((3, 3), (1, 1), (1, 1), (1, 1))),
    ((2, 4, 13, 11), Window((5, 3), (2, 3), (2, 0), (1, 2))),
    ((1, 3, 27, 27), Window((11, 11), (4, 4), (0, 0), (1, 1))),
]
POOL_WINDOWS = [
    ((2, 3, 7, 8), Window((3, 3), (2, 2), (0, 0), (1, 1))),
    ((2, 2, 6, 9), Window((3, 2), (2, 1), (1, 1), (1, 1))),
    ((1, 4, 8, 8), Window((8, 8), (1, 1), (0, 0), (1, 1))),     # global
]


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


def _cupy():
    import cupy
    return cupy


def _close(gpu, cpu, dtype):
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(_cupy().asnumpy(gpu), cpu, rtol=tol, atol=tol)


@pytest.mark.parametrize("shape,win", CONV_WINDOWS)
def test_im2col_and_col2im(shape, win, dtype):
    cp = _cupy()
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    out = win.out_shape(shape[2:])
    col = im2col(np, x, win, out)
    _close(im2col(cp, cp.asarray(x), win, out), col, dtype)
    c = np.random.default_rng(1).standard_normal(col.shape).astype(dtype)
    _close(col2im(cp, cp.asarray(c), shape, win), col2im(np, c, shape, win), dtype)


@pytest.mark.parametrize("shape,win", POOL_WINDOWS)
def test_pooling(shape, win, dtype):
    cp = _cupy()
    x = np.random.default_rng(2).permutation(np.prod(shape)).reshape(shape).astype(dtype)
    out = tuple(pool_out(s, k, st, p) for s, k, st, p in zip(shape[2:], win.kernel, win.stride, win.pad))
    y, arg = pooling.max_pool(np, x, win, out)
    gy, garg = pooling.max_pool(cp, cp.asarray(x), win, out)
    _close(gy, y, dtype)
    np.testing.assert_array_equal(cp.asnumpy(garg), arg)
    dy = np.random.default_rng(3).standard_normal(y.shape).astype(dtype)
    _close(pooling.max_pool_backward(cp, cp.asarray(dy), garg, shape[2:], win),
           pooling.max_pool_backward(np, dy, arg, shape[2:], win), dtype)
    _close(pooling.ave_pool(cp, cp.asarray(x), win, out), pooling.ave_pool(np, x, win, out), dtype)
    _close(pooling.ave_pool_backward(cp, cp.asarray(dy), shape[2:], win),
           pooling.ave_pool_backward(np, dy, shape[2:], win), dtype)


@pytest.mark.parametrize("channels,size", [(7, 5), (3, 5), (4, 3)])
def test_lrn_across_channels(channels, size, dtype):
    cp = _cupy()
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, channels, 3, 4)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    y, scale, inv = lrn.lrn_across(np, x, size, 0.3, 0.75, 2.0)
    gy, gscale, ginv = lrn.lrn_across(cp, cp.asarray(x), size, 0.3, 0.75, 2.0)
    for g, c in ((gy, y), (gscale, scale), (ginv, inv)):
        _close(g, c, dtype)
    _close(lrn.lrn_across_backward(cp, cp.asarray(x), gy, gscale, ginv, cp.asarray(dy), size, 0.3, 0.75),
           lrn.lrn_across_backward(np, x, y, scale, inv, dy, size, 0.3, 0.75), dtype)
