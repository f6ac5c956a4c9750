"""`netspec upgrade IN OUT`: write a legacy net or solver in the current Caffe form."""
from .. import io
from ..errors import NetspecError
from ..io.binary import DESCRIBE
from .convert import print_warnings


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "upgrade", help="upgrade a legacy (V0/V1) net or solver to the current form",
        description="Upgrade a net (V0 or V1 layers, input/input_dim fields, legacy data "
                    "transformation fields, old BatchNorm param specs, fork dialects such as "
                    "Pooling ceil_mode) or a solver (solver_type enum) to the current Caffe "
                    "form, as Caffe's upgrade_net_proto_text does. The output format follows "
                    "OUT's extension; OUT may be IN.")
    parser.add_argument("input", metavar="IN", help="net or solver file to read")
    parser.add_argument("output", metavar="OUT", help="file to write")
    parser.add_argument("--kind", choices=["net", "solver"],
                        help="what the file holds (default: detected)")
    return parser


def run(args):
    io.check_output(args.output)
    kind, message, warnings = io.read_kind(args.input, args.kind)
    if kind not in ("net", "solver"):
        raise NetspecError(f"found {DESCRIBE[kind]}; expected a net or a solver", file=args.input,
                           hint="only nets and solvers have legacy forms; `netspec convert` "
                                "changes the format of other files")
    io.check_output(args.output, kind)
    lost = [w for w in warnings if hasattr(w, "field_name")]
    if lost:
        raise NetspecError(f"layer '{lost[0].layer}': '{lost[0].field_name}' is in no schema netspec knows, so "
                           "an upgraded copy would lose it", file=args.input, line=lost[0].line,
                           hint="remove or rename the block, or keep the file as it is")
    print_warnings("upgrade", warnings)
    io.write_message(message, args.output)
    state = "upgraded" if warnings else "already current; rewritten"
    print(f"wrote {args.output} ({kind}, {state})")
    return 0
