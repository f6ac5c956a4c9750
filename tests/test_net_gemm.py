"""ops.gemm.matmul: the same product as numpy.matmul, whichever orientation it runs in."""
import numpy as np
import pytest

from netspec.ops.gemm import _turned, matmul

PLAIN = [((3, 5), (5, 7)), ((7, 5), (5, 3)), ((3, 5), (5, 3)), ((2, 3, 5), (2, 5, 7)), ((4, 2, 3, 5), (2, 5, 9))]
TURNED = [((3, 20), (20, 4)), ((2, 3, 20), (2, 20, 4)), ((4, 2, 3, 20), (2, 20, 5)), ((1, 6, 40), (8, 1, 40, 9))]


def test_both_orientations_are_exercised():
    assert not any(_turned(np.empty(a), np.empty(b)) for a, b in PLAIN)
    assert all(_turned(np.empty(a), np.empty(b)) for a, b in TURNED)


@pytest.mark.parametrize("a_shape, b_shape", PLAIN + TURNED)
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
    for a, b in ((rng.standard_normal((9, 4)), rng.standard_normal((6, 9))),
                 (rng.standard_normal((30, 4)), rng.standard_normal((6, 30)))):     # plain, turned
        np.testing.assert_allclose(matmul(np, a.T, b.T), a.T @ b.T)


@pytest.mark.parametrize("a_shape, b_shape", [((5, 3), (3, 4)), ((40, 3), (3, 7)), ((3, 40), (40, 2))])
def test_matmul_add_accumulates_in_chunks(monkeypatch, a_shape, b_shape):
    import netspec.ops.gemm as gemm
    monkeypatch.setattr(gemm, "ADD_CHUNK_BYTES", 3 * b_shape[1] * 8)    # 3 rows a chunk
    rng = np.random.default_rng(2)
    a, b, out = rng.standard_normal(a_shape), rng.standard_normal(b_shape), rng.standard_normal((a_shape[0], b_shape[1]))
    expected = out + a @ b
    assert gemm.matmul_add(np, a, b, out) is out
    np.testing.assert_allclose(out, expected)
    a_t = np.ascontiguousarray(a.T).T                   # a transposed view, as InnerProduct passes dy.T
    out2 = expected.copy()
    gemm.matmul_add(np, a_t, b, out2)
    np.testing.assert_allclose(out2, expected + a @ b)
