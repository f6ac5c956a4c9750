"""ONNX mappings of the common layers: InnerProduct, Concat/Slice/Split, Flatten/Reshape,
Eltwise, Scale/Bias, BatchNorm, MVN, Softmax, ArgMax, Reduction, Tile, Embed, Silence,
BatchReindex, Parameter; and the reasons the data, loss and other layers are refused."""
import numpy as np

from .. import caffe_pb2
from .export import maps

EP = caffe_pb2.EltwiseParameter
RP = caffe_pb2.ReductionParameter


@maps("InnerProduct")
def inner_product(ctx):
    """Caffe flattens every axis from `axis` on in NCHW order (ONNX Flatten's order), then
    x W^T + b: a Gemm with transB (no transB with transpose: true)."""
    layer, shape = ctx.layer, ctx.bottom_shapes[0]
    axis = layer.canonical_axis(layer.lp.inner_product_param.axis, len(shape))
    x = ctx.inputs[0] if len(shape) == 2 and axis == 1 else ctx.node("Flatten", ctx.inputs, None, axis=axis)
    inputs = [x, ctx.const(ctx.param(0), "weight")] + ([ctx.const(ctx.param(1), "bias")] if layer.bias_term else [])
    if axis == 1:
        ctx.node("Gemm", inputs, ctx.outputs[0], transB=0 if layer.transpose else 1)
        return
    y = ctx.node("Gemm", inputs, None, transB=0 if layer.transpose else 1)
    ctx.node("Reshape", [y, ctx.ints(ctx.top_shapes[0])], ctx.outputs[0])


@maps("Concat")
def concat(ctx):
    axis = ctx.layer.legacy_axis("concat_param", "concat_dim", len(ctx.bottom_shapes[0]))
    ctx.node("Concat", ctx.inputs, ctx.outputs[0], axis=axis)


@maps("Slice")
def slice_(ctx):
    axis = ctx.layer.legacy_axis("slice_param", "slice_dim", len(ctx.bottom_shapes[0]))
    sizes = [s[axis] for s in ctx.top_shapes]
    if len(sizes) == 1:
        ctx.node("Identity", ctx.inputs, ctx.outputs[0])
        return
    ctx.node("Split", [ctx.inputs[0], ctx.ints(sizes, "split")], ctx.outputs, axis=axis)


@maps("Split")
def split(ctx):
    for y in ctx.outputs:
        ctx.node("Identity", ctx.inputs, y)


@maps("Flatten", "Reshape")
def reshape(ctx):
    """The shape pass's answer, written out (0 keeps a dynamic batch)."""
    if ctx.dynamic_batch and ctx.top_shapes[0][:1] != ctx.bottom_shapes[0][:1]:
        ctx.fail("it changes the batch axis, which --dynamic-batch leaves free", hint="export without --dynamic-batch")
    ctx.reshape(ctx.inputs[0], ctx.top_shapes[0], ctx.outputs[0])


@maps("Eltwise")
def eltwise(ctx):
    p, (y,) = ctx.layer.lp.eltwise_param, ctx.outputs
    if p.operation == EP.PROD:
        _chain(ctx, "Mul", ctx.inputs, y)
        return
    if p.operation == EP.MAX:
        ctx.node("Max", ctx.inputs, y)
        return
    coeff = list(p.coeff) or [1.0] * len(ctx.inputs)
    terms = [x if c == 1 else ctx.node("Mul", [x, ctx.const(c, f"coeff{i}")]) for i, (x, c) in
             enumerate(zip(ctx.inputs, coeff))]
    _chain(ctx, "Add", terms, y)


def _chain(ctx, op, terms, y):
    """((t0 op t1) op t2) ... in Caffe's order, the last node writing y."""
    acc = terms[0]
    for i, t in enumerate(terms[1:], start=2):
        acc = ctx.node(op, [acc, t], y if i == len(terms) else None)


def _broadcast_shape(ctx, operand):
    """The operand's shape padded with 1s to line up with bottom 0 at its axis."""
    shape = ctx.bottom_shapes[0]
    axis = ctx.layer.operand_axis(shape, operand)
    return (1,) * axis + tuple(operand) + (1,) * (len(shape) - axis - len(operand))


def _broadcast(ctx, y, learned, bias_index):
    """Scale and Bias: the operand from bottom 1 (reshaped to broadcast) or from a blob."""
    x = ctx.inputs[0]
    operand = tuple(ctx.bottom_shapes[1]) if len(ctx.inputs) == 2 else ctx.layer.operand_shape(ctx.bottom_shapes)
    shape = _broadcast_shape(ctx, operand)
    if len(ctx.inputs) == 2:
        other = ctx.node("Reshape", [ctx.inputs[1], ctx.ints(shape)])
    else:
        other = ctx.const(ctx.param(0).reshape(shape), "operand")
    if bias_index is None:
        return ctx.node(learned, [x, other], y)
    scaled = ctx.node(learned, [x, other])
    return ctx.node("Add", [scaled, ctx.const(ctx.param(bias_index).reshape(shape), "bias")], y)


@maps("Scale")
def scale(ctx):
    bias = (len(ctx.layer.blobs) - 1) if ctx.layer.lp.scale_param.bias_term else None
    _broadcast(ctx, ctx.outputs[0], "Mul", bias)


@maps("Bias")
def bias(ctx):
    _broadcast(ctx, ctx.outputs[0], "Add", None)


@maps("BatchNorm")
def batch_norm(ctx):
    """The stored sums divided by the moving-average factor (blob 2; 0 gives 0, as Caffe),
    then ONNX BatchNormalization with unit scale and zero shift (Caffe's BatchNorm has no
    affine part; a following Scale layer maps on its own)."""
    layer, shape = ctx.layer, ctx.bottom_shapes[0]
    if not layer.use_global_stats:
        ctx.fail("it normalises with each batch's own statistics (use_global_stats false)",
                 hint="export the TEST phase net, or set batch_norm_param { use_global_stats: true }")
    if len(shape) < 2:
        ctx.fail(f"a {len(shape)}-d bottom has no channel axis for ONNX BatchNormalization")
    factor = float(ctx.param(2).reshape(-1)[0])
    s = 0.0 if factor == 0 else 1.0 / factor
    c = shape[1]
    mean, var = ctx.param(0) * np.float32(s), ctx.param(1) * np.float32(s)
    ctx.node("BatchNormalization", [ctx.inputs[0], ctx.const(np.ones(c), "scale"), ctx.const(np.zeros(c), "shift"),
                                    ctx.const(mean, "mean"), ctx.const(var, "var")], ctx.outputs[0],
             epsilon=layer.eps)


@maps("MVN")
def mvn(ctx):
    p, shape = ctx.layer.lp.mvn_param, ctx.bottom_shapes[0]
    axes = list(range(1 if p.across_channels else min(2, len(shape)), len(shape)))
    x = ctx.inputs[0]
    centred = ctx.node("Sub", [x, ctx.reduce("ReduceMean", x, axes)], None if p.normalize_variance else ctx.outputs[0])
    if not p.normalize_variance:
        return
    var = ctx.reduce("ReduceMean", ctx.node("Mul", [centred, centred]), axes)
    std = ctx.node("Add", [ctx.node("Sqrt", [var]), ctx.const(p.eps, "eps")])
    ctx.node("Div", [centred, std], ctx.outputs[0])


@maps("Softmax")
def softmax(ctx):
    ctx.node("Softmax", ctx.inputs, ctx.outputs[0], axis=ctx.layer._axis(len(ctx.bottom_shapes[0])))


@maps("ArgMax")
def argmax(ctx):
    """TopK on the reversed axis, indices mapped back: ties then go to the larger index, as
    in Caffe (ONNX TopK gives ties to the smaller one). Indices come out as floats."""
    layer, shape = ctx.layer, ctx.bottom_shapes[0]
    x = ctx.inputs[0]
    if layer.has_axis:
        axis = layer.canonical_axis(layer.lp.argmax_param.axis, len(shape))
        dim = shape[axis]
    else:
        axis, dim = 1, int(np.prod(shape[1:]))
        x = ctx.node("Flatten", [x], None, axis=1)
    big = np.iinfo(np.int64).max
    rev = ctx.node("Slice", [x, ctx.ints([-1], "starts"), ctx.ints([-big], "ends"), ctx.ints([axis], "axes"),
                             ctx.ints([-1], "steps")])
    values, order = ctx.node("TopK", [rev, ctx.ints([layer.top_k], "k")], [ctx.tmp("values"), ctx.tmp("order")],
                             axis=axis, largest=1, sorted=1)
    index = ctx.node("Cast", [ctx.node("Sub", [ctx.ints(dim - 1, "last"), order])], None, to=1)
    if layer.has_axis:
        ctx.node("Identity", [values if layer.out_max_val else index], ctx.outputs[0])
        return
    parts = [index, values] if layer.out_max_val else [index]
    stacked = ctx.node("Concat", [ctx.node("Unsqueeze", [p, ctx.ints([1], "axes")]) for p in parts], None, axis=1)
    ctx.reshape(stacked, ctx.top_shapes[0], ctx.outputs[0])


_REDUCE = {RP.SUM: "ReduceSum", RP.ASUM: "ReduceL1", RP.SUMSQ: "ReduceSumSquare", RP.MEAN: "ReduceMean"}


@maps("Reduction")
def reduction(ctx):
    layer, shape = ctx.layer, ctx.bottom_shapes[0]
    axis = layer._axis(len(shape))
    coeff = layer.coeff
    out = ctx.outputs[0] if coeff == 1 else None
    y = ctx.reduce(_REDUCE[layer.op], ctx.inputs[0], list(range(axis, len(shape))), out, keepdims=0)
    if coeff != 1:
        ctx.node("Mul", [y, ctx.const(coeff, "coeff")], ctx.outputs[0])


@maps("Tile")
def tile(ctx):
    shape = ctx.bottom_shapes[0]
    axis = ctx.layer.canonical_axis(ctx.layer.lp.tile_param.axis, len(shape))
    repeats = [1] * len(shape)
    repeats[axis] = ctx.layer.tiles
    ctx.node("Tile", [ctx.inputs[0], ctx.ints(repeats, "repeats")], ctx.outputs[0])


@maps("Embed")
def embed(ctx):
    """Row `index` of the (input_dim, num_output) weight, plus the bias."""
    index = ctx.node("Cast", ctx.inputs, None, to=7)
    w = ctx.const(ctx.param(0), "weight")
    if not ctx.layer.bias_term:
        ctx.node("Gather", [w, index], ctx.outputs[0], axis=0)
        return
    rows = ctx.node("Gather", [w, index], None, axis=0)
    ctx.node("Add", [rows, ctx.const(ctx.param(1), "bias")], ctx.outputs[0])


@maps("Silence")
def silence(ctx):
    """No output: nothing to compute."""


@maps("BatchReindex")
def batch_reindex(ctx):
    index = ctx.node("Cast", [ctx.inputs[1]], None, to=7)
    ctx.node("Gather", [ctx.inputs[0], index], ctx.outputs[0], axis=0)


@maps("Parameter")
def parameter(ctx):
    ctx.node("Identity", [ctx.const(ctx.param(0), "value")], ctx.outputs[0])


def _refuse(reason, hint):
    def refuse(ctx):
        ctx.fail(reason, hint=hint)
    return refuse


_DEPLOY = "export the deploy net (inputs declared with Input layers or --input, no loss or accuracy layers)"
for _type in ("SoftmaxWithLoss", "EuclideanLoss", "SigmoidCrossEntropyLoss", "HingeLoss",
              "MultinomialLogisticLoss", "InfogainLoss", "ContrastiveLoss", "Accuracy"):
    maps(_type)(_refuse("losses and accuracies need labels, which a deployed model has not", _DEPLOY))
for _type in ("Data", "ImageData", "HDF5Data", "MemoryData", "DummyData", "WindowData"):
    maps(_type)(_refuse("a data layer reads its records itself; an ONNX model takes its inputs from the caller",
                        "feed its tops instead: --input NAME=N,C,H,W for each (or use the deploy net)"))
maps("HDF5Output")(_refuse("HDF5Output writes files, which an ONNX graph cannot", "remove it from the exported net"))
maps("Filter")(_refuse("Filter's output size depends on the data; ONNX shapes here are fixed",
                       "remove it from the exported net"))
maps("Python")(_refuse("a Python layer's code cannot be translated", "replace it by built-in layers"))
