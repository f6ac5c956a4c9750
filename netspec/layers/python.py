"""Caffe's `Python` layer: a class from the user's own module, run as pycaffe runs it.

python_param { module: "pyloss" layer: "EuclideanLossLayer" param_str: "..." } names a module
found on sys.path, with the prototxt's folder and the working directory searched first, and a
subclass of `caffe.Layer` in it. While netspec imports that module, an import hook makes its
`import caffe` netspec.pycaffe, loaded then by the user's import (the hook is removed afterwards,
so a real pycaffe installed elsewhere is not shadowed). As in Caffe: the class is made with the LayerParameter, `param_str` and `phase`
are set, then setup(bottom, top) runs once; reshape(bottom, top) runs before every forward;
backward(top, propagate_down, bottom); `self.blobs.add_blob(*shape)` adds a parameter blob the
solver updates and snapshots save. The shape pass runs setup and reshape on zero-filled
bottoms to learn the tops' shapes; a module that does not import leaves them unknown, with a
warning, so that `netspec check` still checks the rest.
"""
import contextlib
import importlib
import importlib.util
import os
import sys

import numpy as np

from ..blob import Blob
from ..errors import LayerError, ShapeUnknown
from ..utils import did_you_mean
from .base import Layer, ParamBlob
from .registry import layer

_NETSPEC_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class PythonLayer:
    """The base class of user layers (pycaffe's `caffe.Layer`)."""

    def __init__(self, param=None):
        self.param = param

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        pass

    @property
    def blobs(self):
        return BlobVec(_host(self))

    @property
    def type(self):
        return "Python"


def _host(user):
    host = user.__dict__.get("_netspec_host")
    if host is None:
        raise RuntimeError("this caffe.Layer is not part of a net: its blobs exist once a net makes it")
    return host


class BlobVec:
    """pycaffe's BlobVec: the layer's parameter blobs, as a list, with add_blob(*shape)."""

    def __init__(self, host):
        self._host = host

    def add_blob(self, *shape, **kwargs):
        if kwargs:
            raise RuntimeError("BlobVec.add_blob takes no kwargs")
        shape = tuple(int(d) for d in shape)
        self._host.blobs.append(Blob(np.zeros(shape, np.float32), np.zeros(shape, np.float32)))

    def __len__(self):
        return len(self._host.blobs)

    def __getitem__(self, i):
        return self._host.blobs[i]

    def __iter__(self):
        return iter(self._host.blobs)


@layer("Python")
class Python(Layer):
    """Any number of bottoms and tops, as the user's class decides."""
    bottoms = (0, None)
    tops = (0, None)
    param_fields = ("python_param",)

    def setup(self):
        p = self.lp.python_param
        if not p.module or not p.layer:
            self.fail(f"python_param needs module and layer, got module '{p.module}' layer '{p.layer}'",
                      hint='e.g. python_param { module: "pyloss" layer: "EuclideanLossLayer" }')
        self.user, self.set_up, self.initial = None, False, None

    # -- the user's class ------------------------------------------------------------------------
    def _instance(self):
        if self.user is not None:
            return self.user
        p = self.lp.python_param
        try:
            module = import_user_module(p.module, self.source_path)
        except ImportError as e:
            where = f" (searched {os.path.dirname(os.path.abspath(self.source_path))}, the working directory " \
                    "and sys.path)" if self.source_path else ""
            raise ShapeUnknown(f"module '{p.module}' does not import{where}: {e}",
                               hint=f"put {p.module}.py beside the prototxt or on PYTHONPATH") from None
        except Exception as e:          # the module's own code failed while importing
            raise LayerError(_user_failure(f"importing module '{p.module}'", e)) from None
        cls = getattr(module, p.layer, None)
        if cls is None:
            names = [n for n, v in vars(module).items() if isinstance(v, type)]
            raise LayerError(f"module '{p.module}' ({getattr(module, '__file__', '?')}) has no class "
                             f"'{p.layer}'{did_you_mean(p.layer, names)}",
                             hint="python_param's layer names the class in the module")
        user = self._call(cls, "creating", self.lp)
        user.__dict__["_netspec_host"] = self
        user.param_str = p.param_str
        user.phase = int(self.phase)
        self.user = user
        return user

    def _call(self, fn, what, *args):
        try:
            return fn(*args)
        except (LayerError, ShapeUnknown):
            raise
        except Exception as e:
            p = self.lp.python_param
            raise LayerError(_user_failure(f"{p.module}.{p.layer}.{what}", e),
                             hint=f"the error is in the layer's own code (module '{p.module}')") from None

    def _method(self, name, *args):
        user = self._instance()
        return self._call(getattr(user, name), f"{name}()", *args)

    # -- shapes -------------------------------------------------------------------------------------
    def infer(self, bottoms, ctx):
        """setup() once, then reshape(), on zero-filled bottoms: the tops' shapes."""
        self._instance()
        bottom = [Blob(np.zeros(s, np.float32), np.zeros(s, np.float32)) for s in bottoms]
        top = [Blob(np.zeros((0,), np.float32), np.zeros((0,), np.float32)) for _ in self.lp.top]
        if not self.set_up:
            self.blobs = []
            self._method("setup", bottom, top)
            self.set_up = True
            self.initial = [b.data.copy() for b in self.blobs]
            self.blobs = []         # the executor makes the parameter Blobs (from these values)
        self._method("reshape", bottom, top)
        return [t.shape for t in top]

    def param_blobs(self, bottoms):
        """The blobs setup() added (it runs here if the shape pass has not run it yet)."""
        if not self.set_up and bottoms is not None and all(b is not None for b in bottoms):
            try:
                self.infer(bottoms, None)
            except ShapeUnknown:        # said by the shape pass already; fed tops need no blobs
                return []
        return [ParamBlob(a.shape, None) for a in self.initial or ()]

    def for_executor(self):
        """The executor's instance drives the same user object, set up once (as Caffe sets a layer
        up once); the user's self.blobs are the executor's parameter Blobs from then on."""
        twin = super().for_executor()
        twin.user, twin.set_up, twin.initial = self.user, self.set_up, self.initial
        if self.user is not None:
            self.user.__dict__["_netspec_host"] = twin
        return twin

    def param_values(self):
        return self.initial

    # -- compute ----------------------------------------------------------------------------------
    def forward(self, xp, bottoms, tops):
        with _on_host(xp, bottoms, tops) as (bottom, top):
            self._method("reshape", bottom, top)
            self._method("forward", bottom, top)

    def backward(self, xp, tops, propagate_down, bottoms):
        with _on_host(xp, bottoms, tops) as (bottom, top):
            self._method("backward", top, [bool(p) for p in propagate_down], bottom)


class _on_host:
    """User code works on NumPy arrays (pycaffe's .data is host memory): on CuPy, copies in and out."""

    def __init__(self, xp, bottoms, tops):
        self.xp, self.pairs = xp, []
        if xp is np:
            self.views = (list(bottoms), list(tops))
            return
        self.views = tuple([self._host(b) for b in blobs] for blobs in (bottoms, tops))

    def _host(self, blob):
        copy = Blob(blob.data.get(), blob.diff.get())
        self.pairs.append((blob, copy))
        return copy

    def __enter__(self):
        return self.views

    def __exit__(self, kind, *rest):
        if kind is None:
            for blob, copy in self.pairs:
                blob.data, blob.diff = self.xp.asarray(copy.data), self.xp.asarray(copy.diff)
        return False


def import_user_module(name, source_path=None):
    """The user's module, found as Caffe finds it (sys.path, with the prototxt's folder and the
    working directory first), its `import caffe` resolving to netspec.pycaffe."""
    if name in sys.modules:
        return sys.modules[name]
    first = [os.path.dirname(os.path.abspath(source_path))] if source_path else []
    first.append(os.getcwd())
    saved = list(sys.path)
    sys.path[:0] = [d for d in first if d not in sys.path[:len(first)]]
    try:
        with caffe_alias():
            return importlib.import_module(name)
    finally:
        sys.path[:] = saved


# -- `import caffe` as netspec.pycaffe ----------------------------------------------------------------
# caffe's module names -> netspec's; the modules load only when the user's code imports them
CAFFE_MODULES = {
    "caffe": "netspec.pycaffe", "caffe.pycaffe": "netspec.pycaffe.pycaffe", "caffe.io": "netspec.pycaffe.io",
    "caffe.draw": "netspec.pycaffe.draw", "caffe.classifier": "netspec.pycaffe.classifier",
    "caffe.detector": "netspec.pycaffe.detector", "caffe.net_spec": "netspec.pycaffe.net_spec",
    "caffe.coord_map": "netspec.pycaffe.coord_map", "caffe.proto": "netspec.pycaffe.proto",
    "caffe.proto.caffe_pb2": "netspec.caffe_pb2",
}


class _CaffeFinder:
    """An import hook: `import caffe...` gives the netspec module of CAFFE_MODULES. (The import
    system asks only for these methods; importlib.abc's bases would load importlib.resources
    and pathlib into every command.)"""

    def find_spec(self, name, path=None, target=None):
        if name not in CAFFE_MODULES:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return importlib.import_module(CAFFE_MODULES[spec.name])

    def exec_module(self, module):
        pass        # already loaded under netspec's own name


def install_caffe_alias():
    """`caffe` is netspec.pycaffe from now on (the launcher's whole run); returns how to undo it."""
    finder = _CaffeFinder()
    saved = {n: sys.modules.pop(n) for n in list(sys.modules) if n in CAFFE_MODULES}
    sys.meta_path.insert(0, finder)

    def undo():
        sys.meta_path.remove(finder)
        for n in CAFFE_MODULES:
            sys.modules.pop(n, None)
        sys.modules.update(saved)
    return undo


@contextlib.contextmanager
def caffe_alias():
    """While the user's module imports: a real pycaffe installed elsewhere is put back afterwards."""
    undo = install_caffe_alias()
    try:
        yield
    finally:
        undo()


def _user_failure(what, error):
    """'what raised Kind: message', with the traceback lines of the user's code (not netspec's)."""
    import traceback
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if not os.path.abspath(f.filename).startswith(_NETSPEC_DIR + os.sep)]
    lines = "".join(traceback.format_list(frames)).rstrip()
    return f"{what} raised {type(error).__name__}: {error}" + (f"\n{lines}" if lines else "")
