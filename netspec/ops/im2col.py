"""im2col and col2im, N-d, for NumPy and CuPy.

The column buffer is channel-major: col[c, *tap, n, *out] = x[n, c, out*stride - pad +
tap*dilation] (zero where that falls in the padding). With the batch inside the columns a
convolution is ONE matrix product per group, (O/G, C/G*taps) @ (C/G*taps, N*out), which BLAS
runs far better than one small product per image; the price is one transpose of the output.

NumPy loops over the kernel taps only, each a strided slice copy (col2im: a strided add).
On CuPy the 2-d case runs as one elementwise kernel (netspec.ops.cuda). Both write every
element of their output, so any scratch buffer will do for `out`.
"""
import itertools

import numpy

from .threads import by_parts


def col_shape(x_shape, win, out_shape):
    n, c = x_shape[:2]
    return (c,) + tuple(win.kernel) + (n,) + tuple(out_shape)


def _zero_outside(slab, out_slices):
    """Zero the border strips of one tap's (C, N, *out) slab that its slices leave out."""
    for axis, s in enumerate(out_slices):
        lead = (slice(None),) * (2 + axis)
        if s.start > 0:
            slab[lead + (slice(0, s.start),)] = 0
        if s.stop < slab.shape[2 + axis]:
            slab[lead + (slice(s.stop, None),)] = 0


def im2col(xp, x, win, out_shape, out=None):
    """x (N, C, *in) -> col (C, *kernel, N, *out), written whole into `out` when given."""
    in_shape, out_shape = x.shape[2:], tuple(out_shape)
    if out is None:
        out = xp.empty(col_shape(x.shape, win, out_shape), dtype=x.dtype)
    if xp is not numpy and len(in_shape) == 2:
        from . import cuda
        return cuda.im2col(x, win, out_shape, out)
    # channels are independent: a part of them per thread
    by_parts(xp, lambda s: _im2col(x[:, s], win, out_shape, out[s]), x.shape[1], out.nbytes)
    return out


def _im2col(x, win, out_shape, out):
    in_shape = x.shape[2:]
    xt = x.swapaxes(0, 1)
    whole = (slice(None), slice(None))
    filled = set()
    for tap, out_slices, in_slices in win.taps(in_shape, out_shape):
        slab = out[(slice(None),) + tap]
        slab[whole + out_slices] = xt[whole + in_slices]
        _zero_outside(slab, out_slices)
        filled.add(tap)
    for tap in itertools.product(*(range(k) for k in win.kernel)):
        if tap not in filled:               # a tap that reads only padding
            out[(slice(None),) + tap] = 0
    return out


def col2im(xp, col, x_shape, win, out=None):
    """The adjoint of im2col: col (C, *kernel, N, *out) -> x-shaped sums, into `out` when given."""
    in_shape = tuple(x_shape[2:])
    if out is None:
        out = xp.empty(tuple(x_shape), dtype=col.dtype)
    if xp is not numpy and len(in_shape) == 2:
        from . import cuda
        return cuda.col2im(col, x_shape, win, out)
    by_parts(xp, lambda s: _col2im(col[s], win, out[:, s]), col.shape[0], col.nbytes)
    return out


def _col2im(col, win, out):
    in_shape = out.shape[2:]
    out_shape = col.shape[2 + len(in_shape):]
    acc = out.swapaxes(0, 1)
    acc[...] = 0
    whole = (slice(None), slice(None))
    for tap, out_slices, in_slices in win.taps(in_shape, out_shape):
        acc[whole + in_slices] += col[(slice(None),) + tap + (slice(None),) + out_slices]
    return out


# -- batch-last layout (NumPy) -----------------------------------------------------------------
# col[c, *tap, *out, n] from x laid out (C, *in, N): every tap's copy then moves runs of
# (out width x N) contiguous elements instead of rows of `out width`, which for small maps
# (LeNet's 8x8, AlexNet's 13x13) is where NumPy's per-row overhead dominated (measured 2-6x
# faster im2col, up to 2x col2im). The price is a transposed copy of the input and output.
def col_shape_last(x_shape, win, out_shape):
    n, c = x_shape[:2]
    return (c,) + tuple(win.kernel) + tuple(out_shape) + (n,)


def im2col_last(xl, win, out_shape, out):
    """xl (C, *in, N) -> out (C, *kernel, *out, N), every element written."""
    by_parts(numpy, lambda s: _im2col_last(xl[s], win, out_shape, out[s]), xl.shape[0], out.nbytes)
    return out


def _im2col_last(xl, win, out_shape, out):
    in_shape = xl.shape[1:-1]
    filled = set()
    for tap, out_slices, in_slices in win.taps(in_shape, out_shape):
        slab = out[(slice(None),) + tap]
        slab[(slice(None),) + out_slices] = xl[(slice(None),) + in_slices]
        for axis, s in enumerate(out_slices):       # the border strips this tap does not reach
            lead = (slice(None),) * (1 + axis)
            if s.start > 0:
                slab[lead + (slice(0, s.start),)] = 0
            if s.stop < slab.shape[1 + axis]:
                slab[lead + (slice(s.stop, None),)] = 0
        filled.add(tap)
    for tap in itertools.product(*(range(k) for k in win.kernel)):
        if tap not in filled:
            out[(slice(None),) + tap] = 0
    return out


def col2im_last(col, win, acc):
    """The adjoint of im2col_last: col (C, *kernel, *out, N) summed into acc (C, *in, N)."""
    by_parts(numpy, lambda s: _col2im_last(col[s], win, acc[s]), col.shape[0], col.nbytes)
    return acc


def _col2im_last(col, win, acc):
    in_shape = acc.shape[1:-1]
    out_shape = col.shape[1 + len(in_shape):-1]
    acc[...] = 0
    for tap, out_slices, in_slices in win.taps(in_shape, out_shape):
        acc[(slice(None),) + in_slices] += col[(slice(None),) + tap + out_slices]
    return acc
