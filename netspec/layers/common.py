"""Fully connected and per-item layers: InnerProduct, Embed, Softmax, ArgMax.

Conventions: forward writes into the preallocated top arrays and backward overwrites the
bottom diffs (and accumulates into parameter diffs). MACs count multiply-accumulates.
"""
import numpy as np

from ..ops.gemm import matmul, matmul_add
from ..utils import format_shape
from .arrays import as_indices, count, count_or_none, scatter_add
from ..ops.softmax import softmax
from .base import Layer, ParamBlob
from .registry import layer


# ---------------------------------------------------------------------------------------------
@layer("InnerProduct")
class InnerProduct(Layer):
    """y = x W^T + b over the axes from `axis` on, flattened to K inputs per item.
    Weight (num_output, K), or (K, num_output) with transpose; bias (num_output,)."""
    weight_layer = True     # counts in the papers' depth; its MACs per item are its connections
    family = "fc"

    def backward_reads(self):
        return True, False

    def describe(self):
        return [f"{self.num_output} out"]
    takes_unknown = True

    def setup(self):
        p = self.lp.inner_product_param
        if p.num_output < 1:
            self.fail("inner_product_param.num_output must be set to a positive number",
                      hint="e.g. inner_product_param { num_output: 10 }")
        self.num_output, self.bias_term, self.transpose = p.num_output, p.bias_term, p.transpose

    def _split(self, shape):
        axis = self.canonical_axis(self.lp.inner_product_param.axis, len(shape))
        return axis, count_or_none(shape, 0, axis), count_or_none(shape, axis)

    def infer(self, bottoms, ctx):
        shape = tuple(bottoms[0])
        axis, _, k = self._split(shape)
        if k is None:
            ctx.note(f"K = {' * '.join(format_shape((d,)) for d in shape[axis:])} inputs, known when the net "
                     f"runs (so is the weight's shape) -> {self.num_output} outputs")
        elif len(shape) - axis > 1:
            ctx.note(f"K = {' * '.join(map(str, shape[axis:]))} = {k} inputs (axes {axis}..{len(shape) - 1} "
                     f"flattened) -> {self.num_output} outputs")
        return [shape[:axis] + (self.num_output,)]

    def param_blobs(self, bottoms):
        p, weight = self.lp.inner_product_param, None
        if bottoms:
            k = self._split(tuple(bottoms[0]))[2]
            weight = (k, self.num_output) if self.transpose else (self.num_output, k)
        blobs = [ParamBlob(weight, p.weight_filler)]
        return blobs + [ParamBlob((self.num_output,), p.bias_filler)] * self.bias_term

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
            matmul_add(xp, x.T, dy, w.diff) if self.transpose else matmul_add(xp, dy.T, x, w.diff)
        if self.bias_term and self.param_wanted(1):
            self.blobs[1].diff += dy.sum(axis=0)
        if propagate_down[0]:
            matmul(xp, dy, w.data.T if self.transpose else w.data, out=bottoms[0].diff.reshape(m, k))


@layer("Softmax")
class Softmax(Layer):
    """y = exp(x) / sum(exp(x)) along `axis` (the max is subtracted first for stability)."""

    takes_unknown = True

    def _axis(self, ndim):
        return self.canonical_axis(self.lp.softmax_param.axis, ndim)

    def infer(self, bottoms, ctx):
        self._axis(len(bottoms[0]))
        return [tuple(bottoms[0])]

    def macs(self, bottoms, tops):
        return count(tops[0])

    def forward(self, xp, bottoms, tops):
        x = bottoms[0].data
        softmax(xp, x, self._axis(x.ndim), out=tops[0].data)

    def backward(self, xp, tops, propagate_down, bottoms):
        if propagate_down[0]:
            y, dy = tops[0].data, tops[0].diff
            axis = self._axis(y.ndim)
            bottoms[0].diff[...] = (dy - (dy * y).sum(axis=axis, keepdims=True)) * y


@layer("ArgMax")
class ArgMax(Layer):
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
        per_item = count(shape, 1)
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


@layer("Embed")
class Embed(Layer):
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

    def param_blobs(self, bottoms):
        p = self.lp.embed_param
        blobs = [ParamBlob((self.input_dim, self.num_output), p.weight_filler)]
        return blobs + [ParamBlob((self.num_output,), p.bias_filler)] * self.bias_term

    def forward(self, xp, bottoms, tops):
        self._index = as_indices(bottoms[0].data.reshape(-1), self.input_dim, "Embed index")
        y = tops[0].data.reshape(-1, self.num_output)
        y[...] = self.blobs[0].data[self._index]
        if self.bias_term:
            y += self.blobs[1].data

    def backward(self, xp, tops, propagate_down, bottoms):
        dy = tops[0].diff.reshape(-1, self.num_output)
        if self.param_wanted(0):
            scatter_add(xp, self.blobs[0].diff, self._index, dy)
        if self.bias_term and self.param_wanted(1):
            self.blobs[1].diff += dy.sum(axis=0)
        if propagate_down[0]:
            bottoms[0].diff[...] = 0
