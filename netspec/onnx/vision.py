"""ONNX mappings of the vision layers: Convolution, Deconvolution, Pooling, LRN, Crop."""
import math

import numpy as np

from ..ops.windows import ave_divisor
from .export import maps
from .. import caffe_pb2

PP = caffe_pb2.PoolingParameter
LRNP = caffe_pb2.LRNParameter


def _conv_attrs(ctx, shape):
    axis = ctx.layer.canonical_axis(ctx.layer.param.axis, len(shape))
    if axis != 1:
        ctx.fail(f"convolution over axis {axis}: ONNX convolves over axis 1 only")
    n = len(shape) - 2
    if n < 1:
        ctx.fail("a convolution without spatial axes has no ONNX Conv form")
    win = ctx.layer.geometry(n)
    return dict(kernel_shape=list(win.kernel), strides=list(win.stride), pads=list(win.pad) * 2,
                dilations=list(win.dilation), group=ctx.layer.param.group)


@maps("Convolution")
def convolution(ctx):
    """Caffe's weights are (out, in/group, k...): ONNX Conv's layout."""
    _convolve(ctx, "Conv")


@maps("Deconvolution")
def deconvolution(ctx):
    """Caffe's weights are (in, out/group, k...): ONNX ConvTranspose's layout; Caffe's output
    size stride*(in-1) + dilation*(k-1)+1 - 2*pad is ConvTranspose's with the same pads."""
    _convolve(ctx, "ConvTranspose")


def _convolve(ctx, op):
    """One node per bottom, all sharing the weights."""
    w = ctx.const(ctx.param(0), "weight")
    b = [ctx.const(ctx.param(1), "bias")] if ctx.layer.param.bias_term else []
    for x, y, shape in zip(ctx.inputs, ctx.outputs, ctx.bottom_shapes):
        ctx.node(op, [x, w] + b, y, **_conv_attrs(ctx, shape))


@maps("Pooling")
def pooling(ctx):
    p = ctx.layer.param
    if len(ctx.outputs) > 1:
        ctx.fail("the second top (the argmax mask) has no ONNX equivalent")
    if p.pool == PP.STOCHASTIC:
        ctx.fail("STOCHASTIC pooling has no ONNX operator", hint="use MAX or AVE pooling")
    (x,), (y,) = ctx.inputs, ctx.outputs
    if p.global_pooling:
        ctx.node("GlobalMaxPool" if p.pool == PP.MAX else "GlobalAveragePool", [x], y)
        return
    shape, out = ctx.bottom_shapes[0], ctx.top_shapes[0][2:]
    win = ctx.layer.geometry(shape)
    # Caffe's output size (ceil, then the clip of a window starting in the padding) made
    # explicit: the end pad is whatever makes the last window end where Caffe's ends.
    ends = [max(0, (o - 1) * s + k - i - pb) for o, s, k, i, pb in zip(out, win.stride, win.kernel, shape[2:], win.pad)]
    attrs = dict(kernel_shape=list(win.kernel), strides=list(win.stride), pads=list(win.pad) + ends)
    if p.pool == PP.MAX:
        ctx.node("MaxPool", [x], y, **attrs)
        return
    # AVE: with every window inside the explicit padding, ONNX divides by the kernel area;
    # Caffe divides by the window clipped to the input plus its own pad. A constant per
    # output position corrects the border windows where the two differ.
    rows, cols = ave_divisor(shape[2:], out, win.kernel, win.stride, win.pad)
    correction = math.prod(win.kernel) / np.outer(rows, cols)
    if np.all(correction == 1):
        ctx.node("AveragePool", [x], y, count_include_pad=1, **attrs)
        return
    pooled = ctx.node("AveragePool", [x], None, count_include_pad=1, **attrs)
    ctx.node("Mul", [pooled, ctx.const(correction[None, None], "divisor_correction")], y)


@maps("LRN")
def lrn(ctx):
    """ACROSS_CHANNELS is ONNX LRN exactly (k + alpha/n * sum, odd n centred). WITHIN_CHANNEL
    is Caffe's own composition: 1 + alpha * AVE-pool(x^2, n x n, pad (n-1)/2), to -beta."""
    p = ctx.layer.param
    (x,), (y,) = ctx.inputs, ctx.outputs
    if p.norm_region == LRNP.ACROSS_CHANNELS:
        ctx.node("LRN", [x], y, size=p.local_size, alpha=p.alpha, beta=p.beta, bias=p.k)
        return
    n, pre = p.local_size, (p.local_size - 1) // 2
    sq = ctx.node("Mul", [x, x])
    mean = ctx.node("AveragePool", [sq], None, kernel_shape=[n, n], strides=[1, 1], pads=[pre] * 4,
                    count_include_pad=1)
    scale = ctx.node("Add", [ctx.node("Mul", [mean, ctx.const(p.alpha, "alpha")]), ctx.const(1.0, "one")])
    ctx.node("Mul", [x, ctx.node("Pow", [scale, ctx.const(-p.beta, "minus_beta")])], y)


@maps("Crop")
def crop(ctx):
    a, b = ctx.bottom_shapes
    axis, offsets = ctx.layer._offsets(a, b)
    axes = list(range(axis, len(a)))
    starts = [offsets[i] for i in axes]
    ends = [offsets[i] + b[i] for i in axes]
    ctx.node("Slice", [ctx.inputs[0], ctx.ints(starts, "starts"), ctx.ints(ends, "ends"), ctx.ints(axes, "axes")],
             ctx.outputs[0])


@maps("SPP")
def spp(ctx):
    ctx.fail("SPP is not mapped (its pyramid of poolings would need one subgraph per level)",
             hint="replace it by Pooling layers and a Concat")


@maps("Im2col")
def im2col(ctx):
    ctx.fail("Im2col has no ONNX operator")
