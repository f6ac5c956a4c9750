"""Convolution, Deconvolution and Im2col: the ConvolutionParameter layers.

Each class follows Caffe's order: parameter checks (setup), the shape rule with its arithmetic
in words (infer), learnable blobs, MACs, the sliding window (for receptive fields), forward,
backward. Array work lives in netspec.ops.
"""
import math

from .. import caffe_pb2
from ..errors import LayerError
from ..ops import conv as conv_ops
from ..ops.im2col import col2im, col_shape, im2col
from ..ops.windows import Window, conv_out, deconv_out
from ..utils import format_shape
from .base import Layer, ParamBlob
from .explain import axis_labels, explain_axes, explain_floor, window_words
from .registry import layer

TRAIN = caffe_pb2.TRAIN


def _raise(message, hint=None):
    raise LayerError(message, hint)


def _repeated(p, name, h_name, w_name, default, n, what):
    """Caffe's rule for kernel_size/stride/pad/dilation: once for every axis, or once per axis,
    or the _h/_w pair for 2-d. Returns a tuple of n ints."""
    values = list(getattr(p, name))
    has_hw = h_name is not None and (p.HasField(h_name) or p.HasField(w_name))
    if has_hw:
        if n != 2:
            _raise(f"{h_name}/{w_name} apply to 2-d convolution only; this one has {n} spatial axes",
                   f"use {name} repeated once per spatial axis")
        if values:
            _raise(f"set either {name} or {h_name}/{w_name}, not both")
        return (getattr(p, h_name), getattr(p, w_name))
    if not values:
        if default is None and n:
            _raise(f"{what} is not set", f"add {name}: N (or {h_name} and {w_name})")
        return (default,) * n
    if len(values) not in (1, n):
        _raise(f"{name} is given {len(values)} times for {n} spatial axes", "give it once, or once per spatial axis")
    return tuple(values) * n if len(values) == 1 else tuple(values)


class _ConvolutionBase(Layer):
    """ConvolutionParameter handling shared by Convolution, Deconvolution and Im2col."""
    weight_layer = True     # counts in the papers' depth; its MACs per item are its connections
    param_fields = ("convolution_param",)
    bottoms = (1, None)
    tops = (1, None)
    has_filters = True      # learnable weights (and bias): num_output must be set
    family = "conv"
    takes_unknown = True

    def setup(self):
        p = self.param = self.lp.convolution_param
        if self.has_filters and p.num_output <= 0:
            self.fail("num_output must be set to a positive number of filters")
        if p.HasField("kernel_h") != p.HasField("kernel_w"):
            self.fail("kernel_h and kernel_w must be set together", "set both, or use kernel_size")
        if (p.HasField("kernel_h") or p.HasField("kernel_w")) and len(p.kernel_size):
            self.fail("set either kernel_size or kernel_h/kernel_w, not both")
        for name in ("stride", "pad"):
            if (p.HasField(f"{name}_h") or p.HasField(f"{name}_w")) and len(getattr(p, name)):
                self.fail(f"set either {name} or {name}_h/{name}_w, not both")
        kernels = list(p.kernel_size) + [p.kernel_h, p.kernel_w] * p.HasField("kernel_h")
        if any(k == 0 for k in kernels):
            self.fail("kernel dimensions must be positive (found 0)")
        strides = list(p.stride) + [p.stride_h, p.stride_w] * (p.HasField("stride_h") or p.HasField("stride_w"))
        if any(s == 0 for s in strides):
            self.fail("stride must be positive (found 0)")
        if any(d == 0 for d in p.dilation):
            self.fail("dilation must be positive (found 0)")
        self._windows = {}
        self._state = {}

    def backward_reads(self):
        return True, False          # the input (for the weights' gradient), never the output

    def describe(self):
        p = self.param
        words = [f"{p.num_output} out"] if self.has_filters else []
        try:
            words.append(window_words(self.geometry(max(2, len(p.kernel_size)))))
        except LayerError:
            pass
        return words + ([f"group {p.group}"] if p.group > 1 else [])

    def geometry(self, n):
        """The Window for n spatial axes (Caffe's repeated-field rules)."""
        if n not in self._windows:
            p = self.param
            self._windows[n] = Window(
                _repeated(p, "kernel_size", "kernel_h", "kernel_w", None, n, "kernel size"),
                _repeated(p, "stride", "stride_h", "stride_w", 1, n, "stride"),
                _repeated(p, "pad", "pad_h", "pad_w", 0, n, "pad"),
                _repeated(p, "dilation", None, None, 1, n, "dilation"))
        return self._windows[n]

    def _split(self, shape):
        """(channel axis, Window) for a bottom shape."""
        axis = self.canonical_axis(self.param.axis, len(shape))
        # No spatial axis (channels last) is Caffe's 0-d convolution: a product over the channels
        # at every position, with no kernel needed; otherwise the kernel size must be set.
        return axis, self.geometry(len(shape) - axis - 1)

    def _check_bottoms(self, bottoms):
        if len(self.lp.top) and len(self.lp.top) != len(bottoms):
            self.fail(f"{self.type} gives one top per bottom: {len(bottoms)} bottoms but {len(self.lp.top)} tops")
        for b in bottoms[1:]:
            if not self.same_shape(tuple(b), tuple(bottoms[0])):
                self.fail(f"all bottoms must have the same shape: {format_shape(bottoms[0])} vs {format_shape(b)}")

    def _group_check(self, channels):
        group, num_output = self.param.group, self.param.num_output
        if group < 1:
            self.fail("group must be at least 1")
        if channels is None:        # only num_output can be checked before the net runs
            if num_output % group:
                self.fail(f"group {group} does not divide the {num_output} num_output")
            return
        for what, count in (("input channels", channels), ("num_output", num_output)):
            if count % group:
                near = _nearest_divisors(math.gcd(channels, num_output), group)
                self.fail(f"group {group} does not divide the {count} {what}",
                          f"use a group that divides both channel counts ({channels} and {num_output}), "
                          f"e.g. {' or '.join(map(str, near))}")

    def _conv_spatial(self, ctx, in_spatial, win):
        """Output spatial dims by the convolution rule, with notes; errors for kernels that do
        not fit."""
        labels = axis_labels(len(in_spatial))
        items, out = [], []
        for label, size, k, s, p, d in zip(labels, in_spatial, *win):
            extent = d * (k - 1) + 1
            if size is None:
                items.append(("? in -> ? out (the input size is known when the net runs)", True))
                out.append(None)
                continue
            size_out = conv_out(size, k, s, p, d)
            if size_out <= 0:
                self.fail(f"{label}: kernel extent {extent} is larger than the padded input {size} + 2*{p} = "
                          f"{size + 2 * p}", "pad more, use a smaller kernel or dilation, or feed a larger input")
            items.append(explain_floor(size, k, s, p, d))
            out.append(size_out)
        explain_axes(ctx, labels, items)
        return tuple(out)

    def window(self, bottoms):
        _, win = self._split(bottoms[0])
        return list(zip(*win)) or None     # 0-d: each position stays where it is

    def param_blobs(self, bottoms):
        if not self.has_filters:
            return []
        p = self.param
        weight = ParamBlob(bottoms and self.weight_shape(bottoms[0]), p.weight_filler)
        return [weight] + [ParamBlob((p.num_output,), p.bias_filler)] * p.bias_term

    def _param_grads(self):
        """(dw, db): the diffs to accumulate into, None where not wanted (lr_mult 0, no bias)."""
        dw = self.blobs[0].diff if self.param_wanted(0) else None
        db = self.blobs[1].diff if self.param.bias_term and self.param_wanted(1) else None
        return dw, db

    # -- array plumbing -----------------------------------------------------------------------
    @staticmethod
    def _as_ncs(a, axis):
        """View an array as (outer, channels, *spatial), folding the axes before `axis`."""
        return a.reshape((math.prod(a.shape[:axis]),) + a.shape[axis:])


@layer("Convolution")
class Convolution(_ConvolutionBase):
    """Caffe's convolution: weights (O, C/G, *kernel), optional bias (O,); several bottoms
    share the weights, one top each."""

    def infer(self, bottoms, ctx):
        self._check_bottoms(bottoms)
        shape = tuple(bottoms[0])
        axis, win = self._split(shape)
        self._group_check(shape[axis])
        out = self._conv_spatial(ctx, shape[axis + 1:], win)
        return [shape[:axis] + (self.param.num_output,) + out] * len(bottoms)

    def weight_shape(self, bottom):
        axis, win = self._split(bottom)
        channels = bottom[axis]
        return (self.param.num_output, None if channels is None else channels // self.param.group) + tuple(win.kernel)

    def macs(self, bottoms, tops):
        w = self.weight_shape(bottoms[0])
        return sum(math.prod(t) * math.prod(w[1:]) for t in tops)

    def forward(self, xp, bottoms, tops):
        axis, win = self._split(bottoms[0].shape)
        w = self.blobs[0].data
        b = self.blobs[1].data if self.param.bias_term else None
        cols = self._state.setdefault("cols", {})
        for i, (bottom, top) in enumerate(zip(bottoms, tops)):
            x, out = self._as_ncs(bottom.data, axis), self._as_ncs(top.data, axis)
            col = None
            if self.phase == TRAIN and conv_ops.keeps_columns(xp, x.shape, w.shape, win, self.param.group,
                                                               out.shape[2:], x.itemsize):
                # Keep this layer's columns for backward (TRAIN), in a buffer reused every pass.
                shape = col_shape(x.shape, win, out.shape[2:])
                col = cols.get(i)
                if col is None or col.shape != shape or col.dtype != x.dtype or type(col) is not type(x):
                    col = cols[i] = xp.empty(shape, dtype=x.dtype)
            conv_ops.conv_forward(xp, x, w, b, win, self.param.group, out, col)

    def backward(self, xp, tops, propagate_down, bottoms):
        axis, win = self._split(bottoms[0].shape)
        w = self.blobs[0]
        dw, db = self._param_grads()
        cols = self._state.get("cols", {}) if self.phase == TRAIN else {}
        for i, (bottom, top) in enumerate(zip(bottoms, tops)):
            x, dy = self._as_ncs(bottom.data, axis), self._as_ncs(top.diff, axis)
            dx = self._as_ncs(bottom.diff, axis) if propagate_down[i] else None
            conv_ops.conv_backward(xp, x, w.data, dy, win, self.param.group, col=cols.get(i),
                                   dw=dw, db=db, dx=dx)


@layer("Deconvolution")
class Deconvolution(_ConvolutionBase):
    """Caffe's deconvolution (convolution's transpose): weights (C, O/G, *kernel),
    out = stride*(in - 1) + dilation*(kernel - 1) + 1 - 2*pad."""

    def infer(self, bottoms, ctx):
        self._check_bottoms(bottoms)
        shape = tuple(bottoms[0])
        axis, win = self._split(shape)
        self._group_check(shape[axis])
        labels = axis_labels(len(win.kernel))
        items, out = [], []
        for label, size, k, s, p, d in zip(labels, shape[axis + 1:], *win):
            if size is None:
                items.append(("? in -> ? out (the input size is known when the net runs)", True))
                out.append(None)
                continue
            size_out = deconv_out(size, k, s, p, d)
            text = f"{s}*({size} - 1) + {d * (k - 1) + 1} - 2*{p} = {size_out}"
            if size_out <= 0:
                self.fail(f"{label}: {text}; the output must be positive", "reduce pad")
            items.append((text, True))
            out.append(size_out)
        explain_axes(ctx, labels, items)
        return [shape[:axis] + (self.param.num_output,) + tuple(out)] * len(bottoms)

    def weight_shape(self, bottom):
        axis, win = self._split(bottom)
        return (bottom[axis], self.param.num_output // self.param.group) + tuple(win.kernel)

    def macs(self, bottoms, tops):
        w = self.weight_shape(bottoms[0])
        return sum(math.prod(b) * math.prod(w[1:]) for b in bottoms)

    def window(self, bottoms):
        return None     # upsamples: no sliding window over its input

    def forward(self, xp, bottoms, tops):
        axis, win = self._split(bottoms[0].shape)
        w = self.blobs[0].data
        b = self.blobs[1].data if self.param.bias_term else None
        for bottom, top in zip(bottoms, tops):
            conv_ops.deconv_forward(xp, self._as_ncs(bottom.data, axis), w, b, win, self.param.group,
                                    self._as_ncs(top.data, axis))

    def backward(self, xp, tops, propagate_down, bottoms):
        axis, win = self._split(bottoms[0].shape)
        w = self.blobs[0]
        dw, db = self._param_grads()
        for i, (bottom, top) in enumerate(zip(bottoms, tops)):
            dx = self._as_ncs(bottom.diff, axis) if propagate_down[i] else None
            conv_ops.deconv_backward(xp, self._as_ncs(bottom.data, axis), w.data, self._as_ncs(top.diff, axis),
                                     win, self.param.group, dw=dw, db=db, dx=dx)


@layer("Im2col")
class Im2col(_ConvolutionBase):
    """Caffe's Im2col layer: (N, C, *in) -> (N, C*prod(kernel), *out), channel index
    (c, *tap) in row-major order, as convolution sees its input."""
    bottoms = (1, 1)
    tops = (1, 1)
    has_filters = False
    weight_layer = False

    def infer(self, bottoms, ctx):
        shape = tuple(bottoms[0])
        axis, win = self._split(shape)
        if not win.kernel:      # unlike convolution, Caffe's Im2col has no 0-d form
            self.fail(f"bottom {format_shape(shape)} has no spatial axis after the channel axis {axis}")
        out = self._conv_spatial(ctx, shape[axis + 1:], win)
        return [shape[:axis] + (shape[axis] * math.prod(win.kernel),) + out]

    def forward(self, xp, bottoms, tops):
        axis, win = self._split(bottoms[0].shape)
        x, out = self._as_ncs(bottoms[0].data, axis), self._as_ncs(tops[0].data, axis)
        col = im2col(xp, x, win, out.shape[2:])
        out[...] = col.reshape((out.shape[1], x.shape[0]) + out.shape[2:]).swapaxes(0, 1)

    def backward(self, xp, tops, propagate_down, bottoms):
        if not propagate_down[0]:
            return
        axis, win = self._split(bottoms[0].shape)
        x, dy = self._as_ncs(bottoms[0].data, axis), self._as_ncs(tops[0].diff, axis)
        dcol = xp.ascontiguousarray(dy.swapaxes(0, 1)).reshape(col_shape(x.shape, win, dy.shape[2:]))
        col2im(xp, dcol, x.shape, win, self._as_ncs(bottoms[0].diff, axis))


# -- Pooling and SPP ------------------------------------------------------------------------------


def _nearest_divisors(n, target):
    """The two divisors of n nearest to target, ascending; found in sqrt(n) steps, and n is a
    num_output (uint32), so at most 65536 steps whatever the sizes."""
    divisors = set()
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            divisors.update((d, n // d))
    return sorted(sorted(divisors, key=lambda g: abs(g - target))[:2])
