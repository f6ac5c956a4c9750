"""`netspec convert IN OUT`: a net, solver, blob or solver state from one format to another."""
import sys

from .. import io

KIND_HELP = "what the file holds: net, solver, blob (e.g. a mean) or solverstate (default: detected)"


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "convert", help="convert between prototxt, binary, YAML and JSON",
        description="Convert a net, solver, blob or solver state between formats, chosen by "
                    "the file extensions: " + formats_text() + ". Legacy nets and solvers are "
                    "upgraded on the way.")
    parser.add_argument("input", metavar="IN", help="file to read")
    parser.add_argument("output", metavar="OUT", help="file to write (its extension picks the format)")
    parser.add_argument("--kind", choices=list(io.KINDS), help=KIND_HELP)
    return parser


def formats_text():
    """'text (.prototxt ...), binary (...), ...' from the extensions the readers know."""
    names = {"text": "text", "binary": "binary", "yaml": "YAML", "json": "JSON"}
    return ", ".join(f"{names[fmt]} ({' '.join(exts)})" for fmt, exts in io.FORMATS.items())


def run(args):
    io.check_output(args.output)                   # a bad output path fails before reading
    kind, message, warnings = io.read_kind(args.input, args.kind)
    fmt = io.check_output(args.output, kind)
    print_warnings("convert", warnings)
    io.write_message(message, args.output)
    print(f"wrote {args.output} ({kind}, {fmt})")
    return 0


def print_warnings(command, warnings):
    for warning in warnings:
        print(f"netspec {command}: warning: {warning}", file=sys.stderr)
