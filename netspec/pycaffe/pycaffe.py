"""pycaffe's Net and solvers (BVLC Caffe 1.0's python/caffe/pycaffe.py and _caffe.cpp), over
netspec.Net and netspec's training loop.

Semantics as pycaffe's: blobs are views (net.blobs[name].data is the blob's own array, and what
forward() returns are those arrays: copy what must outlive the next call); forward(**inputs)
needs every input and a batch of the net's own size (reshape first for another); layer and
blob names unknown to the net raise ValueError/KeyError where pycaffe's list and dict lookups
do; a file that cannot be opened is a RuntimeError ("Could not open file ...").
"""
import os
import sys
from collections import OrderedDict
from itertools import zip_longest

import numpy as np

from .. import caffe_pb2
from ..layers.python import PythonLayer
from ..net import Net as _Engine

TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST
_MODE = {"backend": "numpy", "device": 0, "seed": None}


# -- the process-wide settings (Caffe's singleton) -----------------------------------------------
def set_mode_cpu():
    _MODE["backend"] = "numpy"


def set_mode_gpu():
    """Nets made from now on run on CuPy; making one where CuPy or a GPU is missing is an error."""
    _MODE["backend"] = "cupy"


def set_device(device_id):
    device_id = int(device_id)
    _MODE["device"] = device_id
    if _MODE["backend"] == "cupy":
        _use_device()


def _use_device():
    from ..backend import get_xp
    get_xp("cupy").cuda.Device(_MODE["device"]).use()


def set_random_seed(seed):
    """Seeds the fillers and random layers of the nets made from now on (Caffe::set_random_seed)."""
    _MODE["seed"] = int(seed)


def layer_type_list():
    from ..layers import LAYERS
    return sorted(LAYERS)


def _backend():
    if _MODE["backend"] == "cupy":
        _use_device()
    return _MODE["backend"]


def _check_file(path):
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"expected a file name, got {type(path).__name__}")
    if not os.path.isfile(path):
        raise RuntimeError(f"Could not open file {os.fsdecode(path)}")


def _phase(value):
    if isinstance(value, bool) or value not in (TRAIN, TEST):
        raise TypeError(f"phase must be caffe.TRAIN ({TRAIN}) or caffe.TEST ({TEST}), got {value!r}")
    return int(value)


# -- layers ----------------------------------------------------------------------------------------
class _LayerView:
    """A net's layer as pycaffe shows it: .type and .blobs (its parameter Blobs)."""

    def __init__(self, layer):
        self._layer = layer

    @property
    def type(self):
        return self._layer.type

    @property
    def blobs(self):
        return list(self._layer.blobs)

    def __repr__(self):
        return f"<caffe layer '{self._layer.name}' ({self._layer.type})>"


def _layer_object(layer):
    """A Python layer is the user's own object (as in pycaffe); any other, a view."""
    user = getattr(layer, "user", None)
    return user if isinstance(user, PythonLayer) else _LayerView(layer)


# -- the net ---------------------------------------------------------------------------------------
class Net:
    """caffe.Net(network_file, phase, level=0, stages=None, weights=None), and the deprecated
    caffe.Net(network_file, weights, phase)."""

    def __init__(self, network_file, *args, **kwargs):
        phase, weights, level, stages = _net_arguments(args, kwargs)
        _check_file(network_file)
        if weights is not None:
            _check_file(weights)
        engine = _Engine(os.fsdecode(network_file), weights=None, phase=phase, backend=_backend(),
                         seed=_MODE["seed"], stages=tuple(stages or ()), level=level)
        self._bind(engine)
        if weights is not None:
            engine.copy_from(os.fsdecode(weights))

    @classmethod
    def _wrap(cls, engine):
        """A pycaffe Net over a netspec Net that already exists (a solver's)."""
        net = cls.__new__(cls)
        net._bind(engine)
        return net

    def _bind(self, engine):
        self._net = engine
        self._layer_objects = [_layer_object(layer) for layer in engine.layers]

    # names and structure
    @property
    def blobs(self):
        return OrderedDict(self._net.blobs)

    @property
    def params(self):
        return OrderedDict((name, list(blobs)) for name, blobs in self._net.params.items())

    @property
    def layers(self):
        return list(self._layer_objects)

    @property
    def layer_dict(self):
        return OrderedDict(zip(self._net.layer_names, self._layer_objects))

    @property
    def _layer_names(self):
        return list(self._net.layer_names)

    @property
    def _blob_names(self):
        return list(self._net.blobs)

    @property
    def _blobs(self):
        return list(self._net.blobs.values())

    @property
    def inputs(self):
        return list(self._net.graph.inputs)

    @property
    def outputs(self):
        return list(self._net.outputs)

    @property
    def top_names(self):
        return OrderedDict((n.layer.name, list(n.tops)) for n in self._net.nodes)

    @property
    def bottom_names(self):
        return OrderedDict((n.layer.name, list(n.bottoms)) for n in self._net.nodes)

    @property
    def blob_loss_weights(self):
        weights = OrderedDict((name, 0.0) for name in self._net.blobs)
        for node in self._net.nodes:
            for top, w in zip(node.tops, node.loss_weights):
                if w:
                    weights[top] = float(w)
        return weights

    @property
    def _blob_loss_weights(self):
        return list(self.blob_loss_weights.values())

    # running
    def _layer_index(self, name):
        return self._net.layer_names.index(name)       # ValueError for an unknown layer, as pycaffe

    def _forward(self, start, end):
        self._net.forward(start=self._net.layer_names[start], end=self._net.layer_names[end])
        return self._net.loss

    def _backward(self, start, end):
        self._net.backward(start=self._net.layer_names[start], end=self._net.layer_names[end])

    def forward(self, blobs=None, start=None, end=None, **kwargs):
        """Set the inputs given, run from `start` to `end` (layer names, inclusive); {blob: data}
        of the outputs (or of `end`'s tops) and of `blobs`."""
        blobs = list(blobs or [])
        start_ind = 0 if start is None else self._layer_index(start)
        end_ind = len(self._net.layers) - 1 if end is None else self._layer_index(end)
        outputs = set((self.top_names[end] if end is not None else self.outputs) + blobs)
        if kwargs:
            if set(kwargs) != set(self.inputs):
                raise Exception("Input blob arguments do not match net inputs: given "
                                f"{sorted(kwargs)}, the net's inputs are {self.inputs}")
            for name, array in kwargs.items():
                blob = self._net.blobs[name]
                if np.shape(array)[:1] != blob.shape[:1]:
                    raise Exception(f"Input is not batch sized: '{name}' has {np.shape(array)[:1]} items, the "
                                    f"net's batch is {blob.shape[0]} (reshape the blob and call net.reshape() first)")
                blob.data[...] = array
        self._forward(start_ind, end_ind)
        return {out: self._net.blobs[out].data for out in outputs}

    def backward(self, diffs=None, start=None, end=None, **kwargs):
        """Set the output diffs given, run backward from `start` down to `end`; {blob: diff} of
        the inputs (or of `end`'s bottoms) and of `diffs`."""
        diffs = list(diffs or [])
        start_ind = len(self._net.layers) - 1 if start is None else self._layer_index(start)
        end_ind = 0 if end is None else self._layer_index(end)
        outputs = set((self.bottom_names[end] if end is not None else self.inputs) + diffs)
        if kwargs:
            if set(kwargs) != set(self.outputs):
                raise Exception("Top diff arguments do not match net outputs: given "
                                f"{sorted(kwargs)}, the net's outputs are {self.outputs}")
            for name, diff in kwargs.items():
                if np.shape(diff)[:1] != self._net.blobs[name].shape[:1]:
                    raise Exception(f"Diff is not batch sized: '{name}'")
        names = self._net.layer_names
        self._net.backward(start=names[start_ind], end=names[end_ind], **kwargs)
        return {out: self._net.blobs[out].diff for out in outputs}

    def forward_all(self, blobs=None, **kwargs):
        """forward() over inputs of any length, in batches of the net's size (the last padded);
        {blob: all its rows}."""
        all_outs = {out: [] for out in set(self.outputs + list(blobs or []))}
        for batch in self._batch(kwargs):
            for out, data in self.forward(blobs=blobs, **batch).items():
                all_outs[out].extend(data.copy())
        for out in all_outs:
            all_outs[out] = np.asarray(all_outs[out])
        pad = len(next(iter(all_outs.values()))) - len(next(iter(kwargs.values()))) if kwargs else 0
        if pad:
            for out in all_outs:
                all_outs[out] = all_outs[out][:-pad]
        return all_outs

    def forward_backward_all(self, blobs=None, diffs=None, **kwargs):
        all_outs = {out: [] for out in set(self.outputs + list(blobs or []))}
        all_diffs = {diff: [] for diff in set(self.inputs + list(diffs or []))}
        forward_batches = self._batch({k: kwargs[k] for k in self.inputs if k in kwargs})
        backward_batches = self._batch({k: kwargs[k] for k in self.outputs if k in kwargs})
        for fb, bb in zip_longest(forward_batches, backward_batches, fillvalue={}):
            for out, data in self.forward(blobs=blobs, **fb).items():
                all_outs[out].extend(data.copy())
            for name, diff in self.backward(diffs=diffs, **bb).items():
                all_diffs[name].extend(diff.copy())
        for group in (all_outs, all_diffs):
            for name in group:
                group[name] = np.asarray(group[name])
        pad = len(next(iter(all_outs.values()))) - len(next(iter(kwargs.values()))) if kwargs else 0
        if pad:
            for group in (all_outs, all_diffs):
                for name in group:
                    group[name] = group[name][:-pad]
        return all_outs, all_diffs

    def _batch(self, blobs):
        """{name: rows} in batches of the net's batch size; the last one padded with zeros."""
        if not blobs:
            return
        num = len(next(iter(blobs.values())))
        batch_size = next(iter(self._net.blobs.values())).shape[0]
        for i in range(0, num - num % batch_size, batch_size):
            yield {name: rows[i:i + batch_size] for name, rows in blobs.items()}
        remainder = num % batch_size
        if remainder:
            yield {name: np.concatenate([rows[-remainder:], np.zeros((batch_size - remainder,) + rows.shape[1:])])
                   for name, rows in blobs.items()}

    def set_input_arrays(self, data, labels):
        """The arrays a MemoryData first layer serves, batch by batch (kept by reference, as Caffe)."""
        if np.ndim(labels) == 1:
            labels = np.ascontiguousarray(np.asarray(labels)[:, None, None, None])
        layer = self._net.layers[0]
        if not hasattr(layer, "set_input_arrays"):         # a MemoryData layer's
            raise RuntimeError("set_input_arrays may only be called if the first layer is a MemoryDataLayer "
                               f"(the first layer here, '{layer.name}', is {layer.type})")
        for name, array, shape in (("data array", data, layer.shape[1:]), ("labels array", labels, (1, 1, 1))):
            if not isinstance(array, np.ndarray) or not array.flags.c_contiguous:
                raise RuntimeError(f"{name} must be a C contiguous NumPy array")
            if array.ndim != 4:
                raise RuntimeError(f"{name} must be 4-d, got {array.ndim}-d")
            if array.dtype != np.float32:
                raise RuntimeError(f"{name} must be float32, got {array.dtype}")
            for axis, what in ((1, "number of channels"), (2, "height"), (3, "width")):
                if array.shape[axis] != shape[axis - 1]:
                    raise RuntimeError(f"{name} has wrong {what}: {array.shape[axis]}, the layer's is {shape[axis - 1]}")
        if data.shape[0] != labels.shape[0]:
            raise RuntimeError("data and labels must have the same first dimension")
        if data.shape[0] % layer.shape[0]:
            raise RuntimeError(f"first dimensions of input arrays must be a multiple of batch size {layer.shape[0]}")
        layer.set_input_arrays(data, labels)

    # reshaping and weights
    def reshape(self):
        """After net.blobs[input].reshape(...): every blob's shape follows (Net::Reshape)."""
        self._net.reshape()

    def copy_from(self, filename):
        self._net.copy_from(os.fsdecode(filename))

    def share_with(self, other):
        self._net.share_with(other._net if isinstance(other, Net) else other)

    def save(self, filename):
        self._net.save(os.fsdecode(filename))

    def save_hdf5(self, filename):
        self._net.save_hdf5(os.fsdecode(filename))

    def load_hdf5(self, filename):
        self._net.copy_from(os.fsdecode(filename))

    def clear_param_diffs(self):
        self._net.clear_param_diffs()

    def __repr__(self):
        return f"<caffe.Net over {self._net!r}>"


def _net_arguments(args, kwargs):
    """(phase, weights, level, stages) from pycaffe's two constructor signatures."""
    kwargs = dict(kwargs)
    weights = kwargs.pop("weights", None)
    if args and isinstance(args[0], (str, bytes, os.PathLike)):      # Net(file, weights, phase)
        if len(args) != 2 or weights is not None or kwargs:
            raise TypeError("Net(network_file, pretrained_file, phase) takes exactly those three arguments")
        weights, phase = args
        return _phase(phase), weights, 0, ()
    names = ["phase", "level", "stages", "weights"]
    if len(args) > len(names):
        raise TypeError(f"Net() takes at most {len(names) + 1} positional arguments")
    values = dict(zip(names, args))
    for key in kwargs:
        if key not in names or key in values:
            raise TypeError(f"Net() got an unexpected or repeated keyword argument '{key}'")
    values.update(kwargs)
    if "phase" not in values:
        raise TypeError("Net() needs a phase: caffe.Net(network_file, caffe.TEST)")
    level = values.get("level", 0)
    if not isinstance(level, int) or isinstance(level, bool):
        raise TypeError(f"level must be an int, got {level!r}")
    stages = values.get("stages") or ()
    if isinstance(stages, str) or not all(isinstance(s, str) for s in stages):
        raise TypeError(f"stages must be a list of strings, got {stages!r}")
    return _phase(values["phase"]), values.get("weights", weights), level, tuple(stages)


# -- solvers ---------------------------------------------------------------------------------------
class Solver:
    """pycaffe's Solver: .net, .test_nets, .iter, step(n), solve(), apply_update(), snapshot(), restore()."""
    type = None         # the update rule a constructor forces (SGDSolver: SGD); get_solver: the file's

    def __init__(self, filename):
        from ..training import Log, Trainer, read_solver
        _check_file(filename)
        sp = read_solver(os.fsdecode(filename))
        if self.type is not None:
            sp.type = self.type
        seed = _MODE["seed"]
        self._trainer = Trainer(sp, backend=_backend(), seed=seed, log=Log(stream=sys.stderr),
                                solver_path=os.fsdecode(filename), share_memory=False)
        self._net = Net._wrap(self._trainer.net)
        self._test_nets = [Net._wrap(n) for n in self._trainer.test_nets]

    @property
    def net(self):
        return self._net

    @property
    def test_nets(self):
        return list(self._test_nets)

    @property
    def iter(self):
        return self._trainer.solver.iter

    @property
    def param(self):
        return self._trainer.sp

    def step(self, iters):
        self._trainer.step(int(iters))

    def solve(self, resume_file=None):
        self._trainer.solve(resume=os.fsdecode(resume_file) if resume_file else None)

    def apply_update(self):
        """One update from the diffs as they are (the iteration count is not advanced, as Caffe's ApplyUpdate)."""
        self._trainer.solver.apply_update()

    def snapshot(self):
        self._trainer.snapshot()

    def restore(self, state_file):
        _check_file(state_file)
        self._trainer.restore(os.fsdecode(state_file))


class SGDSolver(Solver):
    type = "SGD"


class NesterovSolver(Solver):
    type = "Nesterov"


class AdaGradSolver(Solver):
    type = "AdaGrad"


class RMSPropSolver(Solver):
    type = "RMSProp"


class AdaDeltaSolver(Solver):
    type = "AdaDelta"


class AdamSolver(Solver):
    type = "Adam"


def get_solver(filename):
    """The solver the file's `type` names (Caffe's SolverRegistry)."""
    return Solver(filename)
