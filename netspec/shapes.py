"""The shape pass: every top's shape, the checks, the words, and what each layer costs.

Pure: it walks the graph in order and asks each layer's infer() for its tops' shapes; no
arrays are made. A layer that fails becomes an error naming file:line, layer and type, and
the pass goes on where it can (tops of a failed layer are unknown, and layers that read them
are skipped quietly), so every independent error is reported at once, as ONNX does.
"""
from functools import partial
from math import prod

from . import caffe_pb2
from . import depth as paper_numbers
from .errors import LayerError, NetspecError, ShapeUnknown
from .findings import Findings, by_name, node_issue
from .layers.base import MissingSource, ShapeContext
from .utils import did_you_mean, format_shape

BYTES_PER_VALUE = 4          # float32 activations
SEARCH_RADIUS = 32           # how far from the given input size the clean-size search looks
SEARCH_WORK = 20000          # and how many layer rules it may run in all (a bound by work, so
                             # every machine gives the same answer)
MULTIPLIERS = ("lr_mult", "decay_mult")      # a shared blob's: the first sharer giving one sets it


class ReceptiveField:
    """What one output position sees of the net's input, per spatial axis (never changed once
    made: a layer that keeps each position where it is passes its bottom's on)."""
    __slots__ = ("size", "stride", "whole", "extent")

    def __init__(self, size, stride, whole=False, extent=()):
        self.size = size
        self.stride = stride
        self.whole = whole          # the output has no spatial axes left: it sees the whole input
        self.extent = extent        # the spatial size of the input it is measured against

    def to_dict(self):
        return {"size": list(self.size), "stride": list(self.stride), "whole_input": self.whole}


class LayerResult:
    """One node's part of the shape pass: its shapes, words, findings and costs."""

    def __init__(self, node, bottom_shapes, top_shapes):
        self.node = node
        self.bottom_shapes = bottom_shapes
        self.top_shapes = top_shapes        # a tuple per top, or None when unknown
        self.notes = []
        self.warnings = []
        self.errors = []                    # Issues
        self.param_shapes = []
        self.param_count = 0                # learnable values this layer adds (shared ones once);
                                            # None when a blob's shape holds an unknown dimension
        self.counted = True                 # macs and memory counted (False: unknown dimensions)
        self.shared = []                    # (blob index, spec name, first owner)
        self.macs = 0
        self.memory = 0                     # bytes of new activations (in-place and Split tops: 0)
        self.receptive_fields = {}          # top -> ReceptiveField or None
        self.unknown = None                 # the Issue saying why the tops' shapes are unknown (ShapeUnknown)

    @property
    def name(self):
        return self.node.name

    @property
    def type(self):
        return self.node.type

    @property
    def tops(self):
        return dict(zip(self.node.tops, self.top_shapes))


class ShapeResult(Findings):
    def __init__(self, graph, layers, blob_shapes, errors, warnings, sources):
        self.graph = graph
        self.layers = layers                # LayerResult per graph node, in execution order
        self.blob_shapes = blob_shapes      # blob -> shape tuple (known ones)
        self.errors = errors                # Issues, in file order (whole-net ones last)
        self.warnings = warnings
        self.stats = {}                     # totals: params, macs, memory
        self.sources = sources              # node index -> what its source layer read

    @property
    def ok(self):
        return not self.errors

    def layer(self, name):
        return by_name(self.layers, name)


def infer_shapes(graph, inputs=None, *, stats=True, suggest=True, require_sources=False):
    """Run the shape pass. inputs: {blob: shape} for the tops of data and Input layers.

    require_sources: a data layer whose source is missing is an error; else a warning, and its
    tops are shaped from the net's parameters (batch_size, crop_size ...) with the rest unknown.
    stats: count params, MACs, memory and receptive fields. suggest: when operands of a
    multi-input layer disagree, search input sizes nearby for which the whole net is clean.
    """
    inputs = _check_inputs(graph, inputs)
    sources = {}
    results, shapes = _propagate(graph, inputs, sources=sources, required=require_sources)
    errors = list(graph.errors) + [e for r in results for e in r.errors]
    warnings = list(graph.warnings)
    for r in results:
        warnings += [node_issue(graph, r.node, w) for w in r.warnings] + ([r.unknown] if r.unknown else [])
    warnings += _wiring_warnings(graph)
    result = ShapeResult(graph, results, shapes, errors, warnings, sources)
    _check_params(result)
    if stats:
        _count(result)
    errors.sort(key=_by_line)
    warnings.sort(key=_by_line)
    if suggest:
        _suggest_sizes(result, inputs)
    return result


# -- the walk -----------------------------------------------------------------------------

def _check_inputs(graph, inputs):
    """Normalise {name: shape}; a name that is no input of this net is the caller's mistake."""
    if not inputs:
        return {}
    sources = [t for n in graph.nodes if not n.bottoms for t in n.tops]
    normal = {}
    for name, shape in inputs.items():
        if name not in sources:
            raise NetspecError(f"--input {name}: this net has no input blob '{name}'{did_you_mean(name, sources)}",
                               file=graph.path,
                               hint="inputs are tops of data or Input layers: " + (", ".join(sources) or "none"))
        try:
            shape = tuple(int(d) for d in shape)
        except (TypeError, ValueError):
            raise NetspecError(f"--input {name}: shape {shape!r} is not a list of integers") from None
        if any(d <= 0 for d in shape):
            raise NetspecError(f"--input {name}: every dimension must be positive, got {shape}")
        normal[name] = shape
    return normal


def _propagate(graph, inputs, stop_at_error=False, sources=None, required=False):
    """Walk the graph. sources: {node index: what its layer's read_source() gave}, filled as sources
    are read, so a second walk (the clean-size search) reads no file again. required: a missing
    source is an error (the executor needs the data), not a warning with tops shaped from the net."""
    shapes, results = {}, []
    sources = {} if sources is None else sources
    for node in graph.nodes:
        bottoms = [shapes.get(b) for b in node.bottoms]
        r = LayerResult(node, bottoms, [None] * len(node.tops))
        results.append(r)
        read_as = _rankless_read_as(node, shapes)
        if read_as:
            bottoms = r.bottom_shapes = [read_as.get(i, s) for i, s in enumerate(bottoms)]
        if node.layer is None or node.miscounted or any(b is None for b in bottoms):
            rankless = [b for b in node.bottoms if b in shapes and shapes[b] is None]
            if rankless and node.layer is not None and not node.miscounted:
                r.notes = [f"not checked: not even the number of axes of {', '.join(map(repr, rankless))} "
                           "is known before the net runs"]
            continue            # else already reported: the layer could not be made, its blob count
                                # is wrong, or a bottom failed
        unknown = [b for b, s in zip(node.bottoms, bottoms) if None in s]
        if unknown and not node.layer.takes_unknown:
            _without_rule(r, shapes, unknown)
            continue
        ctx = ShapeContext(node.layer.phase)
        try:
            tops = _infer(node, bottoms, ctx, inputs, sources, required)
        except ShapeUnknown as e:
            r.unknown = node_issue(graph, node, f"{e.message}; the shapes of its tops and of the layers "
                                                "reading them are unknown, and not checked", e.hint)
            shapes.update(dict.fromkeys(node.tops))     # not even their rank is known
        except (LayerError, NetspecError) as e:
            r.errors.append(node_issue(graph, node, e.message, e.hint))
        else:
            r.top_shapes = tops
            for t, s in zip(node.tops, tops):
                shapes[t] = s
            _check_sizes(graph, r)
        r.notes, r.warnings = ctx.notes, ctx.warnings
        r.notes[:0] = [f"{node.bottoms[i]!r} has no known shape: read as {format_shape(s)}, as this layer reads it"
                       for i, s in read_as.items()]
        if unknown and not r.errors:
            r.notes.append(f"checks on the ? dimensions of {', '.join(map(repr, unknown))} wait for the run")
        if stop_at_error and r.errors:
            break
    return results, shapes


def _rankless_read_as(node, shapes):
    """{bottom index: shape} for the bottoms of unknown rank that the layer's rule can read as a
    shape of its own (Layer.rankless_as), when that makes every bottom at least ranked."""
    if node.layer is None or node.miscounted:
        return {}
    rankless = [i for i, b in enumerate(node.bottoms) if b in shapes and shapes[b] is None]
    if not rankless or any(i not in node.layer.rankless_as for i in rankless):
        return {}
    return {i: node.layer.rankless_as[i] for i in rankless}


def _without_rule(r, shapes, unknown):
    """A layer whose rule needs every dimension, with a bottom holding unknown ones: its checks
    wait for the run; the tops that do not depend on them (a loss's scalar) are still given."""
    names = ", ".join(repr(b) for b in unknown)
    tops = r.node.layer.tops_when_unknown(r.bottom_shapes)
    if tops is None:
        r.notes = [f"not checked: its rule needs the dimensions of {names} that are known only when "
                   "the net runs (shown as ?)"]
        return
    r.top_shapes = [tuple(s) for s in tops]
    shapes.update(zip(r.node.tops, r.top_shapes))
    r.notes = [f"its checks need the ? dimensions of {names}: they wait for the run"]


def _infer(node, bottoms, ctx, inputs, sources, required):
    """The layer's rule, with --input shapes in place of a source layer's own."""
    given = [inputs.get(t) for t in node.tops]
    if node.bottoms or not any(given):
        return _call_infer(node, bottoms, ctx, sources, required)
    try:
        own = _call_infer(node, bottoms, ctx, sources, required=True)
    except (LayerError, NetspecError) as e:
        given = _labels_beside(node, given)
        if all(given):
            ctx.note(f"shapes from --input (without them: {e.message})")
            return given
        missing = [t for t, g in zip(node.tops, given) if not g]
        raise LayerError(f"{e.message}; the shape of {', '.join(repr(m) for m in missing)} is still unknown",
                         _input_hint(missing)) from None
    for t, g, o in zip(node.tops, given, own):
        if g and o is not None and g != o:
            ctx.note(f"{t}: {format_shape(g)} from --input (the file gives {format_shape(o)})")
    return [g or o for g, o in zip(given, own)]


def _labels_beside(node, given):
    """Caffe's image data layers give top 1 (the labels) the shape (N,): with the data's
    shape given, the labels' follows."""
    if node.layer.labelled and len(given) == 2 and given[0] and not given[1]:
        return [given[0], given[0][:1]]
    return given


def _call_infer(node, bottoms, ctx, sources, required=False):
    try:
        if not node.bottoms:
            if node.index not in sources:
                try:
                    sources[node.index] = node.layer.read_source()     # the pass's only I/O
                except MissingSource as e:
                    sources[node.index] = e
            ctx.source = sources[node.index]
            if isinstance(ctx.source, MissingSource):
                missing, ctx.source = ctx.source, None
                if required:
                    raise missing
                ctx.warn(f"{missing.message}: its tops are shaped from the net's parameters alone "
                         "(? where they say nothing); the data is needed to train or test")
        tops = node.layer.infer(list(bottoms), ctx)
    except ShapeUnknown:
        raise
    except (LayerError, NetspecError) as e:
        if not node.bottoms:
            hint = _input_hint(node.tops[:1] if node.layer.labelled else node.tops)
            raise LayerError(f"the shape of {', '.join(repr(t) for t in node.tops)} is unknown: {e.message}",
                             f"{e.hint}; or {hint}" if e.hint else hint) from None
        raise
    tops = [None if s is None else tuple(None if d is None else int(d) for d in s)
            for s in tops]                    # a None entry: known at run time; None: not even the rank
    if len(tops) != len(node.tops):
        raise LayerError(f"its shape rule gave {len(tops)} shapes for {len(node.tops)} tops")
    return tops


def _input_hint(tops):
    flags = " ".join(f"--input {t}=N,C,H,W" for t in tops)
    python = ", ".join(f"'{t}': (N, C, H, W)" for t in tops)
    return f"give the shape: netspec check FILE {flags} (in Python: inputs={{{python}}})"


def _check_sizes(graph, r):
    """The fallback for sizes that reach zero or below, whatever rule let them through."""
    for t, s in zip(r.node.tops, r.top_shapes):
        if s is not None and any(d is not None and d <= 0 for d in s):
            r.errors.append(_input_dim_issue(graph, r.node, t, s) if r.node.layer.is_input else
                            node_issue(graph, r.node, f"top '{t}' would be {format_shape(s)}: a size reached zero or below",
                                       "the input is too small for this stack of layers: give a larger input, "
                                       "or reduce kernel, stride or depth"))
            r.top_shapes = [None] * len(r.node.tops)


def _input_dim_issue(graph, node, top, shape):
    """An Input layer's shape written with a dim of zero or below: the file's mistake, not the net's."""
    k = next(i for i, d in enumerate(shape) if d <= 0)
    return node_issue(graph, node, f"input_param gives top '{top}' the shape {format_shape(shape)}: dim {k} is "
                                   f"{shape[k]}; every dim must be 1 or more",
                      f"write a positive dim {k} in its input_param shape, or give the shape: --input {top}=N,C,H,W")


def _by_line(issue):
    """File order; whole-net issues (no line) last."""
    return (issue.line is None, issue.line or 0)


# -- warnings about wiring ------------------------------------------------------------------

def _wiring_warnings(graph):
    """Tops nobody uses; layers with parameters that reach no loss (they would never learn)."""
    readers = graph.consumers()
    out = []
    for n in graph.nodes:
        used = [t in readers or bool(w) for t, w in zip(n.tops, n.loss_weights)]
        if any(used):
            for t, u in zip(n.tops, used):
                if not u and t in graph.outputs:
                    out.append(node_issue(graph, n, f"top '{t}' is used by no layer",
                                      "read it, drop it, or end it in a Silence layer"))
    if graph.has_loss and graph.phase == caffe_pb2.TRAIN:
        for n in graph.nodes:
            if not n.reaches_loss and n.layer is not None and n.layer.param_blobs(None) and n.bottoms:
                out.append(node_issue(graph, n, "reaches no loss: its parameters get no gradient and never learn",
                                  "connect its output to a loss, or remove it"))
    return out


# -- statistics -------------------------------------------------------------------------------

def _known(r):
    return (_shaped(r) and all(None not in s for s in r.top_shapes)
            and all(None not in s for s in r.bottom_shapes if s is not None))


def _shaped(r):
    """Its rule ran (its tops may still hold unknown entries)."""
    return r.node.layer is not None and all(s is not None for s in r.top_shapes) and bool(r.top_shapes)


def _count(result):
    fields = {}
    for r in result.layers:
        if not _known(r):
            r.counted = False   # MACs and memory need every dimension; params, those of its blobs
            continue
        r.macs = int(r.node.layer.macs(r.bottom_shapes, r.top_shapes))
        r.memory = sum(BYTES_PER_VALUE * prod(s) for j, s in enumerate(r.top_shapes)
                       if not r.node.in_place(j) and not r.node.split)
        _receptive_fields(r, fields)
    result.stats = {key: sum(getattr(r, attr) or 0 for r in result.layers)
                    for key, attr in (("params", "param_count"), ("macs", "macs"), ("memory", "memory"))}
    # a layer left out (unknown dimensions, or an error) makes the total a lower bound
    result.stats["lower_bound"] = [key for key, left_out in
                                   (("params", any(_params_left_out(r) for r in result.layers)),
                                    ("macs", any(not r.counted for r in result.layers)),
                                    ("memory", any(not r.counted for r in result.layers))) if left_out]
    result.stats["depth"] = paper_numbers.depth(result.graph)
    for r in result.layers:
        counted = paper_numbers.connections(r)
        if counted:
            r.notes.append(f"{counted[0]} connections per item through {counted[1]} weights")


def _params_left_out(r):
    """Whether the layer may hold learnable values the count misses."""
    if r.node.layer is None:
        return True         # an unknown type: who knows
    return r.param_count is None or (not _shaped(r) and bool(r.node.layer.param_blobs(None)))


def _check_params(result):
    """Each layer's learnable blobs, checked against its ParamSpecs as Caffe's AppendParam does."""
    owners = {}
    for r in result.layers:
        if _shaped(r) and all(s is not None for s in r.bottom_shapes):
            _params(result, r, owners)


def _params(result, r, owners):
    """Learnable blobs; a blob shared through a ParamSpec name counts once, at its first owner,
    and its sharers agree with it in shape (or count, PERMISSIVE) and in any lr_mult and
    decay_mult they give (the first one given stands for the blob)."""
    node = r.node
    try:
        r.param_shapes = [tuple(None if d is None else int(d) for d in blob.shape)
                          for blob in node.layer.param_blobs(r.bottom_shapes)]
    except (LayerError, NetspecError) as e:
        _fail(result, r, e.message, e.hint)
        return
    specs = node.lp.param
    if len(specs) > len(r.param_shapes):
        _fail(result, r, f"{len(specs)} param specs for {len(r.param_shapes)} learnable blobs",
              f"give at most {len(r.param_shapes)} param {{ }} blocks")
    for j, shape in enumerate(r.param_shapes):
        name = specs[j].name if j < len(specs) else ""
        if None in shape:
            r.param_count = None        # known when the net runs, as the blob's shape
            continue
        if not name:
            r.param_count = None if r.param_count is None else r.param_count + prod(shape)
            continue
        spec = specs[j]
        given = {f: getattr(spec, f) for f in MULTIPLIERS if spec.HasField(f)}
        if name not in owners:
            owners[name] = (node.name, shape, given)
            r.param_count = None if r.param_count is None else r.param_count + prod(shape)
            continue
        owner, owner_shape, multipliers = owners[name]
        r.shared.append((j, name, owner))
        permissive = spec.share_mode == spec.PERMISSIVE
        if not (prod(shape) == prod(owner_shape) if permissive else shape == owner_shape):
            _fail(result, r, f"param '{name}' is {format_shape(shape)} here but {format_shape(owner_shape)} in '{owner}', "
                  "which it shares",
                  "shared parameters need the same shape (the same count with share_mode: PERMISSIVE)")
        for field_name, value in given.items():
            first = multipliers.setdefault(field_name, value)
            if value != first:
                _fail(result, r, f"param '{name}' has {field_name} {value:g} here but {first:g} before "
                      f"(shared with '{owner}')", f"give every sharer of '{name}' the same {field_name}")


def _fail(result, r, message, hint=None):
    r.errors.append(node_issue(result.graph, r.node, message, hint))
    result.errors.append(r.errors[-1])


def _receptive_fields(r, fields):
    """Compose the sliding windows from the input: per axis, the field grows by (kernel extent - 1)
    times the stride so far, and the stride multiplies by the layer's."""
    node = r.node
    if node.bottoms:
        below = [fields.get(b) for b in node.bottoms]
        known = [f for f in below if f is not None]
        window = node.layer.window(r.bottom_shapes)
        field_of = partial(_field_of_top, known=known, first=below[0], window=window)
    else:
        field_of = _source_field
    for t, s in zip(node.tops, r.top_shapes):
        fields[t] = r.receptive_fields[t] = field_of(s)


def _source_field(shape):
    """Images (N, C, H, W ...) have spatial axes; labels and sequences (T, N, ...) do not."""
    spatial = len(shape) - 2
    return ReceptiveField((1,) * spatial, (1,) * spatial, extent=tuple(shape[2:])) if spatial >= 2 else None


def _field_of_top(shape, known, first, window):
    if not known:
        return None
    if len(shape) < 4 or any(f.whole for f in known):
        return _whole(known)
    if window is not None:
        if first is None or len(window) != len(first.size):
            return _whole(known)
        size = tuple(f + (d * (k - 1)) * st for f, st, (k, _, _, d) in zip(first.size, first.stride, window))
        stride = tuple(st * w[1] for st, w in zip(first.stride, window))
        return ReceptiveField(size, stride, extent=first.extent)
    same = [f for f in known if len(f.size) == len(shape) - 2]
    if not same:
        return _whole(known)
    if len(same) == 1:          # BatchNorm, ReLU ... and Eltwise of one spatial operand
        return same[0]
    size = tuple(max(axis) for axis in zip(*(f.size for f in same)))
    stride = tuple(max(axis) for axis in zip(*(f.stride for f in same)))
    return ReceptiveField(size, stride, extent=same[0].extent)


def _whole(known):
    extent = known[0].extent
    return ReceptiveField(extent, extent, whole=True, extent=extent)


# -- the nearest clean input sizes --------------------------------------------------------------

def _suggest_sizes(result, inputs):
    """When operands of a multi-input layer disagree, name the nearest input sizes (below and
    above) for which the whole net checks clean, by re-running the pure pass on sizes nearby."""
    graph = result.graph
    clash = [e for r in result.layers if len(r.node.bottoms) > 1 and r.node.layer is not None
             and r.node.layer.operands_agree
             for e in r.errors]
    if not clash or graph.errors:
        return
    image = _image_input(result)
    if image is None:
        return
    name, shape = image
    search = CleanSizeSearch(graph, inputs, name, shape, sources=result.sources)
    below, above = search.run()
    spatial = shape[2:]
    if below is None and above is None:
        text = f"no {name} size within {SEARCH_RADIUS} of {format_shape(spatial)} checks clean"
        if search.exhausted:
            text = (f"no clean {name} size found near {format_shape(spatial)} within the search's budget "
                    f"({SEARCH_WORK} layer rules)")
    else:
        found = [format_shape(s[2:]) for s in (below, above) if s is not None]
        text = f"the whole net checks clean with {name} at {' or '.join(found)} (now {format_shape(spatial)})"
    for e in clash:
        e.hint = f"{e.hint}; {text}" if e.hint else text


def _image_input(result):
    for r in result.layers:
        if r.node.bottoms:
            continue
        for t, s in zip(r.node.tops, r.top_shapes):
            if s is not None and len(s) >= 4:
                return t, s
    return None


def nearest_clean_sizes(graph, inputs, name, shape, radius=SEARCH_RADIUS, work=SEARCH_WORK):
    """(smaller shape, larger shape) nearest to `shape` for which the pass finds no error, or
    None for a side where nothing within `radius` (or the work budget) is clean."""
    return CleanSizeSearch(graph, inputs, name, shape, radius, work).run()


class CleanSizeSearch:
    """Re-runs the pure pass on input sizes near `shape`, stopping at the first error of each
    trial and after `work` layer rules in all. Square inputs stay square. For others each
    spatial size is searched as a square input (nets slide the same windows along every
    axis), the answers are combined, and the combination is checked."""

    def __init__(self, graph, inputs, name, shape, radius=SEARCH_RADIUS, work=SEARCH_WORK, sources=None):
        self.graph, self.inputs, self.name = graph, inputs, name
        self.head, self.spatial = tuple(shape[:2]), tuple(shape[2:])
        self.radius, self.work_left = radius, work
        self.sources = sources if sources is not None else {}
        self.memo = {}
        self.exhausted = False

    def clean(self, sizes):
        if sizes not in self.memo:
            if self.work_left <= 0:
                self.exhausted = True
                return False
            trial = dict(self.inputs, **{self.name: self.head + sizes})
            results, _ = _propagate(self.graph, trial, stop_at_error=True, sources=self.sources)
            self.work_left -= len(results)
            self.memo[sizes] = not any(r.errors for r in results)
        return self.memo[sizes]

    def nearest(self, size, sign):
        for step in range(1, self.radius + 1):
            candidate = size + sign * step
            if candidate > 0 and self.clean((candidate,) * len(self.spatial)):
                return candidate
        return None

    def run(self):
        found = []
        for sign in (-1, 1):
            sizes = tuple(self.nearest(size, sign) for size in self.spatial)
            if len(set(self.spatial)) > 1 and None not in sizes and not self.clean(sizes):
                sizes = (None,)
            found.append(self.head + sizes if None not in sizes else None)
        return tuple(found)
