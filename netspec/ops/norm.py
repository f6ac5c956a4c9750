"""Per-channel normalisation kernels (BatchNorm, Scale) over (N, C, S) arrays, NumPy or CuPy.

Written to make no full-size temporary: the centred values go straight into the top, sums of
products use einsum on NumPy (no product array; about 2x faster than (a * b).sum on ResNet's
maps), and buffers kept for backward are reused from one pass to the next, so the steady
state allocates nothing big (a fresh 25 MB array costs its page faults every iteration).
"""
import numpy

from .threads import by_parts
from .workspace import scratch

TEMP_BYTES = 4 << 20


def channel_dot(xp, a, b):
    """sum over axes 0 and 2 of a * b, per channel: (N, C, S) x (N, C, S) -> (C,)."""
    if xp is numpy:
        return numpy.einsum("ncs,ncs->c", a, b)
    return (a * b).sum(axis=(0, 2))


def kept_copy(xp, buffer, a):
    """a copied into `buffer` when it fits (shape, dtype, array type), else into a new array."""
    if buffer is None or buffer.shape != a.shape or buffer.dtype != a.dtype or type(buffer) is not type(a):
        return a.copy()
    buffer[...] = a
    return buffer


def batch_norm_forward(xp, x, y, eps, mean=None, var=None):
    """y = (x - mean) / sqrt(var + eps) per channel of (N, C, S) arrays (y may be x itself).
    mean/var None: the batch's own statistics (biased variance). -> (mean, var, std (C, 1))."""
    # channels are independent: a part of them per thread
    results = by_parts(xp, lambda s: _batch_norm_forward(xp, x[:, s], y[:, s], eps, None if mean is None else mean[s],
                                                         None if var is None else var[s]), x.shape[1], x.nbytes)
    return results[0] if len(results) == 1 else tuple(xp.concatenate([r[i] for r in results]) for i in range(3))


def _batch_norm_forward(xp, x, y, eps, mean, var):
    m = x.shape[0] * x.shape[2]
    if mean is None:
        mean = x.mean(axis=(0, 2))
        xp.subtract(x, mean[:, None], out=y)
        var = channel_dot(xp, y, y) / m
    else:
        xp.subtract(x, mean[:, None], out=y)
    std = xp.sqrt(var + eps)[:, None]
    y /= std
    return mean, var, std


def batch_norm_backward(xp, dy, y, std, dx):
    """dx = (dy - mean(dy) - mean(dy * y) * y) / std per channel, with y the normalised values
    (dx may be dy itself)."""
    by_parts(xp, lambda s: _batch_norm_backward(xp, dy[:, s], y[:, s], std[s], dx[:, s]), dy.shape[1], dy.nbytes)


def _batch_norm_backward(xp, dy, y, std, dx):
    m = dy.shape[0] * dy.shape[2]
    mean_dy = dy.mean(axis=(0, 2))[:, None]
    mean_dy_y = (channel_dot(xp, dy, y) / m)[:, None]
    xp.subtract(dy, mean_dy, out=dx)
    # dx -= y * mean_dy_y, through a temporary of a few items at a time, not one of y's size
    step = max(1, TEMP_BYTES // max(y[0].nbytes, 1))
    tmp = scratch(xp, "bn_tmp", (min(step, y.shape[0]),) + y.shape[1:], y.dtype)
    for start in range(0, y.shape[0], step):
        part = tmp[:min(step, y.shape[0] - start)]
        xp.multiply(y[start:start + step], mean_dy_y, out=part)
        dx[start:start + step] -= part
    dx /= std
