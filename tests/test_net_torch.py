"""A whole net against an independent reference: PyTorch on the CPU, in float64.

Loss, the input's gradient and every parameter's gradient of a small AlexNet-like net
(grouped, padded, strided convolution; in-place ReLU; LRN; max pooling that rounds up; two
InnerProducts; softmax loss) must agree. Skipped where PyTorch is not installed.
"""
import numpy as np
import pytest

from netspec import Net

torch = pytest.importorskip("torch")
F = torch.nn.functional

NET = """
name: "mini_alexnet"
force_backward: true
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 2 dim: 4 dim: 11 dim: 11 } shape { dim: 2 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 6 kernel_size: 3 stride: 2 pad: 1 group: 2
    weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "uniform" min: -0.2 max: 0.2 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "norm1" type: "LRN" bottom: "conv1" top: "norm1"
  lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 } }
layer { name: "pool1" type: "Pooling" bottom: "norm1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "fc1" type: "InnerProduct" bottom: "pool1" top: "fc1"
  inner_product_param { num_output: 7 weight_filler { type: "xavier" } bias_filler { type: "gaussian" std: 0.1 } } }
layer { name: "relu2" type: "ReLU" bottom: "fc1" top: "fc1" }
layer { name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2"
  inner_product_param { num_output: 5 weight_filler { type: "xavier" } bias_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc2" bottom: "label" top: "loss" }
"""


def torch_reference(params, data, label):
    t = {name: [torch.tensor(np.array(b.data), requires_grad=True) for b in blobs] for name, blobs in params.items()}
    x = torch.tensor(data, requires_grad=True)
    y = F.relu(F.conv2d(x, *t["conv1"], stride=2, padding=1, groups=2))
    y = F.local_response_norm(y, 3, alpha=0.5, beta=0.75, k=2.0)
    y = F.max_pool2d(y, 3, 2, ceil_mode=True)
    y = F.relu(F.linear(y.flatten(1), *t["fc1"]))
    loss = F.cross_entropy(F.linear(y, *t["fc2"]), torch.tensor(label, dtype=torch.int64))
    loss.backward()
    return loss.item(), x.grad.numpy(), {n: [p.grad.numpy() for p in ps] for n, ps in t.items()}


def test_mini_alexnet_matches_pytorch(tmp_path):
    path = tmp_path / "mini.prototxt"
    path.write_text(NET)
    net = Net(str(path), phase="TRAIN", seed=7, dtype="float64")
    rng = np.random.default_rng(0)
    data, label = rng.standard_normal((2, 4, 11, 11)), np.array([3.0, 1.0])
    out = net.forward(data=data, label=label)
    assert net.blobs["pool1"].shape == (2, 6, 3, 3)       # 11 -> 6 (conv) -> 3 (pool, rounding up)
    net.clear_param_diffs()
    grads = net.backward()
    loss, dx, dparams = torch_reference(net.params, data, label)
    np.testing.assert_allclose(float(out["loss"]), loss, rtol=1e-10)
    np.testing.assert_allclose(grads["data"], dx, rtol=1e-8, atol=1e-12)
    for name, expected in dparams.items():
        for j, (blob, want) in enumerate(zip(net.params[name], expected)):
            np.testing.assert_allclose(blob.diff, want, rtol=1e-8, atol=1e-12, err_msg=f"{name} param {j}")
