"""The executor's steady state allocates no workspace: after the first iterations every
scratch buffer and every buffer a layer keeps for backward is reused."""
import numpy as np
from google.protobuf import text_format

import netspec
from netspec import caffe_pb2
from netspec.ops import workspace

NET = """
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 4 dim: 2 dim: 12 dim: 12 } shape { dim: 4 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "sc1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "pool2" type: "Pooling" bottom: "pool1" top: "pool2"
  pooling_param { pool: MAX kernel_size: 3 stride: 1 pad: 1 } }
layer { name: "wide" type: "Convolution" bottom: "data" top: "wide"
  convolution_param { num_output: 3 kernel_size: 1 weight_filler { type: "xavier" } } }
layer { name: "conv2" type: "Convolution" bottom: "pool2" top: "conv2"
  convolution_param { num_output: 5 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "ip" type: "InnerProduct" bottom: "conv2" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "ipw" type: "InnerProduct" bottom: "wide" top: "ipw"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "sum" type: "Eltwise" bottom: "ip" bottom: "ipw" top: "sum" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "sum" bottom: "label" top: "loss" }
"""


def kept_buffers(net):
    """Where the arrays that layers keep between forward and backward hold their values."""
    kept = []
    for layer in net.layers:
        state = getattr(layer, "_state", None)
        if isinstance(state, dict):
            kept += list(state.get("cols", {}).values())
        kept += [getattr(layer, name) for name in ("_normalised", "_saved_x") if hasattr(layer, name)]
    return [a.__array_interface__["data"][0] for a in kept if a is not None]


def test_training_iterations_allocate_no_workspace_after_the_first():
    net = netspec.Net(text_format.Parse(NET, caffe_pb2.NetParameter()), phase="TRAIN", seed=0)
    rng = np.random.default_rng(0)
    data = rng.standard_normal((4, 2, 12, 12)).astype(np.float32)
    label = np.array([0, 1, 2, 1], dtype=np.float32)

    def iteration():
        net.clear_param_diffs()
        net.forward(data=data, label=label)
        net.backward()

    iteration()
    iteration()
    before, kept = workspace.allocations(), kept_buffers(net)
    assert before > 0 and len(kept) >= 4            # the net uses scratch and keeps buffers
    for _ in range(3):
        iteration()
    assert workspace.allocations() == before
    assert kept_buffers(net) == kept


def _run(threads, monkeypatch, iterations):
    """Loss and parameter gradients after `iterations`, with work split over `threads`."""
    from netspec.ops import threads as threads_module
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", str(threads))
    monkeypatch.setattr(threads_module, "MIN_BYTES", 0)        # split even this small net's work
    net = netspec.Net(text_format.Parse(NET, caffe_pb2.NetParameter()), phase="TRAIN", seed=0)
    rng = np.random.default_rng(0)
    data = rng.standard_normal((4, 2, 12, 12)).astype(np.float32)
    label = np.array([0, 1, 2, 1], dtype=np.float32)
    counts = []
    for _ in range(iterations):
        net.clear_param_diffs()
        net.forward(data=data, label=label)
        net.backward()
        counts.append(workspace.allocations())
    return float(net.blobs["loss"].data), {k: [b.diff.copy() for b in v] for k, v in net.params.items()}, counts


def test_work_split_over_threads_gives_the_same_numbers_and_allocates_nothing_later(monkeypatch):
    loss1, grads1, _ = _run(1, monkeypatch, 2)
    from netspec.ops import threads as threads_module
    monkeypatch.setattr(threads_module, "_pool_size", 0)
    loss3, grads3, counts = _run(3, monkeypatch, 6)
    assert threads_module._pool_size == 2                      # work was split over a pool
    # work split from inside the pool runs there, in order (no thread waits on its own pool)
    done = []
    threads_module.run_blocks(lambda i: threads_module.run_blocks(done.append, [(i, ), (i + 10,)]), [(1,), (2,), (3,)])
    assert sorted(done) == [1, 2, 3, 11, 12, 13]
    assert counts[2:] == [counts[1]] * 4            # each part keeps its lane's buffers
    assert loss3 == loss1
    for name in grads1:
        for a, b in zip(grads1[name], grads3[name]):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
