"""Matrix products in the orientation BLAS runs best.

OpenBLAS (0.3.31, 1 and 2 threads) runs a product with few rows and a long inner dimension
(a batch of 10 times a 4096-wide weight, a convolution's weight gradient summed over a
batch's columns) faster as (B^T A^T)^T; everywhere else the plain product wins, often by 2-3x,
because the turned one pays a transposed copy of its result. Measured on every product of
the LeNet, AlexNet, ResNet-50 and GoogLeNet training steps (tools/benchmark.py --products):
this rule is within 1% of the better orientation for each. CuPy's cuBLAS needs no such help.
"""
import numpy

from .workspace import scratch

FEW_ROWS = 128          # at most this many rows,
LONG_INNER = 2          # and an inner dimension at least this many times the columns


def _turned(a, b):
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    return m <= FEW_ROWS and k >= LONG_INNER * n


def matmul(xp, a, b, out=None):
    """a @ b (stacks of matrices too), into `out` when given, else a new array (maybe a
    transposed view)."""
    if xp is not numpy or a.ndim < 2 or b.ndim < 2 or not _turned(a, b):
        return xp.matmul(a, b, out=out)
    bt, at = b.swapaxes(-1, -2), a.swapaxes(-1, -2)
    if out is None:
        return numpy.matmul(bt, at).swapaxes(-1, -2)
    shape = numpy.broadcast_shapes(bt.shape[:-2], at.shape[:-2]) + (bt.shape[-2], at.shape[-1])
    product = scratch(xp, "gemm_t", shape, out.dtype)
    numpy.matmul(bt, at, out=product)
    out[...] = product.swapaxes(-1, -2)
    return out


ADD_CHUNK_BYTES = 8 << 20


def matmul_add(xp, a, b, out):
    """out += a @ b (2-d), through a product temporary of at most ADD_CHUNK_BYTES: a weight
    gradient as big as AlexNet's fc6 (151 MB) then costs no second copy of itself."""
    rows = max(1, ADD_CHUNK_BYTES // max(b.shape[1] * out.itemsize, 1))
    if rows >= a.shape[0]:
        out += matmul(xp, a, b)
        return out
    part = scratch(xp, "gemm_add", (rows, b.shape[1]), out.dtype)
    for start in range(0, a.shape[0], rows):
        block = part[:min(rows, a.shape[0] - start)]
        matmul(xp, a[start:start + rows], b, out=block)
        out[start:start + rows] += block
    return out
