"""LRN (local response normalisation) and Crop."""
import math

from .. import caffe_pb2
from ..ops import lrn as lrn_ops
from ..utils import format_shape
from .base import Layer
from .explain import need_4d, number_text
from .registry import layer

LRNP = caffe_pb2.LRNParameter


@layer("LRN")
class LRN(Layer):
    """Local response normalisation, ACROSS_CHANNELS or WITHIN_CHANNEL, Caffe's formulas
    (see netspec.ops.lrn)."""
    family = "norm"

    def describe(self):
        return [f"size {self.param.local_size}" + ("" if self.across else " within channel")]

    def setup(self):
        p = self.param = self.lp.lrn_param
        if p.local_size < 1 or p.local_size % 2 == 0:
            self.fail(f"local_size must be odd (found {p.local_size})", f"use {p.local_size + 1 if p.local_size else 5}")
        self.across = p.norm_region == LRNP.ACROSS_CHANNELS
        self._state = None

    takes_unknown = True

    def infer(self, bottoms, ctx):
        shape = tuple(bottoms[0])
        need_4d(self, shape)
        p = self.param
        n = p.local_size
        if self.across:
            ctx.note(f"y = x * ({number_text(p.k)} + {p.alpha:g}/{n} * sum of x^2 over {n} channels)^-{p.beta:g}")
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
            _, self._state = lrn_ops.lrn_across(xp, x, p.local_size, p.alpha, p.beta, p.k, out=tops[0].data,
                                                scale=self._state)
        else:
            _, self._state = lrn_ops.lrn_within(xp, x, p.local_size, p.alpha, p.beta, out=tops[0].data)

    def backward(self, xp, tops, propagate_down, bottoms):
        if not propagate_down[0]:
            return
        p = self.param
        grad = lrn_ops.lrn_across_backward if self.across else lrn_ops.lrn_within_backward
        bottoms[0].diff[...] = grad(xp, bottoms[0].data, tops[0].data, self._state, tops[0].diff,
                                    p.local_size, p.alpha, p.beta)


# -- Crop -----------------------------------------------------------------------------------------
@layer("Crop")
class Crop(Layer):
    """Crop bottom[0] to bottom[1]'s shape from `axis` on, at `offset` (one for all those
    axes, or one each); the axes before `axis` are kept."""
    operands_agree = True
    bottoms = (2, 2)

    def setup(self):
        self.param = self.lp.crop_param

    def _offsets(self, a, b):
        if len(a) != len(b):
            self.fail(f"the bottoms must have the same number of axes: {format_shape(a)} and {format_shape(b)}")
        axis = self.canonical_axis(self.param.axis, len(a))
        given = list(self.param.offset)
        if len(given) > 1 and axis + len(given) != len(a):
            self.fail(f"crop takes one offset, or one per axis from axis {axis} ({len(a) - axis} here); "
                      f"found {len(given)}")
        offsets = [0] * len(a)
        for i in range(axis, len(a)):
            offsets[i] = given[0] if len(given) == 1 else (given[i - axis] if given else 0)
        for i in range(axis, len(a)):          # Caffe checks only the cropped axes
            size, want, off = a[i], b[i], offsets[i]
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
