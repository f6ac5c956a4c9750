"""3x3 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray, 2015), NumPy.

A 3x3 stride-1 convolution makes each 2x2 block of outputs from a 4x4 tile of the padded
input (tiles overlap by two) as A^T [(G g G^T) * (B^T d B)] A: 16 multiplications where the
direct sum takes 36. Over a layer that is 16 matrix products (O x C) @ (C x tiles), one per
position in the tile, instead of one (O x 9C) @ (9C x pixels): 2.25x fewer flops. The
transforms are constant matrices, each applied to all tiles at once as one product with its
Kronecker square. Backward runs the adjoint of every step: dx through the same 16 products
transposed, dw as 16 products in the transformed domain taken back by G^T . G. Results
agree with the direct sum to float rounding (under 1e-6 of the largest value in float32).

It pays where the products outweigh the tile copies: at least MIN_CHANNELS input and output
channels per group, and output maps of at least MIN_SIZE on each axis (a 7x7 map pads to 8x8
tiles, 31% more work). Forward+backward against im2col, batch 8, 1 thread: ResNet-50's
56x56x64 104 -> 98 ms, 28x28x128 82 -> 62 ms, 14x14x256 72 -> 51 ms; GoogLeNet's 56x56
64->192 223 -> 183 ms and 28x28 96->128 59 -> 48 ms; AlexNet's conv3 (batch 10) 109 -> 83 ms;
at 2 threads 0.74-0.94 of im2col's time on the same layers. Slower with 48 channels (63 ->
65 ms), 32 (36 -> 42 ms) and on GoogLeNet's 7x7 maps (13 -> 14 ms).

F(4x4, 3x3) would cut the products 4x (measured 0.59-0.70 of im2col's time on 28x28 and
56x56 maps), but its larger transform constants raise the float32 error to about 1e-5 of the
largest value, ten times a reordered sum's: not taken. CuPy keeps its own paths. The tiles
are transformed in place, and they, the products and the relaid copies use the scratch
buffers of the im2col path's columns, product and copies (conv.py), which are mostly that
big already.
"""
import math
from functools import lru_cache

import numpy

from .gemm import matmul, matmul_add
from .threads import by_parts
from .workspace import scratch

MIN_CHANNELS = 64
MIN_SIZE = 12
# Bytes of transformed tiles (of the input or of the output) made at a time; a larger
# batch runs in chunks, as the im2col columns do.
TILE_BYTES = 32 << 20
BLOCK_BYTES = 1 << 20   # the in-place transforms' columns at a time


def suits(xp, x_shape, w_shape, win, group):
    """Whether this convolution runs here: NumPy, 2-d, 3x3, stride 1, no dilation, enough
    channels per group and a big enough map."""
    return xp is numpy and len(x_shape) == 4 and tuple(win.kernel) == (3, 3) and tuple(win.stride) == (1, 1) \
        and tuple(win.dilation) == (1, 1) and min(x_shape[1], w_shape[0]) // group >= MIN_CHANNELS \
        and min(win.out_shape(x_shape[2:])) >= MIN_SIZE


@lru_cache(maxsize=None)
def _transforms(dtype):
    """The Kronecker squares of B^T (16x16), G (16x9) and A^T (4x16) in `dtype`."""
    bt = numpy.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype)
    g = numpy.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], dtype)
    at = numpy.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype)
    return numpy.kron(bt, bt), numpy.kron(g, g), numpy.kron(at, at)


def _chunks(x, out_shape, o):
    """Batch slices whose transformed tiles fit TILE_BYTES."""
    n, c = x.shape[:2]
    per_item = 16 * max(c, o) * math.prod(_tile_counts(out_shape)) * x.itemsize
    step = max(1, TILE_BYTES // per_item)
    return [slice(start, min(start + step, n)) for start in range(0, n, step)]


def _tile_counts(out_shape):
    """Tiles along each axis: one per 2x2 block of outputs, the last one cut at an odd edge."""
    return tuple(-(-s // 2) for s in out_shape)


def _blocks(out_shape):
    """(a, b, rows, cols): the outputs at offset (a, b) of their 2x2 blocks, how many per axis."""
    oh, ow = out_shape
    return [(a, b, (oh - a + 1) // 2, (ow - b + 1) // 2) for a in (0, 1) for b in (0, 1)]


def _weights(w):
    """U = G g G^T of every filter: (16, O, C/G)."""
    _, kg, _ = _transforms(w.dtype)
    u = scratch(numpy, "wino_u", (16,) + w.shape[:2], w.dtype)
    numpy.matmul(kg, w.reshape(-1, 9).T, out=u.reshape(16, -1))
    return u


def _transform(k, a):
    """a[...] = k @ a for (P, L) arrays, in blocks of columns through a small buffer: the
    transformed tiles take no buffer of their own."""
    step = max(1, BLOCK_BYTES // (a.shape[0] * a.itemsize))
    flat = scratch(numpy, "wino_block", (a.shape[0] * step,), a.dtype)
    for start in range(0, a.shape[1], step):
        part = a[:, start:start + step]
        block = flat[:part.size].reshape(part.shape)
        numpy.matmul(k, part, out=block)
        part[...] = block


def _tiles(x, pad, out_shape):
    """V = B^T d B of every input tile: (16, C, N * tiles)."""
    n, c, h, w = x.shape
    th, tw = _tile_counts(out_shape)
    kb, _, _ = _transforms(x.dtype)
    (ph, pw) = pad
    padded = scratch(numpy, "x_last", (c, n, 2 * th + 2, 2 * tw + 2), x.dtype)
    d = scratch(numpy, "col", (4, 4, c, n, th, tw), x.dtype)

    def gather(s):
        p = padded[s]
        p[:, :, :ph] = 0
        p[:, :, ph + h:] = 0
        p[:, :, :, :pw] = 0
        p[:, :, :, pw + w:] = 0
        p[:, :, ph:ph + h, pw:pw + w] = x[:, s].swapaxes(0, 1)
        for a in range(4):
            for b in range(4):
                d[a, b, s] = p[:, :, a:a + 2 * th:2, b:b + 2 * tw:2]
    by_parts(numpy, gather, c, d.nbytes)
    _transform(kb, d.reshape(16, -1))
    return d.reshape(16, c, n * th * tw)


def _grouped(a, group):
    """(16, G*K, P) viewed as (16, G, K, P)."""
    return a.reshape(16, group, a.shape[1] // group, a.shape[2])


def conv_forward(x, w, b, pad, group, out):
    """out[...] = conv(x, w) + b for a 3x3 stride-1 convolution with padding `pad` (rows, columns)."""
    u = _grouped(_weights(w), group)
    for part in _chunks(x, out.shape[2:], w.shape[0]):
        _forward(x[part], u, b, pad, group, out[part])


def _forward(x, u, b, pad, group, out):
    n, o = x.shape[0], out.shape[1]
    _, _, ka = _transforms(x.dtype)
    v = _tiles(x, pad, out.shape[2:])
    th, tw = _tile_counts(out.shape[2:])
    m = scratch(numpy, "conv_y", (16, o, n * th * tw), x.dtype)
    matmul(numpy, u, _grouped(v, group), out=_grouped(m, group))
    y = scratch(numpy, "dy_t", (4, m[0].size), x.dtype)
    matmul(numpy, ka, m.reshape(16, -1), out=y)
    y = y.reshape(2, 2, o, n, th, tw)
    bias = None if b is None else b.reshape(-1, 1, 1, 1)

    def write(s):
        for row, col, rows, cols in _blocks(out.shape[2:]):
            block, dst = y[row, col, s, :, :rows, :cols], out[:, s, row::2, col::2].swapaxes(0, 1)
            if bias is None:
                dst[...] = block
            else:
                numpy.add(block, bias[s], out=dst)
    by_parts(numpy, write, o, out.nbytes)


def conv_backward(x, w, dy, pad, group, dw=None, dx=None):
    """Accumulate dw (where given) and write dx (where given) for conv_forward's convolution."""
    for part in _chunks(x, dy.shape[2:], w.shape[0]):
        _backward(x[part], w, dy[part], pad, group, dw, None if dx is None else dx[part])


def _backward(x, w, dy, pad, group, dw, dx):
    n, c, h, wd = x.shape
    o = dy.shape[1]
    kb, kg, ka = _transforms(x.dtype)
    th, tw = _tile_counts(dy.shape[2:])
    dyt = scratch(numpy, "dy_t", (2, 2, o, n, th, tw), x.dtype)

    def gather(s):
        for row, col, rows, cols in _blocks(dy.shape[2:]):
            block = dyt[row, col, s]
            block[:, :, rows:] = 0          # outputs past an odd edge
            block[:, :, :, cols:] = 0
            block[:, :, :rows, :cols] = dy[:, s, row::2, col::2].swapaxes(0, 1)
    by_parts(numpy, gather, o, dy.nbytes)
    dm = scratch(numpy, "conv_y", (16, o, n * th * tw), x.dtype)
    matmul(numpy, ka.T, dyt.reshape(4, -1), out=dm.reshape(16, -1))
    if dx is not None:                      # first, while U is in its buffer
        ut = _grouped(_weights(w), group).swapaxes(2, 3)
        dd = scratch(numpy, "col", (4, 4, c, n, th, tw), x.dtype)
        matmul(numpy, ut, _grouped(dm, group), out=_grouped(dd.reshape(16, c, -1), group))
        _transform(kb.T, dd.reshape(16, -1))
        acc = scratch(numpy, "x_last", (c, n, 2 * th + 2, 2 * tw + 2), x.dtype)
        (ph, pw) = pad

        def scatter(s):                     # overlapping tiles: each position's sum, then the crop
            a_s = acc[s]
            a_s[...] = 0
            for a in range(4):
                for b in range(4):
                    a_s[:, :, a:a + 2 * th:2, b:b + 2 * tw:2] += dd[a, b, s]
            dx[:, s] = a_s[:, :, ph:ph + h, pw:pw + wd].swapaxes(0, 1)
        by_parts(numpy, scatter, c, dd.nbytes)
    if dw is not None:
        v = _tiles(x, pad, dy.shape[2:])
        du = scratch(numpy, "wino_u", (16,) + w.shape[:2], x.dtype)
        matmul(numpy, _grouped(dm, group), _grouped(v, group).swapaxes(2, 3), out=_grouped(du, group))
        matmul_add(numpy, du.reshape(16, -1).T, kg, dw.reshape(-1, 9))
