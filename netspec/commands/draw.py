"""`netspec draw`: the net as a picture, every blob's shape on its edge (Graphviz)."""
from ..report import check, parse_inputs
from ..utils import int32, split_stages


def add_parser(subparsers):
    p = subparsers.add_parser(
        "draw", help="draw the net with every blob's shape on its edge (.svg .png .pdf .dot)",
        description="Draw the net with Graphviz: a node per layer (name, type, key parameters, coloured "
                    "by family), in-place layers folded onto their blob, each edge labelled with the "
                    "blob's shape, shared weights and loss tops marked, and the shape check's errors in "
                    "red. .svg, .png and .pdf need Graphviz's dot program; .dot needs nothing.")
    p.add_argument("model", metavar="NET", help="the net (.prototxt, .yaml, .json)")
    p.add_argument("output", metavar="OUT", help="the picture: .svg, .png, .pdf or .dot")
    p.add_argument("--input", action="append", default=[], metavar="NAME=N,C,H,W",
                   help="shape of an input blob, overriding the data layer's (repeatable)")
    p.add_argument("--phase", type=str.upper, choices=["TRAIN", "TEST"],
                   help="net phase (default: the file's state, else TEST)")
    p.add_argument("--stage", action="append", default=[], help="a net stage (repeatable or comma-separated)")
    p.add_argument("--level", type=int32, help="net state level (default: the file's state, else 0)")
    p.add_argument("--rankdir", type=str.upper, choices=["TB", "LR", "BT", "RL"], default="TB",
                   help="direction of the flow: top to bottom (default), left to right ...")
    p.add_argument("--collapse", action="store_true",
                   help="fold each run of blocks of the same structure (Inception modules, ResNet "
                        "bottlenecks) into one node with a count")
    return p


def run(args):
    from ..draw import draw, output_format
    output_format(args.output)          # a wrong extension is said before the net is read
    report = check(args.model, inputs=parse_inputs(args.input), phase=args.phase,
                   stages=split_stages(args.stage), level=args.level)
    draw(report, args.output, rankdir=args.rankdir, collapse=args.collapse)
    problems = len(report.errors)
    print(f"wrote {args.output}" + (f" ({problems} error(s) drawn in red)" if problems else ""))
    return report.exit_code
