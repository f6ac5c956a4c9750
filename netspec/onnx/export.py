"""A checked, weighted Net written as an ONNX model.

Each layer class has one mapping function (registered with @maps(type) in this package's
family modules); it receives a LayerContext and adds the ONNX nodes that compute exactly
what the layer's forward computes at TEST. A layer with no exact ONNX equivalent raises
a NetspecError naming the layer and why: a converted graph is never silently different.

Value names: a top keeps its blob's name at its last writer; an earlier writer of an
in-place blob (conv1 before relu1 overwrites it) names it '<layer>/<blob>'. The model's
metadata 'netspec:tops' maps every layer to the ONNX values of its tops, so
`netspec compare` can line up netspec's per-layer outputs with onnxruntime's.
"""
import json

import numpy as np

from ..backend import to_numpy
from ..errors import NetspecError
from ..layers import layer_class

MIN_OPSET = 13      # Softmax over one axis (Caffe's semantics) needs opset 13
DEFAULT_OPSET = 17
TOPS_KEY = "netspec:tops"

_MAPPERS = {}


def maps(*type_names):
    """Register a mapping function for the layer classes of these Caffe types."""
    def register(fn):
        for name in type_names:
            _MAPPERS[layer_class(name)] = fn
        return fn
    return register


def _mapper(layer):
    for cls in type(layer).__mro__:
        if cls in _MAPPERS:
            return _MAPPERS[cls]
    return None


class LayerContext:
    """What a mapping function sees: its layer, the ONNX names of its bottoms and tops,
    their shapes, its parameters as NumPy arrays, and helpers that add nodes/constants."""

    def __init__(self, exporter, step, inputs, outputs):
        self.ex, self.step, self.layer = exporter, step, step.layer
        self.inputs, self.outputs = inputs, outputs
        self.bottom_shapes = [exporter.net.shapes[b] for b in step.node.bottoms]
        self.top_shapes = [exporter.net.shapes[t] for t in step.node.tops]
        self.opset, self.dynamic_batch = exporter.opset, exporter.dynamic_batch

    def param(self, j):
        return to_numpy(self.layer.blobs[j].data).astype(np.float32)

    def fail(self, reason, hint=None):
        node = self.step.node
        raise NetspecError(f"cannot export to ONNX: {reason}", file=self.ex.net.source.path, line=node.line,
                           layer=self.layer.name, layer_type=self.layer.type, hint=hint)

    def tmp(self, what):
        return self.ex.unique(f"{self.layer.name}/{what}")

    def const(self, array, what="const", dtype=np.float32):
        from onnx import numpy_helper
        name = self.tmp(what)
        self.ex.initializers.append(numpy_helper.from_array(np.asarray(array, dtype=dtype), name))
        return name

    def ints(self, values, what="shape"):
        return self.const(np.asarray(values, np.int64), what, np.int64)

    def node(self, op, inputs, outputs=None, **attrs):
        """Add one node; `outputs` None makes one temporary output. Returns the output name(s)."""
        from onnx import helper
        single = outputs is None or isinstance(outputs, str)
        outs = [self.tmp(op.lower())] if outputs is None else [outputs] if single else list(outputs)
        self.ex.nodes.append(helper.make_node(op, list(inputs), outs, name=self.tmp(op), **attrs))
        return outs[0] if single else outs

    def reshape(self, x, shape, out=None):
        """Reshape to a static shape; with a dynamic batch, axis 0 copies the input's (0)."""
        shape = list(shape)
        if self.dynamic_batch and shape:
            shape[0] = 0
        return self.node("Reshape", [x, self.ints(shape)], out)

    def reduce(self, op, x, axes, out=None, keepdims=1):
        """ReduceSum/Mean/L1/SumSquare over axes, with axes as the opset wants them."""
        as_input = self.opset >= (13 if op == "ReduceSum" else 18)
        if as_input:
            return self.node(op, [x, self.ints(axes, "axes")], out, keepdims=keepdims)
        return self.node(op, [x], out, axes=list(axes), keepdims=keepdims)


def value_names(steps, graph_inputs):
    """{(step index, top index): value name}: the blob's own name at its last writer (and
    never for a graph input's blob), '<layer>/<blob>' at the writers before it."""
    last = {}
    for i, step in enumerate(steps):
        for t in step.node.tops:
            last[t] = i
    return {(i, k): t if last[t] == i and t not in graph_inputs else f"{step.name}/{t}"
            for i, step in enumerate(steps) for k, t in enumerate(step.node.tops)}


class Exporter:
    def __init__(self, net, opset, dynamic_batch):
        self.net, self.opset, self.dynamic_batch = net, opset, dynamic_batch
        self.nodes, self.initializers, self.names = [], [], set()
        self.tops = {}

    def unique(self, name):
        base, i = name, 1
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def run(self):
        from onnx import TensorProto, helper
        net = self.net
        steps = [s for s in net.steps if not s.feeds_only]
        graph_inputs = list(net.inputs)
        names = value_names(steps, graph_inputs)
        self.names |= set(names.values()) | set(graph_inputs)
        current = {b: b for b in graph_inputs}     # blob -> ONNX value holding it now
        for i, step in enumerate(steps):
            node = step.node
            if not node.bottoms and not node.tops:
                continue
            mapper = _mapper(step.layer)
            ctx = LayerContext(self, step, [], [names[i, k] for k in range(len(node.tops))])
            if mapper is None:
                ctx.fail(f"{step.layer.type} has no ONNX equivalent in netspec's exporter",
                         hint=_NO_MAPPING_HINT)
            for b in node.bottoms:
                if b not in current:
                    ctx.fail(f"its bottom '{b}' comes from a layer that is not exported (a data layer)",
                             hint=f"feed it as an input: --input {b}=N,C,H,W")
            ctx.inputs = [current[b] for b in node.bottoms]
            mapper(ctx)
            for t, name in zip(node.tops, ctx.outputs):
                current[t] = name
            self.tops[step.name] = list(ctx.outputs)
        outputs = [o for o in net.outputs if o in current]
        if not outputs:
            raise NetspecError("cannot export to ONNX: the net has no output", file=net.source.path)

        def info(name, value):
            shape = list(net.shapes[name])
            if self.dynamic_batch and shape:
                shape[0] = "N"
            return helper.make_tensor_value_info(value, TensorProto.FLOAT, shape)

        graph = helper.make_graph(self.nodes, net.name or "net", [info(b, b) for b in graph_inputs],
                                  [info(o, current[o]) for o in outputs], self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="netspec")
        model.ir_version = min(model.ir_version, _ir_for_opset(self.opset))
        helper.set_model_props(model, {TOPS_KEY: json.dumps(self.tops)})
        return model


_NO_MAPPING_HINT = ("only layers with an exact ONNX equivalent are exported; export the deploy net "
                    "(no data, loss or accuracy layers), or replace this layer")


def _ir_for_opset(opset):
    """The IR version that came with an opset (ONNX's table), so older runtimes load the file."""
    from onnx import helper
    for ir, (domain_opset, *_rest) in [(r[1], r[2:]) for r in helper.VERSION_TABLE]:
        if domain_opset >= opset:
            return ir
    return helper.VERSION_TABLE[-1][1]


def check_opset(opset):
    onnx = require()
    top = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= top:
        raise NetspecError(f"opset {opset} is not one netspec exports: it needs {MIN_OPSET}..{top}",
                           hint=f"use --opset {DEFAULT_OPSET} (Softmax over one axis, as Caffe's, needs opset 13)")


def to_onnx(net, opset=DEFAULT_OPSET, dynamic_batch=False, check=True):
    """The ONNX ModelProto of a Net (its current weights); checked with onnx.checker full_check."""
    onnx = require()
    from . import common, neuron, vision  # noqa: F401  (registers the mappings)
    check_opset(opset)
    model = Exporter(net, opset, dynamic_batch).run()
    if check:
        try:
            onnx.checker.check_model(model, full_check=True)
        except Exception as e:     # onnx raises several types; any is a bug in a mapping, say which
            raise NetspecError(f"the exported ONNX model does not pass onnx.checker: {e}",
                               file=net.source.path, hint="this is a netspec bug: please report it "
                                                          "with the net") from None
    return model


def layer_tops(model):
    """{layer name: [ONNX value names of its tops]} from an exported model ({} if not ours)."""
    for prop in model.metadata_props:
        if prop.key == TOPS_KEY:
            return json.loads(prop.value)
    return {}


def require(what="ONNX export"):
    """Import onnx, or say how to install it (an optional extra)."""
    try:
        import onnx
    except ImportError:
        raise NetspecError(f"{what} needs the onnx package, which is not installed",
                           hint="pip install 'netspec[onnx]' (onnx and onnxruntime)") from None
    return onnx


def save(model, path):
    """Write a ModelProto atomically."""
    from ..utils import atomic_write
    atomic_write(path, model.SerializeToString())
