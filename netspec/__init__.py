"""netspec: a Caffe-style declarative network compiler.

Parse Caffe nets (prototxt, YAML, JSON, binary, or the NetSpec DSL), check and explain their
shapes, and run and train them on NumPy or CuPy.
"""
import importlib
import os

__version__ = "0.1.0"

# OpenBLAS's idle threads spin after each product and hold the core that netspec's own
# worker threads (ops/threads.py) need for the elementwise work between products; told to
# sleep sooner (a user's own setting wins; read when NumPy loads its BLAS), GoogLeNet's and
# ResNet-50's training steps ran 10-15% faster on 2 cores.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from .errors import NetspecError  # noqa: F401,E402

# Loaded on first use, so that `import netspec` stays light and the command line can catch a
# Ctrl-C that comes while NumPy and protobuf are still loading.
_LAZY = {
    "caffe_pb2": ("caffe_pb2", None),
    "NetSpec": ("dsl", "NetSpec"),
    "params": ("dsl", "params"),     # (`layers` is the package; its type names are DSL calls)
    "Net": ("net", "Net"),
    "check": ("report", "check"),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'netspec' has no attribute '{name}'")
    module, attr = _LAZY[name]
    value = importlib.import_module(f".{module}", __name__)
    value = getattr(value, attr) if attr else value
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
