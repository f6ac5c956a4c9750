"""The contract every layer class keeps.

A layer type lives in one class, in Caffe's order: how many bottoms and tops it takes,
setup() (read and validate its parameters once), infer() (the shape rule, pure, with the
arithmetic explained in words), param_blobs() and macs() (for `netspec check`),
forward() and backward() (array code written once for NumPy and CuPy through `xp`).

Backward conventions, as in Caffe:
  * a layer OVERWRITES bottom[i].diff for every i with propagate_down[i] true;
  * it ACCUMULATES (+=) into the diffs of its parameter blobs (self.blobs), so iter_size
    accumulation and shared weights work; the solver clears them;
  * top[i].diff holds d(total loss)/d(top[i]); for a top with a loss weight w the executor
    seeds it with w before backward starts.
"""
from typing import NamedTuple

from .. import caffe_pb2
from ..errors import LayerError
from ..utils import format_shape


class MissingSource(LayerError):
    """read_source() found no file where the layer's source should be. The shape pass then
    shapes the tops from the parameters alone (infer() sees ctx.source None) and warns."""


class ParamBlob(NamedTuple):
    shape: tuple        # None while the bottoms' shapes are not known
    filler: object      # caffe_pb2.FillerParameter


class ShapeContext:
    """What infer() may use beside the bottom shapes: the phase, and a place for words.

    note(): the arithmetic behind a shape, shown by `netspec check --explain`.
    warn(): something legal but suspicious (inexact division, ceil vs floor ...).
    """

    def __init__(self, phase=caffe_pb2.TEST, source=None):
        self.phase = phase
        self.source = source        # what read_source() gave, for a layer that reads one
        self.notes = []
        self.warnings = []

    def note(self, message):
        self.notes.append(message)

    def warn(self, message):
        self.warnings.append(message)


class Layer:
    type = ""               # Caffe's type string; set by @layer
    bottoms = (1, 1)        # (min, max) number of bottoms; max None means any number
    tops = (1, 1)           # (min, max) number of tops
    param_fields = None     # the LayerParameter fields of its parameter messages; by default the one
                            # named after the type (plus loss_param for loss layers): see @layer
    loss = False            # a loss layer: its top 0 has loss_weight 1 unless the file says otherwise
    is_input = False        # an Input layer: its tops are fed by the caller
    labelled = False        # a data source whose top 1 holds one label per item (N,)
    label_bottom = None     # the bottom that holds labels (losses, Accuracy): not a gradient's way
    operands_agree = False  # several bottoms whose shapes must line up (Eltwise, Concat ...)
    batch_statistics = False   # normalises with the batch's own statistics (BatchNorm in TRAIN)
    takes_unknown = False   # its rule handles unknown (None) entries in bottom shapes; other
                            # layers with such a bottom are not checked (a note says why)
    rankless_as = {}        # bottom index -> the shape its rule reads that bottom as when not even
                            # its rank is known (a region list from an unchecked Python layer: (?, 5))
    learnable = None        # per parameter blob, False where the solver must never update it
                            # (BatchNorm's running statistics); None: every blob learns
    family = "other"        # for drawings: data, conv, pool, norm, fc, neuron, join, loss, metric, other
    source_path = None      # the net file it was read from (set by the graph; a Python layer's module search)
    shares_data = False     # its tops ARE its bottom's data (Split, as Caffe's ShareData)
    kept_input = None       # set by the executor on an in-place layer: a callable giving the copy
                            # of its input that the layer before kept (or None), to keep no second one

    def __init__(self, lp, phase=caffe_pb2.TEST):
        self.lp = lp
        self.name = lp.name
        self.phase = phase
        self.blobs = []     # learnable parameter Blobs, in Caffe's order; set by the executor
        self.rng = None     # numpy.random.Generator for layers that draw randomness; set by the executor
        self.param_propagate_down = []   # per blob in self.blobs: its diff is wanted (lr_mult != 0); set by the executor
        self.setup()

    # -- parameters and shapes (pure; no arrays) -------------------------------------------
    def setup(self):
        """Read and validate this layer's parameter message; raise LayerError."""

    def infer(self, bottoms, ctx):
        """Bottom shapes (tuples of ints) -> list of top shapes. Raise LayerError when wrong."""
        raise NotImplementedError

    def param_blobs(self, bottoms):
        """The learnable blobs in Caffe's order (weights, then bias ...): a ParamBlob(shape, filler)
        each. bottoms: the bottom shapes, or None before they are known (then a shape that
        depends on them is None, and the count and fillers are still right). An unset filler
        in the file means Caffe's default, constant 0."""
        return []

    def tops_when_unknown(self, bottoms):
        """For a layer whose rule needs every dimension (takes_unknown False): the tops' shapes
        that do not depend on the unknown ones (a loss is a scalar whatever its inputs), or None
        when nothing can be said. Its checks then wait for the run."""
        return None

    def read_source(self):
        """The I/O a source layer's shape needs (a data layer's first record, its files' row
        shapes), done as a named step of the shape pass before infer(), which finds the answer
        in ctx.source. Nothing for layers that read no source. Raises MissingSource when the
        source is not there (then infer() gets ctx.source None)."""
        return None

    def for_executor(self):
        """The executor's own instance of this layer (its blobs, random streams and read positions
        live in it; the checked graph keeps the shape pass's)."""
        twin = type(self)(self.lp, self.phase)
        twin.source_path = self.source_path
        return twin

    def param_values(self):
        """Arrays the layer set for its own parameter blobs (a Python layer's setup), aligned with
        param_blobs(); None: the fillers' values."""
        return None

    def macs(self, bottoms, tops):
        """Multiply-accumulates of one forward pass."""
        return 0

    def window(self, bottoms):
        """Spatial sliding window for receptive fields: a list of (kernel, stride, pad, dilation),
        one per spatial axis, or None for a layer that keeps each position where it is."""
        return None

    def describe(self):
        """The key parameters in a few words each (a drawing's node shows them)."""
        return []

    def param_wanted(self, j):
        """Whether blob j's diff is wanted: always, unless the executor said otherwise."""
        return not self.param_propagate_down or bool(self.param_propagate_down[j])

    def allow_force_backward(self, bottom_index):
        """Caffe's AllowForceBackward: force_backward reaches this bottom (loss layers: not the labels)."""
        return not (self.loss and bottom_index == self.label_bottom)

    # -- compute ---------------------------------------------------------------------------
    def backward_reads(self):
        """(bottoms' data, tops' data): what backward reads of them after forward (the solver's
        nets let data nobody reads share memory, netspec.memory). Say False only where sure."""
        return True, True

    def kept_top(self):
        """A copy of top 0's data as forward left it, kept for backward, or None."""
        return None

    def is_channel_scale(self, shape):
        """Whether it learns one scale per channel (axis 1) of a bottom of this shape, which a
        BatchNorm right before it can apply in its own pass (the executor groups them)."""
        return False

    def is_rectifier(self):
        """Whether it computes max(x, 0) and nothing else (a ReLU of slope 0), which a BatchNorm
        and Scale right before it can apply in their pass."""
        return False

    def fuses(self, followers, shape):
        """Whether it runs `followers`, the layers right after it in place on its top (of this
        shape), in its own passes: forward_fused and backward_fused (the executor groups them)."""
        return False

    def forward(self, xp, bottoms, tops):
        """Compute tops[i].data from bottoms[i].data (and self.blobs)."""
        self.fail(f"{self.type} has no forward")

    def backward(self, xp, tops, propagate_down, bottoms):
        """Write bottoms[i].diff where propagate_down[i]; accumulate into self.blobs[j].diff."""
        self.fail(f"{self.type} has no backward", hint=f"set propagate_down: false on '{self.name}'")

    # -- helpers for subclasses --------------------------------------------------------------

    def bottom_name(self, i):
        return f"'{self.lp.bottom[i]}'" if i < len(self.lp.bottom) else f"#{i}"

    def shape_mismatches(self, bottoms, except_axis=None):
        """How each bottom's shape differs from bottom 0's, on every axis but `except_axis`."""
        first = tuple(bottoms[0])
        problems = []
        for i, shape in enumerate(bottoms[1:], 1):
            if len(shape) != len(first):
                problems.append(f"bottom {self.bottom_name(i)} is {len(shape)}-d ({format_shape(shape)}) but "
                                f"bottom {self.bottom_name(0)} is {len(first)}-d ({format_shape(first)})")
                continue
            problems += [f"axis {a}: bottom {self.bottom_name(i)} has {got}, bottom {self.bottom_name(0)} "
                         f"has {want} (off by {got - want:+d})"
                         for a, (got, want) in enumerate(zip(shape, first))
                         if a != except_axis and got != want and None not in (got, want)]   # ?: run time
        return problems

    @staticmethod
    def merged(shapes):
        """One shape from several that must agree: per axis the first known entry."""
        return tuple(next((d for d in axis if d is not None), None) for axis in zip(*shapes))

    @staticmethod
    def same_shape(a, b):
        """Equal on every axis both know (an unknown entry is checked when the net runs)."""
        return len(a) == len(b) and all(x == y or None in (x, y) for x, y in zip(a, b))

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

    def fail(self, message, hint=None):
        raise LayerError(message, hint)

    @staticmethod
    def canonical_axis(axis, ndim):
        """Caffe's CanonicalAxisIndex: negative axes count from the end; out of range is an error."""
        if not -ndim <= axis < ndim:
            raise LayerError(f"axis {axis} is out of range for a {ndim}-d blob")
        return axis % ndim if ndim else 0
