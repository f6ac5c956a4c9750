"""Neuron layers: one bottom, one top of the same shape, computed element by element.

Each may run in place (top blob == bottom blob), as Caffe nets often do. Backward then
reads the output where it determines the gradient (ReLU, Sigmoid, TanH, ELU, Exp ...);
a layer whose gradient needs the input it overwrote keeps a copy of it in forward, and
only when it runs in place (`needs_input`).

MACs: one per output element (the cost model counts an elementwise op as one).
"""
import math

import numpy as np

from .. import caffe_pb2
from ..errors import LayerError
from ..ops.threads import flat_parts
from .base import Layer, ParamBlob
from .registry import layer


def _in_place(bottoms, tops):
    return tops[0] is bottoms[0] or tops[0].data is bottoms[0].data


class Neuron(Layer):
    """y = f(x) element by element. Subclasses give value(), and gradient() for backward."""
    needs_input = True      # gradient() reads x (kept in forward when the layer runs in place)
    family = "neuron"
    takes_unknown = True
    has_backward = True

    def infer(self, bottoms, ctx):
        return [tuple(bottoms[0])]

    def macs(self, bottoms, tops):
        return math.prod(tops[0])

    def forward(self, xp, bottoms, tops):
        x = bottoms[0].data
        self._saved_x = x.copy() if self.needs_input and _in_place(bottoms, tops) else None
        tops[0].data[...] = self.value(xp, x)

    def backward(self, xp, tops, propagate_down, bottoms):
        if not self.has_backward:
            self.fail(f"{self.type} has no backward in Caffe, but a gradient must pass through it here",
                      hint=f"set propagate_down: false on '{self.name}', or remove it from the training net")
        if not propagate_down[0]:
            return
        x = self.forward_input(bottoms)
        bottoms[0].diff[...] = self.gradient(xp, x, tops[0].data, tops[0].diff)

    def forward_input(self, bottoms):
        """x as forward saw it: the copy kept when running in place, else the bottom itself."""
        return self._saved_x if self._saved_x is not None else bottoms[0].data

    def value(self, xp, x):
        raise NotImplementedError

    def gradient(self, xp, x, y, dy):
        """d(loss)/dx from the input x (stale if needs_input is False), the output y and dy."""
        raise NotImplementedError


@layer("ReLU")
class ReLU(Neuron):
    def setup(self):
        self.slope = self.lp.relu_param.negative_slope
        # With slope >= 0 the sign of y is the sign of x, so y alone tells the gradient.
        self.needs_input = self.slope < 0

    def is_rectifier(self):
        return self.slope == 0

    def forward(self, xp, bottoms, tops):
        if self.slope == 0:     # the common case, without temporaries
            self._saved_x = None
            flat_parts(lambda x, y: xp.maximum(x, 0, out=y), bottoms[0].data, tops[0].data)
        else:
            super().forward(xp, bottoms, tops)

    def backward(self, xp, tops, propagate_down, bottoms):
        if self.slope == 0 and propagate_down[0]:
            flat_parts(lambda dy, y, dx: xp.multiply(dy, y > 0, out=dx), tops[0].diff, tops[0].data, bottoms[0].diff)
        else:
            super().backward(xp, tops, propagate_down, bottoms)

    def value(self, xp, x):
        return xp.where(x > 0, x, x * self.slope)

    def gradient(self, xp, x, y, dy):
        return xp.where((x if self.needs_input else y) > 0, dy, dy * self.slope)


@layer("PReLU")
class PReLU(Neuron):
    """ReLU with a learned negative slope per channel (axis 1), or one shared slope."""

    def setup(self):
        self.shared = self.lp.prelu_param.channel_shared

    def infer(self, bottoms, ctx):
        if len(bottoms[0]) < 2:
            self.fail(f"PReLU needs a blob of at least 2 axes (channels on axis 1), got shape {tuple(bottoms[0])}")
        return [tuple(bottoms[0])]

    def param_blobs(self, bottoms):
        p = self.lp.prelu_param
        filler = p.filler if p.HasField("filler") else caffe_pb2.FillerParameter(type="constant", value=0.25)
        shape = (1,) if self.shared else bottoms and (bottoms[0][1],)
        return [ParamBlob(shape, filler)]

    def _slope(self, x):
        a = self.blobs[0].data
        return a.reshape((1, -1) + (1,) * (x.ndim - 2))

    def value(self, xp, x):
        return xp.where(x > 0, x, x * self._slope(x))

    def backward(self, xp, tops, propagate_down, bottoms):
        x = self.forward_input(bottoms)
        dy = tops[0].diff
        negative = x <= 0
        a = self.blobs[0]
        if self.param_wanted(0):    # before an in-place bottom diff overwrites dy
            g = xp.where(negative, dy * x, 0)
            axes = tuple(i for i in range(x.ndim) if i != 1 or self.shared)
            a.diff += g.sum(axis=axes).reshape(a.diff.shape)
        if propagate_down[0]:
            bottoms[0].diff[...] = xp.where(negative, dy * self._slope(x), dy)


@layer("ELU")
class ELU(Neuron):
    def setup(self):
        self.alpha = self.lp.elu_param.alpha
        self.needs_input = self.alpha < 0     # with alpha >= 0, y > 0 exactly where x > 0

    def value(self, xp, x):
        return xp.where(x > 0, x, self.alpha * xp.expm1(xp.minimum(x, 0)))

    def gradient(self, xp, x, y, dy):
        positive = (x if self.needs_input else y) > 0
        return xp.where(positive, dy, dy * (y + self.alpha))


@layer("Sigmoid")
class Sigmoid(Neuron):
    needs_input = False

    def value(self, xp, x):
        return 0.5 * xp.tanh(0.5 * x) + 0.5      # Caffe's form: no overflow for large |x|

    def gradient(self, xp, x, y, dy):
        return dy * y * (1 - y)


@layer("TanH")
class TanH(Neuron):
    needs_input = False

    def value(self, xp, x):
        return xp.tanh(x)

    def gradient(self, xp, x, y, dy):
        return dy * (1 - y * y)


@layer("AbsVal")
class AbsVal(Neuron):
    def setup(self):
        if len(self.lp.bottom) and len(self.lp.top) and self.lp.bottom[0] == self.lp.top[0]:
            self.fail("AbsVal does not allow in-place computation (Caffe refuses it)",
                      f"give its top a new name instead of '{self.lp.top[0]}'")

    def value(self, xp, x):
        return xp.abs(x)

    def gradient(self, xp, x, y, dy):
        return dy * xp.sign(x)


@layer("Power")
class Power(Neuron):
    """y = (shift + scale * x) ^ power."""

    def setup(self):
        p = self.lp.power_param
        self.power, self.scale, self.shift = p.power, p.scale, p.shift
        self.diff_scale = self.power * self.scale
        self.needs_input = self.diff_scale != 0 and self.power != 1

    def value(self, xp, x):
        if self.diff_scale == 0:     # y is a constant
            return xp.full_like(x, 1.0 if self.power == 0 else self.shift ** self.power)
        base = self.shift + self.scale * x if (self.scale != 1 or self.shift != 0) else x
        return base if self.power == 1 else base ** self.power

    def gradient(self, xp, x, y, dy):
        if self.diff_scale == 0:
            return xp.zeros_like(dy)
        if self.power == 1:
            return dy * self.diff_scale
        # Caffe divides y by the base; the power form below agrees and has no 0/0 at base 0.
        return dy * (self.diff_scale * (self.shift + self.scale * x) ** (self.power - 1))


def _log_base(base, kind):
    """ln(base) for Exp/Log; base -1 (the default) means e."""
    if base == -1:
        return 1.0
    if base <= 0:
        raise LayerError(f"{kind} base must be strictly positive (or -1 for e), got {base:g}")
    return math.log(base)


@layer("Exp")
class Exp(Neuron):
    """y = base ^ (shift + scale * x), base e by default (-1)."""
    needs_input = False

    def setup(self):
        p = self.lp.exp_param
        self.inner_scale = _log_base(p.base, "Exp") * p.scale
        self.outer_scale = 1.0 if p.shift == 0 else (math.e if p.base == -1 else p.base) ** p.shift

    def value(self, xp, x):
        y = xp.exp(x * self.inner_scale if self.inner_scale != 1 else x)
        return y * self.outer_scale if self.outer_scale != 1 else y

    def gradient(self, xp, x, y, dy):
        return dy * y * self.inner_scale


@layer("Log")
class Log(Neuron):
    """y = log_base(shift + scale * x), natural log by default (base -1)."""

    def setup(self):
        p = self.lp.log_param
        log_base = _log_base(p.base, "Log")
        if log_base == 0:       # Caffe checks 1/ln(base) is finite
            self.fail("Log base 1 has no logarithm: 1/ln(1) is infinite", "use another base, or -1 for e")
        self.base_scale = 1.0 / log_base
        self.scale, self.shift = p.scale, p.shift

    def value(self, xp, x):
        return xp.log(self.shift + self.scale * x) * self.base_scale

    def gradient(self, xp, x, y, dy):
        return dy * (self.base_scale * self.scale) / (self.shift + self.scale * x)


@layer("BNLL")
class BNLL(Neuron):
    """y = log(1 + exp(x)), the binomial normal log likelihood (softplus)."""
    THRESHOLD = 50.0    # Caffe's kBNLL_THRESHOLD: exp() of more than this is left unevaluated

    def value(self, xp, x):
        return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))

    def gradient(self, xp, x, y, dy):
        e = xp.exp(xp.minimum(x, self.THRESHOLD))
        return dy * e / (e + 1)


@layer("Threshold")
class Threshold(Neuron):
    """y = 1 where x > threshold, else 0. Caffe gives it no backward."""
    needs_input = False
    has_backward = False

    def setup(self):
        self.threshold = self.lp.threshold_param.threshold

    def value(self, xp, x):
        return x > self.threshold


@layer("Clip")
class Clip(Neuron):
    """y = min(max(x, min), max); the gradient passes where min <= x <= max."""

    def setup(self):
        p = self.lp.clip_param
        missing = [f for f in ("min", "max") if not p.HasField(f)]
        if missing:
            self.fail(f"clip_param needs both min and max; missing {' and '.join(missing)}",
                      hint="e.g. clip_param { min: 0 max: 6 }")
        if p.min > p.max:
            self.fail(f"clip_param min ({p.min:g}) is greater than max ({p.max:g})")
        self.min, self.max = p.min, p.max

    def value(self, xp, x):
        return xp.clip(x, self.min, self.max)

    def gradient(self, xp, x, y, dy):
        return dy * ((x >= self.min) & (x <= self.max))


@layer("Swish")
class Swish(Neuron):
    """y = x * sigmoid(beta * x); the sigmoid is kept from forward, so in place needs no copy."""
    needs_input = False

    def setup(self):
        self.beta = self.lp.swish_param.beta

    def value(self, xp, x):
        self._sigmoid = 0.5 * xp.tanh((0.5 * self.beta) * x) + 0.5
        return x * self._sigmoid

    def gradient(self, xp, x, y, dy):
        by = self.beta * y
        return dy * (by + self._sigmoid * (1 - by))


@layer("Dropout")
class Dropout(Neuron):
    """TRAIN: zero each unit with probability dropout_ratio and scale the kept ones by
    1/(1 - ratio), so TEST is the identity. The mask is drawn from self.rng. caffe-fast-rcnn's
    `scale_train: false` moves the scaling to TEST: TRAIN only masks, TEST multiplies by 1 - ratio;
    caffe-segnet's `sample_weights_test` drops out in TEST as in TRAIN."""
    needs_input = False

    def describe(self):
        return [f"ratio {self.ratio:g}"]

    def setup(self):
        self.ratio = self.lp.dropout_param.dropout_ratio
        if not 0 <= self.ratio < 1:
            self.fail(f"dropout_ratio must be in [0, 1), got {self.ratio:g}")
        self.scale_train = self.lp.dropout_param.scale_train
        self.scale = 1.0 / (1.0 - self.ratio)

    @property
    def training(self):     # Bayesian SegNet samples its weights in TEST too
        return self.phase == caffe_pb2.TRAIN or self.lp.dropout_param.sample_weights_test

    def value(self, xp, x):
        if not self.training:
            return x if self.scale_train else x * x.dtype.type(1.0 - self.ratio)
        if self.rng is None:
            raise RuntimeError(f"Dropout '{self.name}' runs in TRAIN but has no random generator (layer.rng)")
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.ratio
        self._mask = xp.asarray(keep).astype(x.dtype) * (self.scale if self.scale_train else 1)
        return x * self._mask

    def gradient(self, xp, x, y, dy):
        if self.training:
            return dy * self._mask
        return dy if self.scale_train else dy * dy.dtype.type(1.0 - self.ratio)
