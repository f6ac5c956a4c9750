"""`netspec check`: every top's shape, the arithmetic behind it, the costs, and the problems.

Exit status: 0 clean, 1 errors found (or warnings under --strict), 2 the file cannot be read
or an argument is wrong.
"""
import argparse
import sys

from ..report import COLUMNS, DEFAULT_COLUMNS, check, parse_inputs
from ..utils import int32, nonnegative_int, split_stages


def add_parser(subparsers):
    p = subparsers.add_parser(
        "check", help="infer and check every shape; count params, MACs, memory, receptive fields",
        description="Infer every top's shape, check the net, explain the arithmetic, and count "
                    "parameters, multiply-accumulates, activation memory and receptive fields.")
    p.add_argument("model", metavar="FILE", help="the net (.prototxt, .yaml, .json)")
    add_net_arguments(p)
    p.add_argument("--explain", action="store_true", help="show the arithmetic behind each shape")
    p.add_argument("--json", action="store_true", help="print one JSON document (schema: docs/check-json.md)")
    p.add_argument("--strict", action="store_true", help="treat warnings as errors")
    p.add_argument("--depth", type=nonnegative_int, default=0, metavar="N",
                   help="1: one row per block (a run of layers between single-blob points, named by "
                        "their common prefix); 2: the blocks and their layers; 0: every layer (default)")
    p.add_argument("--columns", type=columns, default=DEFAULT_COLUMNS, metavar="A,B,...",
                   help="the table's columns, in order, from: " + ", ".join(COLUMNS))
    p.add_argument("--html", metavar="OUT.html",
                   help="also write the report as one self-contained page (drawing, sortable table, charts)")
    return p


def add_net_arguments(p):
    """The arguments that choose what is checked, shared with `draw`: input shapes and net state."""
    p.add_argument("--input", action="append", default=[], metavar="NAME=N,C,H,W",
                   help="shape of an input blob, overriding the data layer's (repeatable), e.g. data=10,3,227,227")
    p.add_argument("--phase", type=str.upper, choices=["TRAIN", "TEST"],
                   help="net phase (default: the file's state, else TEST)")
    p.add_argument("--stage", action="append", default=[], help="a net stage (repeatable or comma-separated)")
    p.add_argument("--level", type=int32, help="net state level (default: the file's state, else 0)")


def checked(args, **options):
    """The check report of args.model as add_net_arguments' arguments choose."""
    return check(args.model, inputs=parse_inputs(args.input), phase=args.phase, stages=split_stages(args.stage),
                 level=args.level, **options)


def columns(text):
    names = tuple(c.strip() for c in text.split(",") if c.strip())
    wrong = [c for c in names if c not in COLUMNS]
    if wrong or not names:
        raise argparse.ArgumentTypeError(f"unknown column(s) {', '.join(wrong) or '(none given)'}; "
                                         "choose from " + ", ".join(COLUMNS))
    return names


def run(args):
    report = checked(args, strict=args.strict)
    if args.html:
        from ..html_report import write_html
        write_html(report, args.html)
    sys.stdout.write(report.to_json() + "\n" if args.json else
                     report.format(explain=args.explain, depth=args.depth, columns=args.columns))
    return report.exit_code
