"""ONNX mappings of the neuron (elementwise) layers, and the recurrent ones refused."""
from .export import maps

FLOAT = 1


def _unary(op, **attrs):
    def mapping(ctx):
        ctx.node(op, ctx.inputs, ctx.outputs[0], **attrs)
    return mapping


for _type, _op in (("Sigmoid", "Sigmoid"), ("TanH", "Tanh"), ("AbsVal", "Abs"), ("BNLL", "Softplus")):
    maps(_type)(_unary(_op))


@maps("ReLU")
def relu(ctx):
    slope = ctx.layer.slope
    if slope == 0:
        ctx.node("Relu", ctx.inputs, ctx.outputs[0])
    else:
        ctx.node("LeakyRelu", ctx.inputs, ctx.outputs[0], alpha=slope)


@maps("PReLU")
def prelu(ctx):
    """The slope per channel (axis 1), shaped to broadcast over the axes after it."""
    ndim = len(ctx.bottom_shapes[0])
    slope = ctx.param(0)
    slope = slope.reshape((1,)) if ctx.layer.shared else slope.reshape((-1,) + (1,) * (ndim - 2))
    ctx.node("PRelu", [ctx.inputs[0], ctx.const(slope, "slope")], ctx.outputs[0])


@maps("ELU")
def elu(ctx):
    ctx.node("Elu", ctx.inputs, ctx.outputs[0], alpha=ctx.layer.alpha)


def _affine(ctx, x, scale, shift):
    """scale * x + shift, leaving out the identities."""
    if scale != 1:
        x = ctx.node("Mul", [x, ctx.const(scale, "scale")])
    if shift != 0:
        x = ctx.node("Add", [x, ctx.const(shift, "shift")])
    return x


def _finish(ctx, x):
    ctx.node("Identity", [x], ctx.outputs[0])


@maps("Power")
def power(ctx):
    """y = (shift + scale * x) ^ power."""
    layer = ctx.layer
    y = _affine(ctx, ctx.inputs[0], layer.scale, layer.shift)
    if layer.power != 1:
        y = ctx.node("Pow", [y, ctx.const(layer.power, "power")])
    _finish(ctx, y)


@maps("Exp")
def exp(ctx):
    """y = base ^ (shift + scale * x) = base^shift * e^(ln(base) * scale * x)."""
    layer = ctx.layer
    y = ctx.node("Exp", [_affine(ctx, ctx.inputs[0], layer.inner_scale, 0)])
    _finish(ctx, _affine(ctx, y, layer.outer_scale, 0))


@maps("Log")
def log(ctx):
    """y = log_base(shift + scale * x) = ln(...) / ln(base)."""
    layer = ctx.layer
    y = ctx.node("Log", [_affine(ctx, ctx.inputs[0], layer.scale, layer.shift)])
    _finish(ctx, _affine(ctx, y, layer.base_scale, 0))


@maps("Threshold")
def threshold(ctx):
    above = ctx.node("Greater", [ctx.inputs[0], ctx.const(ctx.layer.threshold, "threshold")])
    ctx.node("Cast", [above], ctx.outputs[0], to=FLOAT)


@maps("Clip")
def clip(ctx):
    ctx.node("Clip", [ctx.inputs[0], ctx.const(ctx.layer.min, "min"), ctx.const(ctx.layer.max, "max")],
             ctx.outputs[0])


@maps("Swish")
def swish(ctx):
    x = ctx.inputs[0]
    gate = ctx.node("Sigmoid", [_affine(ctx, x, ctx.layer.beta, 0)])
    ctx.node("Mul", [x, gate], ctx.outputs[0])


@maps("Dropout")
def dropout(ctx):
    layer = ctx.layer
    if layer.training:
        ctx.fail("Dropout at TRAIN draws a random mask; only the TEST net (the identity) exports",
                 hint="export the TEST phase")
    if layer.scale_train:
        ctx.node("Identity", ctx.inputs, ctx.outputs[0])
    else:       # caffe-fast-rcnn's scale_train: false scales in TEST instead
        ctx.node("Mul", [ctx.inputs[0], ctx.const(1.0 - layer.ratio, "keep")], ctx.outputs[0])


def _recurrent(ctx):
    ctx.fail(f"{ctx.layer.type} is not mapped: Caffe's recurrent layers unroll over time with their own "
             "gate order and clip/continuation input, which ONNX's LSTM/RNN do not take",
             hint="export the layers before and after it separately")


maps("LSTM", "RNN", "LSTMUnit")(_recurrent)
