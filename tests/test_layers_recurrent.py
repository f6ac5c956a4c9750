"""RNN, LSTM and LSTMUnit: shapes and Caffe's blob layout, forward against a naive per-stream
loop, the carried hidden state, and numeric gradients."""
import math

import numpy as np
import pytest

from netspec.errors import LayerError
from netspec.layers.base import ShapeContext
from harness import check_layer, make_layer, param_fillers, param_shapes, run

T, N, D, H, DS = 3, 2, 3, 2, 4


def recurrent(kind, hidden=H, expose=False, static=False, num_output=None):
    states = ("h0", "c0") if kind == "LSTM" else ("h0",)
    bottoms = ["x", "cont"] + (["xs"] if static else []) + (list(states) if expose else [])
    tops = ["out"] + ([s[0] + "T" for s in states] if expose else [])
    text = (f'name: "rec" type: "{kind}" ' + " ".join(f'bottom: "{b}"' for b in bottoms) + " "
            + " ".join(f'top: "{t}"' for t in tops)
            + f' recurrent_param {{ num_output: {hidden if num_output is None else num_output} '
              f'expose_hidden: {str(expose).lower()} '
              f'weight_filler {{ type: "uniform" min: -0.1 max: 0.1 }} '
              f'bias_filler {{ type: "constant" value: 1 }} }}')
    return make_layer(text)


def infer(layer, shapes):
    return layer.infer(shapes, ShapeContext())


def sig(x):
    return 1 / (1 + np.exp(-x))


def naive_lstm(x, cont, params, xs=None, h0=None, c0=None):
    """Caffe's LSTM, one stream and one step at a time."""
    w_xc, b_c = params[0], params[1]
    w_s = params[2] if xs is not None else None
    w_hc = params[-1]
    steps, streams = cont.shape
    hid = w_hc.shape[1]
    out = np.zeros((steps, streams, hid))
    finals = []
    for n in range(streams):
        h = np.zeros(hid) if h0 is None else h0[0, n]
        c = np.zeros(hid) if c0 is None else c0[0, n]
        for t in range(steps):
            a = w_xc @ x[t, n].reshape(-1) + b_c + w_hc @ (cont[t, n] * h)
            if w_s is not None:
                a = a + w_s @ xs[n].reshape(-1)
            i, f, o, g = sig(a[:hid]), sig(a[hid:2 * hid]), sig(a[2 * hid:3 * hid]), np.tanh(a[3 * hid:])
            c = cont[t, n] * f * c + i * g
            h = o * np.tanh(c)
            out[t, n] = h
        finals.append((h, c))
    return out, np.array([f[0] for f in finals])[None], np.array([f[1] for f in finals])[None]


def naive_rnn(x, cont, params, xs=None, h0=None):
    w_xh, b_h = params[0], params[1]
    w_s = params[2] if xs is not None else None
    w_hh, w_ho, b_o = params[-3:]
    steps, streams = cont.shape
    hid = w_hh.shape[0]
    out = np.zeros((steps, streams, hid))
    finals = []
    for n in range(streams):
        h = np.zeros(hid) if h0 is None else h0[0, n]
        for t in range(steps):
            a = w_xh @ x[t, n].reshape(-1) + b_h + w_hh @ (cont[t, n] * h)
            if w_s is not None:
                a = a + w_s @ xs[n].reshape(-1)
            h = np.tanh(a)
            out[t, n] = np.tanh(w_ho @ h + b_o)
        finals.append(h)
    return out, np.array(finals)[None]


def inputs(rng, static=False, x_shape=(T, N, D), cont=None, states=0):
    steps, streams = x_shape[:2]
    if cont is None:
        cont = np.ones((steps, streams))
        cont[0] = 0
    arrays = [rng.standard_normal(x_shape), np.asarray(cont, dtype=float)]
    if static:
        arrays.append(rng.standard_normal((streams, 2, 2)))
    arrays += [rng.standard_normal((1, streams, H)) for _ in range(states)]
    return arrays


def params_of(layer):
    return [np.asarray(b.data) for b in layer.blobs]


# -- shapes and blob layout ---------------------------------------------------------------------

def test_lstm_blob_layout_is_caffes():
    layer = recurrent("LSTM", hidden=5)
    assert infer(layer, [(7, 4, 3, 2), (7, 4)]) == [(7, 4, 5)]
    assert param_shapes(layer, [(7, 4, 3, 2), (7, 4)]) == [(20, 6), (20,), (20, 5)]
    static = recurrent("LSTM", hidden=5, static=True)
    assert param_shapes(static, [(7, 4, 3), (7, 4), (4, 2, 2)]) == [(20, 3), (20,), (20, 4), (20, 5)]
    fillers = param_fillers(static)
    assert [f.type for f in fillers] == ["uniform", "constant", "uniform", "uniform"]


def test_rnn_blob_layout_is_caffes():
    layer = recurrent("RNN", hidden=5, static=True)
    assert infer(layer, [(7, 4, 3), (7, 4), (4, 6)]) == [(7, 4, 5)]
    assert param_shapes(layer, [(7, 4, 3), (7, 4), (4, 6)]) == \
        [(5, 3), (5,), (5, 6), (5, 5), (5, 5), (5,)]
    assert [f.type for f in param_fillers(layer)] == \
        ["uniform", "constant", "uniform", "uniform", "uniform", "constant"]


def test_expose_hidden_adds_state_bottoms_and_tops():
    lstm = recurrent("LSTM", expose=True)
    assert (lstm.bottoms, lstm.tops) == ((4, 5), (3, 3))
    assert infer(lstm, [(T, N, D), (T, N), (1, N, H), (1, N, H)]) == [(T, N, H), (1, N, H), (1, N, H)]
    rnn = recurrent("RNN", expose=True, static=True)
    assert (rnn.bottoms, rnn.tops) == ((3, 4), (2, 2))
    assert infer(rnn, [(T, N, D), (T, N), (N, DS), (1, N, H)]) == [(T, N, H), (1, N, H)]
    assert recurrent("RNN").bottoms == (2, 3)


@pytest.mark.parametrize("kind, shapes, message", [
    ("LSTM", [(T,), (T, N)], "at least 2 axes"),
    ("LSTM", [(T, N, D), (T, N + 1)], r"must be T x N = \(3, 2\).*found \(3, 3\)"),
    ("RNN", [(T, N, D), (N, T)], "continuation indicators"),
    ("RNN", [(T, N, D), (T, N), (N + 1, DS)], r"static input\) must be N x ... with N = 2; found \(3, 4\)"),
])
def test_shape_errors(kind, shapes, message):
    with pytest.raises(LayerError, match=message):
        infer(recurrent(kind, static=len(shapes) > 2), shapes)


def test_exposed_state_shape_error_and_num_output():
    with pytest.raises(LayerError, match=r"initial state c0.*\(1, 2, 2\); found \(1, 2, 3\)"):
        infer(recurrent("LSTM", expose=True), [(T, N, D), (T, N), (1, N, H), (1, N, 3)])
    with pytest.raises(LayerError, match="positive num_output"):
        recurrent("RNN", num_output=0)
    with pytest.raises(LayerError, match=r"takes 4 to 5 bottoms \(x, cont, \[x_static\], h0, c0\), got 3"):
        infer(recurrent("LSTM", expose=True), [(T, N, D), (T, N), (1, N, H)])


def test_lstm_unit_shapes():
    unit = make_layer('name: "u" type: "LSTMUnit" bottom: "c" bottom: "g" bottom: "k" top: "c1" top: "h1"')
    assert infer(unit, [(1, N, H), (1, N, 4 * H), (1, N)]) == [(1, N, H), (1, N, H)]
    with pytest.raises(LayerError, match="1 x N x 4H"):
        infer(unit, [(1, N, H), (1, N, 3 * H), (1, N)])
    with pytest.raises(LayerError, match="1 x N ="):
        infer(unit, [(1, N, H), (1, N, 4 * H), (N,)])


def test_macs_count_the_matrix_products():
    assert recurrent("RNN", hidden=5).macs([(7, 4, 3), (7, 4)], [(7, 4, 5)]) == 7 * 4 * 5 * (3 + 10)


# -- forward against a naive loop -------------------------------------------------------------

@pytest.mark.parametrize("static", [False, True])
def test_lstm_forward_matches_naive_loop(static, xp):
    rng = np.random.default_rng(1)
    cont = [[0, 0], [1, 0], [1, 1]]       # stream 1 restarts at t = 1
    arrays = inputs(rng, static, cont=cont)
    layer = recurrent("LSTM", static=static)
    tops = run(layer, arrays, xp=xp).tops
    expected, _, _ = naive_lstm(arrays[0], arrays[1], params_of_xp(layer), arrays[2] if static else None)
    np.testing.assert_allclose(to_np(tops[0].data), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("static", [False, True])
def test_rnn_forward_matches_naive_loop(static, xp):
    rng = np.random.default_rng(2)
    arrays = inputs(rng, static, x_shape=(T, N, 2, 2), cont=[[0, 0], [1, 1], [0, 1]])
    layer = recurrent("RNN", static=static)
    tops = run(layer, arrays, xp=xp).tops
    expected, _ = naive_rnn(arrays[0], arrays[1], params_of_xp(layer), arrays[2] if static else None)
    np.testing.assert_allclose(to_np(tops[0].data), expected, rtol=1e-10, atol=1e-12)


def test_exposed_states_go_in_and_come_out():
    rng = np.random.default_rng(3)
    arrays = inputs(rng, cont=np.ones((T, N)), states=2)
    layer = recurrent("LSTM", expose=True)
    tops = run(layer, arrays).tops
    out, h_t, c_t = naive_lstm(arrays[0], arrays[1], params_of(layer), h0=arrays[2], c0=arrays[3])
    for got, want in zip(tops, (out, h_t, c_t)):
        np.testing.assert_allclose(got.data, want, rtol=1e-10)
    rnn = recurrent("RNN", expose=True)
    arrays = inputs(rng, cont=np.ones((T, N)), states=1)
    tops = run(rnn, arrays).tops
    out, h_t = naive_rnn(arrays[0], arrays[1], params_of(rnn), h0=arrays[2])
    np.testing.assert_allclose(tops[0].data, out, rtol=1e-10)
    np.testing.assert_allclose(tops[1].data, h_t, rtol=1e-10)


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_state_carries_from_one_forward_to_the_next(kind):
    """Without expose_hidden, Caffe starts each batch from the last state of the one before:
    two batches of T steps with cont = 1 across the seam equal one batch of 2T steps."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2 * T, N, D))
    cont = np.ones((2 * T, N))
    cont[0] = 0
    whole = recurrent(kind)
    tops = run(whole, [x, cont]).tops
    split = recurrent(kind)
    run(split, [x[:T], cont[:T]], params=params_of(whole))
    second = run(split, [x[T:], cont[T:]], params=params_of(whole))
    np.testing.assert_allclose(second.y[0], tops[0].data[T:], rtol=1e-12)


def test_lstm_unit_forward_by_formula():
    rng = np.random.default_rng(5)
    c_prev, gates = rng.standard_normal((1, 3, H)), rng.standard_normal((1, 3, 4 * H))
    cont = np.array([[1.0, 0.0, 1.0]])
    unit = make_layer('name: "u" type: "LSTMUnit" bottom: "c" bottom: "g" bottom: "k" top: "c1" top: "h1"')
    tops = run(unit, [c_prev, gates, cont]).tops
    a = gates[0]
    i, f, o, g = sig(a[:, :H]), sig(a[:, H:2 * H]), sig(a[:, 2 * H:3 * H]), np.tanh(a[:, 3 * H:])
    c = cont[0][:, None] * f * c_prev[0] + i * g
    np.testing.assert_allclose(tops[0].data[0], c, rtol=1e-12)
    np.testing.assert_allclose(tops[1].data[0], o * np.tanh(c), rtol=1e-12)


def test_float32_stays_float32():
    rng = np.random.default_rng(6)
    layer = recurrent("LSTM")
    r = run(layer, inputs(rng), dtype=np.float32)
    dx, _ = r.backward([1], [True, False])
    assert r.y[0].dtype == dx.dtype == r.param_diffs[0].dtype == np.float32


# -- numeric gradients ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("x_shape", [(T, N, D), (2, 3, 2, 1)])
def test_gradient(kind, static, x_shape, xp):
    rng = np.random.default_rng(7)
    steps, streams = x_shape[:2]
    cont = (rng.random((steps, streams)) > 0.3).astype(float)
    cont[0] = 0                      # the carried state must not leak in between evaluations
    layer = recurrent(kind, static=static)
    check_layer(layer, inputs(rng, static, x_shape, cont), xp=xp,
                   check_bottoms=[0, 2] if static else [0])


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
@pytest.mark.parametrize("static", [False, True])
def test_gradient_through_exposed_states(kind, static, xp):
    rng = np.random.default_rng(8)
    states = 2 if kind == "LSTM" else 1
    cont = np.array([[1, 1], [0, 1], [1, 1]], dtype=float)
    arrays = inputs(rng, static, cont=cont, states=states)
    layer = recurrent(kind, expose=True, static=static)
    first_state = 2 + static
    states_at = list(range(first_state, first_state + states))
    check_layer(layer, arrays, xp=xp, check_bottoms=[0] + ([2] if static else []) + states_at)


def test_lstm_unit_gradient(xp):
    rng = np.random.default_rng(9)
    unit = make_layer('name: "u" type: "LSTMUnit" bottom: "c" bottom: "g" bottom: "k" top: "c1" top: "h1"')
    cont = np.array([[1.0, 0.0, 1.0, 0.5]])
    check_layer(unit, [rng.standard_normal((1, 4, 3)), rng.standard_normal((1, 4, 12)), cont],
                   xp=xp, check_bottoms=[0, 1])


def test_no_gradient_to_sequence_indicators():
    rng = np.random.default_rng(10)
    layer = recurrent("RNN")
    r = run(layer, inputs(rng))
    bottoms, tops = r.bottoms, r.tops
    bottoms[1].diff[...] = 5
    tops[0].diff[...] = 1
    layer.backward(np, tops, [True, True], bottoms)
    assert np.all(bottoms[1].diff == 0)


# -- helpers for either backend -----------------------------------------------------------------

def to_np(a):
    return a if isinstance(a, np.ndarray) else a.get()


def params_of_xp(layer):
    return [to_np(b.data) for b in layer.blobs]


def test_x_size_is_the_product_of_trailing_axes():
    assert recurrent("LSTM").input_shapes([(2, 3, 4, 5), (2, 3)]) == (math.prod((4, 5)), None)


@pytest.mark.parametrize("kind", ["LSTM", "RNN"])
def test_frozen_blobs_get_no_gradient(kind):
    """A blob whose diff nobody wants (lr_mult 0) is left alone; the others are unchanged."""
    rng = np.random.default_rng(11)
    arrays = inputs(rng, static=True)

    def param_diffs(wanted):
        layer = recurrent(kind, static=True)
        r = run(layer, arrays)
        bottoms, tops = r.bottoms, r.tops
        layer.param_propagate_down = wanted(len(layer.blobs))
        tops[0].diff[...] = 1
        layer.backward(np, tops, [True, False, True], bottoms)
        return [b.diff.copy() for b in layer.blobs]

    full = param_diffs(lambda n: [True] * n)
    frozen = param_diffs(lambda n: [j % 2 == 1 for j in range(n)])
    for j, (a, b) in enumerate(zip(full, frozen)):
        if j % 2:
            np.testing.assert_array_equal(a, b)
        else:
            assert np.all(b == 0) and np.any(a != 0)
