"""The `netspec` command: one entry point, one module per subcommand under netspec/commands/.

A command loads only what it uses: the parser of the command named (all of them for --help,
no command or a misspelt one), and NumPy on first use (see defer_numpy), so `netspec check`
starts fast."""
import argparse
import importlib
import importlib.util
import os
import sys
import threading
import types

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


def build_parser(names=COMMANDS):
    """The parser with the subcommands named: a subcommand's usage, help and errors are the
    same whichever others are built beside it."""
    parser = argparse.ArgumentParser(
        prog="netspec",
        description="Check, explain, run and train Caffe networks.")
    parser.add_argument("--version", action="version", version=f"netspec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in names:
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
    defer_numpy()
    argv = translate(sys.argv[1:] if argv is None else list(argv))     # Caffe's -flag spellings too
    parser = build_parser(argv[:1] if argv and argv[0] in COMMANDS else COMMANDS)
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


class _Deferred(types.ModuleType):
    """A module entered in sys.modules whose code runs on first use of one of its names.

    importlib.util.LazyLoader's module wakes on any attribute, and the import system reads
    `__spec__` at every `import numpy`, so the first of the dozens of modules that import
    NumPy at the top would load it. This one wakes only on a name it does not have yet (its
    __dict__ holds the spec's attributes but not __path__, so importing a submodule wakes it
    too). The module's code runs into this same object, as a normal import would, so
    `xp is numpy` holds wherever it was imported; other threads wait for the load to end."""

    def __getattr__(self, name):
        with _DEFERRED_LOCK:
            if type(self) is _Deferred and _LOADING.get(self.__name__) != threading.get_ident():
                _run_module(self)
        if type(self) is _Deferred:      # asked by the module's own code while it runs
            raise AttributeError(f"partially initialized module '{self.__name__}' has no attribute '{name}'")
        return getattr(self, name)


_DEFERRED_LOCK = threading.RLock()
_LOADING = {}       # module name -> the thread running its code


def _run_module(module):
    spec = module.__spec__
    _LOADING[spec.name] = threading.get_ident()
    try:
        module.__path__ = spec.submodule_search_locations
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)     # as a failed import leaves it: the next import tries again
        raise
    finally:
        del _LOADING[spec.name]
    module.__class__ = types.ModuleType


def defer_numpy():
    """Enter NumPy in sys.modules unloaded: it loads (about 0.2 s) when a command first uses
    it, so commands that never compute (check, draw, convert) start without it. Only the
    command line does this, and only where NumPy is not loaded yet; a library user's
    `import numpy` is untouched. (Moving the ops' and layers' `import numpy` into the functions
    that compute would do the same, at the price of one in every function of every op to come.)"""
    if "numpy" in sys.modules:
        return
    spec = importlib.util.find_spec("numpy")
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    del module.__path__
    module.__class__ = _Deferred
    sys.modules["numpy"] = module


INTERNAL_ERROR = 3      # 1 is check's "errors found", 2 a mistake in the input


def internal_error(argv, error):
    """One line saying it is a bug, where it happened and what was being done; the traceback
    only when NETSPEC_TRACEBACK is set."""
    import traceback
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
