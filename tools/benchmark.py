#!/usr/bin/env python
"""CPU speed of netspec against PyTorch, measured in the same run with the same thread count.

  python tools/benchmark.py [--threads N] [--repeats R] [--only lenet|alexnet] [--profile]

Two workloads, as Caffe's examples define them:
  * LeNet training iteration: batch 64 of 1x28x28, forward + backward + SGD update
    (momentum 0.9, weight decay 5e-4, bias lr_mult 2);
  * AlexNet (Caffe's bvlc_alexnet: LRN, grouped convolutions, dropout) forward + backward,
    batch 10 of 3x227x227.
Prints the median time per iteration of each, and the ratio netspec / PyTorch (target: <= 1.5).
Needs PyTorch (pip install torch); not a test: timings are never asserted.
"""
import argparse
import os
import sys


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both (default: all cores)")
    p.add_argument("--repeats", type=int, default=0, help="timed iterations (default: 20 LeNet, 5 AlexNet)")
    p.add_argument("--only", choices=["lenet", "alexnet"], help="run one workload")
    p.add_argument("--profile", action="store_true", help="cProfile netspec's iterations (top 25 by tottime)")
    return p.parse_args()


ARGS = parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)      # before NumPy loads its BLAS

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

LENET = """
name: "LeNet"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 64 dim: 1 dim: 28 dim: 28 } shape { dim: 64 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 20 kernel_size: 5 stride: 1
    weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 50 kernel_size: 5 stride: 1
    weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
  param { lr_mult: 1 } param { lr_mult: 2 }
  inner_product_param { num_output: 500
    weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  param { lr_mult: 1 } param { lr_mult: 2 }
  inner_product_param { num_output: 10
    weight_filler { type: "xavier" } bias_filler { type: "constant" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
"""


def alexnet_prototxt():
    def conv(name, bottom, n, k, stride=1, pad=0, group=1, bias=0.0):
        return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" '
                f'param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }} '
                f'convolution_param {{ num_output: {n} kernel_size: {k} stride: {stride} pad: {pad} group: {group} '
                f'weight_filler {{ type: "gaussian" std: 0.01 }} bias_filler {{ type: "constant" value: {bias} }} }} }}\n')

    def relu(name, blob):
        return f'layer {{ name: "{name}" type: "ReLU" bottom: "{blob}" top: "{blob}" }}\n'

    def lrn(name, bottom):
        return (f'layer {{ name: "{name}" type: "LRN" bottom: "{bottom}" top: "{name}" '
                f'lrn_param {{ local_size: 5 alpha: 0.0001 beta: 0.75 }} }}\n')

    def pool(name, bottom):
        return (f'layer {{ name: "{name}" type: "Pooling" bottom: "{bottom}" top: "{name}" '
                f'pooling_param {{ pool: MAX kernel_size: 3 stride: 2 }} }}\n')

    def fc(name, bottom, n, std, bias):
        return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}" '
                f'param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }} '
                f'inner_product_param {{ num_output: {n} weight_filler {{ type: "gaussian" std: {std} }} '
                f'bias_filler {{ type: "constant" value: {bias} }} }} }}\n')

    def drop(name, blob):
        return (f'layer {{ name: "{name}" type: "Dropout" bottom: "{blob}" top: "{blob}" '
                f'dropout_param {{ dropout_ratio: 0.5 }} }}\n')

    return ('name: "AlexNet"\n'
            'layer { name: "data" type: "Input" top: "data" top: "label" '
            'input_param { shape { dim: 10 dim: 3 dim: 227 dim: 227 } shape { dim: 10 } } }\n'
            + conv("conv1", "data", 96, 11, stride=4) + relu("relu1", "conv1") + lrn("norm1", "conv1")
            + pool("pool1", "norm1")
            + conv("conv2", "pool1", 256, 5, pad=2, group=2, bias=0.1) + relu("relu2", "conv2")
            + lrn("norm2", "conv2") + pool("pool2", "norm2")
            + conv("conv3", "pool2", 384, 3, pad=1) + relu("relu3", "conv3")
            + conv("conv4", "conv3", 384, 3, pad=1, group=2, bias=0.1) + relu("relu4", "conv4")
            + conv("conv5", "conv4", 256, 3, pad=1, group=2, bias=0.1) + relu("relu5", "conv5")
            + pool("pool5", "conv5")
            + fc("fc6", "pool5", 4096, 0.005, 0.1) + relu("relu6", "fc6") + drop("drop6", "fc6")
            + fc("fc7", "fc6", 4096, 0.005, 0.1) + relu("relu7", "fc7") + drop("drop7", "fc7")
            + fc("fc8", "fc7", 1000, 0.01, 0.0)
            + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc8" bottom: "label" top: "loss" }\n')


# -- netspec ---------------------------------------------------------------------------------

def netspec_net(text):
    from google.protobuf import text_format

    import netspec
    from netspec import caffe_pb2
    param = text_format.Parse(text, caffe_pb2.NetParameter())
    return netspec.Net(param, phase="TRAIN", seed=0)


class SGD:
    """Caffe's SGD step: diff += decay*data; history = momentum*history + lr*diff; data -= history."""

    def __init__(self, net, lr=0.01, momentum=0.9, weight_decay=5e-4):
        self.net, self.lr, self.momentum, self.decay = net, lr, momentum, weight_decay
        self.history = [np.zeros_like(p.blob.data) for p in net.learnable_params]

    def step(self):
        for p, h in zip(self.net.learnable_params, self.history):
            if p.decay_mult:
                p.blob.diff += (self.decay * p.decay_mult) * p.blob.data
            h *= self.momentum
            h += (self.lr * p.lr_mult) * p.blob.diff
            p.blob.data -= h


def netspec_lenet(data, label):
    net = netspec_net(LENET)
    sgd = SGD(net)

    def iteration():
        net.clear_param_diffs()
        net.forward(data=data, label=label)
        net.backward()
        sgd.step()
    return iteration


def netspec_alexnet(data, label):
    net = netspec_net(alexnet_prototxt())

    def iteration():
        net.clear_param_diffs()
        net.forward(data=data, label=label)
        net.backward()
    return iteration


# -- PyTorch -------------------------------------------------------------------------------

def torch_lenet(data, label):
    import torch
    from torch import nn
    model = nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.MaxPool2d(2, 2, ceil_mode=True),
        nn.Conv2d(20, 50, 5), nn.MaxPool2d(2, 2, ceil_mode=True),
        nn.Flatten(), nn.Linear(800, 500), nn.ReLU(inplace=True), nn.Linear(500, 10))
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    opt = torch.optim.SGD([{"params": weights}, {"params": biases, "lr": 0.02}],
                          lr=0.01, momentum=0.9, weight_decay=5e-4)
    x, y = torch.from_numpy(data), torch.from_numpy(label.astype(np.int64))
    loss_fn = nn.CrossEntropyLoss()

    def iteration():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    return iteration


def torch_alexnet(data, label):
    import torch
    from torch import nn
    lrn = lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)  # noqa: E731  (Caffe's alpha/n form)
    model = nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(inplace=True), lrn(), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(inplace=True), lrn(), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Flatten(), nn.Linear(9216, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(4096, 1000))
    x, y = torch.from_numpy(data), torch.from_numpy(label.astype(np.int64))
    loss_fn = nn.CrossEntropyLoss()

    def iteration():
        model.zero_grad()
        loss_fn(model(x), y).backward()
    return iteration


# -- timing ----------------------------------------------------------------------------------

def median_times(ours, theirs, repeats, warmup=2):
    """Median seconds per iteration of each, timed alternately so that load from other
    processes falls on both alike."""
    for _ in range(warmup):
        ours()
        theirs()
    times = ([], [])
    for _ in range(repeats):
        for fn, out in zip((ours, theirs), times):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(times[0]), statistics.median(times[1])


def profile(iteration, repeats):
    import cProfile
    import pstats
    iteration()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(repeats):
        iteration()
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


WORKLOADS = {
    "lenet": ("LeNet train iteration (64x1x28x28, fwd+bwd+SGD)", (64, 1, 28, 28), 10, 20,
              netspec_lenet, torch_lenet),
    "alexnet": ("AlexNet forward+backward (10x3x227x227)", (10, 3, 227, 227), 1000, 5,
                netspec_alexnet, torch_alexnet),
}


def main():
    import torch
    torch.set_num_threads(ARGS.threads)
    print(f"threads: {ARGS.threads} (NumPy BLAS and torch), numpy {np.__version__}, torch {torch.__version__}")
    ratios = {}
    for key, (title, shape, classes, repeats, ours, theirs) in WORKLOADS.items():
        if ARGS.only and key != ARGS.only:
            continue
        repeats = ARGS.repeats or repeats
        rng = np.random.default_rng(0)
        data = rng.uniform(0, 1, size=shape).astype(np.float32)
        label = rng.integers(0, classes, size=shape[0]).astype(np.float32)
        mine = ours(data, label)
        if ARGS.profile:
            profile(mine, repeats)
        t_ours, t_torch = median_times(mine, theirs(data, label), repeats)
        ratios[key] = t_ours / t_torch
        print(f"{title}: netspec {1000 * t_ours:.1f} ms, torch {1000 * t_torch:.1f} ms, "
              f"ratio {ratios[key]:.2f}x (target <= 1.5x)")
    return 0 if all(r <= 1.5 for r in ratios.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
