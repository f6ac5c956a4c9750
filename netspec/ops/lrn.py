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


def _cuda(xp):
    if xp is not numpy:
        from . import cuda
        return cuda
    return None


def neg_pow(xp, s, beta):
    """s ** -beta; Caffe's usual betas through square roots, which are much cheaper than pow."""
    if beta == 0.75:
        r = 1 / xp.sqrt(s)
        return r * xp.sqrt(r, out=xp.empty_like(r))
    if beta == 0.5:
        return 1 / xp.sqrt(s)
    if beta == 1:
        return 1 / s
    return s ** -beta


def channel_window_sum(a, size):
    """Sum over `size` neighbouring channels (axis 1) centred on each channel; zero beyond."""
    pre = (size - 1) // 2
    c = a.shape[1]
    out = a.copy()
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


def lrn_across(xp, x, size, alpha, beta, k, out=None):
    gpu = _cuda(xp)
    if gpu:
        y, scale, _ = gpu.lrn_across(x, size, alpha, beta, k)
        if out is not None:
            out[...] = y
        return y if out is None else out, scale
    scale = channel_window_sum(x * x, size)
    scale *= alpha / size
    scale += k
    return _into(xp, out, x, neg_pow(xp, scale, beta)), scale


def lrn_across_backward(xp, x, y, scale, dy, size, alpha, beta):
    """dx = dy * scale^-beta - (2 alpha beta / n) * x * window-sum(dy * y / scale)."""
    gpu = _cuda(xp)
    if gpu:
        return gpu.lrn_across_backward(x, y, scale, dy, size, alpha, beta)
    ratio = dy * y
    ratio /= scale
    acc = channel_window_sum(ratio, size)
    acc *= x
    acc *= -2 * alpha * beta / size
    acc += dy * neg_pow(xp, scale, beta)
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
