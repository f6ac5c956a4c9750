"""The `netspec` command: one entry point, one module per subcommand under netspec/commands/."""
import argparse
import importlib
import os
import sys
import traceback

from . import __version__
from .errors import NetspecError
from .outputs import forcing
from .utils import closest

# Subcommands in the order --help lists them; each module has add_parser(subparsers) and run(args).
COMMANDS = [
    "check",
    "draw",
    "convert",
    "upgrade",
    "train",
    "test",
    "time",
    "compare",
    "plot",
    "device_query",
    "extract_features",
    "classify",
]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="netspec",
        description="Check, explain, run and train Caffe networks.")
    parser.add_argument("--version", action="version", version=f"netspec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"netspec.commands.{name}")
        subparser = module.add_parser(sub)
        subparser.set_defaults(run=module.run, command_parser=subparser)
    return parser


def unrecognized(parser, extra):
    """'unrecognized arguments: ...', with the nearest option for a misspelt one."""
    options = [o for o in parser._option_string_actions if o.startswith("--")]
    hints = []
    for word in extra:
        option = word.split("=")[0]
        near = closest(option, options, n=1) if option.startswith("--") else []
        if near:
            hints.append(f"{option}: did you mean {near[0]}?")
    return "; ".join(["unrecognized arguments: " + " ".join(extra)] + hints)


def main(argv=None):
    """The console entry point; a Ctrl-C while the commands are still loading ends quietly too."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("netspec: interrupted", file=sys.stderr)
        return 130


def _main(argv):
    from .commands.caffe_flags import translate
    parser = build_parser()
    argv = translate(sys.argv[1:] if argv is None else list(argv))     # Caffe's -flag spellings too
    args, extra = parser.parse_known_args(argv)
    args.argv = argv     # as translated: a command that starts itself again (train -gpu) sees netspec's spellings
    command_parser = getattr(args, "command_parser", parser)
    if extra:       # said by the subcommand, with its own usage line, not the top level's
        command_parser.error(unrecognized(command_parser, extra))
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        with forcing(getattr(args, "force", False)):
            return args.run(args) or 0
    except NetspecError as e:
        return fail(args.command, e)
    except BrokenPipeError:         # `netspec check big.prototxt | head`: not an error
        _silence_stdout()
        return 0
    except OSError as e:
        if e.filename is None:
            raise
        # A file the command was told to use (a --log, say) that the OS refuses.
        return fail(args.command, NetspecError(f"cannot open the file: {e.strerror}", file=e.filename,
                                               hint="check the path: its folder must exist and be writable"))
    except MemoryError as e:        # NumPy's and CuPy's both derive from it
        return fail(args.command, NetspecError(
            f"out of memory: {e}", hint="the net's blobs do not fit: use a smaller batch or input "
                                         "(the data layer's batch_size, or --input NAME=N,C,H,W)"))
    except KeyboardInterrupt:
        print(f"netspec {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:          # noqa: BLE001 - anything else is netspec's fault, not the input's
        return internal_error(argv, e)


INTERNAL_ERROR = 3      # 1 is check's "errors found", 2 a mistake in the input


def internal_error(argv, error):
    """One line saying it is a bug, where it happened and what was being done; the traceback
    only when NETSPEC_TRACEBACK is set."""
    if os.environ.get("NETSPEC_TRACEBACK"):
        traceback.print_exc()
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if os.sep + "netspec" + os.sep in f.filename] or frames
    at = f" at {os.path.basename(ours[-1].filename)}:{ours[-1].lineno}" if ours else ""
    command = " ".join(["netspec"] + list(sys.argv[1:] if argv is None else argv))
    print(f"netspec: internal error, this is a bug in netspec: {type(error).__name__}: {error}{at}, "
          f"while running `{command}` (please report it with this line and the input files; "
          f"NETSPEC_TRACEBACK=1 shows the traceback)", file=sys.stderr)
    return INTERNAL_ERROR


def fail(command, error):
    from .layers.registry import blame_unknown_type
    print(f"netspec {command}: error: {blame_unknown_type(error)}", file=sys.stderr)
    return 2


def _silence_stdout():
    """Point stdout at /dev/null so that Python's flush at exit does not fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
