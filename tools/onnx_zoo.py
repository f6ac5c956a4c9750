#!/usr/bin/env python3
"""Export zoo nets to ONNX and measure how closely onnxruntime reproduces netspec.

    python tools/onnx_zoo.py                     # the default list below
    python tools/onnx_zoo.py models/vgg16/deploy.prototxt --batch 2
    python tools/onnx_zoo.py models/lenet/deploy.prototxt --weights lenet.caffemodel --data images.npy

Without --weights each net gets random weights (He-scaled, BatchNorm statistics calibrated
on the input so activations keep their scale). For every net it prints the largest
difference of each output relative to that output's largest magnitude, the same for the
logits feeding a final Softmax, and the fraction of the batch whose top-1 class agrees.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from netspec import Net                         # noqa: E402
from netspec.backend import to_numpy            # noqa: E402
from netspec.onnx import to_onnx                # noqa: E402

DEFAULT = ["models/lenet/deploy.prototxt", "models/alexnet/deploy.prototxt", "models/caffenet/deploy.prototxt",
           "models/googlenet/deploy.prototxt", "models/vgg16/deploy.prototxt", "models/resnet-50/deploy.prototxt",
           "tests/nets/squeezenet_v1.1.prototxt", "tests/nets/mobilenet_v1.prototxt",
           "tests/nets/densenet_small.prototxt"]


def randomize(net, feeds, seed=0):
    """He-scaled weights, small biases, scales and slopes around 1; a layer whose blobs are
    statistics (BatchNorm) gets its input's mean and variance (so the normalised values have
    unit scale), layer by layer in one pass."""
    rng = np.random.default_rng(seed)
    net.forward(end=net.layer_names[0], **feeds)      # feeds the inputs; the layers run below
    for step in net.steps:
        layer = step.layer
        if layer.learnable is not None and not any(layer.learnable):
            x = to_numpy(step.bottoms[0].data)
            axes = (0,) + tuple(range(2, x.ndim))
            layer.blobs[0].data[...] = x.mean(axis=axes)
            layer.blobs[1].data[...] = x.var(axis=axes)
            layer.blobs[2].data[...] = 1
        else:
            for j, blob in enumerate(layer.blobs):
                shape = blob.shape
                if len(shape) >= 2:
                    value = rng.standard_normal(shape) * np.sqrt(2.0 / int(np.prod(shape[1:])))
                elif j == 0:        # a 1-d first blob: a scale or a slope, not a bias
                    value = rng.uniform(0.25, 1.5, shape)
                else:
                    value = rng.standard_normal(shape) * 0.1
                blob.data[...] = value
        if not step.feeds_only and step.node.bottoms:
            net.run_step(step)


def deploy(path):
    """The net without its labels: a data layer keeps its first top (fed as an input), and the
    layers that read a label (losses, accuracies), and what they feed, are dropped."""
    from netspec.graph import load_source
    from netspec.layers import layer_class
    param = load_source(path).param
    gone = set()
    for lp in param.layer:
        if not lp.bottom and not layer_class(lp.type).is_input and len(lp.top) > 1:
            gone |= set(lp.top[1:])
            del lp.top[1:]
            for field in ("shape", "data_filler", "num", "channels", "height", "width"):
                values = getattr(lp.dummy_data_param, field)
                if len(values) > 1:
                    del values[1:]
    kept = []
    for lp in param.layer:
        if set(lp.bottom) & gone:
            gone |= set(lp.top)
        else:
            kept.append(lp)
    del param.layer[:]
    param.layer.extend(kept)
    return param


def logits_name(net):
    """What a final parameter-free layer of one bottom of the same shape (a Softmax) reads."""
    for layer, node in zip(net.layers, net.nodes):
        if node.tops and node.tops[0] in net.outputs and len(node.bottoms) == 1 and not layer.blobs \
                and net.shapes[node.bottoms[0]] == net.shapes[node.tops[0]]:
            return node.bottoms[0]
    return None


def measure(path, batch=None, weights=None, data=None, seed=0, size=None):
    import onnx
    import onnxruntime as ort
    model_param = deploy(path)
    probe = Net(model_param)
    inputs = {}
    for n in probe.feedable:
        shape = list(probe.blobs[n].shape)
        if batch:
            shape[0] = batch
        if size and len(shape) == 4:
            shape[2:] = [size, size]
        inputs[n] = tuple(shape)
    net = Net(model_param, weights=weights, inputs=inputs, seed=seed)
    rng = np.random.default_rng(seed)
    if data is not None:
        feeds = {net.inputs[0]: data.astype(np.float32)}
    else:
        feeds = {n: rng.standard_normal(s).astype(np.float32) for n, s in inputs.items()}
    if not weights:
        randomize(net, feeds, seed)
    t = time.perf_counter()
    model = to_onnx(net)
    export_s = time.perf_counter() - t
    logits = logits_name(net)
    extra = [logits] if logits else []
    for name in extra:
        model.graph.output.append(onnx.ValueInfoProto(name=name))
    expect = {k: v.copy() for k, v in net.forward(blobs=extra, **feeds).items()}
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(names, feeds)))
    rows = []
    for name in list(net.outputs) + extra:
        a, b = expect[name], got[name].reshape(expect[name].shape)
        rel = float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30))
        top1 = float(np.mean(a.reshape(len(a), -1).argmax(1) == b.reshape(len(b), -1).argmax(1)))
        rows.append((name, a.shape, rel, top1))
    return rows, len(model.graph.node), export_s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("nets", nargs="*", default=DEFAULT)
    ap.add_argument("--batch", type=int, default=4, help="batch size fed (default 4)")
    ap.add_argument("--weights", help="weights for the (single) net instead of random ones")
    ap.add_argument("--data", help="a .npy of inputs (N, C, H, W) instead of random normal ones")
    ap.add_argument("--size", type=int, help="feed H = W = SIZE instead of the net's own input size")
    args = ap.parse_args(argv)
    data = np.load(args.data) if args.data else None
    batch = len(data) if data is not None else args.batch
    print(f"{'net':<40} {'blob':<12} {'shape':<18} {'max|onnx-netspec|/max|netspec|':>31} {'top-1 agree':>12}")
    worst = 0.0
    for path in args.nets:
        rows, nodes, export_s = measure(path, batch, args.weights, data, size=args.size)
        for name, shape, rel, top1 in rows:
            worst = max(worst, rel)
            print(f"{path:<40} {name:<12} {'x'.join(map(str, shape)):<18} {rel:31.2e} {top1:12.0%}")
        print(f"{'':<40} ({nodes} ONNX nodes, exported in {export_s:.1f} s)")
    print(f"worst relative difference: {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
