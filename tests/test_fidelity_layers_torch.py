"""Layers against PyTorch (CPU) as an independent reference, where torch has the same op:
forward values and, through autograd, the gradients our backward writes. Caffe's
conventions are mapped onto torch's explicitly (gate order, normalization, running stats)."""
import numpy as np
import pytest

from harness import make_layer, run
from netspec import caffe_pb2

torch = pytest.importorskip("torch")
F = torch.nn.functional


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def forward_backward(layer, bottoms, params=None, top_diffs=None):
    """Forward, then backward to bottom 0 with the given top diffs (default: 1 for the
    loss top); returns (top arrays, bottom diffs, param diffs)."""
    r = run(layer, bottoms, params=params)
    dx = r.backward(top_diffs or [1.0], [True] + [False] * (len(bottoms) - 1))
    return r.y, dx, r.param_diffs


def leaf(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def close(ours, theirs, tol=1e-10):
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=tol, atol=tol)


# -- Softmax ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [1, -1])
def test_softmax_matches_torch(axis):
    x, dy = randn(2, 3, 2, 4), randn(2, 3, 2, 4, seed=1)
    (y,), (dx,), _ = forward_backward(make_layer(f"type: 'Softmax' softmax_param {{ axis: {axis} }}"), [x], top_diffs=[dy])
    tx = leaf(x)
    ty = torch.softmax(tx, dim=axis)
    ty.backward(torch.tensor(dy))
    close(y, ty)
    close(dx, tx.grad)


# -- SoftmaxWithLoss: cross-entropy with ignore_index, VALID and BATCH_SIZE normalization ---------------------
@pytest.mark.parametrize("mode, reduce", [("VALID", "mean"), ("BATCH_SIZE", "per_item"), ("NONE", "sum")])
def test_softmax_loss_matches_torch_cross_entropy(mode, reduce):
    x = randn(3, 4, 2, 2)
    labels = np.random.default_rng(2).integers(0, 4, (3, 2, 2)).astype(float)
    labels[0, 0, 1] = labels[2, 1, 0] = 255          # ignored positions
    layer = make_layer(f"type: 'SoftmaxWithLoss' loss_param {{ ignore_label: 255 normalization: {mode} }}")
    (loss,), (dx, _), _ = forward_backward(layer, [x, labels])
    tx = leaf(x)
    target = torch.tensor(labels, dtype=torch.long)
    if reduce == "mean":
        ref = F.cross_entropy(tx, target, ignore_index=255)          # mean over the non-ignored
    else:
        ref = F.cross_entropy(tx, target, ignore_index=255, reduction="sum")
        ref = ref / x.shape[0] if reduce == "per_item" else ref
    ref.backward()
    close(loss, ref)
    close(dx, tx.grad)


# -- SigmoidCrossEntropyLoss: BCE-with-logits, summed, / N by default -------------------------------------------
def test_sigmoid_cross_entropy_matches_torch():
    x = randn(4, 3) * 20                               # large logits: the stable form must hold
    t = np.random.default_rng(3).uniform(0, 1, (4, 3)).round()
    (loss,), (dx, _), _ = forward_backward(make_layer("type: 'SigmoidCrossEntropyLoss'"), [x, t])
    tx = leaf(x)
    ref = F.binary_cross_entropy_with_logits(tx, torch.tensor(t), reduction="sum") / x.shape[0]
    ref.backward()
    close(loss, ref)
    close(dx, tx.grad)


# -- BatchNorm: the training step, the running statistics, then the TEST-phase use of them -----------------
def test_batch_norm_training_and_running_stats_match_torch():
    maf, eps = 0.875, 2.0 ** -10              # exact in the float32 fields of the schema
    text = f"type: 'BatchNorm' batch_norm_param {{ moving_average_fraction: {maf} eps: {eps} }}"
    train = make_layer(text, caffe_pb2.TRAIN)
    params = [np.zeros(3), np.zeros(3), np.zeros(1)]
    running_mean, running_var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    factor = 0.0
    for step in range(3):
        x, dy = randn(4, 3, 2, 2, seed=10 + step) * 2 + 1, randn(4, 3, 2, 2, seed=20 + step)
        (y,), (dx,), _ = forward_backward(train, [x], params=params, top_diffs=[dy])
        params = [b.data.copy() for b in train.blobs]
        # Caffe's blobs are sums weighted by maf; their ratio to the factor is an average that
        # torch reaches with momentum 1 / factor (and Bessel's correction in both)
        factor = factor * maf + 1
        tx = leaf(x)
        ty = F.batch_norm(tx, running_mean, running_var, training=True, momentum=1 / factor, eps=eps)
        ty.backward(torch.tensor(dy))
        close(y, ty)
        close(dx, tx.grad, tol=1e-9)
        np.testing.assert_allclose(params[2], [factor])
        close(params[0] / factor, running_mean)
        close(params[1] / factor, running_var)
    test = make_layer(text, caffe_pb2.TEST)              # use_global_stats defaults to true in TEST
    x = randn(2, 3, 2, 2, seed=30)
    (y,), _, _ = forward_backward(test, [x], params=params, top_diffs=[np.zeros_like(x)])
    close(y, F.batch_norm(torch.tensor(x), running_mean, running_var, training=False, eps=eps))


# -- LSTM: Caffe's gate rows are i, f, o, g; torch's are i, f, g, o ---------------------------------------
def swap_gates(w, hidden):
    """Caffe's gate blocks (i, f, o, g) <-> torch's (i, f, g, o): swapping the last two
    blocks converts either way."""
    i, f, a, b = (w[k * hidden:(k + 1) * hidden] for k in range(4))
    return np.concatenate([i, f, b, a])


def torch_lstm(x, w_xc, b_c, w_hc, hidden, h0=None, c0=None):
    lstm = torch.nn.LSTM(x.shape[-1], hidden, dtype=torch.float64)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.tensor(swap_gates(w_xc, hidden)))
        lstm.weight_hh_l0.copy_(torch.tensor(swap_gates(w_hc, hidden)))
        lstm.bias_ih_l0.copy_(torch.tensor(swap_gates(b_c, hidden)))
        lstm.bias_hh_l0.zero_()
    return lstm


def test_lstm_matches_torch_including_a_reset_by_cont():
    steps, streams, dim, hidden = 5, 2, 3, 4
    x, dy = randn(steps, streams, dim), randn(steps, streams, hidden, seed=1)
    cont = np.ones((steps, streams))
    cont[0] = 0
    cont[3, 1] = 0                                   # stream 1 starts a new sequence at t = 3
    w_xc, b_c, w_hc = randn(4 * hidden, dim, seed=2), randn(4 * hidden, seed=3), randn(4 * hidden, hidden, seed=4)
    layer = make_layer(f"type: 'LSTM' recurrent_param {{ num_output: {hidden} }}")
    (h,), (dx, _), (dw_xc, db_c, dw_hc) = forward_backward(layer, [x, cont], params=[w_xc, b_c, w_hc], top_diffs=[dy])

    lstm = torch_lstm(x, w_xc, b_c, w_hc, hidden)
    tx = leaf(x)
    # stream 0 is one sequence; stream 1 is two, run separately from zero states
    pieces = [(slice(0, steps), 0), (slice(0, 3), 1), (slice(3, steps), 1)]
    out = torch.zeros(steps, streams, hidden, dtype=torch.float64)
    for rows, s in pieces:
        y, _ = lstm(tx[rows, s:s + 1])
        out = out.index_put((torch.arange(steps)[rows], torch.tensor([s])), y[:, 0])
    out.backward(torch.tensor(dy))
    close(h, out)
    close(dx, tx.grad)
    close(dw_xc, torch.tensor(swap_gates(lstm.weight_ih_l0.grad.numpy(), hidden)))
    close(db_c, torch.tensor(swap_gates(lstm.bias_ih_l0.grad.numpy(), hidden)))
    close(dw_hc, torch.tensor(swap_gates(lstm.weight_hh_l0.grad.numpy(), hidden)))


def test_lstm_exposed_initial_state_matches_torch():
    steps, streams, dim, hidden = 3, 2, 2, 3
    x = randn(steps, streams, dim)
    h0, c0 = randn(1, streams, hidden, seed=5), randn(1, streams, hidden, seed=6)
    w_xc, b_c, w_hc = randn(4 * hidden, dim, seed=2), randn(4 * hidden, seed=3), randn(4 * hidden, hidden, seed=4)
    layer = make_layer(f"type: 'LSTM' recurrent_param {{ num_output: {hidden} expose_hidden: true }}")
    tops = run(layer, [x, np.ones((steps, streams)), h0, c0], params=[w_xc, b_c, w_hc]).y
    y, (hT, cT) = torch_lstm(x, w_xc, b_c, w_hc, hidden)(torch.tensor(x), (torch.tensor(h0), torch.tensor(c0)))
    close(tops[0], y)
    close(tops[1], hT)
    close(tops[2], cT)


# -- RNN: torch's Elman recurrence gives h; Caffe's top is o = tanh(W_ho h + b_o) ---------------------------
def test_rnn_matches_torch():
    steps, streams, dim, hidden = 4, 2, 3, 3
    x, dy = randn(steps, streams, dim), randn(steps, streams, hidden, seed=1)
    cont = np.ones((steps, streams))
    cont[0] = 0
    params = [randn(hidden, dim, seed=2), randn(hidden, seed=3), randn(hidden, hidden, seed=4),
              randn(hidden, hidden, seed=5), randn(hidden, seed=6)]          # W_xh, b_h, W_hh, W_ho, b_o
    layer = make_layer(f"type: 'RNN' recurrent_param {{ num_output: {hidden} }}")
    (o,), (dx, _), param_diffs = forward_backward(layer, [x, cont], params=params, top_diffs=[dy])

    rnn = torch.nn.RNN(dim, hidden, dtype=torch.float64)
    w_ho, b_o = leaf(params[3]), leaf(params[4])
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.tensor(params[0]))
        rnn.bias_ih_l0.copy_(torch.tensor(params[1]))
        rnn.weight_hh_l0.copy_(torch.tensor(params[2]))
        rnn.bias_hh_l0.zero_()
    tx = leaf(x)
    h, _ = rnn(tx)
    out = torch.tanh(h @ w_ho.T + b_o)
    out.backward(torch.tensor(dy))
    close(o, out)
    close(dx, tx.grad)
    for ours, theirs in zip(param_diffs, [rnn.weight_ih_l0.grad, rnn.bias_ih_l0.grad,
                                          rnn.weight_hh_l0.grad, w_ho.grad, b_o.grad]):
        close(ours, theirs)


# -- InnerProduct: y = x W^T + b over the axes from `axis` on; transpose stores W as (K, N) ------------------
@pytest.mark.parametrize("transpose", [False, True])
def test_inner_product_matches_torch_linear(transpose):
    x, dy = randn(2, 3, 2, 2), randn(2, 3, 5, seed=1)          # axis 2: K = 2 * 2, 5 outputs
    w = randn(4, 5, seed=2) if transpose else randn(5, 4, seed=2)
    b = randn(5, seed=3)
    layer = make_layer(f"type: 'InnerProduct' inner_product_param {{ num_output: 5 axis: 2 "
                       f"transpose: {str(transpose).lower()} }}")
    (y,), (dx,), (dw, db) = forward_backward(layer, [x], params=[w, b], top_diffs=[dy])
    tx, tw, tb = leaf(x), leaf(w), leaf(b)
    ty = F.linear(tx.reshape(2, 3, 4), tw.T if transpose else tw, tb)
    ty.backward(torch.tensor(dy))
    close(y, ty)
    close(dx, tx.grad)
    close(dw, tw.grad)
    close(db, tb.grad)
