"""ops.gemm.matmul: the same product as numpy.matmul, whichever orientation it runs in."""
import numpy as np
import pytest

from netspec.ops.gemm import matmul


@pytest.mark.parametrize("a_shape, b_shape", [((3, 5), (5, 7)), ((7, 5), (5, 3)), ((3, 5), (5, 3)),
                                              ((2, 3, 5), (2, 5, 7)), ((4, 2, 3, 5), (2, 5, 9))])
def test_matches_numpy_with_and_without_out(xp, a_shape, b_shape):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    expected = np.matmul(a, b)
    a, b = xp.asarray(a), xp.asarray(b)
    np.testing.assert_allclose(xp.asnumpy(matmul(xp, a, b)) if xp is not np else matmul(xp, a, b), expected)
    out = xp.empty(expected.shape)
    assert matmul(xp, a, b, out=out) is out
    np.testing.assert_allclose(out.get() if xp is not np else out, expected)


def test_transposed_operands():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((9, 4)), rng.standard_normal((6, 9))
    np.testing.assert_allclose(matmul(np, a.T, b.T), a.T @ b.T)
