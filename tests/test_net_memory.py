"""Memory the executor saves without changing a number: Split tops that are their bottom's
data, a Scale that reuses BatchNorm's kept copy, activation diffs that share buffers in
training (netspec.memory), BatchNorm's backward without a full-size temporary."""
import numpy as np
import pytest

import netspec
from netspec import memory
from netspec.ops import norm as norm_ops

# A residual unit: conv -> BatchNorm -> Scale -> ReLU in place, a split into two branches,
# an Eltwise sum, then a classifier; "aux" is an output with no loss (its diff is never written).
RESIDUAL = """
name: "residual"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 4 dim: 3 dim: 6 dim: 6 } shape { dim: 4 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "scale" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "branch" type: "Convolution" bottom: "conv" top: "branch"
  convolution_param { num_output: 4 kernel_size: 1 weight_filler { type: "xavier" } } }
layer { name: "sum" type: "Eltwise" bottom: "conv" bottom: "branch" top: "sum" }
layer { name: "aux" type: "Pooling" bottom: "sum" top: "aux" pooling_param { pool: AVE global_pooling: true } }
layer { name: "ip" type: "InnerProduct" bottom: "sum" top: "ip"
  inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def _net(tmp_path, text=RESIDUAL, **kw):
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    return netspec.Net(str(path), phase="TRAIN", seed=3, **kw)


def _step(net):
    rng = np.random.default_rng(0)
    data = rng.standard_normal(net.blobs["data"].shape).astype(np.float32)
    label = rng.integers(0, 5, size=net.blobs["label"].shape[0]).astype(np.float32)
    net.clear_param_diffs()
    net.forward(data=data, label=label)
    net.backward()
    return float(net.blobs["loss"].data), {name: [b.diff.copy() for b in blobs] for name, blobs in net.params.items()}


def _splits(net):
    return [(n, layer) for n, layer in zip(net.nodes, net.layers) if layer.shares_data]


def test_split_tops_are_their_bottoms_data(tmp_path):
    net = _net(tmp_path)
    splits = _splits(net)
    assert len(splits) == 2                 # conv feeds relu's consumers twice, sum feeds aux and ip
    for node, _ in splits:
        source = net.blobs[node.bottoms[0]].data
        assert all(net.blobs[t].data is source for t in node.tops)
        assert len({id(net.blobs[t].diff) for t in node.tops}) == len(node.tops)     # each its own gradient
    net.reshape(data=(2, 3, 6, 6), label=(2,))                                       # and again after a reshape
    for node, _ in splits:
        assert all(net.blobs[t].data is net.blobs[node.bottoms[0]].data for t in node.tops)
        assert net.blobs[node.tops[0]].shape[0] == 2


def test_a_split_blob_cannot_be_written_in_place(tmp_path):
    # what lets Split's tops be its bottom's data: no layer may change one behind its siblings
    text = RESIDUAL.replace('layer { name: "sum"', 'layer { name: "tanh" type: "TanH" bottom: "conv" top: "conv" }\n'
                            'layer { name: "sum"')
    with pytest.raises(netspec.NetspecError, match="cannot be overwritten in place"):
        _net(tmp_path, text)


def test_scale_in_place_after_batchnorm_keeps_no_second_copy(tmp_path):
    net = _net(tmp_path)
    _step(net)
    bn, scale = (net.layers[net.layer_names.index(n)] for n in ("bn", "scale"))
    assert scale._saved_x is not None and np.shares_memory(scale._saved_x, bn._normalised)
    assert getattr(scale, "_own_x", None) is None


def test_scale_gradients_are_the_same_with_the_shared_copy(tmp_path, monkeypatch):
    shared = _step(_net(tmp_path))
    from netspec.layers.normalization import BatchNorm
    monkeypatch.setattr(BatchNorm, "kept_top", lambda self: None)       # Scale keeps its own copy
    alone = _step(_net(tmp_path))
    assert shared[0] == alone[0]
    for name in alone[1]:
        for a, b in zip(shared[1][name], alone[1][name]):
            np.testing.assert_array_equal(a, b)


def test_shared_diffs_give_the_same_loss_and_parameter_gradients(tmp_path):
    plain, shared_net = _net(tmp_path), _net(tmp_path, share_memory=True)
    owned = {id(b.diff) for b in plain.blobs.values()}
    assert len(owned) == len(plain.blobs)
    bases = [b.diff.base for b in shared_net.blobs.values() if b.diff.base is not None]
    assert len(bases) > len({id(b) for b in bases})         # some blobs do share a buffer
    for _ in range(2):                                      # the second pass starts from stale buffers
        a, b = _step(plain), _step(shared_net)
        assert a[0] == b[0]
        for name in a[1]:
            for x, y in zip(a[1][name], b[1][name]):
                np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    # the output without a loss keeps its own (never written) diff: zeros, as in Caffe
    assert shared_net.blobs["aux"].diff.base is None and not shared_net.blobs["aux"].diff.any()


class _Node:
    def __init__(self, bottoms, tops):
        self.bottoms, self.tops = bottoms, tops


class _Step:
    def __init__(self, bottoms, tops, down=None):
        self.node = _Node(bottoms, tops)
        self.propagate_down = down if down is not None else [True] * len(bottoms)
        self.needs_backward = True


def test_diff_spans_follow_backward_order():
    # a -> f -> b -> g -> c -> loss; backward visits loss, g, f
    steps = [_Step(["a"], ["b"]), _Step(["b"], ["c"]), _Step(["c"], ["loss"])]
    assert memory.diff_spans(steps, ["loss"]) == {"loss": (-1, 0), "c": (0, 1), "b": (1, 2), "a": (2, 2)}
    # a diff read before any write in the pass (its producer's top, no consumer writes it) is left out
    steps = [_Step(["a"], ["b", "unused"]), _Step(["b"], ["loss"])]
    assert "unused" not in memory.diff_spans(steps, ["loss"])
    # no propagate_down: never written, not planned
    steps = [_Step(["a", "label"], ["loss"], down=[True, False])]
    assert set(memory.diff_spans(steps, ["loss"])) == {"loss", "a"}


def test_share_buffers_never_puts_overlapping_spans_together():
    spans = {"loss": (-1, 0), "c": (0, 1), "b": (1, 2), "a": (2, 3), "z": (3, 4), "y": (5, 6)}
    sizes = {"loss": 1, "c": 10, "b": 10, "a": 40, "z": 10, "y": 40}
    groups = memory.share_buffers(spans, sizes)
    assert sorted(n for g in groups for n in g) == sorted(spans)
    for g in groups:
        for i, m in enumerate(g):
            for n in g[i + 1:]:
                assert spans[m][1] < spans[n][0] or spans[n][1] < spans[m][0], (m, n)
    assert len(groups) == 2


@pytest.mark.parametrize("block_bytes", [4 << 20, 2 * 3 * 10 * 8])      # one block; blocks of 2 items
def test_batch_norm_backward_in_blocks(monkeypatch, block_bytes):
    monkeypatch.setattr(norm_ops, "BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(4)
    dy, y = rng.standard_normal((5, 3, 10)), rng.standard_normal((5, 3, 10))
    std = rng.uniform(0.5, 2, size=(3, 1))
    expected = (dy - dy.mean(axis=(0, 2))[:, None] - (dy * y).mean(axis=(0, 2))[:, None] * y) / std
    dx = np.empty_like(dy)
    norm_ops.batch_norm_backward(np, dy, y, std, dx)
    np.testing.assert_allclose(dx, expected)
    norm_ops.batch_norm_backward(np, dy, y, std, dy)          # in place
    np.testing.assert_allclose(dy, expected)


def test_the_trainer_shares_diffs_and_pycaffe_does_not(tmp_path):
    from netspec.pycaffe import pycaffe
    from netspec.training import Trainer, read_solver
    (tmp_path / "net.prototxt").write_text(RESIDUAL)
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{tmp_path / "net.prototxt"}"\nbase_lr: 0.01\nmax_iter: 1\nlr_policy: "fixed"\nsnapshot_prefix: "s"\n')
    trainer = Trainer(read_solver(str(solver)), solver_path=str(solver), seed=1)
    assert trainer.net.share_memory
    assert not pycaffe.SGDSolver(str(solver)).net._net.share_memory


TWO_SUMS = """
name: "two_sums"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 2 dim: 3 dim: 5 dim: 5 } shape { dim: 2 } } }
layer { name: "a" type: "Convolution" bottom: "data" top: "a" convolution_param { num_output: 4 kernel_size: 1 weight_filler { type: "xavier" } } }
layer { name: "b" type: "Convolution" bottom: "data" top: "b" convolution_param { num_output: 4 kernel_size: 1 weight_filler { type: "xavier" } } }
layer { name: "bn" type: "BatchNorm" bottom: "b" top: "b" }
layer { name: "sc" type: "Scale" bottom: "b" top: "b" scale_param { bias_term: true } }
layer { name: "s1" type: "Eltwise" bottom: "a" bottom: "b" top: "s1" }
layer { name: "c" type: "Convolution" bottom: "s1" top: "c" convolution_param { num_output: 4 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } } }
layer { name: "d" type: "Convolution" bottom: "s1" top: "d" convolution_param { num_output: 4 kernel_size: 1 weight_filler { type: "xavier" } } }
layer { name: "s2" type: "Eltwise" bottom: "c" bottom: "d" top: "s2" }
layer { name: "relu" type: "ReLU" bottom: "s2" top: "s2" }
layer { name: "ip" type: "InnerProduct" bottom: "s2" top: "ip" inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def test_data_no_backward_reads_shares_memory_with_the_same_numbers(tmp_path):
    # a, b (after BatchNorm and Scale in place) feed only a sum; c and d likewise: their data is
    # dead once the sum has it, so c and d can reuse a's and b's buffers
    spans = memory.data_spans(_net(tmp_path, TWO_SUMS).steps, keep={"data", "label", "loss"})
    assert set(spans) == {"a", "b", "c", "d"}
    plain, shared = _net(tmp_path, TWO_SUMS), _net(tmp_path, TWO_SUMS, share_memory=True)
    bases = [id(shared.blobs[n].data.base) for n in "abcd" if shared.blobs[n].data.base is not None]
    assert len(bases) == 4 and len(set(bases)) == 2                     # two buffers for four blobs
    for name in ("s1", "s2", "ip"):                                     # what backward reads keeps its own
        assert shared.blobs[name].data.base is None
    for _ in range(2):
        a, b = _step(plain), _step(shared)
        assert a[0] == b[0]
        for name in a[1]:
            for x, y in zip(a[1][name], b[1][name]):
                np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)

