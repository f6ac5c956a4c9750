"""Blob plumbing: layers that move, join, cut, copy, reshape, select or drop data without
arithmetic (Concat, Slice, Split, Flatten, Reshape, Tile, Silence, Filter, BatchReindex,
Parameter). They count 0 MACs.
"""
import math


from .. import caffe_pb2
from ..ops.threads import add_all, flat_parts
from ..utils import format_shape
from .arrays import as_indices, count, count_or_none, scatter_add
from .base import Layer, ParamBlob
from .registry import layer


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
class Concat(Layer):
    """Joins bottoms along one axis; every other axis must agree."""
    operands_agree = True
    family = "join"
    bottoms = (1, None)
    takes_unknown = True

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
        total = sum(sizes) if None not in sizes else None     # one unknown part: an unknown whole
        if len(sizes) > 1:
            ctx.note(f"concat along axis {axis}: {' + '.join(format_shape((d,)) for d in sizes)} = "
                     f"{format_shape((total,))}")
        first = self.merged(bottoms)
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
class Slice(Layer):
    """Cuts a bottom along one axis at slice_point(s), or into equal parts."""
    family = "join"
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
class Split(Layer):
    """Copies one bottom to each top; the gradients of the copies add up."""
    family = "join"
    tops = (1, None)
    takes_unknown = True

    def infer(self, bottoms, ctx):
        return [tuple(bottoms[0])] * self.top_count()

    shares_data = True

    def forward(self, xp, bottoms, tops):
        for t in tops:
            if t.data is not bottoms[0].data:
                t.data[...] = bottoms[0].data

    def backward(self, xp, tops, propagate_down, bottoms):
        if not propagate_down[0]:
            return
        diff = bottoms[0].diff
        if len(tops) == 1:
            diff[...] = tops[0].diff
            return
        flat_parts(lambda diff, *diffs: add_all(xp, diffs, diff), diff, *(t.diff for t in tops))


class _Reshaping(Layer):
    """A layer that only renames the shape: the data are copied as they lie in memory."""
    takes_unknown = True

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
        merged = count_or_none(shape, start, end + 1)
        ctx.note(f"flatten axes {start}..{end}: {' * '.join(format_shape((d,)) for d in shape[start:end + 1]) or '1'}"
                 f" = {format_shape((merged,))}")
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
                words.append(f"0 copies axis {start + i} ({format_shape((new[i],))})")
        if None in shape[start:end] or None in new:
            return [self._infer_unknown(shape, start, end, new, words, ctx)]
        # unknowns outside the axes replaced cancel out: then count within them only
        kept = 1 if None in shape else count(shape, 0, start) * count(shape, end)
        total = kept * count(shape, start, end)
        if -1 in dims:
            i = dims.index(-1)
            explicit = kept * math.prod(d for d in new if d != -1)
            if explicit == 0 or total % explicit:
                self.fail(f"cannot infer the -1 dimension: the bottom's count {total} ({format_shape(shape)}) is not "
                          f"divisible by the product of the other dimensions ({explicit})")
            new[i] = total // explicit
            words.append(f"-1 = {total} / {explicit} = {new[i]}")
        top = shape[:start] + tuple(new) + shape[end:]
        if kept * math.prod(new) != total:
            self.fail(f"the new shape {format_shape(top)} holds {count(top)} values but the bottom "
                      f"{format_shape(shape)} holds {total}", hint="use -1 for one dimension to let it be inferred")
        if words:
            ctx.note("reshape: " + "; ".join(words))
        return [top]

    @staticmethod
    def _infer_unknown(shape, start, end, new, words, ctx):
        """The axes replaced hold an unknown: a -1 is unknown too, and the count is checked at run time."""
        new = [None if d == -1 else d for d in new]
        words.append("-1 and the count are known when the net runs")
        ctx.note("reshape: " + "; ".join(words))
        return shape[:start] + tuple(new) + shape[end:]


@layer("Tile")
class Tile(Layer):
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
        return count(shape, 0, axis), count(shape, axis)

    def forward(self, xp, bottoms, tops):
        outer, inner = self._blocks(bottoms[0].shape)
        tops[0].data.reshape(outer, self.tiles, inner)[...] = bottoms[0].data.reshape(outer, 1, inner)

    def backward(self, xp, tops, propagate_down, bottoms):
        if propagate_down[0]:
            outer, inner = self._blocks(bottoms[0].shape)
            bottoms[0].diff.reshape(outer, inner)[...] = tops[0].diff.reshape(outer, self.tiles, inner).sum(axis=1)


@layer("Silence")
class Silence(Layer):
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
class Filter(Layer):
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
            self.fail(f"the selector {self.bottom_name(len(bottoms) - 1)} ({format_shape(selector)}) must have "
                      "singleton dimensions after the first")
        for i, shape in enumerate(bottoms[:-1]):
            if not shape or shape[0] != selector[0]:
                self.fail(f"bottom {self.bottom_name(i)} ({format_shape(shape)}) must have as many items as "
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
class BatchReindex(Layer):
    """top[i] = bottom[0][index[i]] along axis 0; the index blob (bottom 1) is 1-d.
    The gradient adds up over repeated indices; the indices get none."""
    bottoms = (2, 2)

    def infer(self, bottoms, ctx):
        data, index = tuple(bottoms[0]), tuple(bottoms[1])
        if len(index) != 1:
            self.fail(f"the index bottom {self.bottom_name(1)} must be 1-d, got {format_shape(index)}")
        return [index + data[1:]]

    def forward(self, xp, bottoms, tops):
        n = bottoms[0].shape[0]
        self._index = as_indices(bottoms[1].data, n, "BatchReindex index")
        tops[0].data[...] = bottoms[0].data[self._index]

    def backward(self, xp, tops, propagate_down, bottoms):
        if propagate_down[0]:
            bottoms[0].diff[...] = 0
            scatter_add(xp, bottoms[0].diff, self._index, tops[0].diff)
        if propagate_down[1]:
            bottoms[1].diff[...] = 0


@layer("Parameter")
class Parameter(Layer):
    """A learnable blob of parameter_param.shape offered as a top (zeros unless loaded)."""
    bottoms = (0, 0)

    def _shape(self):
        return tuple(self.lp.parameter_param.shape.dim)

    def infer(self, bottoms, ctx):
        return [self._shape()]

    def param_blobs(self, bottoms):
        return [ParamBlob(self._shape(), caffe_pb2.FillerParameter(type="constant", value=0))]

    def forward(self, xp, bottoms, tops):
        tops[0].data[...] = self.blobs[0].data

    def backward(self, xp, tops, propagate_down, bottoms):
        if self.param_wanted(0):
            self.blobs[0].diff += tops[0].diff
