"""Convolution and deconvolution, forward and backward, on NumPy or CuPy.

Three paths, chosen by the shapes:
  * pointwise (1x1, stride 1, no pad) on maps of DIRECT_PIXELS or more: a batched product
    W @ x[n], no im2col and no copy (smaller maps, ResNet's and GoogLeNet's 7x7, make products
    too thin: there the columns below, a plain transpose for 1x1, measured 1.2-1.9x faster);
  * general: channel-major im2col (see im2col.py), one product per group, the batch inside
    the columns; depthwise convolution (a group per channel) is G products of (1 x taps) @
    (taps x N*out), not N*G tiny ones;
  * NumPy, 3x3 stride 1 with many channels: Winograd's F(2x2, 3x3) (winograd.py), 2.25x fewer
    flops in its products.

Weights are (O, C/G, *kernel) for convolution and (C, O/G, *kernel) for deconvolution, as in
Caffe. Forward writes the top into `out`; backward ACCUMULATES into dw and db (the executor
clears them) and writes dx into `dx` (None: not wanted). Big temporaries live in scratch
buffers (workspace.py).
"""
import math

import numpy

from . import winograd
from .gemm import matmul
from .im2col import col2im, col2im_last, col_shape, col_shape_last, im2col, im2col_last
from .threads import by_parts
from .workspace import scratch

# Bytes of the stacked (M, K) products summed over the batch at a time (pointwise weight grad).
_CHUNK_BYTES = 32 << 20
# Bytes of im2col columns built at a time; a larger batch is convolved in chunks (Caffe
# builds one image's columns at a time; a whole batch makes one big efficient product; past
# a few images the product gains nothing more: 32 MB measured as fast as 128 MB on AlexNet's
# conv2 and ResNet's conv1, with a quarter of the buffer).
COLUMN_BYTES = 32 << 20
# Forward's im2col columns are kept for backward's weight gradient (TRAIN) only where building
# them again would cost much: rebuilding costs about 1/(filters per group) of the layer's
# products, so only convolutions with few filters (LeNet's 20 and 50) keep theirs, and only
# up to a size. Everywhere else backward rebuilds them, as Caffe does: keeping GoogLeNet's
# and ResNet-50's (batch 8) cost 75 and 130 MB for about 2% of the step.
KEPT_COLUMN_BYTES = 16 << 20
KEPT_FILTERS = 64


def _sum_over_batch(xp, a, b):
    """sum_n a[n] @ b[n] for stacks a (N, ..., M, P) and b (N, ..., P, K), in batch chunks
    so the stacked products stay small."""
    per_item = a[0].size // a.shape[-1] * b.shape[-1] * a.itemsize
    step = max(1, _CHUNK_BYTES // max(per_item, 1))
    total = None
    for start in range(0, a.shape[0], step):
        part = matmul(xp, a[start:start + step], b[start:start + step]).sum(axis=0)
        total = part if total is None else total + part
    return total


DIRECT_PIXELS = 100


def _direct(xp, win, x_shape):
    """A pointwise convolution run as W @ x[n] (always on CuPy, whose products are not thin)."""
    return win.pointwise and (xp is not numpy or math.prod(x_shape[2:]) >= DIRECT_PIXELS)


def keeps_columns(xp, x_shape, w_shape, win, group, out_shape, itemsize):
    """Whether forward's im2col columns (of the whole batch) are worth keeping for backward
    (never where no columns are built)."""
    return not _direct(xp, win, x_shape) and not winograd.suits(xp, x_shape, w_shape, win, group) and \
        w_shape[0] // group <= KEPT_FILTERS and \
        column_bytes(x_shape, win, out_shape, itemsize) <= min(KEPT_COLUMN_BYTES, COLUMN_BYTES)


def _matmul_into(xp, a, b, out, shape):
    """out[...] = a @ b, with `out` viewed as `shape`; straight into out when it is contiguous."""
    if out.flags.c_contiguous:
        matmul(xp, a, b, out=out.reshape(shape))
    else:
        out[...] = matmul(xp, a, b).reshape(out.shape)


def _add_bias(out, b):
    if b is not None:
        out += b.reshape((-1,) + (1,) * (out.ndim - 2))


def _bias_grad(dy):
    return dy.sum(axis=(0,) + tuple(range(2, dy.ndim)))


def _transposed(xp, name, a):
    """a (N, C, ...) copied into a scratch (C, N, ...) array."""
    t = scratch(xp, name, (a.shape[1], a.shape[0]) + a.shape[2:], a.dtype)

    def copy(s):
        t[s] = a[:, s].swapaxes(0, 1)
    by_parts(xp, copy, a.shape[1], a.nbytes)
    return t


# -- convolution --------------------------------------------------------------------------------
def column_bytes(x_shape, win, out_shape, itemsize):
    """Size of the whole batch's im2col columns."""
    return math.prod(col_shape(x_shape, win, out_shape)) * itemsize


def _batch_chunks(x_shape, win, out_shape, itemsize):
    """Batch slices whose columns fit COLUMN_BYTES (whole batches when they fit: one product)."""
    n = x_shape[0]
    step = max(1, COLUMN_BYTES * n // max(column_bytes(x_shape, win, out_shape, itemsize), 1))
    return [slice(start, min(start + step, n)) for start in range(0, n, step)]


def conv_forward(xp, x, w, b, win, group, out, col=None):
    """out[...] = conv(x, w) + b. `col`, when given, receives the whole batch's im2col columns
    (a buffer of col_shape) so that backward can reuse them; otherwise the columns go to a
    scratch buffer, a batch chunk at a time."""
    n, c = x.shape[:2]
    o = w.shape[0]
    if _direct(xp, win, x.shape):
        _matmul_into(xp, w.reshape(group, o // group, c // group), x.reshape(n, group, c // group, -1),
                     out, (n, group, o // group, -1))
        _add_bias(out, b)
    elif winograd.suits(xp, x.shape, w.shape, win, group):
        winograd.conv_forward(x, w, b, win.pad, group, out)
    elif col is not None:
        _columns_forward(xp, x, w, b, win, group, out, col)
    else:
        for part in _batch_chunks(x.shape, win, out.shape[2:], x.itemsize):
            xs, outs = x[part], out[part]
            _columns_forward(xp, xs, w, b, win, group, outs,
                             scratch(xp, "col", col_shape(xs.shape, win, outs.shape[2:]), x.dtype))


# Output width below which NumPy builds batch-last columns (see im2col.col_shape_last).
BATCH_LAST_WIDTH = 32


def _batch_last(xp, n, out_shape):
    return xp is numpy and n > 1 and len(out_shape) > 0 and out_shape[-1] < BATCH_LAST_WIDTH


def _last(xp, name, a):
    """a (N, C, *s) copied into a scratch (C, *s, N) array."""
    t = scratch(xp, name, a.shape[1:] + a.shape[:1], a.dtype)

    def copy(s):
        t[s] = numpy.moveaxis(a[:, s], 0, -1)
    by_parts(xp, copy, a.shape[1], a.nbytes)
    return t


def _columns_forward(xp, x, w, b, win, group, out, col):
    n, o = x.shape[0], w.shape[0]
    out_shape = tuple(out.shape[2:])
    rows = w[0].size                        # C/G * taps: one filter's inputs
    y = scratch(xp, "conv_y", (group, o // group, col.size // (group * rows)), x.dtype)
    if _batch_last(xp, n, out_shape):
        col = col.reshape(col_shape_last(x.shape, win, out_shape))
        im2col_last(_last(xp, "x_last", x), win, out_shape, col)
        matmul(xp, w.reshape(group, o // group, rows), col.reshape(group, rows, -1), out=y)
        y = numpy.moveaxis(y.reshape((o,) + out_shape + (n,)), -1, 0)
    else:
        im2col(xp, x, win, out_shape, col)
        matmul(xp, w.reshape(group, o // group, rows), col.reshape(group, rows, -1), out=y)
        y = y.reshape((o, n) + out_shape).swapaxes(0, 1)
    bias = None if b is None else b.reshape((-1,) + (1,) * len(out_shape))

    def write(s):                           # the transpose and the bias in one pass
        if bias is None:
            out[:, s] = y[:, s]
        else:
            xp.add(y[:, s], bias[s], out=out[:, s])
    by_parts(xp, write, o, out.nbytes)


def conv_backward(xp, x, w, dy, win, group, col=None, dw=None, db=None, dx=None):
    """Accumulate dw and db (where given); write dx (where given). `col` holds forward's
    im2col columns of the whole batch, or None to recompute them a batch chunk at a time."""
    n, c = x.shape[:2]
    o = w.shape[0]
    if db is not None:
        db += _bias_grad(dy)
    if _direct(xp, win, x.shape):
        xs = x.reshape(n, group, c // group, -1)
        dys = dy.reshape(n, group, o // group, -1)
        if dw is not None:
            dw += _sum_over_batch(xp, dys, xs.swapaxes(-1, -2)).reshape(w.shape)
        if dx is not None:
            _matmul_into(xp, w.reshape(group, o // group, c // group).swapaxes(1, 2), dys,
                         dx, (n, group, c // group, -1))
    elif winograd.suits(xp, x.shape, w.shape, win, group):
        if dw is not None or dx is not None:
            winograd.conv_backward(x, w, dy, win.pad, group, dw, dx)
    elif col is not None:
        _columns_backward(xp, x, w, dy, win, group, col, dw, dx)
    elif dw is not None or dx is not None:
        for part in _batch_chunks(x.shape, win, dy.shape[2:], x.itemsize):
            _columns_backward(xp, x[part], w, dy[part], win, group, None, dw,
                              None if dx is None else dx[part])


def _columns_backward(xp, x, w, dy, win, group, col, dw, dx):
    o, rows = w.shape[0], w[0].size
    out_shape = tuple(dy.shape[2:])
    if _batch_last(xp, x.shape[0], out_shape):
        return _columns_backward_last(xp, x, w, dy, win, group, col, dw, dx)
    dyt = _transposed(xp, "dy_t", dy).reshape(group, o // group, -1)
    if dw is not None:
        if col is None:
            col = im2col(xp, x, win, out_shape, scratch(xp, "col", col_shape(x.shape, win, out_shape), x.dtype))
        dw += matmul(xp, dyt, col.reshape(group, rows, -1).swapaxes(1, 2)).reshape(w.shape)
    if dx is not None:      # the scratch columns are spent once dw has them: dcol takes their place
        dcol = scratch(xp, "col", col_shape(x.shape, win, out_shape), x.dtype)
        wt = w.reshape(group, o // group, rows).swapaxes(1, 2)
        if o == group:      # one filter per group (depthwise): an outer product, cheaper as a broadcast
            xp.multiply(wt, dyt, out=dcol.reshape(group, rows, -1))
        else:
            matmul(xp, wt, dyt, out=dcol.reshape(group, rows, -1))
        col2im(xp, dcol, x.shape, win, dx)


def _columns_backward_last(xp, x, w, dy, win, group, col, dw, dx):
    """_columns_backward with batch-last columns (what _columns_forward kept for this shape)."""
    o, rows = w.shape[0], w[0].size
    out_shape = tuple(dy.shape[2:])
    shape = col_shape_last(x.shape, win, out_shape)
    dyl = _last(xp, "dy_t", dy).reshape(group, o // group, -1)
    if dw is not None:
        if col is None:
            col = im2col_last(_last(xp, "x_last", x), win, out_shape, scratch(xp, "col", shape, x.dtype))
        dw += matmul(xp, dyl, col.reshape(group, rows, -1).swapaxes(1, 2)).reshape(w.shape)
    if dx is not None:
        dcol = scratch(xp, "col", shape, x.dtype)
        wt = w.reshape(group, o // group, rows).swapaxes(1, 2)
        if o == group:
            xp.multiply(wt, dyl, out=dcol.reshape(group, rows, -1))
        else:
            matmul(xp, wt, dyl, out=dcol.reshape(group, rows, -1))
        acc = scratch(xp, "x_last", x.shape[1:] + x.shape[:1], x.dtype)
        col2im_last(dcol, win, acc)

        def write(s):
            dx[:, s] = numpy.moveaxis(acc[s], -1, 0)
        by_parts(xp, write, acc.shape[0], acc.nbytes)


# -- deconvolution (the transpose of convolution) ------------------------------------------------
def deconv_forward(xp, x, w, b, win, group, out):
    """out[...] = deconv(x, w) + b: col = W^T x, then col2im onto the (larger) output."""
    c = x.shape[1]
    rows = w[0].size                        # O/G * taps
    xt = _transposed(xp, "x_t", x).reshape(group, c // group, -1)
    col = scratch(xp, "dcol", col_shape(out.shape, win, x.shape[2:]), x.dtype)
    matmul(xp, w.reshape(group, c // group, rows).swapaxes(1, 2), xt, out=col.reshape(group, rows, -1))
    col2im(xp, col, out.shape, win, out)
    _add_bias(out, b)


def deconv_backward(xp, x, w, dy, win, group, dw=None, db=None, dx=None):
    """Accumulate dw and db; write dx where given. Deconvolution's backward is convolution's
    forward: im2col of dy, then products with x and W."""
    n, c = x.shape[:2]
    rows = w[0].size
    if db is not None:
        db += _bias_grad(dy)
    col = im2col(xp, dy, win, x.shape[2:], scratch(xp, "col", col_shape(dy.shape, win, x.shape[2:]), dy.dtype))
    col = col.reshape(group, rows, -1)
    if dw is not None:
        xt = _transposed(xp, "x_t", x).reshape(group, c // group, -1)
        dw += matmul(xp, xt, col.swapaxes(1, 2)).reshape(w.shape)
    if dx is not None:
        dxt = scratch(xp, "dx_t", (group, c // group, col.shape[-1]), x.dtype)
        matmul(xp, w.reshape(group, c // group, rows), col, out=dxt)
        dx[...] = dxt.reshape((c, n) + tuple(x.shape[2:])).swapaxes(0, 1)
