"""`netspec plot`: training curves from a Caffe or netspec log, as Caffe's plot_training_log.py."""
import os


def add_parser(subparsers):
    p = subparsers.add_parser(
        "plot", help="draw the training curves of a Caffe or netspec log",
        description="Read a training log (`caffe train` or `netspec train --log`) and draw the training "
                    "loss (raw and smoothed), each test output against iterations, and the learning "
                    "rate, with matplotlib (pip install 'netspec[plot]').")
    p.add_argument("log", metavar="LOG", help="the training log")
    p.add_argument("output", metavar="OUT", help="the picture: .png, .svg or .pdf")
    p.add_argument("--log-scale", action="store_true", help="a logarithmic loss axis")
    p.add_argument("--title", help="the title (default: the log's file name)")
    return p


def run(args):
    from ..curves import plot_curves, read_log
    curves = read_log(args.log)
    plot_curves(args.output, curves, title=args.title or os.path.basename(args.log), log_scale=args.log_scale)
    tests = ", ".join(f"{k} ({len(v)})" for k, v in curves.tests.items()) or "none"
    print(f"wrote {args.output}: {len(curves.train)} training points; test outputs: {tests}")
    return 0
