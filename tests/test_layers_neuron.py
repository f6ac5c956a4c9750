"""Neuron layers: forward against NumPy references, numeric gradients, in-place runs."""
import math

import numpy as np
import pytest

from harness import check_layer, make_layer, param_fillers, param_shapes, run
from netspec import caffe_pb2
from netspec.errors import LayerError
from netspec.layers.base import ShapeContext

TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST


def away_from(points, shape, seed=0, gap=0.1, spread=2.0):
    """Tie-free inputs at least `gap` from each kink in `points`."""
    x = np.random.default_rng(seed).uniform(-spread, spread, size=shape)
    for p in points:
        near = np.abs(x - p) < gap
        x[near] = p + np.where(x[near] >= p, gap, -gap) * 1.5
    return x


def positive(shape, seed=0):
    return np.random.default_rng(seed).uniform(0.3, 2.0, size=shape)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# (prototxt, NumPy reference of y = f(x), input maker); each entry is one layer setting.
CASES = {
    "relu": ("type: 'ReLU'", lambda x: np.maximum(x, 0), lambda s: away_from([0], s)),
    "leaky_relu": ("type: 'ReLU' relu_param { negative_slope: 0.125 }",
                   lambda x: np.where(x > 0, x, 0.125 * x), lambda s: away_from([0], s)),
    "negative_slope_relu": ("type: 'ReLU' relu_param { negative_slope: -0.5 }",
                            lambda x: np.where(x > 0, x, -0.5 * x), lambda s: away_from([0], s)),
    "elu": ("type: 'ELU'", lambda x: np.where(x > 0, x, np.exp(x) - 1), lambda s: away_from([0], s)),
    "elu_alpha": ("type: 'ELU' elu_param { alpha: 0.5 }",
                  lambda x: np.where(x > 0, x, 0.5 * (np.exp(x) - 1)), lambda s: away_from([0], s)),
    "sigmoid": ("type: 'Sigmoid'", sigmoid, lambda s: away_from([], s, spread=4)),
    "tanh": ("type: 'TanH'", np.tanh, lambda s: away_from([], s)),
    "absval": ("type: 'AbsVal'", np.abs, lambda s: away_from([0], s)),
    "power": ("type: 'Power' power_param { power: 2 scale: 0.5 shift: 1 }",
              lambda x: (1 + 0.5 * x) ** 2, lambda s: away_from([], s)),
    "power_fractional": ("type: 'Power' power_param { power: 0.5 scale: 2 shift: 0.125 }",
                         lambda x: (0.125 + 2 * x) ** 0.5, positive),
    "power_linear": ("type: 'Power' power_param { scale: -3 shift: 2 }", lambda x: 2 - 3 * x,
                     lambda s: away_from([], s)),
    "power_zero": ("type: 'Power' power_param { power: 0 scale: 3 }", lambda x: np.ones_like(x),
                   lambda s: away_from([], s)),
    "exp": ("type: 'Exp'", np.exp, lambda s: away_from([], s)),
    "exp_base2": ("type: 'Exp' exp_param { base: 2 scale: 0.5 shift: 1 }",
                  lambda x: 2.0 ** (1 + 0.5 * x), lambda s: away_from([], s)),
    "log": ("type: 'Log'", np.log, positive),
    "log_base10": ("type: 'Log' log_param { base: 10 scale: 2 shift: 0.5 }",
                   lambda x: np.log10(0.5 + 2 * x), positive),
    "bnll": ("type: 'BNLL'", lambda x: np.log1p(np.exp(x)), lambda s: away_from([], s, spread=5)),
    "clip": ("type: 'Clip' clip_param { min: -0.5 max: 1 }", lambda x: np.clip(x, -0.5, 1),
             lambda s: away_from([-0.5, 1], s)),
    "swish": ("type: 'Swish'", lambda x: x * sigmoid(x), lambda s: away_from([], s)),
    "swish_beta": ("type: 'Swish' swish_param { beta: 1.75 }", lambda x: x * sigmoid(1.75 * x),
                   lambda s: away_from([], s)),
    "dropout_test": ("type: 'Dropout' dropout_param { dropout_ratio: 0.3 }", lambda x: x,
                     lambda s: away_from([], s)),
}
SHAPES = [(2, 3, 4, 2), (5, 3)]


def layer_for(name, phase=TEST):
    return make_layer(CASES[name][0], phase)


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_matches_reference(name, xp):
    text, reference, inputs = CASES[name]
    x = inputs((2, 3, 4, 5))
    layer = make_layer(text, TEST)
    np.testing.assert_allclose(run(layer, [x], xp).y[0], reference(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient(name, shape, xp):
    text, _, inputs = CASES[name]
    check_layer(make_layer(text, TEST), [inputs(shape)], xp=xp)


def run_once(layer, x, dy, in_place, params=None, seed=5):
    """Forward then backward on fresh blobs; returns (y, dx, param diffs)."""
    r = run(layer, [x], params=params or [], seed=seed, in_place=in_place)
    y = r.y[0]
    (dx,) = r.backward([dy.copy()])
    return y, dx, r.param_diffs


IN_PLACE = sorted(CASES) + ["prelu", "prelu_shared", "dropout_train"]


@pytest.mark.parametrize("name", IN_PLACE)
def test_in_place_equals_out_of_place(name):
    params = None
    if name.startswith("prelu"):
        text = "type: 'PReLU'" + (" prelu_param { channel_shared: true }" if name == "prelu_shared" else "")
        layer, x = make_layer(text), away_from([0], (2, 3, 4, 2))
        params = [np.array([0.3]) if name == "prelu_shared" else np.array([0.1, -0.4, 0.7])]
    elif name == "dropout_train":
        layer, x = make_layer("type: 'Dropout'", TRAIN), away_from([], (2, 3, 4, 2))
    else:
        text, _, inputs = CASES[name]
        layer, x = make_layer(text), inputs((2, 3, 4, 2))
    dy = np.random.default_rng(9).standard_normal(x.shape)
    separate = run_once(layer, x, dy, in_place=False, params=params)
    shared = run_once(layer, x, dy, in_place=True, params=params)
    for a, b in zip(separate[:2], shared[:2]):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=0)
    for a, b in zip(separate[2], shared[2]):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=0)


def test_relu_hand_computed():
    layer = make_layer("type: 'ReLU' relu_param { negative_slope: 0.25 }")
    y, dx, _ = run_once(layer, np.array([[-2.0, -0.5, 0.5, 3.0]]), np.array([[1.0, 2.0, 3.0, 4.0]]), False)
    np.testing.assert_array_equal(y, [[-0.5, -0.125, 0.5, 3.0]])
    np.testing.assert_array_equal(dx, [[0.25, 0.5, 3.0, 4.0]])


# --- PReLU ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shared", [False, True])
def test_prelu_forward_params_and_fillers(shared):
    text = "type: 'PReLU'" + (" prelu_param { channel_shared: true }" if shared else "")
    layer = make_layer(text)
    assert param_shapes(layer, [(2, 3, 4, 4)]) == [(1,) if shared else (3,)]
    filler = param_fillers(layer)[0]
    assert (filler.type, filler.value) == ("constant", pytest.approx(0.25))
    x = away_from([0], (2, 3, 2, 2))
    slopes = np.array([0.5]) if shared else np.array([0.1, 0.2, 0.3])
    y, _, _ = run_once(layer, x, np.zeros_like(x), False, params=[slopes])
    a = np.broadcast_to(slopes.reshape(-1, 1, 1), (3, 2, 2))
    expected = np.where(x > 0, x, a * x)
    np.testing.assert_allclose(y, expected)


def test_prelu_filler_from_file():
    layer = make_layer("type: 'PReLU' prelu_param { filler { type: 'constant' value: 0.1 } }")
    assert param_fillers(layer)[0].value == pytest.approx(0.1)


@pytest.mark.parametrize("shape", [(2, 3, 3, 2), (4, 5)], ids=str)
@pytest.mark.parametrize("shared", [False, True])
def test_prelu_gradient(shape, shared, xp):
    text = "type: 'PReLU'" + (" prelu_param { channel_shared: true }" if shared else "")
    check_layer(make_layer(text), [away_from([0], shape)], xp=xp)


def test_prelu_needs_two_axes():
    with pytest.raises(LayerError, match="at least 2 axes"):
        make_layer("type: 'PReLU'").infer([(7,)], ShapeContext())


# --- Dropout ---------------------------------------------------------------------------------
def test_dropout_train_scales_kept_units():
    layer = make_layer("type: 'Dropout' dropout_param { dropout_ratio: 0.25 }", TRAIN)
    x = positive((50, 40))
    y, dx, _ = run_once(layer, x, np.ones_like(x), False)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / 0.75)
    assert 0.70 < kept.mean() < 0.80                     # about 1 - ratio kept
    np.testing.assert_allclose(dx, kept / 0.75)          # gradient uses the same mask


def test_dropout_test_is_identity_and_seeded_runs_repeat():
    x = positive((4, 6))
    y, dx, _ = run_once(make_layer("type: 'Dropout'", TEST), x, np.full_like(x, 2.0), False)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(dx, 2.0)
    train = make_layer("type: 'Dropout'", TRAIN)
    assert np.array_equal(run_once(train, x, x, False, seed=1)[0], run_once(train, x, x, False, seed=1)[0])
    assert not np.array_equal(run_once(train, x, x, False, seed=1)[0], run_once(train, x, x, False, seed=2)[0])


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_dropout_train_gradient(shape, xp):
    check_layer(make_layer("type: 'Dropout' dropout_param { dropout_ratio: 0.4 }", TRAIN),
                   [away_from([], shape)], xp=xp)


def test_dropout_bad_ratio():
    with pytest.raises(LayerError, match="dropout_ratio"):
        make_layer("type: 'Dropout' dropout_param { dropout_ratio: 1 }")


# --- the rest ----------------------------------------------------------------------------------
def test_threshold_forward_and_no_backward():
    layer = make_layer("type: 'Threshold' threshold_param { threshold: 0.5 }")
    x = np.array([[-1.0, 0.5, 0.6, 2.0]])
    r = run(layer, [x])
    np.testing.assert_array_equal(r.y[0], [[0, 0, 1, 1]])
    with pytest.raises(LayerError, match="no backward"):
        r.backward([1])


def test_clip_needs_min_and_max():
    with pytest.raises(LayerError, match="missing max"):
        make_layer("type: 'Clip' clip_param { min: 0 }")
    with pytest.raises(LayerError, match="greater than max"):
        make_layer("type: 'Clip' clip_param { min: 2 max: 1 }")


@pytest.mark.parametrize("kind", ["Exp", "Log"])
def test_nonpositive_base_is_an_error(kind):
    with pytest.raises(LayerError, match="base must be strictly positive"):
        make_layer(f"type: '{kind}' {kind.lower()}_param {{ base: -2 }}")


def test_shape_macs_and_dtype():
    layer = make_layer("type: 'Sigmoid'")
    assert layer.infer([(2, 3, 5)], ShapeContext()) == [(2, 3, 5)]
    assert layer.macs([(2, 3, 5)], [(2, 3, 5)]) == 30
    for text, _, inputs in CASES.values():
        layer = make_layer(text, TRAIN)
        r = run(layer, [inputs((2, 3))], dtype=np.float32)
        (dx,) = r.backward([1])
        assert r.y[0].dtype == dx.dtype == np.float32


def test_bnll_is_stable_for_large_inputs():
    layer = make_layer("type: 'BNLL'")
    x = np.array([[-800.0, 800.0]])
    y, dx, _ = run_once(layer, x, np.ones_like(x), False)
    np.testing.assert_allclose(y, [[0.0, 800.0]])
    np.testing.assert_allclose(dx, [[0.0, 1.0]])
    assert math.isfinite(dx.sum())


def test_absval_refuses_in_place_as_caffe_does():
    with pytest.raises(LayerError, match="AbsVal does not allow in-place"):
        make_layer('name: "a" type: "AbsVal" bottom: "x" top: "x"')
    make_layer('name: "a" type: "AbsVal" bottom: "x" top: "y"')


def test_log_base_one_is_refused_as_caffe_does():
    with pytest.raises(LayerError, match="Log base 1 has no logarithm"):
        make_layer("type: 'Log' log_param { base: 1 }")
