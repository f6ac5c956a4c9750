#!/usr/bin/env python
"""CPU speed of netspec against PyTorch, each framework in a process of its own.

  python tools/benchmark.py [--threads 2,1] [--rounds 3] [--iters N] [--only lenet,resnet50] [--quick]
  python tools/benchmark.py --only alexnet --threads 2 --profile | --products

Every measurement is a fresh process that builds one net, warms up, and times `--iters`
iterations; netspec and PyTorch processes alternate (the order swaps every round), so that
neither framework's idle BLAS threads take the cores from the other and machine load falls
on both alike. Printed per net: the median over rounds of each process's median iteration,
the spread [min-max] over rounds, and the ratio netspec / PyTorch with its target.

Workloads (the PyTorch twin is built from the same checked graph, see benchmark_torch.py):
  lenet      LeNet training step: batch 64 of 1x28x28, forward + backward + SGD update
  alexnet    Caffe's bvlc_alexnet (LRN, groups, dropout) forward + backward, batch 10, 227x227
  resnet50   models/resnet-50 deploy net with a SoftmaxWithLoss, forward + backward, batch 8
  googlenet  models/googlenet deploy net with a SoftmaxWithLoss, forward + backward, batch 8
Also: `netspec train --example` throughput (LeNet, images/s, start-up excluded) and the peak
RSS of each training-step process. Needs PyTorch; timings are never asserted anywhere.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# name: (title, batch, iterations, target ratio)
NETS = {
    "lenet": ("LeNet train step (64x1x28x28, fwd+bwd+SGD)", 64, 30, 1.0),
    "alexnet": ("AlexNet fwd+bwd (10x3x227x227)", 10, 4, 0.9),
    "resnet50": ("ResNet-50 fwd+bwd (8x3x224x224)", 8, 3, 1.0),     # 3: a median, not a mean of two
    "googlenet": ("GoogLeNet fwd+bwd (8x3x224x224)", 8, 3, 1.0),
}

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


def net_param(name):
    """The NetParameter of a workload, with an Input of its batch size and a loss."""
    from google.protobuf import text_format

    from netspec import caffe_pb2
    if name == "lenet":
        return text_format.Parse(LENET, caffe_pb2.NetParameter())
    if name == "alexnet":
        return text_format.Parse(alexnet_prototxt(), caffe_pb2.NetParameter())
    folder = {"resnet50": "resnet-50", "googlenet": "googlenet"}[name]
    with open(os.path.join(ROOT, "models", folder, "deploy.prototxt")) as f:
        param = text_format.Parse(f.read(), caffe_pb2.NetParameter())
    batch = NETS[name][1]
    for lp in param.layer:
        if lp.type == "Input":          # data (N, 3, 224, 224) and a label (N,)
            lp.input_param.shape[0].dim[0] = batch
            lp.top.append("label")
            lp.input_param.shape.add().dim.append(batch)
        elif lp.type == "Softmax":      # the deploy net's prob -> the training loss
            lp.type = "SoftmaxWithLoss"
            lp.bottom.append("label")
            lp.top[0] = "loss"
    return param


def inputs(name, shape):
    import numpy as np
    rng = np.random.default_rng(0)
    classes = 10 if name == "lenet" else 1000
    return (rng.uniform(0, 1, size=shape).astype(np.float32),
            rng.integers(0, classes, size=shape[0]).astype(np.float32))


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# -- the worker processes ------------------------------------------------------------------

class SGD:
    """Caffe's SGD step: diff += decay*data; history = momentum*history + lr*diff; data -= history."""

    def __init__(self, net, lr=0.01, momentum=0.9, weight_decay=5e-4):
        import numpy as np
        self.net, self.lr, self.momentum, self.decay = net, lr, momentum, weight_decay
        self.history = [np.zeros_like(p.blob.data) for p in net.learnable_params]

    def step(self):
        for p, h in zip(self.net.learnable_params, self.history):
            if p.decay_mult:
                p.blob.diff += (self.decay * p.decay_mult) * p.blob.data
            h *= self.momentum
            h += (self.lr * p.lr_mult) * p.blob.diff
            p.blob.data -= h


def netspec_iteration(name, base):
    import netspec
    param = net_param(name)
    base.append(rss_mb())
    net = netspec.Net(param, phase="TRAIN", seed=0, share_memory=True)      # as `netspec train` runs it
    data, label = inputs(name, net.blobs["data"].shape)
    sgd = SGD(net) if name == "lenet" else None

    def iteration():
        net.clear_param_diffs()
        net.forward(data=data, label=label)
        net.backward()
        if sgd:
            sgd.step()
    return iteration


def numpy_blas():
    from threadpoolctl import threadpool_info
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            return (f"{pool.get('internal_api')} {pool.get('version')} ({pool.get('threading_layer', '?')}, "
                    f"{pool.get('num_threads')} threads, {pool.get('architecture', '?')})")
    return "no BLAS found by threadpoolctl"


def torch_iteration(name, base, threads):
    import torch

    from benchmark_torch import TorchNet
    from netspec.graph import build_graph
    from netspec.shapes import infer_shapes
    torch.set_num_threads(threads)
    base.append(rss_mb())
    graph = build_graph(net_param(name), phase="TRAIN")
    shapes = infer_shapes(graph, stats=False, suggest=False).blob_shapes
    model = TorchNet(graph, shapes, train=True)
    data, label = inputs(name, shapes["data"])
    x, y = torch.from_numpy(data), torch.from_numpy(label.astype("int64"))
    opt = None
    if name == "lenet":     # Caffe's bias lr_mult 2; both get weight decay, as in the netspec SGD above
        weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
        biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
        opt = torch.optim.SGD([{"params": weights}, {"params": biases, "lr": 0.02}],
                              lr=0.01, momentum=0.9, weight_decay=5e-4)

    def iteration():
        model.zero_grad()
        model(data=x, label=y)["loss"].backward()
        if opt:
            opt.step()
    return iteration


def worker(args):
    import resource
    base = []
    if args.worker == "netspec":
        iteration = netspec_iteration(args.net, base)
        about = numpy_blas()
    else:
        import torch
        iteration = torch_iteration(args.net, base, args.threads[0])
        about = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    for _ in range(args.warmup):
        iteration()
    times, cpu = [], []
    for _ in range(args.iters):
        t0, c0 = time.perf_counter(), time.process_time()
        iteration()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"times": times, "cpu": cpu, "peak_mb": peak, "base_mb": base[0], "about": about}))


def products(args):
    """Every matrix product of a training step, timed as numpy.matmul and turned ((B^T A^T)^T),
    beside the orientation ops.gemm picks: the measurements behind its rule."""
    import numpy as np

    import netspec.layers.common
    import netspec.ops.conv
    from netspec.ops import gemm
    users = (gemm, netspec.ops.conv, netspec.layers.common)
    seen = {}
    original = gemm.matmul

    def record(xp, a, b, out=None):
        seen.setdefault((a.shape, a.strides, b.shape, b.strides), [a, b, 0])[2] += 1
        return original(xp, a, b, out=out)
    for module in users:
        module.matmul = record
    netspec_iteration(args.net, [])()
    for module in users:
        module.matmul = original

    def best_of(fn, n=5):
        fn()
        return min(_timed(fn) for _ in range(n)) * 1000
    totals = {"plain": 0.0, "turned": 0.0, "picked": 0.0}
    print(f"{'a':>18s} {'b':>18s}  calls  plain ms  turned ms  picked")
    for a, b, calls in seen.values():
        out = np.empty(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1]), a.dtype)
        turned_out = np.empty(out.shape[:-2] + out.shape[:-3:-1], a.dtype)

        def turned():
            np.matmul(b.swapaxes(-1, -2), a.swapaxes(-1, -2), out=turned_out)
            out[...] = turned_out.swapaxes(-1, -2)
        plain, turn = best_of(lambda: np.matmul(a, b, out=out)), best_of(turned)
        picked = gemm._turned(a, b)
        totals["plain"] += calls * plain
        totals["turned"] += calls * turn
        totals["picked"] += calls * (turn if picked else plain)
        print(f"{str(a.shape):>18s} {str(b.shape):>18s}  {calls:5d}  {plain:8.2f}  {turn:9.2f}  {'turned' if picked else 'plain'}")
    print("per step, ms: " + ", ".join(f"{k} {v:.1f}" for k, v in totals.items()))


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def profile(args):
    """cProfile netspec's iterations in this process (top 30 by tottime)."""
    import cProfile
    import pstats
    iteration = netspec_iteration(args.net, [])
    iteration()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(args.iters):
        iteration()
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(30)


# -- the driver ----------------------------------------------------------------------------

def child_env(threads):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)          # before NumPy loads its BLAS
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return env


def measure(framework, net, threads, iters, warmup):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", framework, "--net", net,
           "--threads", str(threads), "--iters", str(iters), "--warmup", str(warmup)]
    done = subprocess.run(cmd, env=child_env(threads), capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{framework} {net} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["median"] = statistics.median(result["times"])
    result["cpu_median"] = statistics.median(result["cpu"])
    return result


def train_seconds(iterations, threads):
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "netspec.cli", "train", "--example", "--iterations", str(iterations)],
                   env=child_env(threads), check=True, capture_output=True)
    return time.perf_counter() - t0


def spread(values, scale=1.0, fmt="{:.1f}"):
    low, high = min(values) * scale, max(values) * scale
    return fmt.format(statistics.median(values) * scale) + " [" + fmt.format(low) + "-" + fmt.format(high) + "]"


def run_threads(threads, args):
    print(f"\n== {threads} thread(s); {args.rounds} rounds of alternated processes; "
          "median of each process's median iteration [min-max over rounds]")
    header = False
    missed = []
    memory = []
    for name in args.only:
        title, _, iters, target = NETS[name]
        iters = args.iters or (max(1, iters // 2) if args.quick else iters)
        runs = {"netspec": [], "torch": []}
        for r in range(args.rounds):
            order = ("netspec", "torch") if r % 2 == 0 else ("torch", "netspec")
            for framework in order:
                runs[framework].append(measure(framework, name, threads, iters, args.warmup))
        if not header:
            print(f"netspec: {runs['netspec'][0]['about']}; PyTorch: {runs['torch'][0]['about']}")
            print(f"{'workload':46s} {'netspec ms':>24s} {'PyTorch ms':>24s} {'ratio':>19s}  target")
            header = True
        ours = [m["median"] for m in runs["netspec"]]
        theirs = [m["median"] for m in runs["torch"]]
        ratios = [a / b for a, b in zip(ours, theirs)]
        ratio = statistics.median(ours) / statistics.median(theirs)
        verdict = "met" if ratio <= target else f"MISSED by {100 * (ratio / target - 1):.0f}%"
        if ratio > target:
            missed.append(name)
        print(f"{title:46s} {spread(ours, 1000):>24s} {spread(theirs, 1000):>24s} "
              f"{ratio:5.2f}x {spread(ratios, fmt='{:.2f}')[4:]:>12s}  <= {target:.1f}x {verdict}", flush=True)
        cpu = [statistics.median(m["cpu_median"] for m in runs[f]) for f in ("netspec", "torch")]
        print(f"{'':46s} {'CPU time: ' + format(1000 * cpu[0], '.1f'):>24s} {format(1000 * cpu[1], '.1f'):>24s} "
              f"{cpu[0] / cpu[1]:5.2f}x  (all threads; robust to load at 1 thread)")
        memory.append((title, runs))
    print("peak RSS, MB: net + training step (peak minus the process after its imports), and the whole process")
    for title, runs in memory:
        cols = []
        for framework in ("netspec", "torch"):
            step = statistics.median(m["peak_mb"] - m["base_mb"] for m in runs[framework])
            peak = statistics.median(m["peak_mb"] for m in runs[framework])
            cols.append(f"{framework} {step:7.0f} ({peak:5.0f})")
        print(f"  {title:46s} {cols[0]}   {cols[1]}")
    if args.train:
        short, long = (10, 60) if args.quick else (20, 120)
        rates = []
        for _ in range(args.rounds):
            rates.append((long - short) * 64 / (train_seconds(long, threads) - train_seconds(short, threads)))
        print(f"netspec train --example (LeNet, batch 64): {spread(rates, fmt='{:.0f}')} images/s "
              f"(iterations {short}..{long}, start-up excluded)", flush=True)
    return missed


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--threads", default=None, help="comma-separated thread counts (default: all cores, then 1)")
    p.add_argument("--rounds", type=int, default=3, help="alternated process pairs per net (default 3)")
    p.add_argument("--iters", type=int, default=0, help="timed iterations per process (default: per net)")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations per process (default 1)")
    p.add_argument("--only", default=",".join(NETS), help=f"comma-separated workloads ({', '.join(NETS)})")
    p.add_argument("--quick", action="store_true", help="1 round, half the iterations, one thread count")
    p.add_argument("--no-train", dest="train", action="store_false", help="skip the `netspec train` figure")
    p.add_argument("--profile", action="store_true", help="cProfile netspec on the --only net, in this process")
    p.add_argument("--products", action="store_true",
                   help="time each matrix product of the --only net both ways (the ops.gemm rule), in this process")
    p.add_argument("--worker", choices=["netspec", "torch"], help=argparse.SUPPRESS)
    p.add_argument("--net", choices=list(NETS), help=argparse.SUPPRESS)
    args = p.parse_args()
    args.only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in args.only if n not in NETS]
    if unknown:
        p.error(f"unknown workload {', '.join(unknown)}; choose from {', '.join(NETS)}")
    cores = os.cpu_count() or 1
    args.threads = [int(t) for t in args.threads.split(",")] if args.threads else \
        ([cores] if args.quick else sorted({cores, 1}, reverse=True))
    if args.quick:
        args.rounds = 1
    return args


def main():
    args = parse_args()
    if args.worker:
        worker(args)
        return 0
    if args.profile or args.products:
        for var, value in child_env(args.threads[0]).items():
            os.environ[var] = value
        args.net, args.iters = args.only[0], args.iters or NETS[args.only[0]][2]
        (profile if args.profile else products)(args)
        return 0
    missed = []
    for threads in args.threads:
        missed += [f"{n} ({threads} threads)" for n in run_threads(threads, args)]
    print("\nall targets met" if not missed else f"\ntargets missed: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
