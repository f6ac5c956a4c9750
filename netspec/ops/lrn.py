"""Local response normalisation, Caffe's two forms, on (N, C, H, W).

ACROSS_CHANNELS: scale = k + alpha/n * sum of x^2 over the n channels centred on c (clipped
at the ends); y = x * scale^-beta.
WITHIN_CHANNEL (Caffe builds it from Power, AVE Pooling and Eltwise layers): scale = 1 +
alpha * AVE-pool(x^2) over an n x n window padded by (n-1)/2 (so the divisor is always n*n);
y = x * scale^-beta. Caffe's `k` plays no part here.

Both return (y, scale), y written into `out` when given; backward takes scale back (as Caffe
keeps scale_) and recomputes scale^-beta: one array kept per layer, not two.
"""
import numpy

from .pooling import ave_pool, ave_pool_backward
from .windows import Window
from .workspace import scratch


def _cuda(xp):
    if xp is not numpy:
        from . import cuda
        return cuda
    return None


def neg_pow(xp, s, beta, out=None):
    """s ** -beta (into `out` when given); Caffe's usual betas through square roots, which are
    much cheaper than pow."""
    out = xp.empty_like(s) if out is None else out
    if beta in (0.75, 0.5):
        xp.sqrt(s, out=out)
        xp.divide(1, out, out=out)
        if beta == 0.75:
            out *= xp.sqrt(out, out=scratch(xp, "lrn_root", s.shape, s.dtype))
    elif beta == 1:
        xp.divide(1, s, out=out)
    else:
        xp.power(s, -beta, out=out)
    return out


def channel_window_sum(a, size, out=None):
    """Sum over `size` neighbouring channels (axis 1) centred on each channel; zero beyond."""
    pre = (size - 1) // 2
    c = a.shape[1]
    if out is None:
        out = a.copy()
    else:
        out[...] = a
    for d in range(1, size - pre):
        if d < c:
            out[:, :c - d] += a[:, d:]
    for d in range(1, pre + 1):
        if d < c:
            out[:, d:] += a[:, :c - d]
    return out


def _within_window(size):
    pre = (size - 1) // 2
    return Window((size, size), (1, 1), (pre, pre), (1, 1))


def _into(xp, out, a, b):
    """a * b, into `out` when given."""
    return xp.multiply(a, b) if out is None else xp.multiply(a, b, out=out)


def lrn_across(xp, x, size, alpha, beta, k, out=None, scale=None):
    """-> (y, scale); `scale`, when given, is a buffer to reuse (last pass's)."""
    gpu = _cuda(xp)
    if gpu:
        y, scale, _ = gpu.lrn_across(x, size, alpha, beta, k)
        if out is not None:
            out[...] = y
        return y if out is None else out, scale
    if scale is None or scale.shape != x.shape or scale.dtype != x.dtype:
        scale = xp.empty_like(x)
    square = scratch(xp, "lrn_tmp", x.shape, x.dtype)
    xp.multiply(x, x, out=square)
    channel_window_sum(square, size, out=scale)
    scale *= alpha / size
    scale += k
    if out is None or xp.shares_memory(out, x):       # in place: x is read after y is started
        y = neg_pow(xp, scale, beta)
        y *= x
        if out is not None:
            out[...] = y
        return (y if out is None else out), scale
    y = neg_pow(xp, scale, beta, out=out)
    y *= x
    return y, scale


def lrn_across_backward(xp, x, y, scale, dy, size, alpha, beta):
    """dx = dy * scale^-beta - (2 alpha beta / n) * x * window-sum(dy * y / scale)."""
    gpu = _cuda(xp)
    if gpu:
        return gpu.lrn_across_backward(x, y, scale, dy, size, alpha, beta)
    ratio = scratch(xp, "lrn_tmp", x.shape, x.dtype)
    xp.multiply(dy, y, out=ratio)
    ratio /= scale
    acc = channel_window_sum(ratio, size, out=scratch(xp, "lrn_acc", x.shape, x.dtype))
    acc *= x
    acc *= -2 * alpha * beta / size
    inv = neg_pow(xp, scale, beta, out=ratio)
    inv *= dy
    acc += inv
    return acc


def lrn_within(xp, x, size, alpha, beta, out=None):
    scale = ave_pool(xp, x * x, _within_window(size), x.shape[2:])
    scale *= alpha
    scale += 1
    return _into(xp, out, x, neg_pow(xp, scale, beta)), scale


def lrn_within_backward(xp, x, y, scale, dy, size, alpha, beta):
    """dx = dy * scale^-beta - 2 alpha beta * x * AVE-pool-backward(dy * y / scale)."""
    spread = ave_pool_backward(xp, dy * y / scale, x.shape[2:], _within_window(size))
    return dy * neg_pow(xp, scale, beta) - (2 * alpha * beta) * x * spread
