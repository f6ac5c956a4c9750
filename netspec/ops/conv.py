"""Convolution and deconvolution, forward and backward, on NumPy or CuPy.

Three paths, chosen by the shapes:
  * pointwise (1x1, stride 1, no pad): a batched product W @ x[n], no im2col and no copy;
  * depthwise (one input and one output channel per group): one multiply-add per kernel tap
    over the whole batch, instead of N*G tiny matrix products;
  * general: channel-major im2col (see im2col.py), one product per group.

Weights are (O, C/G, *kernel) for convolution and (C, O/G, *kernel) for deconvolution, as in
Caffe. Backward functions ACCUMULATE into dw and db (the executor clears them) and return dx.
"""
from .im2col import col2im, im2col

# Bytes of the (batch, M, K) products summed over the batch at a time (pointwise weight grad).
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


def _is_depthwise(x_channels, w, group):
    return group > 1 and group == x_channels == w.shape[0]


def _add_bias(out, b):
    if b is not None:
        out += b.reshape((-1,) + (1,) * (out.ndim - 2))


def _bias_grad(xp, dy):
    return dy.sum(axis=(0,) + tuple(range(2, dy.ndim)))


def _tap_weight(w, tap):
    """Depthwise weight of one tap, shaped to broadcast over (N, C, *spatial)."""
    return w[(slice(None), 0) + tap].reshape((-1,) + (1,) * len(tap))


# -- convolution --------------------------------------------------------------------------------
def conv_forward(xp, x, w, b, win, group, out, col_buffer=None):
    """out[...] = conv(x, w) + b. Returns the column buffer (None on the paths without one),
    which conv_backward can reuse instead of recomputing im2col."""
    n, c = x.shape[:2]
    o = w.shape[0]
    out_shape = out.shape[2:]
    if win.pointwise:
        y = xp.matmul(w.reshape(group, o // group, c // group),
                      x.reshape(n, group, c // group, -1))
        out[...] = y.reshape(out.shape)
        _add_bias(out, b)
        return None
    if _is_depthwise(c, w, group):
        out[...] = 0
        whole = (slice(None), slice(None))
        for tap, out_slices, in_slices in win.taps(x.shape[2:], out_shape):
            out[whole + out_slices] += x[whole + in_slices] * _tap_weight(w, tap)
        _add_bias(out, b)
        return None
    col = im2col(xp, x, win, out_shape, col_buffer)
    rows = w[0].size                        # C/G * taps: one filter's inputs
    y = xp.matmul(w.reshape(group, o // group, rows), col.reshape(group, rows, -1))
    out[...] = y.reshape((o, n) + tuple(out_shape)).swapaxes(0, 1)
    _add_bias(out, b)
    return col


def conv_backward(xp, x, w, dy, win, group, col=None, dw=None, db=None, need_dx=True):
    """Accumulate dw and db (where given); return dx (x-shaped) when need_dx, else None."""
    n, c = x.shape[:2]
    o = w.shape[0]
    out_shape = dy.shape[2:]
    if db is not None:
        db += _bias_grad(xp, dy)
    if win.pointwise:
        xs = x.reshape(n, group, c // group, -1)
        dys = dy.reshape(n, group, o // group, -1)
        if dw is not None:
            dw += _sum_over_batch(xp, dys, xs.swapaxes(-1, -2)).reshape(w.shape)
        if need_dx:
            return xp.matmul(w.reshape(group, o // group, c // group).swapaxes(1, 2), dys).reshape(x.shape)
        return None
    whole = (slice(None), slice(None))
    if _is_depthwise(c, w, group):
        taps = win.taps(x.shape[2:], out_shape)
        if dw is not None:
            axes = "".join(chr(ord("a") + i) for i in range(dy.ndim - 2))
            spec = f"nc{axes},nc{axes}->c"
            for tap, out_slices, in_slices in taps:
                dw[(slice(None), 0) + tap] += xp.einsum(spec, dy[whole + out_slices], x[whole + in_slices])
        if not need_dx:
            return None
        dx = xp.zeros_like(x)
        for tap, out_slices, in_slices in taps:
            dx[whole + in_slices] += dy[whole + out_slices] * _tap_weight(w, tap)
        return dx
    rows = w[0].size
    dyt = xp.ascontiguousarray(dy.swapaxes(0, 1)).reshape(group, o // group, -1)
    if dw is not None:
        if col is None:
            col = im2col(xp, x, win, out_shape)
        dw += xp.matmul(dyt, col.reshape(group, rows, -1).swapaxes(1, 2)).reshape(w.shape)
    if not need_dx:
        return None
    dcol = xp.matmul(w.reshape(group, o // group, rows).swapaxes(1, 2), dyt)
    return col2im(xp, dcol.reshape((c,) + tuple(win.kernel) + (n,) + tuple(out_shape)), x.shape, win)


# -- deconvolution (the transpose of convolution) ------------------------------------------------
def deconv_forward(xp, x, w, b, win, group, out):
    """out[...] = deconv(x, w) + b: col = W^T x, then col2im onto the (larger) output."""
    n, c = x.shape[:2]
    o = out.shape[1]
    rows = w[0].size                        # O/G * taps
    xt = xp.ascontiguousarray(x.swapaxes(0, 1)).reshape(group, c // group, -1)
    col = xp.matmul(w.reshape(group, c // group, rows).swapaxes(1, 2), xt)
    col = col.reshape((o,) + tuple(win.kernel) + (n,) + tuple(x.shape[2:]))
    out[...] = col2im(xp, col, out.shape, win)
    _add_bias(out, b)


def deconv_backward(xp, x, w, dy, win, group, dw=None, db=None, need_dx=True):
    """Accumulate dw and db; return dx (x-shaped) when need_dx. Deconvolution's backward is
    convolution's forward: im2col of dy, then products with x and W."""
    n, c = x.shape[:2]
    rows = w[0].size
    if db is not None:
        db += _bias_grad(xp, dy)
    col = im2col(xp, dy, win, x.shape[2:]).reshape(group, rows, -1)
    if dw is not None:
        xt = xp.ascontiguousarray(x.swapaxes(0, 1)).reshape(group, c // group, -1)
        dw += xp.matmul(xt, col.swapaxes(1, 2)).reshape(w.shape)
    if not need_dx:
        return None
    dxt = xp.matmul(w.reshape(group, c // group, rows), col)
    return dxt.reshape((c, n) + tuple(x.shape[2:])).swapaxes(0, 1)
