"""Elementwise arithmetic between blobs: Eltwise, Scale, Bias, Reduction."""
import numpy as np

from .. import caffe_pb2
from ..ops import norm as norm_ops
from ..ops.threads import add_all, by_parts, flat_parts
from ..utils import format_shape
from .arrays import count
from .base import Layer, ParamBlob
from .registry import layer


# ---------------------------------------------------------------------------------------------
@layer("Eltwise")
class Eltwise(Layer):
    """Elementwise PROD, SUM (with one coefficient per bottom) or MAX of same-shaped bottoms."""
    operands_agree = True
    bottoms = (2, None)
    takes_unknown = True
    P = caffe_pb2.EltwiseParameter
    family = "join"

    def describe(self):
        return [self.P.EltwiseOp.Name(self.op)]

    def backward_reads(self):
        return (True, True) if self.op == self.P.PROD else (False, False)     # SUM: coefficients; MAX: argmax

    def setup(self):
        p = self.lp.eltwise_param
        self.op = p.operation
        if p.coeff and self.op == self.P.PROD:     # Caffe rejects coeff for PROD only; MAX ignores it
            self.fail("eltwise_param.coeff is only for operation SUM (PROD does not take it)")
        self.stable_prod_grad = p.stable_prod_grad

    def infer(self, bottoms, ctx):
        coeff = self.lp.eltwise_param.coeff
        if coeff and len(coeff) != len(bottoms):
            self.fail(f"eltwise_param has {len(coeff)} coeff value(s) for {len(bottoms)} bottoms; give one per bottom")
        problems = self.shape_mismatches(bottoms)
        if problems:
            self.fail("Eltwise needs bottoms of one shape: " + "; ".join(problems),
                      hint="make the branches agree (a projection shortcut, matching strides and pads), "
                           "or crop the larger one with a Crop layer")
        return [self.merged(bottoms)]

    def macs(self, bottoms, tops):
        return (len(bottoms) - 1) * count(tops[0])     # one op per element per extra operand

    def forward(self, xp, bottoms, tops):
        xs = [b.data for b in bottoms]
        out = tops[0].data
        aliased = any(x is out for x in xs)
        if aliased and self.op == self.P.PROD:
            xs = [x.copy() if x is out else x for x in xs]
        self._inputs = xs
        target = xp.empty_like(out) if aliased else out
        if self.op == self.P.SUM:
            coeff = list(self.lp.eltwise_param.coeff) or [1.0] * len(xs)
            terms = [x if c == 1 else x * c for x, c in zip(xs, coeff)]
            flat_parts(lambda target, *terms: add_all(xp, terms, target), target, *terms)
        elif self.op == self.P.PROD:
            xp.multiply(xs[0], xs[1], out=target)
            for x in xs[2:]:
                target *= x
        else:
            # Caffe's tie rule: bottom 1 wins a tie with bottom 0; later bottoms must be strictly greater.
            self._argmax = (xs[1] >= xs[0]).astype(np.int32)
            xp.maximum(xs[0], xs[1], out=target)
            for i, x in enumerate(xs[2:], 2):
                greater = x > target
                self._argmax[greater] = i
                xp.maximum(target, x, out=target)
        if aliased:
            out[...] = target

    def backward(self, xp, tops, propagate_down, bottoms):
        dy = tops[0].diff
        if any(b.diff is dy for b in bottoms):
            dy = dy.copy()      # an in-place bottom's diff is the top's: keep dy before overwriting it
        coeff = list(self.lp.eltwise_param.coeff) or [1.0] * len(bottoms)
        for i, b in enumerate(bottoms):
            if not propagate_down[i]:
                continue
            if self.op == self.P.SUM and coeff[i] == 1:
                flat_parts(lambda dx, dy: dx.__setitem__(Ellipsis, dy), b.diff, dy)
            elif self.op == self.P.SUM:
                b.diff[...] = dy * coeff[i]
            elif self.op == self.P.MAX:
                b.diff[...] = dy * (self._argmax == i)
            elif self.stable_prod_grad:
                others = [x for j, x in enumerate(self._inputs) if j != i]
                prod = others[0]
                for x in others[1:]:
                    prod = prod * x
                b.diff[...] = dy * prod
            else:
                b.diff[...] = dy * tops[0].data / self._inputs[i]


class _Broadcast(Layer):
    """Scale and Bias: an operand of shape bottom.shape[axis : axis + k] broadcast over the
    rest of bottom[0], given as a second bottom or learned (num_axes: how many axes; -1: all
    from axis on; 0: a scalar)."""
    operands_agree = True
    bottoms = (1, 2)
    takes_unknown = True
    message = ""

    def operand_shape(self, bottoms):
        if len(bottoms) == 2:
            return tuple(bottoms[1])
        p = getattr(self.lp, self.message)
        shape = tuple(bottoms[0])
        axis = self.canonical_axis(p.axis, len(shape))
        if p.num_axes < -1:
            self.fail(f"{self.message}.num_axes must be >= 0, or -1 for all axes from axis on, got {p.num_axes}")
        if p.num_axes >= 0 and axis + p.num_axes > len(shape):
            self.fail(f"axis {axis} + num_axes {p.num_axes} runs past the {len(shape)}-d bottom ({format_shape(shape)})")
        return shape[axis:] if p.num_axes == -1 else shape[axis:axis + p.num_axes]

    def operand_axis(self, shape, operand):
        """Where the operand lines up with bottom[0]; checks that it does."""
        if not operand:
            return 0        # a scalar: any axis would do
        axis = self.canonical_axis(getattr(self.lp, self.message).axis, len(shape))
        if axis + len(operand) > len(shape) or not self.same_shape(shape[axis:axis + len(operand)], operand):
            self.fail(f"the {self.type.lower()} operand {format_shape(operand)} does not match bottom {self.bottom_name(0)} "
                      f"({format_shape(shape)}) from axis {axis} on "
                      f"(axes {axis}..{axis + len(operand) - 1} are {format_shape(shape[axis:axis + len(operand)])})",
                      hint=f"set {self.message}.axis to where the operand's dimensions start")
        return axis

    def infer(self, bottoms, ctx):
        shape = tuple(bottoms[0])
        operand = self.operand_shape(bottoms)
        axis = self.operand_axis(shape, operand)
        if operand:
            where = f"axis {axis}" if len(operand) == 1 else f"axes {axis}..{axis + len(operand) - 1}"
            ctx.note(f"{self.type.lower()} of shape {format_shape(operand)} lines up with {where} of {format_shape(shape)}")
        return [shape]

    @staticmethod
    def expand(a, axis, ndim):
        """The operand shaped to broadcast against bottom[0]."""
        return a.reshape((1,) * axis + a.shape + (1,) * (ndim - axis - a.ndim))

    @staticmethod
    def other_axes(axis, operand_ndim, ndim):
        return tuple(i for i in range(ndim) if not axis <= i < axis + operand_ndim)

    def reduce_to(self, g, operand_shape, axis):
        """Sum a bottom-shaped gradient down to the operand's shape."""
        return g.sum(axis=self.other_axes(axis, len(operand_shape), g.ndim)).reshape(operand_shape)


@layer("Scale")
class Scale(_Broadcast):
    """y = x * scale (+ bias with bias_term). Blobs: [scale, bias] learned, or [bias] when the
    scale is bottom[1]. An unset filler means constant 1 for the scale, 0 for the bias."""
    message = "scale_param"

    def param_blobs(self, bottoms):
        p = self.lp.scale_param
        operand = bottoms and self.operand_shape(bottoms)
        scale = p.filler if p.HasField("filler") else caffe_pb2.FillerParameter(type="constant", value=1)
        learned = [] if len(self.lp.bottom) == 2 else [ParamBlob(operand, scale)]
        return learned + [ParamBlob(operand, p.bias_filler)] * p.bias_term

    def macs(self, bottoms, tops):
        return count(tops[0])

    def _operands(self, bottoms):
        scale = bottoms[1] if len(bottoms) == 2 else self.blobs[0]
        bias = self.blobs[-1] if self.lp.scale_param.bias_term else None
        return scale, bias

    def is_channel_scale(self, shape):
        return len(self.lp.bottom) == 1 and len(shape) >= 2 and \
            self.canonical_axis(self.lp.scale_param.axis, len(shape)) == 1 and self.operand_shape([shape]) == shape[1:2]

    def channel_operands(self):
        """(scale, bias or None) Blobs of a channel-wise Scale."""
        return self._operands(())

    def took_input(self, kept):
        """Forward was done for it (by BatchNorm.forward_fused): `kept` holds its input."""
        self._saved_x = kept

    def forward(self, xp, bottoms, tops):
        x = bottoms[0].data
        scale, bias = self._operands(bottoms)
        axis = self.operand_axis(x.shape, scale.shape)
        # the scale's gradient needs x, which running in place overwrites: keep it, unless the
        # layer before already keeps it (BatchNorm's normalised values)
        self._saved_x = None
        if tops[0].data is x:
            kept = self.kept_input() if self.kept_input else None
            if kept is not None and kept.shape == x.shape and kept.dtype == x.dtype:
                self._saved_x = kept
            else:
                self._saved_x = self._own_x = norm_ops.kept_copy(xp, getattr(self, "_own_x", None), x)
        y = tops[0].data
        s, b = self.expand(scale.data, axis, x.ndim), None if bias is None else self.expand(bias.data, axis, x.ndim)

        def part(c):                # c: a slice of the operand's first axis (channels, per channel)
            xp.multiply(x[:, c], s[:, c], out=y[:, c])
            if b is not None:
                y[:, c] += b[:, c]
        if self._per_channel(bottoms, x, axis):
            by_parts(xp, part, x.shape[1], x.nbytes)
        else:
            part(slice(None))

    def backward_reads(self):
        # in place it keeps (or shares) its own copy of x; else x, and a scale bottom
        return len(self.lp.bottom) > 1 or self.lp.bottom[0] != self.lp.top[0], False

    def _per_channel(self, bottoms, x, axis):
        """A learned scale of one value per channel (after BatchNorm): channels are independent."""
        return len(bottoms) == 1 and axis == 1 and self.blobs[0].data.ndim == 1 and x.ndim >= 2

    def backward(self, xp, tops, propagate_down, bottoms):
        x = self._saved_x if self._saved_x is not None else bottoms[0].data
        dy = tops[0].diff
        scale, bias = self._operands(bottoms)
        axis = self.operand_axis(x.shape, scale.shape)
        if self._per_channel(bottoms, x, axis):
            return self._backward_per_channel(xp, x, dy, scale, bias, propagate_down[0], bottoms[0].diff)
        if bias is not None and self.param_wanted(len(self.blobs) - 1):
            bias.diff += self.reduce_to(dy, bias.shape, axis)
        if len(bottoms) == 1:
            if self.param_wanted(0):
                scale.diff += self.reduce_to(dy * x, scale.shape, axis)
        elif propagate_down[1]:
            scale.diff[...] = self.reduce_to(dy * x, scale.shape, axis)
        if propagate_down[0]:
            xp.multiply(dy, self.expand(scale.data, axis, x.ndim), out=bottoms[0].diff)

    def _backward_per_channel(self, xp, x, dy, scale, bias, down, dx):
        """Per channel, parts of the channels at once: the sums first (dx may be dy itself)."""
        x3, dy3, dx3 = (a.reshape(a.shape[:2] + (-1,)) for a in (x, dy, dx))
        want_scale, want_bias = self.param_wanted(0), bias is not None and self.param_wanted(len(self.blobs) - 1)

        def part(c):
            if want_bias:
                bias.diff[c] += dy3[:, c].sum(axis=(0, 2))
            if want_scale:          # no dy * x array
                scale.diff[c] += norm_ops.channel_dot(xp, dy3[:, c], x3[:, c])
            if down:
                xp.multiply(dy3[:, c], scale.data[c][:, None], out=dx3[:, c])
        by_parts(xp, part, x.shape[1], x.nbytes)


@layer("Bias")
class Bias(_Broadcast):
    """y = x + bias; the bias is learned (unset filler: constant 0) or bottom[1]."""
    message = "bias_param"

    def param_blobs(self, bottoms):
        if len(self.lp.bottom) == 2:
            return []
        return [ParamBlob(bottoms and self.operand_shape(bottoms), self.lp.bias_param.filler)]

    def macs(self, bottoms, tops):
        return 0    # additions only

    def _bias(self, bottoms):
        return bottoms[1] if len(bottoms) == 2 else self.blobs[0]

    def forward(self, xp, bottoms, tops):
        x = bottoms[0].data
        bias = self._bias(bottoms)
        axis = self.operand_axis(x.shape, bias.shape)
        xp.add(x, self.expand(bias.data, axis, x.ndim), out=tops[0].data)

    def backward(self, xp, tops, propagate_down, bottoms):
        dy = tops[0].diff
        bias = self._bias(bottoms)
        axis = self.operand_axis(dy.shape, bias.shape)
        if len(bottoms) == 1:
            if self.param_wanted(0):
                bias.diff += self.reduce_to(dy, bias.shape, axis)
        elif propagate_down[1]:
            bias.diff[...] = self.reduce_to(dy, bias.shape, axis)
        if propagate_down[0] and bottoms[0].diff is not dy:
            bottoms[0].diff[...] = dy


@layer("Reduction")
class Reduction(Layer):
    """SUM, ASUM (sum of |x|), SUMSQ or MEAN over all axes from `axis` on, times coeff.
    The top keeps the leading axes (a scalar for axis 0)."""
    P = caffe_pb2.ReductionParameter

    def setup(self):
        self.op = self.lp.reduction_param.operation
        self.coeff = self.lp.reduction_param.coeff

    def _axis(self, ndim):
        return self.canonical_axis(self.lp.reduction_param.axis, ndim)

    def infer(self, bottoms, ctx):
        shape = tuple(bottoms[0])
        axis = self._axis(len(shape))
        ctx.note(f"reduce axes {axis}..{len(shape) - 1} ({count(shape, axis)} values per output)")
        return [shape[:axis]]

    def macs(self, bottoms, tops):
        return count(bottoms[0])

    def _rows(self, a, shape):
        axis = self._axis(len(shape))
        return a.reshape(count(shape, 0, axis), count(shape, axis))

    def _factor(self, rows):
        """coeff, divided by the number of values each output reduces for MEAN."""
        return self.coeff / rows.shape[1] if self.op == self.P.MEAN else self.coeff

    def forward(self, xp, bottoms, tops):
        x = self._rows(bottoms[0].data, bottoms[0].shape)
        if self.op == self.P.ASUM:
            x = xp.abs(x)
        elif self.op == self.P.SUMSQ:
            x = x * x
        tops[0].data[...] = (x.sum(axis=1) * self._factor(x)).reshape(tops[0].shape)

    def backward(self, xp, tops, propagate_down, bottoms):
        if not propagate_down[0]:
            return
        x = self._rows(bottoms[0].data, bottoms[0].shape)
        dy = tops[0].diff.reshape(-1, 1) * self._factor(x)
        dx = self._rows(bottoms[0].diff, bottoms[0].shape)
        if self.op == self.P.ASUM:
            dx[...] = xp.sign(x) * dy
        elif self.op == self.P.SUMSQ:
            dx[...] = (2 * x) * dy
        else:
            dx[...] = dy
