"""`netspec test`: score a trained net, as `caffe test` does: every output blob, batch by
batch, then the averages over the iterations."""
import numpy as np

from ..errors import NetspecError
from .caffe_flags import add_gpu_option, backend_of
from ..utils import int32, nonnegative_int, split_stages


def add_parser(subparsers):
    p = subparsers.add_parser(
        "test", help="score a trained net over N batches (as `caffe test`)",
        description="Run a net forward for N batches and print each output per batch and on average.")
    p.add_argument("--model", required=True, help="the net .prototxt")
    p.add_argument("--weights", required=True, help="the trained .caffemodel")
    p.add_argument("--iterations", type=int, default=50, help="batches to run (default 50, as Caffe)")
    p.add_argument("--phase", type=str.upper, choices=["TRAIN", "TEST"], default="TEST", help="net phase (default TEST)")
    p.add_argument("--stage", action="append", default=[], help="a net stage (repeatable or comma-separated)")
    p.add_argument("--level", type=int32, default=0, help="net level")
    p.add_argument("--backend", choices=["numpy", "cupy"], default=None, help="array backend (default numpy)")
    add_gpu_option(p)
    p.add_argument("--seed", type=nonnegative_int, default=None, help="random seed")
    p.add_argument("--log", help="also write the log to this file")
    p.add_argument("--force", action="store_true",
                   help="replace an existing file of another kind at an output path the net or solver names")
    return p


def run(args):
    from ..net import Net
    from ..training import Log, fmt
    from ..training.scoring import output_lines, score
    if args.iterations < 1:
        raise NetspecError(f"--iterations must be at least 1, found {args.iterations}")
    log, net = Log(args.log, source="test.py"), None
    try:
        net = Net(args.model, weights=args.weights, phase=args.phase, backend=backend_of(args),
                  seed=args.seed, stages=split_stages(args.stage), level=args.level)
        warn_unused_stages([net], log)
        log.info(f"Running for {args.iterations} iterations.")

        def each_batch(i, outputs):
            for name in net.outputs:
                for v in np.ravel(outputs[name]):
                    log.info(f"Batch {i}, {name} = {fmt(v)}")

        means, loss = score(net, args.iterations, each_batch)
        log.info(f"Loss: {fmt(loss)}")
        for line in output_lines(net, means, ""):
            log.info(line)
    finally:
        if net is not None:
            net.close()
        log.close()
    return 0


def warn_unused_stages(nets, log):
    """Log, once each, the graphs' warnings about stages no rule of the net names."""
    issues = {f"{w.message} ({w.hint})" for w in (net.graph.stage_warning for net in nets) if w}
    for text in sorted(issues):
        log.warn(text)
