"""The `netspec` command: one entry point, one module per subcommand under netspec/commands/."""
import argparse
import importlib
import sys

from . import __version__
from .errors import NetspecError

# Subcommands in the order --help lists them; each module has add_parser(subparsers) and run(args).
COMMANDS = [
    "check",
    "convert",
    "upgrade",
    "train",
    "test",
    "time",
]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="netspec",
        description="Check, explain, run and train Caffe networks.")
    parser.add_argument("--version", action="version", version=f"netspec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"netspec.commands.{name}")
        module.add_parser(sub).set_defaults(run=module.run)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except NetspecError as e:
        print(f"netspec {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"netspec {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
