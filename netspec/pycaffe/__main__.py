"""python -m netspec.pycaffe SCRIPT [ARGS] | -m MODULE [ARGS]: run a pycaffe script unchanged,
its `import caffe` (caffe.io, caffe.draw, caffe.proto.caffe_pb2 ...) resolving to netspec.

A netspec error (a bad net file, a Python layer's exception) ends the run with its message
and exit status 2, as the `netspec` command does; the script's own exceptions keep Python's
traceback."""
import os
import runpy
import sys

USAGE = "usage: python -m netspec.pycaffe SCRIPT [ARGS ...] | -m MODULE [ARGS ...]"


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    from ..errors import NetspecError
    from .alias import install_caffe_alias
    install_caffe_alias()
    if argv[0] == "-m":
        if len(argv) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        sys.argv = argv[1:]
        sys.path.insert(0, os.getcwd())
        run = lambda: runpy.run_module(argv[1], run_name="__main__", alter_sys=True)  # noqa: E731
    else:
        script = argv[0]
        if not os.path.isfile(script):
            print(f"netspec.pycaffe: error: cannot open the script {script}", file=sys.stderr)
            return 2
        sys.argv = argv
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        run = lambda: runpy.run_path(script, run_name="__main__")  # noqa: E731
    try:
        run()
    except NetspecError as e:
        print(f"netspec.pycaffe: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
