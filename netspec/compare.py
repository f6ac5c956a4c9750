"""Run two things on the same input and find the first layer where they diverge.

A side is a netspec Net (a weights file, a backend), an ONNX model run by onnxruntime, or a
dump of blob name -> array (.npz, or HDF5 as pycaffe users write net.blobs). Every side
gives {value name: array}; netspec's values are named as the ONNX exporter names them (a
blob's own name at its last writer, '<layer>/<blob>' before an in-place layer overwrites
it), so a dump of final blob values and an exported model line up with the same trace.

Two values agree when max|a - b| <= atol + rtol * max|b|: the tolerance scales with the
blob, so near-zero elements of a large blob do not count as a disagreement.
"""
import os
from dataclasses import dataclass

import numpy as np

from .errors import NetspecError
from .utils import PROTO_LIMIT, read_regular, regular_file


@dataclass
class Row:
    layer: str
    layer_type: str
    blob: str
    shape: tuple
    max_abs: float
    max_rel: float
    ok: bool


def net_trace(net, feeds):
    """(order, values): netspec's per-layer tops after each layer ran, in execution order.
    order: [(layer name, layer type, value name)]; values: {value name: array copy}."""
    from .backend import to_numpy
    from .onnx.export import value_names
    net.forward(**feeds)            # feeds, reshapes and runs the data layers once
    steps = [s for s in net.steps if not s.feeds_only]
    names = value_names(steps, list(net.inputs))
    order, values = [], {}
    for name in net.inputs:
        values[name] = to_numpy(net.blobs[name].data).copy()
    for i, step in enumerate(steps):
        if step.node.bottoms:       # data layers already ran; do not consume another batch
            net.run_step(step)
        for k, top in enumerate(step.tops):
            name = names[i, k]
            order.append((step.name, step.layer.type, name))
            values[name] = to_numpy(top.data).copy()
    return order, values


def onnx_values(path, feeds, wanted):
    """{value name: array} from onnxruntime for every wanted name the model computes."""
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        raise NetspecError("comparing with an ONNX model needs onnx and onnxruntime",
                           hint="pip install 'netspec[onnx]'") from None
    try:
        model = onnx.load_from_string(read_regular(path, "the ONNX model", PROTO_LIMIT))
    except NetspecError:
        raise
    except Exception as e:      # a protobuf DecodeError, or an OSError
        raise NetspecError(f"not an ONNX model: {e}", file=path) from None
    produced = {o for node in model.graph.node for o in node.output}
    have = {o.name for o in model.graph.output}
    for name in wanted:
        if name in produced and name not in have:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
            have.add(name)
    inputs = {i.name for i in model.graph.input} - {t.name for t in model.graph.initializer}
    missing = sorted(inputs - set(feeds))
    if missing:
        raise NetspecError(f"the ONNX model's input(s) {', '.join(missing)} are not inputs of the net",
                           file=path, hint="compare a model exported from this net")
    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        results = sess.run(names, {k: v for k, v in feeds.items() if k in inputs})
    except Exception as e:      # onnxruntime's own exception types
        raise NetspecError(f"onnxruntime cannot run the model: {e}", file=path) from None
    return dict(zip(names, results))


def dump_values(path):
    """{blob name: array} from an .npz, or an HDF5 file (nested groups for names with '/')."""
    try:
        regular_file(path, "the blob dump", PROTO_LIMIT * 1024)
    except OSError as e:
        raise NetspecError(f"cannot read the blob dump: {e.strerror}", file=path) from None
    if path.endswith(".npz"):
        try:
            with np.load(path) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError) as e:
            raise NetspecError(f"cannot read the blob dump: {e}", file=path) from None
    import h5py
    found = {}
    try:
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, obj: found.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    except OSError as e:
        raise NetspecError(f"cannot read the blob dump as HDF5: {e}", file=path) from None
    return found


def compare(order, a, b, atol, rtol):
    """Rows for every value both sides have, in execution order; values only one side
    has are left out."""
    rows = []
    for layer, layer_type, name in order:
        if name not in a or name not in b:
            continue
        x, y = np.asarray(a[name], np.float64), np.asarray(b[name], np.float64)
        if x.shape != y.shape:
            if x.size != y.size:
                rows.append(Row(layer, layer_type, name, x.shape, float("inf"), float("inf"), False))
                continue
            y = y.reshape(x.shape)      # pycaffe and onnx agree on data, not always on 1-sized axes
        diff = np.abs(x - y)
        max_abs = float(diff.max()) if diff.size else 0.0
        scale = float(np.abs(y).max()) if y.size else 0.0
        both_nan = np.isnan(x) & np.isnan(y)
        bad_nan = bool((np.isnan(x) != np.isnan(y)).any())
        if both_nan.any():
            max_abs = float(np.where(both_nan, 0, diff).max())
        rel = max_abs / scale if scale else (0.0 if max_abs == 0 else float("inf"))
        rows.append(Row(layer, layer_type, name, x.shape, max_abs, rel, not bad_nan and max_abs <= atol + rtol * scale))
    return rows


def random_inputs(net, seed=0):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(net.blobs[n].shape).astype(np.float32) for n in net.inputs}


def kind_of(path):
    """'onnx', 'dump' or 'weights' by the file name."""
    low = path.lower()
    if low.endswith(".onnx"):
        return "onnx"
    if low.endswith(".npz"):
        return "dump"
    if low.endswith((".caffemodel", ".caffemodel.h5")):
        return "weights"
    if low.endswith((".h5", ".hdf5")):
        return "dump"
    if not os.path.exists(path):
        raise NetspecError(f"'{path}' does not exist", hint="check the path")
    raise NetspecError(f"cannot tell what '{path}' holds from its name",
                       hint="name it .caffemodel/.caffemodel.h5 (weights), .onnx (a model) or .npz/.h5 (blobs)")
