"""Common layers: fully connected, blob plumbing (concat, slice, split, reshape ...),
elementwise arithmetic between blobs, normalisation, softmax and reductions.

Conventions: forward writes into the preallocated top arrays and backward overwrites the
bottom diffs (and accumulates into parameter diffs), so a top may be a view the executor
owns. MACs count multiply-accumulates; layers that only move data count 0.
"""
import math

import numpy as np

from .. import caffe_pb2
from ..errors import LayerError
from ..ops.gemm import matmul
from .base import Layer
from .registry import layer


def _count(shape, start=0, end=None):
    return math.prod(shape[start:end])


def _dims(shape):
    return " x ".join(str(d) for d in shape) if shape else "a scalar"


def _scatter_add(xp, target, index, values):
    """target[index] += values, with repeated indices adding up."""
    if xp is np:
        np.add.at(target, index, values)
    else:
        import cupyx
        cupyx.scatter_add(target, index, values)


def _as_indices(values, limit, what):
    """Float-coded indices (as Caffe stores them) -> int array; each must be an integer in [0, limit)."""
    idx = values.astype(np.int64)
    bad = (idx != values) | (idx < 0) | (idx >= limit)
    if bool(bad.any()):         # one device sync per call
        raise LayerError(f"{what} {float(values[bad].reshape(-1)[0]):g} is not an integer in [0, {limit})")
    return idx


class _Common(Layer):
    """What the common layers share: names for messages, top counts, Concat/Slice's axis."""

    def bottom_name(self, i):
        return f"'{self.lp.bottom[i]}'" if i < len(self.lp.bottom) else f"#{i}"

    def shape_mismatches(self, bottoms, except_axis=None):
        """How each bottom's shape differs from bottom 0's, on every axis but `except_axis`."""
        first = tuple(bottoms[0])
        problems = []
        for i, shape in enumerate(bottoms[1:], 1):
            if len(shape) != len(first):
                problems.append(f"bottom {self.bottom_name(i)} is {len(shape)}-d ({_dims(shape)}) but "
                                f"bottom {self.bottom_name(0)} is {len(first)}-d ({_dims(first)})")
                continue
            problems += [f"axis {a}: bottom {self.bottom_name(i)} has {got}, bottom {self.bottom_name(0)} "
                         f"has {want} (off by {got - want:+d})"
                         for a, (got, want) in enumerate(zip(shape, first)) if a != except_axis and got != want]
        return problems

    def top_count(self, default=1):
        return len(self.lp.top) or default

    def legacy_axis(self, message, legacy_field, ndim):
        """The axis of Concat/Slice: `axis` (negative counts from the end), or the legacy
        unsigned concat_dim/slice_dim, which must lie in range as given."""
        p = getattr(self.lp, message)
        if p.HasField(legacy_field):
            dim = getattr(p, legacy_field)
            if dim >= ndim:
                self.fail(f"{legacy_field} {dim} is out of range for a {ndim}-d blob")
            return dim
        return self.canonical_axis(p.axis, ndim)

    def forbid_both(self, message, legacy_field):
        p = getattr(self.lp, message)
        if p.HasField("axis") and p.HasField(legacy_field):
            self.fail(f"{message} sets both axis and the legacy {legacy_field}; give one",
                      hint=f"keep axis and drop {legacy_field}")


# ---------------------------------------------------------------------------------------------
@layer("InnerProduct")
class InnerProduct(_Common):
    """y = x W^T + b over the axes from `axis` on, flattened to K inputs per item.
    Weight (num_output, K), or (K, num_output) with transpose; bias (num_output,)."""

    def setup(self):
        p = self.lp.inner_product_param
        if p.num_output < 1:
            self.fail("inner_product_param.num_output must be set to a positive number",
                      hint="e.g. inner_product_param { num_output: 10 }")
        self.num_output, self.bias_term, self.transpose = p.num_output, p.bias_term, p.transpose

    def _split(self, shape):
        axis = self.canonical_axis(self.lp.inner_product_param.axis, len(shape))
        return axis, _count(shape, 0, axis), _count(shape, axis)

    def infer(self, bottoms, ctx):
        shape = tuple(bottoms[0])
        axis, _, k = self._split(shape)
        if len(shape) - axis > 1:
            ctx.note(f"K = {' * '.join(map(str, shape[axis:]))} = {k} inputs (axes {axis}..{len(shape) - 1} "
                     f"flattened) -> {self.num_output} outputs")
        return [shape[:axis] + (self.num_output,)]

    def param_shapes(self, bottoms):
        _, _, k = self._split(tuple(bottoms[0]))
        weight = (k, self.num_output) if self.transpose else (self.num_output, k)
        return [weight, (self.num_output,)] if self.bias_term else [weight]

    def param_fillers(self):
        p = self.lp.inner_product_param
        return [p.weight_filler, p.bias_filler] if self.bias_term else [p.weight_filler]

    def macs(self, bottoms, tops):
        _, m, k = self._split(tuple(bottoms[0]))
        return m * k * self.num_output

    def forward(self, xp, bottoms, tops):
        _, m, k = self._split(bottoms[0].shape)
        w = self.blobs[0].data
        y = tops[0].data.reshape(m, self.num_output)
        matmul(xp, bottoms[0].data.reshape(m, k), w if self.transpose else w.T, out=y)
        if self.bias_term:
            y += self.blobs[1].data

    def backward(self, xp, tops, propagate_down, bottoms):
        _, m, k = self._split(bottoms[0].shape)
        dy = tops[0].diff.reshape(m, self.num_output)
        x = bottoms[0].data.reshape(m, k)
        w = self.blobs[0]
        if self.param_wanted(0):
            w.diff += matmul(xp, x.T, dy) if self.transpose else matmul(xp, dy.T, x)
        if self.bias_term and self.param_wanted(1):
            self.blobs[1].diff += dy.sum(axis=0)
        if propagate_down[0]:
            matmul(xp, dy, w.data.T if self.transpose else w.data, out=bottoms[0].diff.reshape(m, k))


def pieces_along(array, blobs, axis):
    """(blob, view of `array`) for consecutive segments along `axis`, one per blob, sized by
    the blob's extent on that axis (Concat's bottoms, Slice's tops)."""
    lead = (slice(None),) * axis
    start = 0
    for blob in blobs:
        n = blob.shape[axis]
        yield blob, array[lead + (slice(start, start + n),)]
        start += n


# ---------------------------------------------------------------------------------------------
@layer("Concat")
class Concat(_Common):
    """Joins bottoms along one axis; every other axis must agree."""
    bottoms = (1, None)

    def setup(self):
        self.forbid_both("concat_param", "concat_dim")

    def infer(self, bottoms, ctx):
        first = tuple(bottoms[0])
        axis = self.legacy_axis("concat_param", "concat_dim", len(first))
        problems = self.shape_mismatches(bottoms, except_axis=axis)
        if problems:
            self.fail(f"Concat along axis {axis} needs every other axis equal: " + "; ".join(problems),
                      hint="make the branches agree (check their strides, pads and pooling rounding), "
                           "or crop the larger one with a Crop layer")
        sizes = [s[axis] for s in bottoms]
        total = sum(sizes)
        if len(sizes) > 1:
            ctx.note(f"concat along axis {axis}: {' + '.join(map(str, sizes))} = {total}")
        return [first[:axis] + (total,) + first[axis + 1:]]

    def _pieces(self, array, bottoms):
        return pieces_along(array, bottoms, self.legacy_axis("concat_param", "concat_dim", array.ndim))

    def forward(self, xp, bottoms, tops):
        for b, piece in self._pieces(tops[0].data, bottoms):
            piece[...] = b.data

    def backward(self, xp, tops, propagate_down, bottoms):
        for (b, piece), down in zip(self._pieces(tops[0].diff, bottoms), propagate_down):
            if down:
                b.diff[...] = piece


@layer("Slice")
class Slice(_Common):
    """Cuts a bottom along one axis at slice_point(s), or into equal parts."""
    tops = (1, None)

    def setup(self):
        self.forbid_both("slice_param", "slice_dim")

    def infer(self, bottoms, ctx):
        shape = tuple(bottoms[0])
        axis = self.legacy_axis("slice_param", "slice_dim", len(shape))
        size, n = shape[axis], self.top_count()
        points = list(self.lp.slice_param.slice_point)
        if points:
            if len(points) != n - 1:
                self.fail(f"{len(points)} slice_point(s) cut axis {axis} into {len(points) + 1} pieces, "
                          f"but the layer has {n} top(s)",
                          hint=f"give {n - 1} slice_point(s) or {len(points) + 1} tops")
            for prev, cur in zip([0] + points, points):
                if cur <= prev:
                    self.fail(f"slice_point values must increase strictly from 1: {points}")
            if points[-1] >= size:
                self.fail(f"slice_point {points[-1]} is not below the size of axis {axis} ({size})")
            sizes = [b - a for a, b in zip([0] + points, points + [size])]
            ctx.note(f"slice axis {axis} ({size}) at {', '.join(map(str, points))}: "
                     f"pieces of {', '.join(map(str, sizes))}")
        else:
            if size % n:
                self.fail(f"{n} tops do not divide axis {axis} ({size}) evenly: {size} = {n} * {size // n} "
                          f"+ {size % n}", hint="give slice_point values, or a number of tops that divides it")
            sizes = [size // n] * n
            if n > 1:
                ctx.note(f"slice axis {axis} ({size}) into {n} equal pieces of {size // n}")
        return [shape[:axis] + (s,) + shape[axis + 1:] for s in sizes]

    def _pieces(self, array, tops):
        return pieces_along(array, tops, self.legacy_axis("slice_param", "slice_dim", array.ndim))

    def forward(self, xp, bottoms, tops):
        for t, piece in self._pieces(bottoms[0].data, tops):
            t.data[...] = piece

    def backward(self, xp, tops, propagate_down, bottoms):
        if propagate_down[0]:
            for t, piece in self._pieces(bottoms[0].diff, tops):
                piece[...] = t.diff


@layer("Split")
class Split(_Common):
    """Copies one bottom to each top; the gradients of the copies add up."""
    tops = (1, None)

    def infer(self, bottoms, ctx):
        return [tuple(bottoms[0])] * self.top_count()

    def forward(self, xp, bottoms, tops):
        for t in tops:
            t.data[...] = bottoms[0].data

    def backward(self, xp, tops, propagate_down, bottoms):
        if not propagate_down[0]:
            return
        diff = bottoms[0].diff
        if len(tops) == 1:
            diff[...] = tops[0].diff
            return
        xp.add(tops[0].diff, tops[1].diff, out=diff)
        for t in tops[2:]:
            diff += t.diff


class _Reshaping(_Common):
    """A layer that only renames the shape: the data are copied as they lie in memory."""

    def forward(self, xp, bottoms, tops):
        tops[0].data[...] = bottoms[0].data.reshape(tops[0].shape)

    def backward(self, xp, tops, propagate_down, bottoms):
        if propagate_down[0]:
            bottoms[0].diff[...] = tops[0].diff.reshape(bottoms[0].shape)


@layer("Flatten")
class Flatten(_Reshaping):
    """Merges axes axis..end_axis (inclusive) into one."""

    def infer(self, bottoms, ctx):
        shape = tuple(bottoms[0])
        p = self.lp.flatten_param
        start = self.canonical_axis(p.axis, len(shape))
        end = self.canonical_axis(p.end_axis, len(shape))
        if end + 1 < start:
            self.fail(f"end_axis {p.end_axis} (axis {end}) comes before axis {p.axis} (axis {start})")
        merged = _count(shape, start, end + 1)
        ctx.note(f"flatten axes {start}..{end}: {' * '.join(map(str, shape[start:end + 1])) or '1'} = {merged}")
        return [shape[:start] + (merged,) + shape[end + 1:]]


@layer("Reshape")
class Reshape(_Reshaping):
    """Replaces axes [axis, axis + num_axes) by reshape_param.shape: 0 copies the bottom's
    dimension at that place, -1 takes whatever makes the count agree."""

    def setup(self):
        p = self.lp.reshape_param
        dims = list(p.shape.dim)
        if dims.count(-1) > 1:
            self.fail(f"reshape_param.shape {dims} has more than one -1; at most one dimension can be inferred")
        bad = [d for d in dims if d < -1]
        if bad:
            self.fail(f"reshape_param.shape {dims} has {bad[0]}; dimensions are positive, 0 (copy) or -1 (infer)")
        if p.num_axes < -1:
            self.fail(f"reshape_param.num_axes must be >= 0, or -1 for all, got {p.num_axes}")

    def infer(self, bottoms, ctx):
        shape = tuple(bottoms[0])
        p = self.lp.reshape_param
        dims = list(p.shape.dim)
        start = p.axis if p.axis >= 0 else len(shape) + p.axis + 1
        if not 0 <= start <= len(shape):
            self.fail(f"reshape_param.axis {p.axis} is out of range for a {len(shape)}-d bottom")
        end = len(shape) if p.num_axes == -1 else start + p.num_axes
        if end > len(shape):
            self.fail(f"axis {start} + num_axes {p.num_axes} = {end} runs past the {len(shape)}-d bottom")
        new = list(dims)
        words = []
        for i, d in enumerate(dims):
            if d == 0:
                if start + i >= len(shape):
                    self.fail(f"shape dim {i} is 0 (copy) but the bottom has no axis {start + i} to copy")
                new[i] = shape[start + i]
                words.append(f"0 copies axis {start + i} ({new[i]})")
        kept = _count(shape, 0, start) * _count(shape, end)
        count = _count(shape)
        if -1 in dims:
            i = dims.index(-1)
            explicit = kept * math.prod(d for d in new if d != -1)
            if explicit == 0 or count % explicit:
                self.fail(f"cannot infer the -1 dimension: the bottom's count {count} ({_dims(shape)}) is not "
                          f"divisible by the product of the other dimensions ({explicit})")
            new[i] = count // explicit
            words.append(f"-1 = {count} / {explicit} = {new[i]}")
        top = shape[:start] + tuple(new) + shape[end:]
        if _count(top) != count:
            self.fail(f"the new shape {_dims(top)} holds {_count(top)} values but the bottom "
                      f"{_dims(shape)} holds {count}", hint="use -1 for one dimension to let it be inferred")
        if words:
            ctx.note("reshape: " + "; ".join(words))
        return [top]


# ---------------------------------------------------------------------------------------------
@layer("Eltwise")
class Eltwise(_Common):
    """Elementwise PROD, SUM (with one coefficient per bottom) or MAX of same-shaped bottoms."""
    bottoms = (2, None)
    P = caffe_pb2.EltwiseParameter

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
        return [tuple(bottoms[0])]

    def macs(self, bottoms, tops):
        return (len(bottoms) - 1) * _count(tops[0])     # one op per element per extra operand

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
            xp.add(terms[0], terms[1], out=target)
            for t in terms[2:]:
                target += t
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
            if self.op == self.P.SUM:
                b.diff[...] = dy if coeff[i] == 1 else dy * coeff[i]
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


class _Broadcast(_Common):
    """Scale and Bias: an operand of shape bottom.shape[axis : axis + k] broadcast over the
    rest of bottom[0], given as a second bottom or learned (num_axes: how many axes; -1: all
    from axis on; 0: a scalar)."""
    bottoms = (1, 2)
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
            self.fail(f"axis {axis} + num_axes {p.num_axes} runs past the {len(shape)}-d bottom ({_dims(shape)})")
        return shape[axis:] if p.num_axes == -1 else shape[axis:axis + p.num_axes]

    def operand_axis(self, shape, operand):
        """Where the operand lines up with bottom[0]; checks that it does."""
        if not operand:
            return 0        # a scalar: any axis would do
        axis = self.canonical_axis(getattr(self.lp, self.message).axis, len(shape))
        if axis + len(operand) > len(shape) or tuple(shape[axis:axis + len(operand)]) != tuple(operand):
            self.fail(f"the {self.type.lower()} operand {_dims(operand)} does not match bottom {self.bottom_name(0)} "
                      f"({_dims(shape)}) from axis {axis} on "
                      f"(axes {axis}..{axis + len(operand) - 1} are {_dims(shape[axis:axis + len(operand)])})",
                      hint=f"set {self.message}.axis to where the operand's dimensions start")
        return axis

    def infer(self, bottoms, ctx):
        shape = tuple(bottoms[0])
        operand = self.operand_shape(bottoms)
        axis = self.operand_axis(shape, operand)
        if operand:
            where = f"axis {axis}" if len(operand) == 1 else f"axes {axis}..{axis + len(operand) - 1}"
            ctx.note(f"{self.type.lower()} of shape {_dims(operand)} lines up with {where} of {_dims(shape)}")
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

    def param_shapes(self, bottoms):
        operand = self.operand_shape(bottoms)
        learned = [operand] if len(bottoms) == 1 else []
        return learned + ([operand] if self.lp.scale_param.bias_term else [])

    def param_fillers(self):
        p = self.lp.scale_param
        scale = p.filler if p.HasField("filler") else caffe_pb2.FillerParameter(type="constant", value=1)
        fillers = [] if len(self.lp.bottom) == 2 else [scale]
        return fillers + ([p.bias_filler] if p.bias_term else [])

    def macs(self, bottoms, tops):
        return _count(tops[0])

    def _operands(self, bottoms):
        scale = bottoms[1] if len(bottoms) == 2 else self.blobs[0]
        bias = self.blobs[-1] if self.lp.scale_param.bias_term else None
        return scale, bias

    def forward(self, xp, bottoms, tops):
        x = bottoms[0].data
        scale, bias = self._operands(bottoms)
        axis = self.operand_axis(x.shape, scale.shape)
        # the scale's gradient needs x, which running in place overwrites
        self._saved_x = x.copy() if tops[0].data is x else None
        xp.multiply(x, self.expand(scale.data, axis, x.ndim), out=tops[0].data)
        if bias is not None:
            tops[0].data += self.expand(bias.data, axis, x.ndim)

    def backward(self, xp, tops, propagate_down, bottoms):
        x = self._saved_x if self._saved_x is not None else bottoms[0].data
        dy = tops[0].diff
        scale, bias = self._operands(bottoms)
        axis = self.operand_axis(x.shape, scale.shape)
        if bias is not None and self.param_wanted(len(self.blobs) - 1):
            bias.diff += self.reduce_to(dy, bias.shape, axis)
        if len(bottoms) == 1:
            if self.param_wanted(0):
                scale.diff += self.reduce_to(dy * x, scale.shape, axis)
        elif propagate_down[1]:
            scale.diff[...] = self.reduce_to(dy * x, scale.shape, axis)
        if propagate_down[0]:
            bottoms[0].diff[...] = dy * self.expand(scale.data, axis, x.ndim)


@layer("Bias")
class Bias(_Broadcast):
    """y = x + bias; the bias is learned (unset filler: constant 0) or bottom[1]."""
    message = "bias_param"

    def param_shapes(self, bottoms):
        return [self.operand_shape(bottoms)] if len(bottoms) == 1 else []

    def param_fillers(self):
        return [self.lp.bias_param.filler] if len(self.lp.bottom) != 2 else []

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


# ---------------------------------------------------------------------------------------------
@layer("BatchNorm")
class BatchNorm(_Common):
    """Normalises each channel (axis 1) to zero mean and unit variance, over the batch and
    spatial axes. Three blobs, all statistics rather than weights: the running sums of the
    mean and of the variance, and the moving-average factor that divides both. TRAIN (unless
    use_global_stats) normalises with the batch's own statistics and updates the blobs:
        factor = factor * maf + 1
        mean   = batch_mean + maf * mean
        var    = m / (m - 1) * batch_var + maf * var      (m values per channel)
    TEST (or use_global_stats) normalises with mean/factor and var/factor."""
    learnable = (False, False, False)   # the solver must never update these blobs

    def setup(self):
        p = self.lp.batch_norm_param
        self.use_global_stats = (p.use_global_stats if p.HasField("use_global_stats")
                                 else self.phase == caffe_pb2.TEST)
        self.maf, self.eps = p.moving_average_fraction, p.eps
        for i, spec in enumerate(self.lp.param[:3]):
            if spec.lr_mult != 0:
                self.fail(f"param {i} has lr_mult {spec.lr_mult:g}: BatchNorm's blobs are statistics, "
                          "not parameters to train", hint="set lr_mult: 0 for all three, or drop the param blocks")

    @staticmethod
    def channels(shape):
        return shape[1] if len(shape) > 1 else 1

    def infer(self, bottoms, ctx):
        shape = tuple(bottoms[0])
        c = self.channels(shape)
        m = _count(shape) // c if c else 0
        source = "the stored statistics" if self.use_global_stats else "the batch's statistics"
        ctx.note(f"normalise each of {c} channels over {m} values with {source}")
        return [shape]

    def param_shapes(self, bottoms):
        c = self.channels(tuple(bottoms[0]))
        return [(c,), (c,), (1,)]

    def param_fillers(self):
        return [caffe_pb2.FillerParameter(type="constant", value=0)] * 3

    def macs(self, bottoms, tops):
        return _count(tops[0])

    def _grouped(self, a):
        n, c = a.shape[0], self.channels(a.shape)
        return a.reshape(n, c, -1)

    def forward(self, xp, bottoms, tops):
        x = self._grouped(bottoms[0].data)
        mean_blob, var_blob, factor_blob = (b.data for b in self.blobs)
        if self.use_global_stats:
            factor = factor_blob.reshape(-1)[:1]     # kept on the device: no sync per forward
            scale = 1 / xp.where(factor == 0, xp.inf, factor)     # a zero factor gives 0, as in Caffe
            mean, var = mean_blob * scale, var_blob * scale
        else:
            mean = x.mean(axis=(0, 2))
            centered = x - mean[:, None]
            var = (centered * centered).mean(axis=(0, 2))
            m = x.size // x.shape[1]
            factor_blob *= self.maf
            factor_blob += 1
            mean_blob *= self.maf
            mean_blob += mean
            var_blob *= self.maf
            var_blob += (m / (m - 1) if m > 1 else 1.0) * var
        self._std = xp.sqrt(var + self.eps)[:, None]
        y = self._grouped(tops[0].data)
        xp.subtract(x, mean[:, None], out=y)
        y /= self._std
        # later in-place layers (Scale, ReLU) overwrite the top: keep the normalised values
        self._normalised = None if self.use_global_stats else y.copy()

    def backward(self, xp, tops, propagate_down, bottoms):
        if not propagate_down[0]:
            return
        dy = self._grouped(tops[0].diff)
        dx = self._grouped(bottoms[0].diff)
        if self.use_global_stats:
            dx[...] = dy / self._std
            return
        y = self._normalised
        mean_dy = dy.mean(axis=(0, 2), keepdims=True)
        mean_dy_y = (dy * y).mean(axis=(0, 2), keepdims=True)
        dx[...] = (dy - mean_dy - mean_dy_y * y) / self._std


@layer("MVN")
class MVN(_Common):
    """Mean-variance normalisation of each item's channel (or whole item, across_channels):
    y = (x - mean) / (std + eps) with normalize_variance, else y = x - mean."""

    def infer(self, bottoms, ctx):
        return [tuple(bottoms[0])]

    def macs(self, bottoms, tops):
        return _count(tops[0])

    def _grouped(self, a):
        p = self.lp.mvn_param
        groups = a.shape[0] if p.across_channels else a.shape[0] * (a.shape[1] if a.ndim > 1 else 1)
        return a.reshape(groups, -1)

    def forward(self, xp, bottoms, tops):
        x = self._grouped(bottoms[0].data)
        y = self._grouped(tops[0].data)
        xp.subtract(x, x.mean(axis=1, keepdims=True), out=y)
        if self.lp.mvn_param.normalize_variance:
            self._std = xp.sqrt((y * y).mean(axis=1, keepdims=True)) + self.lp.mvn_param.eps
            y /= self._std

    def backward(self, xp, tops, propagate_down, bottoms):
        if not propagate_down[0]:
            return
        dy = self._grouped(tops[0].diff)
        dx = self._grouped(bottoms[0].diff)
        if self.lp.mvn_param.normalize_variance:
            y = self._grouped(tops[0].data)
            # Caffe's gradient, exact up to the eps added to the deviation
            dx[...] = (dy - dy.mean(axis=1, keepdims=True)
                       - (dy * y).mean(axis=1, keepdims=True) * y) / self._std
        else:
            dx[...] = dy - dy.mean(axis=1, keepdims=True)


@layer("Softmax")
class Softmax(_Common):
    """y = exp(x) / sum(exp(x)) along `axis` (the max is subtracted first for stability)."""

    def _axis(self, ndim):
        return self.canonical_axis(self.lp.softmax_param.axis, ndim)

    def infer(self, bottoms, ctx):
        self._axis(len(bottoms[0]))
        return [tuple(bottoms[0])]

    def macs(self, bottoms, tops):
        return _count(tops[0])

    def forward(self, xp, bottoms, tops):
        x = bottoms[0].data
        axis = self._axis(x.ndim)
        y = tops[0].data
        xp.subtract(x, x.max(axis=axis, keepdims=True), out=y)
        xp.exp(y, out=y)
        y /= y.sum(axis=axis, keepdims=True)

    def backward(self, xp, tops, propagate_down, bottoms):
        if propagate_down[0]:
            y, dy = tops[0].data, tops[0].diff
            axis = self._axis(y.ndim)
            bottoms[0].diff[...] = (dy - (dy * y).sum(axis=axis, keepdims=True)) * y


@layer("ArgMax")
class ArgMax(_Common):
    """The top_k largest values' indices (and values with out_max_val), per item over all
    of its values, or along `axis`. Ties go to the larger index, as in Caffe. No backward."""

    def setup(self):
        p = self.lp.argmax_param
        if p.top_k < 1:
            self.fail("argmax_param.top_k must be at least 1")
        self.top_k, self.out_max_val = p.top_k, p.out_max_val
        self.has_axis = p.HasField("axis")

    def infer(self, bottoms, ctx):
        shape = tuple(bottoms[0])
        if self.has_axis:
            axis = self.canonical_axis(self.lp.argmax_param.axis, len(shape))
            if self.top_k > shape[axis]:
                self.fail(f"top_k {self.top_k} is more than the size of axis {axis} ({shape[axis]})")
            return [shape[:axis] + (self.top_k,) + shape[axis + 1:]]
        per_item = _count(shape, 1)
        if self.top_k > per_item:
            self.fail(f"top_k {self.top_k} is more than the {per_item} values per item")
        top = [1] * max(len(shape), 3)
        top[0], top[2] = shape[0], self.top_k
        if self.out_max_val:
            top[1] = 2
        ctx.note(f"top {self.top_k} of {per_item} values per item"
                 + (": indices then values on axis 1" if self.out_max_val else ""))
        return [tuple(top)]

    def forward(self, xp, bottoms, tops):
        x = bottoms[0].data
        if self.has_axis:
            axis = self.canonical_axis(self.lp.argmax_param.axis, x.ndim)
            v = xp.moveaxis(x, axis, -1)
        else:
            v = x.reshape(x.shape[0], -1)
        dim = v.shape[-1]
        # sort descending by value, then by index: a stable sort of the reversed row
        stable = {"kind": "stable"} if xp is np else {}     # CuPy's sort is always stable
        order = xp.argsort(-v[..., ::-1], axis=-1, **stable)[..., :self.top_k]
        index = (dim - 1) - order
        if self.has_axis:
            result = xp.take_along_axis(v, index, axis=-1) if self.out_max_val else index
            tops[0].data[...] = xp.moveaxis(result, -1, axis)
        else:
            out = tops[0].data.reshape(x.shape[0], -1, self.top_k)
            out[:, 0] = index
            if self.out_max_val:
                out[:, 1] = xp.take_along_axis(v, index, axis=-1)


@layer("Reduction")
class Reduction(_Common):
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
        ctx.note(f"reduce axes {axis}..{len(shape) - 1} ({_count(shape, axis)} values per output)")
        return [shape[:axis]]

    def macs(self, bottoms, tops):
        return _count(bottoms[0])

    def _rows(self, a, shape):
        axis = self._axis(len(shape))
        return a.reshape(_count(shape, 0, axis), _count(shape, axis))

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


@layer("Tile")
class Tile(_Common):
    """Repeats the block from `axis` on `tiles` times: axis `axis` grows tiles-fold."""

    def setup(self):
        p = self.lp.tile_param
        if not p.HasField("tiles") or p.tiles < 1:
            self.fail("tile_param.tiles must be set to a positive number", hint="e.g. tile_param { tiles: 4 }")
        self.tiles = p.tiles

    def infer(self, bottoms, ctx):
        shape = tuple(bottoms[0])
        axis = self.canonical_axis(self.lp.tile_param.axis, len(shape))
        ctx.note(f"axis {axis}: {shape[axis]} * {self.tiles} tiles = {shape[axis] * self.tiles}")
        return [shape[:axis] + (shape[axis] * self.tiles,) + shape[axis + 1:]]

    def _blocks(self, shape):
        axis = self.canonical_axis(self.lp.tile_param.axis, len(shape))
        return _count(shape, 0, axis), _count(shape, axis)

    def forward(self, xp, bottoms, tops):
        outer, inner = self._blocks(bottoms[0].shape)
        tops[0].data.reshape(outer, self.tiles, inner)[...] = bottoms[0].data.reshape(outer, 1, inner)

    def backward(self, xp, tops, propagate_down, bottoms):
        if propagate_down[0]:
            outer, inner = self._blocks(bottoms[0].shape)
            bottoms[0].diff.reshape(outer, inner)[...] = tops[0].diff.reshape(outer, self.tiles, inner).sum(axis=1)


@layer("Embed")
class Embed(_Common):
    """A lookup table: each bottom value is an integer index in [0, input_dim) and gives the
    weight row (input_dim, num_output) at it, plus the bias. Indices get no gradient."""

    def setup(self):
        p = self.lp.embed_param
        if p.num_output < 1 or p.input_dim < 1:
            self.fail(f"embed_param needs positive num_output and input_dim, got {p.num_output} and {p.input_dim}",
                      hint="e.g. embed_param { input_dim: 10000 num_output: 256 }")
        self.num_output, self.input_dim, self.bias_term = p.num_output, p.input_dim, p.bias_term

    def infer(self, bottoms, ctx):
        return [tuple(bottoms[0]) + (self.num_output,)]

    def param_shapes(self, bottoms):
        weight = (self.input_dim, self.num_output)
        return [weight, (self.num_output,)] if self.bias_term else [weight]

    def param_fillers(self):
        p = self.lp.embed_param
        return [p.weight_filler, p.bias_filler] if self.bias_term else [p.weight_filler]

    def forward(self, xp, bottoms, tops):
        self._index = _as_indices(bottoms[0].data.reshape(-1), self.input_dim, "Embed index")
        y = tops[0].data.reshape(-1, self.num_output)
        y[...] = self.blobs[0].data[self._index]
        if self.bias_term:
            y += self.blobs[1].data

    def backward(self, xp, tops, propagate_down, bottoms):
        dy = tops[0].diff.reshape(-1, self.num_output)
        if self.param_wanted(0):
            _scatter_add(xp, self.blobs[0].diff, self._index, dy)
        if self.bias_term and self.param_wanted(1):
            self.blobs[1].diff += dy.sum(axis=0)
        if propagate_down[0]:
            bottoms[0].diff[...] = 0


@layer("Silence")
class Silence(_Common):
    """Consumes bottoms so that nothing reports them as unused outputs; gives zero gradients."""
    bottoms = (1, None)
    tops = (0, 0)

    def infer(self, bottoms, ctx):
        return []

    def forward(self, xp, bottoms, tops):
        pass

    def backward(self, xp, tops, propagate_down, bottoms):
        for b, down in zip(bottoms, propagate_down):
            if down:
                b.diff[...] = 0


@layer("Filter")
class Filter(_Common):
    """Keeps the items (along axis 0) whose selector (the last bottom) is non-zero, for each
    other bottom. The number kept depends on the data: the shape pass gives the full batch,
    and forward gives each top the kept count, re-binding its arrays when that count changes
    (as Caffe reshapes on every forward)."""
    bottoms = (2, None)
    tops = (1, None)

    def infer(self, bottoms, ctx):
        selector = tuple(bottoms[-1])
        if len(self.lp.top) and len(self.lp.top) != len(bottoms) - 1:
            self.fail(f"Filter has {len(bottoms)} bottoms (the last is the selector), so it needs "
                      f"{len(bottoms) - 1} top(s), not {len(self.lp.top)}")
        if any(d != 1 for d in selector[1:]):
            self.fail(f"the selector {self.bottom_name(len(bottoms) - 1)} ({_dims(selector)}) must have "
                      "singleton dimensions after the first")
        for i, shape in enumerate(bottoms[:-1]):
            if not shape or shape[0] != selector[0]:
                self.fail(f"bottom {self.bottom_name(i)} ({_dims(shape)}) must have as many items as "
                          f"the selector ({selector[0] if selector else 'none'})")
        ctx.note(f"axis 0 of each top is the number of non-zero selector values (at most {selector[0]})")
        return [tuple(s) for s in bottoms[:-1]]

    def forward(self, xp, bottoms, tops):
        self._kept = xp.nonzero(bottoms[-1].data.reshape(-1))[0]
        for b, t in zip(bottoms, tops):
            picked = b.data[self._kept]
            if t.data.shape == picked.shape:
                t.data[...] = picked
            else:
                t.data, t.diff = picked, xp.zeros_like(picked)

    def backward(self, xp, tops, propagate_down, bottoms):
        for b, t, down in zip(bottoms, tops, propagate_down):
            if down:
                b.diff[...] = 0
                b.diff[self._kept] = t.diff
        if propagate_down[-1]:
            bottoms[-1].diff[...] = 0     # the selector gets no gradient


@layer("BatchReindex")
class BatchReindex(_Common):
    """top[i] = bottom[0][index[i]] along axis 0; the index blob (bottom 1) is 1-d.
    The gradient adds up over repeated indices; the indices get none."""
    bottoms = (2, 2)

    def infer(self, bottoms, ctx):
        data, index = tuple(bottoms[0]), tuple(bottoms[1])
        if len(index) != 1:
            self.fail(f"the index bottom {self.bottom_name(1)} must be 1-d, got {_dims(index)}")
        return [index + data[1:]]

    def forward(self, xp, bottoms, tops):
        n = bottoms[0].shape[0]
        self._index = _as_indices(bottoms[1].data, n, "BatchReindex index")
        tops[0].data[...] = bottoms[0].data[self._index]

    def backward(self, xp, tops, propagate_down, bottoms):
        if propagate_down[0]:
            bottoms[0].diff[...] = 0
            _scatter_add(xp, bottoms[0].diff, self._index, tops[0].diff)
        if propagate_down[1]:
            bottoms[1].diff[...] = 0


@layer("Parameter")
class Parameter(_Common):
    """A learnable blob of parameter_param.shape offered as a top (zeros unless loaded)."""
    bottoms = (0, 0)

    def _shape(self):
        return tuple(self.lp.parameter_param.shape.dim)

    def infer(self, bottoms, ctx):
        return [self._shape()]

    def param_shapes(self, bottoms):
        return [self._shape()]

    def param_fillers(self):
        return [caffe_pb2.FillerParameter(type="constant", value=0)]

    def forward(self, xp, bottoms, tops):
        tops[0].data[...] = self.blobs[0].data

    def backward(self, xp, tops, propagate_down, bottoms):
        if self.param_wanted(0):
            self.blobs[0].diff += tops[0].diff
