"""Pooling and SPP (spatial pyramid pooling): the PoolingParameter layers."""
import math

import numpy

from .. import caffe_pb2
from ..ops import pooling as pool_ops
from ..ops.windows import Window, pool_out
from ..utils import format_shape
from .base import Layer
from .explain import axis_labels, explain_axes, explain_pool, need_4d, window_words
from .registry import layer

TRAIN = caffe_pb2.TRAIN
PP = caffe_pb2.PoolingParameter


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
    family = "pool"

    def describe(self):
        method = _pool_method_name(self.param.pool)
        if self.param.global_pooling:
            return [f"{method} global"]
        return [f"{method} " + window_words(Window(self.kernel, self.stride, self.pad, (1, 1)))]
    takes_unknown = True

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
            self.fail(f"kernel dimensions must be positive (found {format_shape(self.kernel)})")
        if min(self.stride) <= 0:
            self.fail(f"stride must be positive (found {format_shape(self.stride)})")
        if p.global_pooling and (any(self.pad) or self.stride != (1, 1)):
            self.fail("global_pooling allows only pad 0 and stride 1")
        if any(self.pad):
            if p.pool not in (PP.MAX, PP.AVE):
                self.fail(f"padding is implemented only for MAX and AVE pooling, not {_pool_method_name(p.pool)}")
            if self.kernel and any(pd >= k for pd, k in zip(self.pad, self.kernel)):
                self.fail(f"pad {format_shape(self.pad)} must be smaller than the kernel {format_shape(self.kernel)}")
        self.ceil_mode = p.round_mode == PP.CEIL
        self._state = None

    def geometry(self, shape):
        kernel = tuple(shape[2:]) if self.param.global_pooling else self.kernel
        return Window(kernel, self.stride, self.pad, (1, 1))

    def infer(self, bottoms, ctx):
        shape = tuple(bottoms[0])
        need_4d(self, shape)
        if len(self.lp.top) == 2 and self.param.pool != PP.MAX:
            self.fail(f"only MAX pooling has a second top (the argmax mask), not {_pool_method_name(self.param.pool)}")
        win = self.geometry(shape)
        if self.param.global_pooling:
            ctx.note(f"global pooling: kernel {format_shape(win.kernel)} = the whole map -> 1x1")
            return [shape[:2] + (1, 1)] * max(1, len(self.lp.top))
        labels = axis_labels(2)
        items, out = [], []
        padded = any(win.pad)
        overhang = []
        for label, size, k, s, p in zip(labels, shape[2:], win.kernel, win.stride, win.pad):
            if size is None:
                items.append(("? in -> ? out (the input size is known when the net runs)", True))
                out.append(None)
                continue
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
        explain_axes(ctx, labels, items)
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
                self.fail(f"pyramid level {level} ({bins}x{bins} bins) on a {format_shape(shape[2:])} map needs kernel "
                          f"{format_shape(kernel)} with pad {format_shape(pad)}, which Caffe's {_pool_method_name(self.param.pool)} "
                          f"pooling does not allow", "lower pyramid_height or feed a larger map")
            win = Window(kernel, kernel, pad, (1, 1))
            out = tuple(pool_out(size, k, k, pd, padded=any(pad)) for size, k, pd in zip(shape[2:], kernel, pad))
            result.append((win, out))
        return result

    def infer(self, bottoms, ctx):
        shape = tuple(bottoms[0])
        need_4d(self, shape)
        levels = self.levels(shape)
        parts = [f"{format_shape(out)} (kernel {format_shape(win.kernel)}, pad {format_shape(win.pad)})" for win, out in levels]
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
