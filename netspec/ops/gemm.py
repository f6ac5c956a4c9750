"""Matrix products in the orientation BLAS runs best.

OpenBLAS threads a product with few rows and many columns badly (a batch of 10 times a
4096-wide weight, a 96-filter weight gradient over 30000 columns): computing (B^T A^T)^T
instead, measured on 2 threads, halved AlexNet's and LeNet's training step. The price is a
transposed copy of the result, so only products with few rows (< SMALL_ROWS) are turned:
a big result with a short inner dimension (an InnerProduct's weight gradient) would lose
more in the copy than BLAS gains. CuPy's cuBLAS needs no such help: there it is a plain matmul.
"""
import numpy

from .workspace import scratch

SMALL_ROWS = 512


def matmul(xp, a, b, out=None):
    """a @ b (stacks of matrices too), into `out` when given, else a new array (maybe a
    transposed view)."""
    if xp is not numpy or a.ndim < 2 or b.ndim < 2 or a.shape[-2] >= min(b.shape[-1], SMALL_ROWS):
        return xp.matmul(a, b, out=out)
    bt, at = b.swapaxes(-1, -2), a.swapaxes(-1, -2)
    if out is None:
        return numpy.matmul(bt, at).swapaxes(-1, -2)
    shape = numpy.broadcast_shapes(bt.shape[:-2], at.shape[:-2]) + (bt.shape[-2], at.shape[-1])
    product = scratch(xp, "gemm_t", shape, out.dtype)
    numpy.matmul(bt, at, out=product)
    out[...] = product.swapaxes(-1, -2)
    return out
