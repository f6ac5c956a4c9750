"""Per-channel normalisation kernels (BatchNorm, Scale) over (N, C, S) arrays, NumPy or CuPy.

Written to make no full-size temporary: the centred values go straight into their output,
sums of products use einsum on NumPy (no product array; about 2x faster than (a * b).sum on
ResNet's maps), and buffers kept for backward are reused from one pass to the next, so the
steady state allocates nothing big (a fresh 25 MB array costs its page faults every iteration).

BatchNorm in TRAIN runs with the Scale and the ReLU after it as one (the executor groups them,
net.py): the normalised values are written once, for backward, and the scaled, rectified ones
once, for the next layer; backward takes the sums BatchNorm's and Scale's gradients share once,
and writes dx in one pass of a few items at a time. On a ResNet-50 map (8x256x56x56, 2
threads) the three layers took 18.4 -> 15.2 ms forward and 22.9 -> 14.2 ms backward.
"""
import numpy

from .threads import by_parts
from .workspace import scratch

BLOCK_BYTES = 4 << 20     # NumPy: items at a time in the blocked passes, so temporaries stay small


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


def kept_buffer(xp, buffer, like):
    """`buffer` when it can hold an array like `like`, else a new one (its content undefined)."""
    if buffer is None or buffer.shape != like.shape or buffer.dtype != like.dtype or type(buffer) is not type(like):
        return xp.empty_like(like)
    return buffer


def _blocks(xp, a):
    """Item slices cutting an (N, C, S) array into blocks of about BLOCK_BYTES, at least one
    item each; one block on CuPy, where every pass over a block is a kernel launch (its
    temporary, one array's size, is a reused scratch buffer)."""
    per = max(1, BLOCK_BYTES // max(a[0].nbytes, 1)) if xp is numpy else a.shape[0]
    return [slice(i, i + per) for i in range(0, a.shape[0], per)]


def batch_norm_forward(xp, x, z, eps, mean=None, var=None, scale=None, bias=None, y=None, rectify=False):
    """z = (x - mean) / sqrt(var + eps) per channel of (N, C, S) arrays (z may be x itself).
    mean/var None: the batch's own statistics (biased variance). With a per-channel scale (C,)
    also y = z * scale (+ bias), the Scale after a BatchNorm, in the same blocks, and with
    `rectify` y = max(y, 0), the ReLU after that. -> (mean, var, std (C, 1))."""
    def part(s):
        return _batch_norm_forward(xp, x[:, s], z[:, s], eps, *(None if a is None else a[s] for a in (mean, var, scale, bias)),
                                   None if y is None else y[:, s], rectify)
    results = by_parts(xp, part, x.shape[1], x.nbytes)      # channels are independent: a part of them per thread
    return results[0] if len(results) == 1 else tuple(xp.concatenate([r[i] for r in results]) for i in range(3))


def _batch_norm_forward(xp, x, z, eps, mean, var, scale, bias, y, rectify):
    if mean is None:
        mean = x.mean(axis=(0, 2))
        xp.subtract(x, mean[:, None], out=z)
        var = channel_dot(xp, z, z) / (x.shape[0] * x.shape[2])
    else:
        xp.subtract(x, mean[:, None], out=z)
    std = xp.sqrt(var + eps)[:, None]
    if scale is None:
        z /= std
        return mean, var, std
    scale = scale[:, None]
    bias = None if bias is None else bias[:, None]
    for items in _blocks(xp, z):
        zb, yb = z[items], y[items]
        zb /= std
        xp.multiply(zb, scale, out=yb)
        if bias is not None:
            yb += bias
        if rectify:
            xp.maximum(yb, 0, out=yb)
    return mean, var, std


def batch_norm_backward(xp, dy, z, std, dx, scale=None, dscale=None, dbias=None, y=None):
    """dx = scale / std * (dy - mean(dy) - mean(dy * z) * z) per channel, with z the normalised
    values (dx may be dy itself): BatchNorm's gradient, or with a per-channel scale (C,) that of
    BatchNorm and the Scale after it, which also accumulates dscale += sum(dy * z) and
    dbias += sum(dy) where given. With y, the output of a ReLU after them, dy is first cut to
    dy * (y > 0) in place (the ReLU's gradient)."""
    def part(s):
        _batch_norm_backward(xp, dy[:, s], z[:, s], std[s], dx[:, s],
                             *(None if a is None else a[s] for a in (scale, dscale, dbias)), None if y is None else y[:, s])
    by_parts(xp, part, dy.shape[1], dy.nbytes)


def _batch_norm_backward(xp, dy, z, std, dx, scale, dscale, dbias, y):
    m = dy.shape[0] * dy.shape[2]
    blocks = _blocks(xp, dy)
    if y is None:
        sum_dy, sum_dy_z = dy.sum(axis=(0, 2)), channel_dot(xp, dy, z)
    else:                       # the ReLU's gradient, and the sums of what it leaves, a block at a time
        sum_dy, sum_dy_z = xp.zeros(dy.shape[1], dy.dtype), xp.zeros(dy.shape[1], dy.dtype)
        for items in blocks:
            dyb = dy[items]
            xp.multiply(dyb, y[items] > 0, out=dyb)
            sum_dy += dyb.sum(axis=(0, 2))
            sum_dy_z += channel_dot(xp, dyb, z[items])
    if dscale is not None:
        dscale += sum_dy_z
    if dbias is not None:
        dbias += sum_dy
    k = (1 if scale is None else scale[:, None]) / std
    k_z, k_1 = k * (sum_dy_z / m)[:, None], k * (sum_dy / m)[:, None]
    tmp = scratch(xp, "bn_tmp", dy[blocks[0]].shape, dy.dtype)
    for items in blocks:        # dx = k dy - k_z z - k_1, a block at a time
        dxb = dx[items]
        t = tmp[:len(dxb)]
        xp.multiply(z[items], k_z, out=t)
        xp.multiply(dy[items], k, out=dxb)
        dxb -= t
        dxb -= k_1
