import math

import numpy as np
import pytest
from google.protobuf import text_format

from netspec import caffe_pb2
from netspec.errors import LayerError
from netspec.fillers import FILLERS, fans, fill


def filler(text):
    return text_format.Parse(text, caffe_pb2.FillerParameter())


def draw(text, shape, seed=0, dtype="float32"):
    return fill(np, np.random.default_rng(seed), shape, filler(text), dtype)


def test_constant_and_default():
    assert np.all(draw('type: "constant" value: 2.5', (3, 4)) == 2.5)
    assert np.all(fill(np, np.random.default_rng(0), (2, 3), None) == 0)   # unset filler: constant 0


def test_uniform_range_and_mean():
    x = draw('type: "uniform" min: -2 max: 4', (200, 100))
    assert x.min() >= -2 and x.max() <= 4
    assert abs(x.mean() - 1.0) < 0.05


def test_gaussian_statistics():
    x = draw('type: "gaussian" mean: 1 std: 0.5', (300, 100))
    assert abs(x.mean() - 1.0) < 0.01 and abs(x.std() - 0.5) < 0.01


def test_gaussian_sparse_keeps_expected_fraction():
    # sparse: 3 of 20 outputs -> each weight non-zero with probability 3/20
    x = draw('type: "gaussian" std: 1 sparse: 3', (20, 5000))
    assert abs(np.mean(x != 0) - 3 / 20) < 0.01


def test_positive_unitball_rows_sum_to_one():
    x = draw('type: "positive_unitball"', (6, 2, 3, 3))
    assert np.all(x >= 0)
    np.testing.assert_allclose(x.reshape(6, -1).sum(axis=1), 1, rtol=1e-6)


def test_fans_follow_caffe_legacy_shape():
    assert fans((20, 3, 5, 5)) == (75, 500)
    assert fans((10, 40)) == (40, 10)
    assert fans((7,)) == (1, 7)


@pytest.mark.parametrize("norm, n", [("FAN_IN", 3 * 25), ("FAN_OUT", 64 * 25), ("AVERAGE", (75 + 1600) / 2)])
def test_xavier_scale_by_variance_norm(norm, n):
    x = draw(f'type: "xavier" variance_norm: {norm}', (64, 3, 5, 5), dtype="float64")
    scale = math.sqrt(3.0 / n)
    assert x.max() <= scale and x.min() >= -scale
    assert x.max() > 0.95 * scale and x.min() < -0.95 * scale


@pytest.mark.parametrize("norm, n", [("FAN_IN", 200), ("FAN_OUT", 500), ("AVERAGE", 350)])
def test_msra_std_by_variance_norm(norm, n):
    x = draw(f'type: "msra" variance_norm: {norm}', (500, 200), dtype="float64")
    assert abs(x.std() / math.sqrt(2.0 / n) - 1) < 0.02
    assert abs(x.mean()) < 0.01 * math.sqrt(2.0 / n) * 10


def bilinear_reference(k):
    """Caffe's bilinear kernel, element by element."""
    f = math.ceil(k / 2)
    c = (2 * f - 1 - f % 2) / (2 * f)
    out = np.zeros((k, k))
    for y in range(k):
        for x in range(k):
            out[y, x] = (1 - abs(x / f - c)) * (1 - abs(y / f - c))
    return out


@pytest.mark.parametrize("k", [3, 4, 5])
def test_bilinear_matches_reference(k):
    x = draw('type: "bilinear"', (2, 1, k, k), dtype="float64")
    for i in range(2):
        np.testing.assert_allclose(x[i, 0], bilinear_reference(k))


def test_bilinear_upsample_by_two_known_kernel():
    x = draw('type: "bilinear"', (1, 1, 4, 4))
    ramp = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(x[0, 0], np.outer(ramp, ramp))


def test_same_seed_same_weights_other_seed_differs():
    text = 'type: "gaussian" std: 0.1'
    a, b, c = draw(text, (5, 7), seed=3), draw(text, (5, 7), seed=3), draw(text, (5, 7), seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_dtype_kept():
    assert draw('type: "xavier"', (4, 4), dtype="float64").dtype == np.float64
    assert draw('type: "xavier"', (4, 4)).dtype == np.float32


def test_errors_are_clear():
    with pytest.raises(LayerError, match="unknown filler type 'gausian'.*gaussian"):
        draw('type: "gausian"', (2, 2))
    with pytest.raises(LayerError, match="sparse"):
        draw('type: "uniform" sparse: 2', (2, 2))
    with pytest.raises(LayerError, match="4-d"):
        draw('type: "bilinear"', (3, 3))
    with pytest.raises(LayerError, match="square"):
        draw('type: "bilinear"', (1, 1, 3, 4))


def test_fill_on_backend(xp):
    x = fill(xp, np.random.default_rng(0), (3, 3), filler('type: "uniform"'))
    assert type(x).__module__.split(".")[0] == xp.__name__


# CuPy's asarray always makes a fresh, writeable, C-contiguous device array; the NumPy backend
# hands out filled parameters the same way, so code written against one backend may update
# them in place on the other.
@pytest.mark.parametrize("kind", sorted(FILLERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_filled_parameters_can_be_updated_in_place(kind, dtype, xp):
    a = fill(xp, np.random.default_rng(0), (2, 1, 4, 4), caffe_pb2.FillerParameter(type=kind), dtype)
    assert a.dtype == np.dtype(dtype) and a.flags.c_contiguous
    before = a.copy()
    a -= 1                      # what the solver does to a parameter (fails where read-only)
    assert float(abs(before - 1 - a).max()) == 0
