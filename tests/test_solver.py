"""Solvers and lr policies against updates computed by hand (float64 references written here)."""
import math

import numpy as np
import pytest
from google.protobuf import text_format

from netspec import caffe_pb2
from netspec.backend import to_numpy
from netspec.blob import Blob
from netspec.errors import NetspecError
from netspec.solver import Solver, learning_rate, solver_type


class Slot:
    def __init__(self, data, lr_mult=1.0, decay_mult=1.0, xp=np):
        self.blob = Blob(xp.array(data, np.float64), xp.zeros(np.shape(data)))
        self.lr_mult, self.decay_mult = lr_mult, decay_mult


def solver_param(text):
    return text_format.Parse(text, caffe_pb2.SolverParameter())


def run(sp, starts, grads_of, iters, mults=None, xp=np):
    """Run the Solver for `iters` steps; grads_of(i, data) gives each parameter's gradient."""
    slots = [Slot(s, *(mults[i] if mults else (1.0, 1.0)), xp=xp) for i, s in enumerate(starts)]
    solver = Solver(sp, slots, xp)
    for _ in range(iters):
        for i, s in enumerate(slots):
            s.blob.diff[...] = grads_of(i, s.blob.data)
        solver.apply_update()
        solver.iter += 1
    return [s.blob.data for s in slots], solver


def quadratic(i, w):
    """Gradient of 0.5 * |w - target|^2 with a different target per parameter."""
    return w - (i + 1.5)


STARTS = [np.array([0.5, -1.0, 2.0]), np.array([[0.3, 0.0], [-0.7, 1.2]])]


# -- scalar cases worked out on paper ----------------------------------------------------------
def test_sgd_momentum_by_hand():
    sp = solver_param('base_lr: 0.1 lr_policy: "fixed" momentum: 0.9')
    # w0 = 1, gradient constant 0.5:  v1 = 0.05, w1 = 0.95;  v2 = 0.9*0.05 + 0.05 = 0.095, w2 = 0.855
    (w,), _ = run(sp, [np.array([1.0])], lambda i, w: np.array([0.5]), 2)
    assert w[0] == pytest.approx(0.855, abs=1e-7)


def test_weight_decay_lr_mult_decay_mult_by_hand():
    sp = solver_param('base_lr: 0.1 lr_policy: "fixed" weight_decay: 0.01')
    # one step: diff = g + 0.01 * decay_mult * w = 0.2 + 0.01*2*3 = 0.26; step = 0.1 * lr_mult(0.5) * 0.26 = 0.013
    (w,), _ = run(sp, [np.array([3.0])], lambda i, w: np.array([0.2]), 1, mults=[(0.5, 2.0)])
    assert w[0] == pytest.approx(3.0 - 0.013, abs=1e-7)


def test_l1_regularization_by_hand():
    sp = solver_param('base_lr: 1 lr_policy: "fixed" weight_decay: 0.1 regularization_type: "L1"')
    (w,), _ = run(sp, [np.array([2.0, -3.0, 0.0])], lambda i, w: np.zeros(3), 1)
    np.testing.assert_allclose(w, [1.9, -2.9, 0.0], atol=1e-7)


def test_clip_gradients_by_hand():
    sp = solver_param('base_lr: 1 lr_policy: "fixed" clip_gradients: 1')
    # gradients (3, 4) in two blobs: norm 5 > 1, scaled by 1/5 -> steps 0.6 and 0.8
    logs = []
    slots = [Slot([0.0]), Slot([0.0])]
    solver = Solver(sp, slots, log=logs.append)
    slots[0].blob.diff[...] = 3
    slots[1].blob.diff[...] = 4
    solver.apply_update()
    assert slots[0].blob.data[0] == pytest.approx(-0.6) and slots[1].blob.data[0] == pytest.approx(-0.8)
    assert "L2 norm 5 > 1" in logs[0]


def test_iter_size_normalizes_accumulated_diff():
    sp = solver_param('base_lr: 1 lr_policy: "fixed" iter_size: 4')
    (w,), _ = run(sp, [np.array([0.0])], lambda i, w: np.array([2.0]), 1)   # 2 accumulated over 4 passes
    assert w[0] == pytest.approx(-0.5)


def test_adam_first_step_by_hand():
    sp = solver_param('type: "Adam" base_lr: 0.001 lr_policy: "fixed" momentum: 0.9 momentum2: 0.999 delta: 1e-8')
    # t=1: m = 0.1 g, v = 0.001 g^2, correction = sqrt(0.001)/0.1; step = lr * g/(|g| + eps/...) ~= lr * sign(g)
    (w,), _ = run(sp, [np.array([1.0, 1.0])], lambda i, w: np.array([0.3, -2.0]), 1)
    m, v = 0.1 * np.array([0.3, -2.0]), 0.001 * np.array([0.09, 4.0])
    expected = 1.0 - 0.001 * (math.sqrt(0.001) / 0.1) * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(w, expected, rtol=1e-9)
    np.testing.assert_allclose(w, [0.999, 1.001], atol=1e-7)


# -- every rule against its formula over several iterations -------------------------------------
def reference(kind, sp, starts, iters):
    ws = [np.array(s, np.float64) for s in starts]
    h = [np.zeros_like(w) for w in ws]
    h2 = [np.zeros_like(w) for w in ws]
    for it in range(iters):
        lr = sp.base_lr
        for i, w in enumerate(ws):
            g = quadratic(i, w) + sp.weight_decay * w
            if kind == "SGD":
                h[i] = sp.momentum * h[i] + lr * g
                step = h[i]
            elif kind == "Nesterov":
                old = h[i].copy()
                h[i] = sp.momentum * h[i] + lr * g
                step = (1 + sp.momentum) * h[i] - sp.momentum * old
            elif kind == "AdaGrad":
                h[i] = h[i] + g ** 2
                step = lr * g / (np.sqrt(h[i]) + sp.delta)
            elif kind == "RMSProp":
                h[i] = sp.rms_decay * h[i] + (1 - sp.rms_decay) * g ** 2
                step = lr * g / (np.sqrt(h[i]) + sp.delta)
            elif kind == "AdaDelta":
                h[i] = sp.momentum * h[i] + (1 - sp.momentum) * g ** 2
                dx = g * np.sqrt((h2[i] + sp.delta) / (h[i] + sp.delta))
                h2[i] = sp.momentum * h2[i] + (1 - sp.momentum) * dx ** 2
                step = lr * dx
            elif kind == "Adam":
                b1, b2, t = sp.momentum, sp.momentum2, it + 1
                h[i] = b1 * h[i] + (1 - b1) * g
                h2[i] = b2 * h2[i] + (1 - b2) * g ** 2
                mhat, vhat = h[i] / (1 - b1 ** t), h2[i] / (1 - b2 ** t)
                step = lr * mhat / (np.sqrt(vhat) + sp.delta / math.sqrt(1 - b2 ** t))
            ws[i] = w - step
    return ws, h + (h2 if kind in ("AdaDelta", "Adam") else [])


RULE_FILES = {
    "SGD": 'type: "SGD" momentum: 0.9',
    "Nesterov": 'type: "Nesterov" momentum: 0.95',
    "AdaGrad": 'type: "AdaGrad" delta: 1e-6',
    "RMSProp": 'type: "RMSProp" rms_decay: 0.98 delta: 1e-6',
    "AdaDelta": 'type: "AdaDelta" momentum: 0.95 delta: 1e-6',
    "Adam": 'type: "Adam" momentum: 0.9 momentum2: 0.999 delta: 1e-8',
}


@pytest.mark.parametrize("kind", sorted(RULE_FILES))
def test_rule_matches_reference(kind, xp):
    sp = solver_param(RULE_FILES[kind] + ' base_lr: 0.05 lr_policy: "fixed" weight_decay: 0.001')
    got, solver = run(sp, STARTS, quadratic, 5, xp=xp)
    want, history = reference(kind, sp, STARTS, 5)
    for g, w in zip(got, want):
        np.testing.assert_allclose(to_numpy(g), w, rtol=1e-10, atol=1e-12)
    assert len(solver.history) == len(history)
    for g, w in zip(solver.history, history):
        np.testing.assert_allclose(to_numpy(g), w, rtol=1e-10, atol=1e-12)


def test_legacy_solver_type_maps_to_type():
    assert solver_type(solver_param("solver_type: NESTEROV")) == "Nesterov"
    assert solver_type(solver_param('type: "adam"')) == "Adam"
    with pytest.raises(NetspecError, match="did you mean"):
        solver_type(solver_param('type: "Adamm"'))


def test_adagrad_refuses_momentum():
    with pytest.raises(NetspecError, match="momentum"):
        Solver(solver_param('type: "AdaGrad" base_lr: 1 lr_policy: "fixed" momentum: 0.9'), [Slot([1.0])])


def test_rmsprop_refuses_rms_decay_of_one():
    # Caffe checks 0 <= rms_decay < 1: at 1 the mean square never takes in a gradient
    with pytest.raises(NetspecError, match=r"rms_decay must lie in \[0, 1\), found 1"):
        Solver(solver_param('type: "RMSProp" base_lr: 1 lr_policy: "fixed" rms_decay: 1'), [Slot([1.0])])
    Solver(solver_param('type: "RMSProp" base_lr: 1 lr_policy: "fixed" rms_decay: 0'), [Slot([1.0])])


# -- lr policies, by hand -------------------------------------------------------------------------
def rates(text, iters):
    sp = solver_param(text)
    out, step = [], 0
    for it in iters:
        rate, step = learning_rate(sp, it, step)
        out.append(rate)
    return out


def test_lr_fixed():
    assert rates('base_lr: 0.1 lr_policy: "fixed"', [0, 5000]) == pytest.approx([0.1, 0.1])


def test_lr_step():
    # floor(iter / 10) steps of gamma 0.5
    assert rates('base_lr: 1 lr_policy: "step" gamma: 0.5 stepsize: 10', [0, 9, 10, 25]) == \
        pytest.approx([1, 1, 0.5, 0.25])


def test_lr_exp():
    assert rates('base_lr: 2 lr_policy: "exp" gamma: 0.9', [0, 1, 3]) == pytest.approx([2, 1.8, 2 * 0.729])


def test_lr_inv():
    # LeNet's: 0.01 * (1 + 0.0001 * iter) ^ -0.75
    got = rates('base_lr: 0.01 lr_policy: "inv" gamma: 0.0001 power: 0.75', [0, 100, 10000])
    assert got == pytest.approx([0.01, 0.01 * 1.01 ** -0.75, 0.01 * 2 ** -0.75])
    assert got[1] == pytest.approx(0.00992565, abs=1e-8)     # the figure Caffe's LeNet log prints


def test_lr_multistep_steps_once_per_iteration():
    text = 'base_lr: 1 lr_policy: "multistep" gamma: 0.1 stepvalue: 3 stepvalue: 5'
    assert rates(text, range(7)) == pytest.approx([1, 1, 1, 0.1, 0.1, 0.01, 0.01])


def test_lr_poly():
    assert rates('base_lr: 1 lr_policy: "poly" power: 2 max_iter: 10', [0, 5, 10]) == pytest.approx([1, 0.25, 0])


def test_lr_sigmoid():
    got = rates('base_lr: 1 lr_policy: "sigmoid" gamma: 0.5 stepsize: 4', [0, 4, 8])
    assert got == pytest.approx([1 / (1 + math.exp(2)), 0.5, 1 / (1 + math.exp(-2))])


def test_unknown_or_incomplete_policy_is_a_clear_error():
    with pytest.raises(NetspecError, match="did you mean 'step'"):
        Solver(solver_param('base_lr: 1 lr_policy: "stepp"'), [Slot([1.0])])
    with pytest.raises(NetspecError, match="needs stepsize"):
        Solver(solver_param('base_lr: 1 lr_policy: "step" gamma: 0.1'), [Slot([1.0])])
    with pytest.raises(NetspecError, match="needs gamma >= 0, found -0.5"):      # Caffe's CHECK_GE(gamma, 0)
        Solver(solver_param('base_lr: 1 lr_policy: "step" stepsize: 2 gamma: -0.5'), [Slot([1.0])])
    notes = []
    Solver(solver_param('base_lr: 1 lr_policy: "inv" gamma: 0.1'), [Slot([1.0])], log=notes.append)
    assert notes == ["lr_policy 'inv' uses power, which the solver leaves unset (0 or none, as in Caffe)"]


def test_solver_state_round_trip():
    sp = solver_param('type: "Adam" base_lr: 0.01 lr_policy: "fixed" momentum: 0.9 momentum2: 0.999')
    _, solver = run(sp, STARTS, quadratic, 3)
    state = caffe_pb2.SolverState.FromString(solver.state("x.caffemodel").SerializeToString())
    assert state.iter == 3 and state.learned_net == "x.caffemodel" and len(state.history) == 4
    fresh = Solver(sp, [Slot(s) for s in STARTS])
    fresh.restore(state)
    assert fresh.iter == 3
    for a, b in zip(fresh.history, solver.history):
        np.testing.assert_allclose(a, b.astype(np.float32), rtol=1e-7)
