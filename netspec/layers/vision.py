"""Vision layers: Convolution, Deconvolution, Im2col, Pooling, SPP, LRN, Crop.

Each class follows Caffe's order: parameter checks (setup), the shape rule with its arithmetic
in words (infer), learnable blob shapes and fillers, MACs, the sliding window (for receptive
fields), forward, backward. Array work lives in netspec.ops.

Shape notes are local (the shape pass shows them under the layer's name), one per spatial
axis unless all axes share the same arithmetic, e.g.
  (224 + 2*0 - 11)/4 + 1 = 54.25 -> floor -> 54; stride 4 leaves remainder 1; input 227 or pad 2 gives 55
An inexact division is also a warning; so is pooling whose ceil rounding differs from floor.
"""
import math

import numpy

from .. import caffe_pb2
from ..errors import LayerError
from ..ops import conv as conv_ops
from ..ops import lrn as lrn_ops
from ..ops import pooling as pool_ops
from ..ops.im2col import col2im, col_shape, im2col
from ..ops.windows import Window, conv_out, deconv_out, pool_out
from .base import Layer
from .registry import layer

TRAIN = caffe_pb2.TRAIN
PP = caffe_pb2.PoolingParameter
LRNP = caffe_pb2.LRNParameter


# -- words for the arithmetic ---------------------------------------------------------------------
def _axis_labels(n):
    return {1: ("width",), 2: ("height", "width"), 3: ("depth", "height", "width")}.get(
        n, tuple(f"spatial axis {i}" for i in range(n)))


def _number(value):
    """54.25, 55.5, 7.33: at most two decimals, no trailing zeros."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def explain_floor(size, kernel, stride, pad, dilation=1):
    """(text, clean) for Caffe's convolution rule on one axis. Not clean: the remainder leaves
    real input rows uncovered at the end (not just padding), more than the gaps between
    windows skip anyway (a 1x1 stride-2 kernel skips every other row, so 14 -> 7 is clean)."""
    extent = dilation * (kernel - 1) + 1
    span = size + 2 * pad - extent
    out = conv_out(size, kernel, stride, pad, dilation)
    head = f"({size} + 2*{pad} - {extent})/{stride} + 1"
    if dilation > 1 and kernel > 1:
        head = f"kernel {kernel} dilated by {dilation} spans {extent}; " + head
    if span < 0:
        return (f"{head} = {_number(span / stride + 1)} -> truncated toward 0 (Caffe's integer division) -> "
                f"{out}; the kernel overhangs the padded input by {-span}"), False
    remainder = span % stride
    if remainder == 0:
        return f"{head} = {out}", True
    exact_input = size + stride - remainder
    next_pad = -(-(out * stride - size + extent) // 2)
    return (f"{head} = {_number(span / stride + 1)} -> floor -> {out}; stride {stride} leaves remainder "
            f"{remainder}; input {exact_input} or pad {next_pad} gives {out + 1}"), \
        max(0, remainder - pad) <= max(0, stride - extent)


def explain_pool(size, kernel, stride, pad, ceil_mode, padded=None):
    """(text, exact) for Caffe's pooling rule on one axis (ceil or floor, then the pad clip,
    which applies when any axis is padded: see pool_out)."""
    span = size + 2 * pad - kernel
    head = f"({size} + 2*{pad} - {kernel})/{stride} + 1"
    remainder = span % stride
    floor_out = span // stride + 1
    if remainder == 0:
        return f"{head} = {floor_out}", True
    out = pool_out(size, kernel, stride, pad, ceil_mode, padded)
    rounded = floor_out + 1 if ceil_mode else floor_out
    text = f"{head} = {_number(span / stride + 1)} -> {'ceil' if ceil_mode else 'floor'} -> {rounded}"
    if out != rounded:
        text += (f"; the last window would start in the padding -> {out}" if pad else
                 f"; the last window would start past the input, dropped as another axis is padded -> {out}")
    text += f"; stride {stride} leaves remainder {remainder}"
    exact_input = size + stride - remainder
    if not ceil_mode:
        text += f"; input {exact_input} gives {floor_out + 1}"
    elif out != floor_out:
        text += f"; floor (other frameworks) gives {floor_out}; input {exact_input} gives {out} either way"
    return text, False


def _explain_axes(ctx, labels, per_axis):
    """One note for all axes when they agree, else one per axis; a warning where not clean."""
    texts = [t for t, _ in per_axis]
    if len(set(texts)) == 1:
        items = [("", per_axis[0])]
    else:
        items = [(f"{label}: ", item) for label, item in zip(labels, per_axis)]
    for prefix, (text, clean) in items:
        ctx.note(prefix + text)
        if not clean:
            ctx.warn(prefix + text)


def _dims(shape):
    return "x".join(str(d) for d in shape)


def _need_4d(layer_obj, shape):
    if len(shape) != 4:
        layer_obj.fail(f"{layer_obj.type} takes a 4-d (num, channels, height, width) bottom; found "
                       f"{len(shape)}-d {_dims(shape)}")


# -- Convolution, Deconvolution, Im2col: ConvolutionParameter ---------------------------------------
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
    bottoms = (1, None)
    tops = (1, None)
    has_filters = True      # learnable weights (and bias): num_output must be set

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
            if tuple(b) != tuple(bottoms[0]):
                self.fail(f"all bottoms must have the same shape: {_dims(bottoms[0])} vs {_dims(b)}")

    def _group_check(self, channels):
        group, num_output = self.param.group, self.param.num_output
        if group < 1:
            self.fail("group must be at least 1")
        common = math.gcd(channels, num_output)
        near = sorted(sorted((g for g in range(1, common + 1) if common % g == 0), key=lambda g: abs(g - group))[:2])
        for what, count in (("input channels", channels), ("num_output", num_output)):
            if count % group:
                self.fail(f"group {group} does not divide the {count} {what}",
                          f"use a group that divides both channel counts ({channels} and {num_output}), "
                          f"e.g. {' or '.join(map(str, near))}")

    def _conv_spatial(self, ctx, in_spatial, win):
        """Output spatial dims by the convolution rule, with notes; errors for kernels that do
        not fit."""
        labels = _axis_labels(len(in_spatial))
        items, out = [], []
        for label, size, k, s, p, d in zip(labels, in_spatial, *win):
            extent = d * (k - 1) + 1
            size_out = conv_out(size, k, s, p, d)
            if size_out <= 0:
                self.fail(f"{label}: kernel extent {extent} is larger than the padded input {size} + 2*{p} = "
                          f"{size + 2 * p}", "pad more, use a smaller kernel or dilation, or feed a larger input")
            items.append(explain_floor(size, k, s, p, d))
            out.append(size_out)
        _explain_axes(ctx, labels, items)
        return tuple(out)

    def window(self, bottoms):
        _, win = self._split(bottoms[0])
        return list(zip(*win)) or None     # 0-d: each position stays where it is

    def param_fillers(self):
        if not self.has_filters:
            return []
        return [self.param.weight_filler] + [self.param.bias_filler] * self.param.bias_term

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

    def param_shapes(self, bottoms):
        axis, win = self._split(bottoms[0])
        p = self.param
        shapes = [(p.num_output, bottoms[0][axis] // p.group) + tuple(win.kernel)]
        return shapes + [(p.num_output,)] * p.bias_term

    def macs(self, bottoms, tops):
        w = self.param_shapes(bottoms)[0]
        return sum(math.prod(t) * math.prod(w[1:]) for t in tops)

    def forward(self, xp, bottoms, tops):
        axis, win = self._split(bottoms[0].shape)
        w = self.blobs[0].data
        b = self.blobs[1].data if self.param.bias_term else None
        cols = self._state.setdefault("cols", {})
        for i, (bottom, top) in enumerate(zip(bottoms, tops)):
            x, out = self._as_ncs(bottom.data, axis), self._as_ncs(top.data, axis)
            col = None
            if self.phase == TRAIN and conv_ops.uses_columns(win) and \
                    conv_ops.column_bytes(x.shape, win, out.shape[2:], x.itemsize) <= conv_ops.COLUMN_BYTES:
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
        labels = _axis_labels(len(win.kernel))
        items, out = [], []
        for label, size, k, s, p, d in zip(labels, shape[axis + 1:], *win):
            size_out = deconv_out(size, k, s, p, d)
            text = f"{s}*({size} - 1) + {d * (k - 1) + 1} - 2*{p} = {size_out}"
            if size_out <= 0:
                self.fail(f"{label}: {text}; the output must be positive", "reduce pad")
            items.append((text, True))
            out.append(size_out)
        _explain_axes(ctx, labels, items)
        return [shape[:axis] + (self.param.num_output,) + tuple(out)] * len(bottoms)

    def param_shapes(self, bottoms):
        axis, win = self._split(bottoms[0])
        p = self.param
        shapes = [(bottoms[0][axis], p.num_output // p.group) + tuple(win.kernel)]
        return shapes + [(p.num_output,)] * p.bias_term

    def macs(self, bottoms, tops):
        w = self.param_shapes(bottoms)[0]
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

    def infer(self, bottoms, ctx):
        shape = tuple(bottoms[0])
        axis, win = self._split(shape)
        if not win.kernel:      # unlike convolution, Caffe's Im2col has no 0-d form
            self.fail(f"bottom {_dims(shape)} has no spatial axis after the channel axis {axis}")
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
def _pool_forward(xp, x, method, win, out_shape, train, rng, out=None):
    """(y, state for _pool_backward) for one pooling method; y goes into `out` for MAX and AVE."""
    if method == PP.MAX:
        y, arg = pool_ops.max_pool(xp, x, win, out_shape, out)
        return y, ("arg", arg)
    if method == PP.AVE:
        return pool_ops.ave_pool(xp, x, win, out_shape, out), ("ave",)
    if train:
        rng = rng if rng is not None else numpy.random.default_rng()
        uniform = xp.asarray(rng.random(x.shape[:2] + tuple(out_shape)))
        y, arg = pool_ops.stochastic_pool_train(xp, x, win, out_shape, uniform)
        return y, ("arg", arg)
    y, total = pool_ops.stochastic_pool_test(xp, x, win, out_shape)
    return y, ("stochastic_test", y, total)


def _pool_backward(xp, x, dy, win, state, out=None):
    """dx (into `out` for MAX and AVE when given)."""
    if state[0] == "arg":
        return pool_ops.max_pool_backward(xp, dy, state[1], x.shape[2:], win, out)
    if state[0] == "ave":
        return pool_ops.ave_pool_backward(xp, dy, x.shape[2:], win, out)
    return pool_ops.stochastic_pool_test_backward(xp, x, state[1], state[2], dy, win)


def _pool_method_name(method):
    return PP.PoolMethod.Name(method)


@layer("Pooling")
class Pooling(Layer):
    """MAX, AVE or STOCHASTIC pooling over 2-d maps, with Caffe's ceil rounding and pad clip
    (or round_mode: FLOOR), global_pooling, and MAX's optional second top (the argmax index)."""
    tops = (1, 2)

    def setup(self):
        p = self.param = self.lp.pooling_param
        has = p.HasField
        if p.global_pooling:
            if has("kernel_size") or has("kernel_h") or has("kernel_w"):
                self.fail("global_pooling takes the whole map: remove kernel_size/kernel_h/kernel_w")
        elif has("kernel_size") == (has("kernel_h") or has("kernel_w")):
            self.fail("set the kernel as kernel_size, or as kernel_h and kernel_w, not both"
                      if has("kernel_size") else "kernel size is not set",
                      "add kernel_size: N (or kernel_h and kernel_w), or global_pooling: true")
        elif not has("kernel_size") and not (has("kernel_h") and has("kernel_w")):
            self.fail("kernel_h and kernel_w must be set together", "set both, or use kernel_size")
        for name in ("pad", "stride"):
            if has(f"{name}_h") != has(f"{name}_w") or (has(name) and has(f"{name}_h")):
                self.fail(f"set {name}, or both {name}_h and {name}_w")
        self.kernel = None if p.global_pooling else (
            (p.kernel_size,) * 2 if has("kernel_size") else (p.kernel_h, p.kernel_w))
        self.pad = (p.pad_h, p.pad_w) if has("pad_h") else (p.pad,) * 2
        self.stride = (p.stride_h, p.stride_w) if has("stride_h") else (p.stride,) * 2
        if self.kernel and min(self.kernel) <= 0:
            self.fail(f"kernel dimensions must be positive (found {_dims(self.kernel)})")
        if min(self.stride) <= 0:
            self.fail(f"stride must be positive (found {_dims(self.stride)})")
        if p.global_pooling and (any(self.pad) or self.stride != (1, 1)):
            self.fail("global_pooling allows only pad 0 and stride 1")
        if any(self.pad):
            if p.pool not in (PP.MAX, PP.AVE):
                self.fail(f"padding is implemented only for MAX and AVE pooling, not {_pool_method_name(p.pool)}")
            if self.kernel and any(pd >= k for pd, k in zip(self.pad, self.kernel)):
                self.fail(f"pad {_dims(self.pad)} must be smaller than the kernel {_dims(self.kernel)}")
        self.ceil_mode = p.round_mode == PP.CEIL
        self._state = None

    def geometry(self, shape):
        kernel = tuple(shape[2:]) if self.param.global_pooling else self.kernel
        return Window(kernel, self.stride, self.pad, (1, 1))

    def infer(self, bottoms, ctx):
        shape = tuple(bottoms[0])
        _need_4d(self, shape)
        if len(self.lp.top) == 2 and self.param.pool != PP.MAX:
            self.fail(f"only MAX pooling has a second top (the argmax mask), not {_pool_method_name(self.param.pool)}")
        win = self.geometry(shape)
        if self.param.global_pooling:
            ctx.note(f"global pooling: kernel {_dims(win.kernel)} = the whole map -> 1x1")
            return [shape[:2] + (1, 1)] * max(1, len(self.lp.top))
        labels = _axis_labels(2)
        items, out = [], []
        padded = any(win.pad)
        overhang = []
        for label, size, k, s, p in zip(labels, shape[2:], win.kernel, win.stride, win.pad):
            size_out = pool_out(size, k, s, p, self.ceil_mode, padded)
            if size_out <= 0:
                self.fail(f"{label}: kernel {k} is larger than the padded input {size} + 2*{p} = {size + 2 * p} "
                          f"by {k - size - 2 * p} (stride {s}), which leaves no window",
                          "pad more, use a smaller kernel, or feed a larger input")
            if k > size + 2 * p:    # Caffe keeps one window, clipped to the input
                overhang.append((label, f"kernel {k} is larger than the padded input {size} + 2*{p} = "
                                        f"{size + 2 * p}; Caffe's rounding keeps one window over the whole of it"))
            last = (size_out - 1) * s - p
            if last >= size:    # Caffe allows it: MAX gives -FLT_MAX there, AVE gives 0
                ctx.warn(f"{label}: ceil(({size} + 2*{p} - {k})/{s}) + 1 = {size_out} windows, but the last starts "
                         f"at {last}, past the input ({size}): kernel {k} < stride {s} leaves it empty; "
                         "use round_mode: FLOOR, or a kernel at least as large as the stride")
            items.append(explain_pool(size, k, s, p, self.ceil_mode, padded))
            out.append(size_out)
        if len(overhang) == len(labels) and len({text for _, text in overhang}) == 1:
            overhang = [("", overhang[0][1])]
        for label, text in overhang:
            ctx.warn(f"{label}: {text}" if label else text)
        _explain_axes(ctx, labels, items)
        return [shape[:2] + tuple(out)] * max(1, len(self.lp.top))

    def macs(self, bottoms, tops):
        return math.prod(tops[0]) * math.prod(self.geometry(bottoms[0]).kernel)

    def window(self, bottoms):
        return list(zip(*self.geometry(bottoms[0])))

    def forward(self, xp, bottoms, tops):
        x = bottoms[0].data
        win = self.geometry(x.shape)
        out_shape = tops[0].data.shape[2:]
        y, self._state = _pool_forward(xp, x, self.param.pool, win, out_shape, self.phase == TRAIN, self.rng,
                                       out=tops[0].data)
        if y is not tops[0].data:
            tops[0].data[...] = y
        if len(tops) > 1:
            tops[1].data[...] = pool_ops.argmax_to_input_index(xp, self._state[1], x.shape[2:], win)

    def backward(self, xp, tops, propagate_down, bottoms):
        if not propagate_down[0]:
            return
        x, diff = bottoms[0].data, bottoms[0].diff
        dx = _pool_backward(xp, x, tops[0].diff, self.geometry(x.shape), self._state, out=diff)
        if dx is not diff:
            diff[...] = dx


@layer("SPP")
class SPP(Layer):
    """Spatial pyramid pooling as Caffe builds it: level l pools into 2^l x 2^l bins with
    kernel ceil(size / 2^l), stride = kernel, pad (kernel*2^l - size + 1) // 2; the levels are
    flattened and concatenated, (N, C * bins). With pyramid_height 1 the top is the (N, C, 1, 1)
    pooling output itself."""

    def setup(self):
        p = self.param = self.lp.spp_param
        if p.pyramid_height < 1:
            self.fail("pyramid_height must be at least 1")
        self._states = None

    def levels(self, shape):
        """[(Window, out_shape)] per pyramid level, checked as Caffe's Pooling would check them."""
        result = []
        for level in range(self.param.pyramid_height):
            bins = 2 ** level
            kernel = tuple(-(-size // bins) for size in shape[2:])
            pad = tuple((k * bins - size + 1) // 2 for k, size in zip(kernel, shape[2:]))
            if any(pd >= k for pd, k in zip(pad, kernel)) or (any(pad) and self.param.pool == PP.STOCHASTIC):
                self.fail(f"pyramid level {level} ({bins}x{bins} bins) on a {_dims(shape[2:])} map needs kernel "
                          f"{_dims(kernel)} with pad {_dims(pad)}, which Caffe's {_pool_method_name(self.param.pool)} "
                          f"pooling does not allow", "lower pyramid_height or feed a larger map")
            win = Window(kernel, kernel, pad, (1, 1))
            out = tuple(pool_out(size, k, k, pd, padded=any(pad)) for size, k, pd in zip(shape[2:], kernel, pad))
            result.append((win, out))
        return result

    def infer(self, bottoms, ctx):
        shape = tuple(bottoms[0])
        _need_4d(self, shape)
        levels = self.levels(shape)
        parts = [f"{_dims(out)} (kernel {_dims(win.kernel)}, pad {_dims(win.pad)})" for win, out in levels]
        if len(levels) == 1:
            ctx.note("1 level: " + parts[0])
            return [shape[:2] + levels[0][1]]
        bins = sum(math.prod(out) for _, out in levels)
        ctx.note(f"{len(levels)} levels: {' + '.join(parts)} = {bins} bins x {shape[1]} channels "
                 f"= {bins * shape[1]}")
        return [(shape[0], shape[1] * bins)]

    def macs(self, bottoms, tops):
        n_c = math.prod(bottoms[0][:2])
        return sum(n_c * math.prod(out) * math.prod(win.kernel) for win, out in self.levels(bottoms[0]))

    def window(self, bottoms):
        return [(size, 1, 0, 1) for size in bottoms[0][2:]]     # the coarsest bin sees the whole map

    def forward(self, xp, bottoms, tops):
        x = bottoms[0].data
        n = x.shape[0]
        flat = tops[0].data.reshape(n, -1)
        self._states, start = [], 0
        for win, out in self.levels(x.shape):
            # Caffe's SPP builds its Pooling layers from a fresh LayerParameter, whose phase is
            # TRAIN: STOCHASTIC levels sample in every phase.
            y, state = _pool_forward(xp, x, self.param.pool, win, out, True, self.rng)
            width = y[0].size
            flat[:, start:start + width] = y.reshape(n, width)
            self._states.append(state)
            start += width

    def backward(self, xp, tops, propagate_down, bottoms):
        if not propagate_down[0]:
            return
        x = bottoms[0].data
        n = x.shape[0]
        flat = tops[0].diff.reshape(n, -1)
        total, start = None, 0
        for (win, out), state in zip(self.levels(x.shape), self._states):
            width = x.shape[1] * math.prod(out)
            dy = xp.ascontiguousarray(flat[:, start:start + width]).reshape(x.shape[:2] + out)
            dx = _pool_backward(xp, x, dy, win, state)
            total = dx if total is None else total + dx
            start += width
        bottoms[0].diff[...] = total


# -- LRN -----------------------------------------------------------------------------------------
@layer("LRN")
class LRN(Layer):
    """Local response normalisation, ACROSS_CHANNELS or WITHIN_CHANNEL, Caffe's formulas
    (see netspec.ops.lrn)."""

    def setup(self):
        p = self.param = self.lp.lrn_param
        if p.local_size < 1 or p.local_size % 2 == 0:
            self.fail(f"local_size must be odd (found {p.local_size})", f"use {p.local_size + 1 if p.local_size else 5}")
        self.across = p.norm_region == LRNP.ACROSS_CHANNELS
        self._state = None

    def infer(self, bottoms, ctx):
        shape = tuple(bottoms[0])
        _need_4d(self, shape)
        p = self.param
        n = p.local_size
        if self.across:
            ctx.note(f"y = x * ({_number(p.k)} + {p.alpha:g}/{n} * sum of x^2 over {n} channels)^-{p.beta:g}")
        else:
            ctx.note(f"y = x * (1 + {p.alpha:g} * mean of x^2 over {n}x{n})^-{p.beta:g}")
        return [shape]

    def macs(self, bottoms, tops):
        per_element = self.param.local_size if self.across else self.param.local_size ** 2
        return math.prod(bottoms[0]) * (per_element + 2)

    def window(self, bottoms):
        if self.across:
            return None
        n = self.param.local_size
        return [(n, 1, (n - 1) // 2, 1)] * 2

    def forward(self, xp, bottoms, tops):
        p = self.param
        x = bottoms[0].data
        if self.across:
            y, scale, inv = lrn_ops.lrn_across(xp, x, p.local_size, p.alpha, p.beta, p.k)
        else:
            y, scale, inv = lrn_ops.lrn_within(xp, x, p.local_size, p.alpha, p.beta)
        tops[0].data[...] = y
        self._state = (scale, inv)

    def backward(self, xp, tops, propagate_down, bottoms):
        if not propagate_down[0]:
            return
        p = self.param
        scale, inv = self._state
        grad = lrn_ops.lrn_across_backward if self.across else lrn_ops.lrn_within_backward
        bottoms[0].diff[...] = grad(xp, bottoms[0].data, tops[0].data, scale, inv, tops[0].diff,
                                    p.local_size, p.alpha, p.beta)


# -- Crop -----------------------------------------------------------------------------------------
@layer("Crop")
class Crop(Layer):
    """Crop bottom[0] to bottom[1]'s shape from `axis` on, at `offset` (one for all those
    axes, or one each); the axes before `axis` are kept."""
    bottoms = (2, 2)

    def setup(self):
        self.param = self.lp.crop_param

    def _offsets(self, a, b):
        if len(a) != len(b):
            self.fail(f"the bottoms must have the same number of axes: {_dims(a)} and {_dims(b)}")
        axis = self.canonical_axis(self.param.axis, len(a))
        given = list(self.param.offset)
        if len(given) > 1 and axis + len(given) != len(a):
            self.fail(f"crop takes one offset, or one per axis from axis {axis} ({len(a) - axis} here); "
                      f"found {len(given)}")
        offsets = [0] * len(a)
        for i in range(axis, len(a)):
            offsets[i] = given[0] if len(given) == 1 else (given[i - axis] if given else 0)
        for i, (size, want, off) in enumerate(zip(a, b, offsets)):
            if size - off < want:
                self.fail(f"axis {i}: cannot crop {want} from {size} at offset {off} ({size} - {off} < {want})",
                          "lower the offset, or check which bottom is the one to crop (bottom 0)")
        return axis, offsets

    def infer(self, bottoms, ctx):
        a, b = tuple(bottoms[0]), tuple(bottoms[1])
        axis, offsets = self._offsets(a, b)
        top = a[:axis] + b[axis:]
        cut = [f"axis {i}: {a[i]} -> {top[i]} at offset {offsets[i]}" for i in range(axis, len(a)) if a[i] != top[i]]
        ctx.note("; ".join(cut) if cut else "nothing to crop: the shapes agree")
        return [top]

    def _slices(self, bottoms, tops):
        _, offsets = self._offsets(bottoms[0].shape, bottoms[1].shape)
        return tuple(slice(o, o + n) for o, n in zip(offsets, tops[0].shape))

    def forward(self, xp, bottoms, tops):
        tops[0].data[...] = bottoms[0].data[self._slices(bottoms, tops)]

    def backward(self, xp, tops, propagate_down, bottoms):
        if propagate_down[0]:
            bottoms[0].diff[...] = 0
            bottoms[0].diff[self._slices(bottoms, tops)] = tops[0].diff
        if propagate_down[1]:
            bottoms[1].diff[...] = 0     # the reference bottom only gives a shape
