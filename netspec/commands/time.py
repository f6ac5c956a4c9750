"""`netspec time`: per-layer and whole-net forward/backward times, laid out as `caffe time`.

Unlike Caffe's, the whole-net figures come from runs of their own (per-layer timers and
their synchronisation do not inflate them), GPU work is synchronised before every timer
stops, and the report says how the per-layer sum compares with the whole-net time.
"""
import time

import numpy as np

from .. import caffe_pb2
from ..errors import NetspecError
from .caffe_flags import add_gpu_option, backend_of
from ..utils import int32, nonnegative_int, split_stages


def add_parser(subparsers):
    p = subparsers.add_parser("time", help="time a net's forward and backward passes, layer by layer",
                              description="Time forward and backward passes of a net, per layer and in total.")
    p.add_argument("model", metavar="FILE", nargs="?", help="the net (.prototxt, .yaml, .json)")
    p.add_argument("--model", dest="model_option", metavar="FILE", help="the net, as `caffe time --model` takes it")
    p.add_argument("--iterations", "-n", type=int, default=50, help="timed iterations (default 50)")
    p.add_argument("--backend", choices=["numpy", "cupy"], default=None, help="array backend (default numpy)")
    add_gpu_option(p)
    p.add_argument("--phase", default="TRAIN", type=str.upper, choices=["TRAIN", "TEST"],
                   help="net phase (default TRAIN, as `caffe time`)")
    p.add_argument("--input", action="append", default=[], metavar="NAME=N,C,H,W",
                   help="shape of an input blob (repeatable), e.g. data=10,3,227,227")
    p.add_argument("--stage", action="append", default=[], help="a net stage (repeatable or comma-separated)")
    p.add_argument("--level", type=int32, default=0, help="net state level")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed for the weights and the random inputs")
    p.add_argument("--force", action="store_true",
                   help="replace an existing file of another kind at an output path the net or solver names")
    return p


class Timer:
    """Wall-clock milliseconds, with the GPU drained before each reading."""

    def __init__(self, xp):
        self.sync = (lambda: xp.cuda.Device().synchronize()) if xp is not np else (lambda: None)

    def now(self):
        self.sync()
        return time.perf_counter()


def fill_inputs(net, rng):
    """Random values for the fed inputs; blobs read as labels (by a loss or an Accuracy) get 0,
    a valid class for any net."""
    labels = {node.bottoms[node.layer.label_bottom] for node in net.nodes
              if node.layer.label_bottom is not None and len(node.bottoms) > node.layer.label_bottom}
    feeds = {}
    for name in net.inputs:
        shape = net.blobs[name].shape
        feeds[name] = np.zeros(shape) if name in labels else rng.standard_normal(shape)
    return feeds


def measure(net, iterations):
    """Mean per-layer forward and backward ms, then each whole-net iteration's (forward,
    backward) ms, timed in runs of their own."""
    timer = Timer(net.xp)
    net.run_forward()
    net.run_backward()                       # warm-up: first-call costs stay out of the figures
    steps = net.steps
    layer_fwd, layer_bwd = np.zeros(len(steps)), np.zeros(len(steps))
    for _ in range(iterations):
        for i, step in enumerate(steps):
            t0 = timer.now()
            net.run_step(step, forward=True)
            layer_fwd[i] += timer.now() - t0
        for blob, w in net.loss_tops:
            blob.diff.fill(w)
        for i in reversed(range(len(steps))):
            t0 = timer.now()
            net.run_step(steps[i], forward=False)
            layer_bwd[i] += timer.now() - t0
    whole = []
    for _ in range(iterations):
        t0 = timer.now()
        net.run_forward()
        t1 = timer.now()
        net.run_backward()
        t2 = timer.now()
        whole.append((1000.0 * (t1 - t0), 1000.0 * (t2 - t1)))
    return layer_fwd * (1000.0 / iterations), layer_bwd * (1000.0 / iterations), whole


def report(net, layer_fwd, layer_bwd, whole):
    iterations = len(whole)
    phase = caffe_pb2.Phase.Name(net.phase)
    inputs = ", ".join(f"{n} {net.blobs[n].shape}" for n in net.inputs) or "none (the net's data layers)"
    lines = [f"Timing net '{net.name}' ({phase} phase, {net.backend} backend).",
             f"Inputs: {inputs}",
             f"Initial loss: {net.loss:.6g}"]
    if not any(s.needs_backward for s in net.steps):
        lines.append("Note: no layer here needs backward (nothing reaches a loss), so backward does no work, "
                     "where Caffe's `time` would still run every layer's: time a net with a loss for backward figures.")
    lines += ["*** Benchmark begins ***", f"Testing for {iterations} iterations."]
    lines += [f"Iteration: {i + 1} forward-backward time: {f + b:.5g} ms." for i, (f, b) in enumerate(whole)]
    lines.append("Average time per layer: ")
    width = max([10] + [len(s.name) for s in net.steps])
    for step, f, b in zip(net.steps, layer_fwd, layer_bwd):
        lines.append(f"{step.name:>{width}}\tforward: {f:.5g} ms.")
        lines.append(f"{step.name:>{width}}\tbackward: {b:.5g} ms.")
    total_fwd = sum(f for f, _ in whole) / iterations
    total_bwd = sum(b for _, b in whole) / iterations
    total = total_fwd + total_bwd
    lines += [f"Average Forward pass: {total_fwd:.5g} ms.",
              f"Average Backward pass: {total_bwd:.5g} ms.",
              f"Average Forward-Backward: {total:.5g} ms.",
              f"Total Time: {total * iterations:.5g} ms.",
              "(whole-net passes timed in runs of their own, without per-layer timers)"]
    sums = (layer_fwd.sum(), layer_bwd.sum())
    for what, part, whole_time in (("Forward", sums[0], total_fwd), ("Backward", sums[1], total_bwd),
                                   ("Forward-Backward", sum(sums), total)):
        share = f"{100.0 * part / whole_time:.1f}% of the whole-net time" if whole_time > 0 else "whole-net time is 0"
        lines.append(f"Sum of per-layer {what} times: {part:.5g} ms ({share}).")
    lines.append("*** Benchmark ends ***")
    return "\n".join(lines)


def run(args):
    from ..net import Net
    from ..report import parse_inputs
    model = args.model or args.model_option
    if not model:
        raise NetspecError("no net given", hint="netspec time FILE (or --model FILE)")
    if args.model and args.model_option and args.model != args.model_option:
        raise NetspecError(f"two nets given: {args.model} and --model {args.model_option}",
                           hint="give the net once, as FILE or as --model FILE")
    if args.iterations < 1:
        raise NetspecError(f"--iterations must be at least 1, found {args.iterations}")
    inputs = parse_inputs(args.input)
    net = Net(model, phase=args.phase, backend=backend_of(args), inputs=inputs or None,
              seed=args.seed, stages=split_stages(args.stage), level=args.level)
    net.forward(**fill_inputs(net, np.random.default_rng(args.seed)))
    print(report(net, *measure(net, args.iterations)))
    return 0
