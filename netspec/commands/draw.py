"""`netspec draw`: the net as a picture, every blob's shape on its edge (Graphviz)."""
from .check import add_net_arguments, checked


def add_parser(subparsers):
    p = subparsers.add_parser(
        "draw", help="draw the net with every blob's shape on its edge (.svg .png .pdf .dot)",
        description="Draw the net with Graphviz: a node per layer (name, type, key parameters, coloured "
                    "by family), in-place layers folded onto their blob, each edge labelled with the "
                    "blob's shape, shared weights and loss tops marked, and the shape check's errors in "
                    "red. .svg, .png and .pdf need Graphviz's dot program; .dot needs nothing.")
    p.add_argument("model", metavar="NET", help="the net (.prototxt, .yaml, .json)")
    p.add_argument("output", metavar="OUT", help="the picture: .svg, .png, .pdf or .dot")
    add_net_arguments(p)
    p.add_argument("--rankdir", type=str.upper, choices=["TB", "LR", "BT", "RL"], default="TB",
                   help="direction of the flow: top to bottom (default), left to right ...")
    p.add_argument("--collapse", action="store_true",
                   help="fold each run of blocks of the same structure (Inception modules, ResNet "
                        "bottlenecks) into one node with a count")
    return p


def run(args):
    from ..draw import draw, output_format
    output_format(args.output)          # a wrong extension is said before the net is read
    report = checked(args)
    draw(report, args.output, rankdir=args.rankdir, collapse=args.collapse)
    problems = len(report.errors)
    print(f"wrote {args.output}" + (f" ({problems} error(s) drawn in red)" if problems else ""))
    return report.exit_code
