"""`import caffe` resolving to netspec.pycaffe: inside `python -m netspec.pycaffe` (for the whole
run), and while netspec imports a Python layer's module (only then: sys.modules is put back, so
a real pycaffe installed beside netspec is never shadowed elsewhere)."""
import contextlib
import importlib
import sys

# caffe's module names -> netspec's
MODULES = {
    "caffe": "netspec.pycaffe",
    "caffe.pycaffe": "netspec.pycaffe.pycaffe",
    "caffe.io": "netspec.pycaffe.io",
    "caffe.draw": "netspec.pycaffe.draw",
    "caffe.classifier": "netspec.pycaffe.classifier",
    "caffe.detector": "netspec.pycaffe.detector",
    "caffe.net_spec": "netspec.pycaffe.net_spec",
    "caffe.coord_map": "netspec.pycaffe.coord_map",
    "caffe.proto": "netspec.pycaffe.proto",
    "caffe.proto.caffe_pb2": "netspec.caffe_pb2",
}


def install():
    """Point sys.modules' caffe names at netspec's modules; returns what they were before."""
    before = {name: sys.modules.get(name) for name in MODULES}
    for name, target in MODULES.items():
        sys.modules[name] = importlib.import_module(target)
    return before


def restore(before):
    for name, module in before.items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module


@contextlib.contextmanager
def caffe_alias():
    before = install()
    try:
        yield
    finally:
        restore(before)
