"""`netspec convert IN OUT`: a net, solver, blob or solver state from one format to another."""
import sys

from .. import io
from ..errors import NetspecError

KIND_HELP = "what the file holds: net, solver, blob (e.g. a mean) or solverstate (default: detected)"


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "convert", help="convert between prototxt, binary, YAML and JSON, or a net to ONNX",
        description="Convert a net, solver, blob or solver state between formats, chosen by "
                    "the file extensions: " + formats_text() + ". Legacy nets and solvers are "
                    "upgraded on the way. An OUT ending in .onnx exports the net with its --weights "
                    "as an ONNX model (needs the onnx package: pip install 'netspec[onnx]').")
    parser.add_argument("input", metavar="IN", help="file to read")
    parser.add_argument("output", metavar="OUT", help="file to write (its extension picks the format)")
    parser.add_argument("--kind", choices=list(io.KINDS), help=KIND_HELP)
    onnx = parser.add_argument_group("ONNX export (OUT ending in .onnx)")
    onnx.add_argument("--weights", help="the .caffemodel (or .caffemodel.h5) to export with the net")
    onnx.add_argument("--input", dest="input_shapes", action="append", default=[], metavar="NAME=N,C,H,W",
                      help="shape of an input blob (repeatable); also feeds a data layer's top")
    onnx.add_argument("--opset", type=int, default=None, help="ONNX opset to target (default 17)")
    onnx.add_argument("--dynamic-batch", action="store_true", help="leave the batch axis free")
    return parser


def formats_text():
    """'text (.prototxt ...), binary (...), ...' from the extensions the readers know."""
    names = {"text": "text", "binary": "binary", "yaml": "YAML", "json": "JSON"}
    return ", ".join(f"{names[fmt]} ({' '.join(exts)})" for fmt, exts in io.FORMATS.items())


def run(args):
    if args.output.lower().endswith(".onnx"):
        return run_onnx(args)
    given = [o for o, v in (("--weights", args.weights), ("--input", args.input_shapes), ("--opset", args.opset),
                            ("--dynamic-batch", args.dynamic_batch)) if v]
    if given:
        verb = "applies" if len(given) == 1 else "apply"
        raise NetspecError(f"{', '.join(given)} {verb} only to ONNX export", file=args.output,
                           hint="give an OUT ending in .onnx, or leave the option out")
    io.check_output(args.output)                   # a bad output path fails before reading
    kind, message, warnings = io.read_kind(args.input, args.kind)
    fmt = io.check_output(args.output, kind)
    print_warnings("convert", warnings)
    io.write_message(message, args.output)
    print(f"wrote {args.output} ({kind}, {fmt})")
    return 0


def run_onnx(args):
    from .. import onnx as nx
    from ..net import Net
    from ..report import parse_inputs
    opset = nx.DEFAULT_OPSET if args.opset is None else args.opset
    nx.check_opset(opset)
    if args.kind not in (None, "net"):
        raise NetspecError(f"only a net exports to ONNX, not a {args.kind}", file=args.input)
    if not args.weights:
        print("netspec convert: warning: no --weights: the model holds the fillers' initial values (seed 0)",
              file=sys.stderr)
    net = Net(args.input, weights=args.weights, inputs=parse_inputs(args.input_shapes) or None, seed=0)
    model = nx.to_onnx(net, opset=opset, dynamic_batch=args.dynamic_batch)
    nx.save(model, args.output)
    print(f"wrote {args.output} (ONNX opset {opset}, {len(model.graph.node)} nodes from "
          f"{len(net.layers)} layers; inputs {', '.join(net.inputs)}; outputs "
          f"{', '.join(o.name for o in model.graph.output)})")
    return 0


def print_warnings(command, warnings):
    for warning in warnings:
        print(f"netspec {command}: warning: {warning}", file=sys.stderr)
