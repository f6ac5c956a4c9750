"""Convolution and deconvolution, forward and backward, on NumPy or CuPy.

Three paths, chosen by the shapes:
  * pointwise (1x1, stride 1, no pad): a batched product W @ x[n], no im2col and no copy;
  * depthwise (one input and one output channel per group): one multiply-add per kernel tap
    over the whole batch, instead of N*G tiny matrix products;
  * general: channel-major im2col (see im2col.py), one product per group.

Weights are (O, C/G, *kernel) for convolution and (C, O/G, *kernel) for deconvolution, as in
Caffe. Forward writes the top into `out`; backward ACCUMULATES into dw and db (the executor
clears them) and writes dx into `dx` (None: not wanted). Big temporaries live in scratch
buffers (workspace.py).
"""
from .im2col import col2im, col_shape, im2col
from .windows import covers_all
from .workspace import scratch

# Bytes of the stacked (M, K) products summed over the batch at a time (pointwise weight grad).
_CHUNK_BYTES = 32 << 20


def _sum_over_batch(xp, a, b):
    """sum_n a[n] @ b[n] for stacks a (N, ..., M, P) and b (N, ..., P, K), in batch chunks
    so the stacked products stay small."""
    per_item = a[0].size // a.shape[-1] * b.shape[-1] * a.itemsize
    step = max(1, _CHUNK_BYTES // max(per_item, 1))
    total = None
    for start in range(0, a.shape[0], step):
        part = xp.matmul(a[start:start + step], b[start:start + step]).sum(axis=0)
        total = part if total is None else total + part
    return total


def is_depthwise(x_channels, w, group):
    return group > 1 and group == x_channels == w.shape[0]


def uses_columns(x, w, group, win):
    """Whether convolution runs through im2col (so a column buffer is worth keeping)."""
    return not win.pointwise and not is_depthwise(x.shape[1], w, group)


def _matmul_into(xp, a, b, out, shape):
    """out[...] = a @ b, with `out` viewed as `shape`; straight into out when it is contiguous."""
    if out.flags.c_contiguous:
        xp.matmul(a, b, out=out.reshape(shape))
    else:
        out[...] = xp.matmul(a, b).reshape(out.shape)


def _add_bias(out, b):
    if b is not None:
        out += b.reshape((-1,) + (1,) * (out.ndim - 2))


def _bias_grad(dy):
    return dy.sum(axis=(0,) + tuple(range(2, dy.ndim)))


def _tap_weight(w, tap):
    """Depthwise weight of one tap, shaped to broadcast over (N, C, *spatial)."""
    return w[(slice(None), 0) + tap].reshape((-1,) + (1,) * len(tap))


def _transposed(xp, name, a):
    """a (N, C, ...) copied into a scratch (C, N, ...) array."""
    t = scratch(xp, name, (a.shape[1], a.shape[0]) + a.shape[2:], a.dtype)
    t[...] = a.swapaxes(0, 1)
    return t


def _depthwise(xp, x, w, win, out, out_shape):
    """out = sum over taps of w[:, tap] * shifted x: a full tap first (assigned, not added),
    the products of the others in one scratch buffer."""
    whole = (slice(None), slice(None))
    taps = sorted(win.taps(x.shape[2:], out_shape), key=lambda t: not covers_all(t[1], out_shape))
    tmp = scratch(xp, "depthwise", out.shape, out.dtype)
    if not taps or not covers_all(taps[0][1], out_shape):
        out[...] = 0
    for k, (tap, out_slices, in_slices) in enumerate(taps):
        if k == 0 and covers_all(out_slices, out_shape):
            xp.multiply(x[whole + in_slices], _tap_weight(w, tap), out=out)
            continue
        part = tmp[whole + out_slices]
        xp.multiply(x[whole + in_slices], _tap_weight(w, tap), out=part)
        out[whole + out_slices] += part


# -- convolution --------------------------------------------------------------------------------
def conv_forward(xp, x, w, b, win, group, out, col=None):
    """out[...] = conv(x, w) + b. `col`, when given, receives the im2col columns (a buffer of
    col_shape) so that backward can reuse them; otherwise a scratch buffer is used."""
    n, c = x.shape[:2]
    o = w.shape[0]
    out_shape = out.shape[2:]
    if win.pointwise:
        _matmul_into(xp, w.reshape(group, o // group, c // group), x.reshape(n, group, c // group, -1),
                     out, (n, group, o // group, -1))
    elif is_depthwise(c, w, group):
        _depthwise(xp, x, w, win, out, out_shape)
    else:
        if col is None:
            col = scratch(xp, "col", col_shape(x.shape, win, out_shape), x.dtype)
        im2col(xp, x, win, out_shape, col)
        rows = w[0].size                        # C/G * taps: one filter's inputs
        y = scratch(xp, "conv_y", (group, o // group, col.size // (group * rows)), x.dtype)
        xp.matmul(w.reshape(group, o // group, rows), col.reshape(group, rows, -1), out=y)
        out[...] = y.reshape((o, n) + tuple(out_shape)).swapaxes(0, 1)
    _add_bias(out, b)


def conv_backward(xp, x, w, dy, win, group, col=None, dw=None, db=None, dx=None):
    """Accumulate dw and db (where given); write dx (where given). `col` holds forward's
    im2col columns, or None to recompute them."""
    n, c = x.shape[:2]
    o = w.shape[0]
    out_shape = dy.shape[2:]
    if db is not None:
        db += _bias_grad(dy)
    if win.pointwise:
        xs = x.reshape(n, group, c // group, -1)
        dys = dy.reshape(n, group, o // group, -1)
        if dw is not None:
            dw += _sum_over_batch(xp, dys, xs.swapaxes(-1, -2)).reshape(w.shape)
        if dx is not None:
            _matmul_into(xp, w.reshape(group, o // group, c // group).swapaxes(1, 2), dys,
                         dx, (n, group, c // group, -1))
        return
    whole = (slice(None), slice(None))
    if is_depthwise(c, w, group):
        taps = win.taps(x.shape[2:], out_shape)
        if dw is not None:
            axes = "".join(chr(ord("a") + i) for i in range(dy.ndim - 2))
            spec = f"nc{axes},nc{axes}->c"
            for tap, out_slices, in_slices in taps:
                dw[(slice(None), 0) + tap] += xp.einsum(spec, dy[whole + out_slices], x[whole + in_slices])
        if dx is not None:
            dx[...] = 0
            for tap, out_slices, in_slices in taps:
                dx[whole + in_slices] += dy[whole + out_slices] * _tap_weight(w, tap)
        return
    rows = w[0].size
    dyt = _transposed(xp, "dy_t", dy).reshape(group, o // group, -1)
    if dw is not None:
        if col is None:
            col = im2col(xp, x, win, out_shape, scratch(xp, "col", col_shape(x.shape, win, out_shape), x.dtype))
        dw += xp.matmul(dyt, col.reshape(group, rows, -1).swapaxes(1, 2)).reshape(w.shape)
    if dx is not None:
        dcol = scratch(xp, "dcol", col_shape(x.shape, win, out_shape), x.dtype)
        xp.matmul(w.reshape(group, o // group, rows).swapaxes(1, 2), dyt, out=dcol.reshape(group, rows, -1))
        col2im(xp, dcol, x.shape, win, dx)


# -- deconvolution (the transpose of convolution) ------------------------------------------------
def deconv_forward(xp, x, w, b, win, group, out):
    """out[...] = deconv(x, w) + b: col = W^T x, then col2im onto the (larger) output."""
    c = x.shape[1]
    rows = w[0].size                        # O/G * taps
    xt = _transposed(xp, "x_t", x).reshape(group, c // group, -1)
    col = scratch(xp, "dcol", col_shape(out.shape, win, x.shape[2:]), x.dtype)
    xp.matmul(w.reshape(group, c // group, rows).swapaxes(1, 2), xt, out=col.reshape(group, rows, -1))
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
        dw += xp.matmul(xt, col.swapaxes(1, 2)).reshape(w.shape)
    if dx is not None:
        dxt = scratch(xp, "dx_t", (group, c // group, col.shape[-1]), x.dtype)
        xp.matmul(w.reshape(group, c // group, rows), col, out=dxt)
        dx[...] = dxt.reshape((c, n) + tuple(x.shape[2:])).swapaxes(0, 1)
