"""im2col and col2im, N-d, for NumPy and CuPy.

The column buffer is channel-major: col[c, *tap, n, *out] = x[n, c, out*stride - pad +
tap*dilation] (zero where that falls in the padding). With the batch inside the columns a
convolution is ONE matrix product per group, (O/G, C/G*taps) @ (C/G*taps, N*out), which BLAS
runs far better than one small product per image; the price is one transpose of the output.

NumPy loops over the kernel taps only, each a strided slice copy (col2im: a strided add).
On CuPy the 2-d case runs as one elementwise kernel (netspec.ops.cuda).
"""
import numpy

from .windows import covers_all


def col_shape(x_shape, win, out_shape):
    n, c = x_shape[:2]
    return (c,) + tuple(win.kernel) + (n,) + tuple(out_shape)


def im2col(xp, x, win, out_shape, out=None):
    """x (N, C, *in) -> col (C, *kernel, N, *out).

    `out` may be a buffer returned by an earlier call with the same shapes and window: the
    cells that only padding feeds are never written, so they are still zero there."""
    in_shape, out_shape = x.shape[2:], tuple(out_shape)
    shape = col_shape(x.shape, win, out_shape)
    if xp is not numpy and len(in_shape) == 2:
        from . import cuda
        return cuda.im2col(x, win, out_shape, out)
    taps = win.taps(in_shape, out_shape)
    if out is None:
        clipped = len(taps) < numpy.prod(win.kernel) or not all(covers_all(o, out_shape) for _, o, _ in taps)
        out = xp.zeros(shape, dtype=x.dtype) if clipped else xp.empty(shape, dtype=x.dtype)
    xt = x.swapaxes(0, 1)
    whole = (slice(None), slice(None))
    for tap, out_slices, in_slices in taps:
        out[(slice(None),) + tap + (slice(None),) + out_slices] = xt[whole + in_slices]
    return out


def col2im(xp, col, x_shape, win):
    """The adjoint of im2col: col (C, *kernel, N, *out) -> x-shaped sums, (N, C, *in).

    Returns a transposed view of a (C, N, *in) array; assigning it to a diff copies once."""
    n, c = x_shape[:2]
    in_shape = tuple(x_shape[2:])
    out_shape = col.shape[2 + len(in_shape):]
    if xp is not numpy and len(in_shape) == 2:
        from . import cuda
        return cuda.col2im(col, x_shape, win)
    acc = xp.zeros((c, n) + in_shape, dtype=col.dtype)
    whole = (slice(None), slice(None))
    for tap, out_slices, in_slices in win.taps(in_shape, out_shape):
        acc[whole + in_slices] += col[(slice(None),) + tap + (slice(None),) + out_slices]
    return acc.swapaxes(0, 1)
