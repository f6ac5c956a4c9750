"""Pooling with Caffe's exact semantics, N-d over the trailing axes of (N, C, *spatial).

  * MAX: windows are clipped to the image, so padding never wins; ties go to the first
    element in row-major order (Caffe compares with a strict >). The argmax is kept as the
    tap's flat index inside the kernel, and backward routes each gradient there.
  * AVE: sums the in-image part of each window and divides by the window clipped to the
    PADDED input (not by the kernel area, and not by the in-image count).
  * STOCHASTIC (Caffe has it on the GPU only; no padding): TRAIN picks one element of each
    window with probability proportional to its (non-negative) value; TEST outputs the
    probability-weighted average sum(x^2)/sum(x) (0 where the sum is not positive).

NumPy loops over the kernel taps only (see windows.taps), a block of channel planes at a time so
that every tap's strided pass stays in cache (2-3x faster on ResNet's 112x112 maps than whole
batches). Stride-1 MAX pooling (GoogLeNet's inception pools on 28x28 down to 7x7 maps, whose rows
are too short for NumPy's inner loops) runs on a padded copy seen as one flat vector: each tap is
then ONE contiguous pass over every plane, at the price of computing (and dropping) the outputs
that fall in the padding. 2-d MAX and AVE run as CuPy kernels where xp is cupy (netspec.ops.cuda).
"""
import math

import numpy

from .threads import parts, run_blocks
from .windows import ave_divisor, flat_tap
from .workspace import scratch

WHOLE = (slice(None), slice(None))


def _cuda(xp, in_shape):
    if xp is not numpy and len(in_shape) == 2:
        from . import cuda
        return cuda
    return None


def _is_global(in_shape, out_shape, win):
    return tuple(win.kernel) == tuple(in_shape) and not any(win.pad) and all(o == 1 for o in out_shape)


FLT_LOWEST = -3.4028234663852886e38     # float(numpy.finfo(numpy.float32).min): Caffe's -FLT_MAX

# Bytes of input planes per block on NumPy (measured best near 2-4 MB: the cache, not BLAS).
BLOCK_BYTES = 3 << 20


def _by_planes(fn, arrays, plane_bytes):
    """fn(*blocks) over blocks of the flattened N*C planes of `arrays` (all (N, C, *spatial),
    C-contiguous, written in place), the blocks shared out over threads (threads.py); one
    call with the arrays whole where they are not contiguous."""
    if not all(a.flags.c_contiguous for a in arrays):
        return fn(*arrays)
    planes = [a.reshape((-1, 1) + a.shape[2:]) for a in arrays]
    count = planes[0].shape[0]
    step = max(1, BLOCK_BYTES // max(plane_bytes, 1))
    threads = len(parts(count, count * plane_bytes))
    step = min(step, -(-count // threads))          # at least one block a thread
    run_blocks(fn, [tuple(p[start:start + step] for p in planes) for start in range(0, count, step)])


# -- MAX ---------------------------------------------------------------------------------------
def _output(xp, out, shape, dtype):
    return xp.empty(shape, dtype=dtype) if out is None else out


def max_pool(xp, x, win, out_shape, out=None):
    """-> (y, argmax): argmax holds, per output, the flat index of the winning kernel tap.
    y is written into `out` when given."""
    in_shape, out_shape = x.shape[2:], tuple(out_shape)
    y = _output(xp, out, x.shape[:2] + out_shape, x.dtype)
    gpu = _cuda(xp, in_shape)
    if gpu:
        return gpu.max_pool(x, win, out_shape, y)
    if _is_global(in_shape, out_shape, win):
        flat = x.reshape(x.shape[:2] + (-1,))
        arg = flat.argmax(axis=-1)[..., None]
        y[...] = xp.take_along_axis(flat, arg, axis=-1).reshape(y.shape)
        return y, arg.astype(numpy.int32).reshape(y.shape)
    # Small tap indices fit uint8; the update below wraps consistently in either type.
    arg = xp.empty(y.shape, dtype=numpy.uint8 if math.prod(win.kernel) <= 255 else numpy.int32)
    plane_bytes = math.prod(in_shape) * x.itemsize
    if _flat(win):
        _by_planes(lambda x, y, arg: _max_pool_flat(xp, x, win, y, arg), (x, y, arg), plane_bytes)
        return y, arg
    taps = win.taps(in_shape, out_shape)

    def pool(x, y, arg):
        y[...] = FLT_LOWEST     # as Caffe: a window left empty by ceil rounding gives -FLT_MAX
        arg[...] = 0
        for tap, out_slices, in_slices in taps:
            index = arg.dtype.type(flat_tap(tap, win.kernel))
            src, best, where = x[WHOLE + in_slices], y[WHOLE + out_slices], arg[WHOLE + out_slices]
            wins = src > best
            xp.fmax(best, src, out=best)        # fmax: a NaN never wins, as with Caffe's strict >
            # where = index if wins else where, in arithmetic (masked copies are ~10x slower)
            where += wins * (index - where)
    _by_planes(pool, (x, y, arg), plane_bytes)
    return y, arg


def max_pool_backward(xp, dy, arg, in_shape, win, out=None):
    """dx (into `out` when given): each output's gradient goes to its argmax; overlapping
    windows add up."""
    in_shape = tuple(in_shape)
    n_c = dy.shape[:2]
    dx = _output(xp, out, n_c + in_shape, dy.dtype)
    gpu = _cuda(xp, in_shape)
    if gpu:
        return gpu.max_pool_backward(dy, arg, in_shape, win, dx)
    if _is_global(in_shape, dy.shape[2:], win):
        dx[...] = 0
        flat = dx.reshape(n_c + (-1,))
        xp.put_along_axis(flat, arg.reshape(n_c + (1,)), dy.reshape(n_c + (1,)), axis=-1)
        return dx
    plane_bytes = math.prod(in_shape) * dy.itemsize
    if _flat(win):
        _by_planes(lambda dy, arg, dx: _max_pool_backward_flat(xp, dy, arg, win, dx), (dy, arg, dx), plane_bytes)
        return dx
    if dx.flags.c_contiguous and _tiles(in_shape, dy.shape[2:], win):
        _by_planes(lambda dy, arg, dx: _max_pool_backward_tiles(xp, dy, arg, win, dx), (dy, arg, dx), plane_bytes)
        return dx
    taps = win.taps(in_shape, dy.shape[2:])

    def route(dy, arg, dx):
        dx[...] = 0
        for tap, out_slices, in_slices in taps:
            index = flat_tap(tap, win.kernel)
            dx[WHOLE + in_slices] += dy[WHOLE + out_slices] * (arg[WHOLE + out_slices] == index)
    _by_planes(route, (dy, arg, dx), plane_bytes)
    return dx


def _flat(win):
    return all(s == 1 for s in win.stride)


def _tiles(in_shape, out_shape, win):
    """Windows that tile the input exactly (kernel = stride, no pad, nothing left over: LeNet's
    and VGG's 2x2/2): every input element is in one window."""
    return not any(win.pad) and tuple(win.kernel) == tuple(win.stride) and \
        all(o * k == i for i, o, k in zip(in_shape, out_shape, win.kernel))


def _max_pool_backward_tiles(xp, dy, arg, win, dx):
    """Each tap's share of dx written once, as dy where the argmax is that tap, else 0: no
    zeroing pass and no accumulation (measured 1.6-2.3x faster than the tap loop)."""
    tiled = dx.reshape(dy.shape[:2] + tuple(d for pair in zip(dy.shape[2:], win.kernel) for d in pair))
    for tap in numpy.ndindex(*win.kernel):
        where = (slice(None),) * 2 + tuple(part for t in tap for part in (slice(None), t))
        xp.multiply(dy, arg == flat_tap(tap, win.kernel), out=tiled[where])


def _grid(xp, name, planes, win, dtype):
    """A scratch (P, *padded) grid, its flat view, and per tap (flat offset, flat tap index)."""
    padded = tuple(k + o - 1 for k, o in zip(win.kernel, planes[1:]))   # stride 1: = in + 2*pad
    grid = scratch(xp, name, (planes[0],) + padded, dtype)
    steps = [math.prod(padded[a + 1:]) for a in range(len(padded))]
    offsets = []
    for tap in numpy.ndindex(*win.kernel):
        offsets.append((sum(t * st for t, st in zip(tap, steps)), flat_tap(tap, win.kernel)))
    return grid, grid.reshape(-1), offsets


def _corner(out_shape):
    return (slice(None),) + tuple(slice(0, o) for o in out_shape)


def _max_pool_flat(xp, x, win, y, arg):
    """Stride-1 MAX: output j of the flat padded grid is the max over taps of grid[j + offset]."""
    in_shape, out_shape = x.shape[2:], y.shape[2:]
    planes = (x.shape[0] * x.shape[1],) + tuple(out_shape)
    grid, flat, offsets = _grid(xp, "pool_in", planes, win, x.dtype)
    if any(win.pad):
        grid[...] = FLT_LOWEST              # padding never wins (Caffe clips windows to the image)
    grid[(slice(None),) + tuple(slice(p, p + n) for p, n in zip(win.pad, in_shape))] = \
        x.reshape((-1,) + tuple(in_shape))
    length = flat.size - max(off for off, _ in offsets)
    best = scratch(xp, "pool_best", grid.shape, x.dtype)
    where = scratch(xp, "pool_arg", grid.shape, arg.dtype)
    b, w = best.reshape(-1)[:length], where.reshape(-1)[:length]
    b[...] = FLT_LOWEST
    w[...] = 0
    for off, index in offsets:
        src = flat[off:off + length]
        wins = src > b
        xp.fmax(b, src, out=b)
        w += wins * (arg.dtype.type(index) - w)
    corner = _corner(out_shape)
    y[...] = best[corner].reshape(y.shape)
    arg[...] = where[corner].reshape(arg.shape)


def _max_pool_backward_flat(xp, dy, arg, win, dx):
    in_shape, out_shape = dx.shape[2:], dy.shape[2:]
    planes = (dy.shape[0] * dy.shape[1],) + tuple(out_shape)
    gy, gy_flat, offsets = _grid(xp, "pool_dy", planes, win, dy.dtype)
    ga = scratch(xp, "pool_arg", gy.shape, arg.dtype)
    acc = scratch(xp, "pool_in", gy.shape, dy.dtype)
    corner = _corner(out_shape)
    gy[...] = 0                             # outside the outputs: no gradient (ga is then don't-care)
    gy[corner] = dy.reshape(planes)
    ga[corner] = arg.reshape(planes)
    length = gy_flat.size - max(off for off, _ in offsets)
    g, a, acc_flat = gy_flat[:length], ga.reshape(-1)[:length], acc.reshape(-1)
    acc_flat[...] = 0
    for off, index in offsets:
        acc_flat[off:off + length] += g * (a == index)
    dx[...] = acc[(slice(None),) + tuple(slice(p, p + n) for p, n in zip(win.pad, in_shape))].reshape(dx.shape)


def argmax_to_input_index(xp, arg, in_shape, win):
    """Caffe's MAX mask (the optional second top): the argmax as a flat index h*W + w into its
    input channel, instead of a kernel tap; -1 for a window left empty by ceil rounding."""
    out_shape = arg.shape[2:]
    index = xp.zeros(arg.shape, dtype=numpy.int64)
    empty = xp.zeros(arg.shape, dtype=bool)
    rest = arg.astype(numpy.int64)
    for axis in reversed(range(len(in_shape))):
        k, s, p = win.kernel[axis], win.stride[axis], win.pad[axis]
        tap = rest % k
        rest //= k
        shape = [1] * arg.ndim
        shape[2 + axis] = out_shape[axis]
        start = (xp.arange(out_shape[axis]) * s - p).reshape(shape)
        stride_in = math.prod(in_shape[axis + 1:])
        index += (start + tap) * stride_in
        empty |= start >= in_shape[axis]
    index[empty] = -1
    return index


# -- AVE ---------------------------------------------------------------------------------------
def _divisor(xp, in_shape, out_shape, win, dtype):
    vectors = ave_divisor(in_shape, out_shape, win.kernel, win.stride, win.pad)
    div = numpy.ones((), dtype=numpy.float64)
    for v in vectors:
        div = numpy.multiply.outer(div, numpy.asarray(v, dtype=numpy.float64))
    return xp.asarray(div, dtype=dtype)


def ave_pool(xp, x, win, out_shape, out=None):
    in_shape, out_shape = x.shape[2:], tuple(out_shape)
    y = _output(xp, out, x.shape[:2] + out_shape, x.dtype)
    gpu = _cuda(xp, in_shape)
    if gpu:
        return gpu.ave_pool(x, win, out_shape, y)
    if _is_global(in_shape, out_shape, win):
        y[...] = x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)
        return y
    taps, div = win.taps(in_shape, out_shape), _divisor(xp, in_shape, out_shape, win, x.dtype)

    def pool(x, y):
        y[...] = 0
        for _, out_slices, in_slices in taps:
            y[WHOLE + out_slices] += x[WHOLE + in_slices]
        y /= div
    _by_planes(pool, (x, y), math.prod(in_shape) * x.itemsize)
    return y


def ave_pool_backward(xp, dy, in_shape, win, out=None):
    in_shape = tuple(in_shape)
    n_c = dy.shape[:2]
    dx = _output(xp, out, n_c + in_shape, dy.dtype)
    gpu = _cuda(xp, in_shape)
    if gpu:
        return gpu.ave_pool_backward(dy, in_shape, win, dx)
    if _is_global(in_shape, dy.shape[2:], win):
        dx[...] = dy / math.prod(in_shape)
        return dx
    taps, div = win.taps(in_shape, dy.shape[2:]), _divisor(xp, in_shape, dy.shape[2:], win, dy.dtype)

    def spread(dy, dx):
        share = dy / div
        dx[...] = 0
        for _, out_slices, in_slices in taps:
            dx[WHOLE + in_slices] += share[WHOLE + out_slices]
    _by_planes(spread, (dy, dx), math.prod(in_shape) * dy.itemsize)
    return dx


# -- STOCHASTIC ---------------------------------------------------------------------------------
def stochastic_pool_train(xp, x, win, out_shape, uniform):
    """-> (y, argmax tap). `uniform` holds one U[0, 1) draw per output: the element picked is
    the first whose running window sum reaches uniform * (window sum), as in Caffe."""
    in_shape, out_shape = x.shape[2:], tuple(out_shape)
    taps = win.taps(in_shape, out_shape)
    total = xp.zeros(x.shape[:2] + out_shape, dtype=x.dtype)
    for _, out_slices, in_slices in taps:
        total[WHOLE + out_slices] += x[WHOLE + in_slices]
    threshold = uniform.astype(x.dtype) * total
    running = xp.zeros_like(total)
    done = xp.zeros(total.shape, dtype=bool)
    y = xp.zeros_like(total)
    arg = xp.zeros(total.shape, dtype=numpy.int32)
    for tap, out_slices, in_slices in taps:
        src = x[WHOLE + in_slices]
        cum = running[WHOLE + out_slices]
        cum += src
        hit = (cum >= threshold[WHOLE + out_slices]) & ~done[WHOLE + out_slices]
        xp.copyto(y[WHOLE + out_slices], src, where=hit)
        xp.copyto(arg[WHOLE + out_slices], flat_tap(tap, win.kernel), where=hit)
        done[WHOLE + out_slices] |= hit
    return y, arg


def stochastic_pool_test(xp, x, win, out_shape):
    """-> (y, window sums): y = sum(x^2) / sum(x) where sum(x) > 0, else 0."""
    in_shape, out_shape = x.shape[2:], tuple(out_shape)
    total = xp.zeros(x.shape[:2] + out_shape, dtype=x.dtype)
    squares = xp.zeros_like(total)
    for _, out_slices, in_slices in win.taps(in_shape, out_shape):
        src = x[WHOLE + in_slices]
        total[WHOLE + out_slices] += src
        squares[WHOLE + out_slices] += src * src
    positive = total > 0
    y = xp.where(positive, squares / xp.where(positive, total, 1), 0).astype(x.dtype)
    return y, total


def stochastic_pool_test_backward(xp, x, y, total, dy, win):
    """Gradient of sum(x^2)/sum(x): (2*x_i - y) / sum(x) for each element of the window."""
    in_shape = x.shape[2:]
    positive = total > 0
    share = xp.where(positive, dy / xp.where(positive, total, 1), 0)
    dx = xp.zeros_like(x)
    for _, out_slices, in_slices in win.taps(in_shape, dy.shape[2:]):
        dx[WHOLE + in_slices] += share[WHOLE + out_slices] * (2 * x[WHOLE + in_slices] - y[WHOLE + out_slices])
    return dx
