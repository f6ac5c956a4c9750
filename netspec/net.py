"""The executor: a checked net lowered to steps over Blobs, run forward and backward.

    net = netspec.Net("deploy.prototxt", weights="x.caffemodel", phase="TEST", backend="numpy")
    out = net.forward(data=images)          # {output blob name: NumPy array}
    net.backward()                          # diffs of every blob and parameter
    net.blobs["conv1"].data, net.params["conv1"][0].diff

One Blob per blob name (an in-place top is its bottom's Blob); parameter Blobs are filled
from the layers' fillers with a seeded generator, shared by ParamSpec name. Feeding an input
of another shape re-runs the shape pass and re-allocates what changed.
"""
from dataclasses import dataclass, field

import numpy as np

from . import caffe_pb2
from .backend import get_xp, to_numpy
from .blob import Blob
from .errors import LayerError, NetspecError
from .fillers import fill
from .graph import param_specs
from .utils import atomic_write, did_you_mean, format_shape
from .io import read_weights
from .memory import shared_data_arrays, shared_diff_arrays
from .io.blobs import array_to_proto, proto_shape, proto_to_array, shapes_match

@dataclass
class ParamSlot:
    """A learnable parameter Blob and how the solver treats it."""
    blob: Blob
    layer: str
    index: int
    lr_mult: float = 1.0
    decay_mult: float = 1.0
    name: str = ""
    has_lr: bool = False
    has_decay: bool = False


@dataclass
class WeightsPlan:
    """What copying weights by layer name will do: a row per layer, the copies, the refusals."""
    rows: list = field(default_factory=list)        # (layer, status, detail)
    copies: list = field(default_factory=list)      # (Blob, NumPy array)
    refused: list = field(default_factory=list)     # (node, message)

    def refuse(self, node, message):
        self.refused.append((node, message))
        self.rows.append((node.name, "refused", message))

    def apply(self, net):
        for blob, array in self.copies:
            blob.data[...] = net.xp.asarray(array, dtype=blob.data.dtype)


class Step:
    """One layer of the plan, bound to its Blobs."""
    __slots__ = ("node", "layer", "bottoms", "tops", "propagate_down", "needs_backward", "feeds_only", "group")

    def __init__(self, node, layer, bottoms, tops):
        self.node, self.layer = node, layer
        self.bottoms, self.tops = bottoms, tops
        self.propagate_down, self.needs_backward, self.feeds_only = [], False, False
        self.group = None       # the steps it runs with as one, itself included, in plan order

    @property
    def name(self):
        return self.layer.name


def _grouped(steps):
    """The steps to run, a group whole where all of it is there in a row (in plan order
    forward, in reverse backward), else step by step."""
    steps = list(steps)
    i = 0
    while i < len(steps):
        group = steps[i].group
        if group is not None and steps[i:i + len(group)] in (group, group[::-1]):
            yield steps[i:i + len(group)]
            i += len(group)
        else:
            yield [steps[i]]
            i += 1


class Net:
    """A net ready to run. model: a path, NetSource or NetParameter; weights: a .caffemodel;
    inputs: {blob: shape} instead of the file's input shapes (a data layer given one is fed
    instead of read); seed: the fillers' and the random layers' seed; dtype: float32, or
    float64 for gradient checks; share_memory: activations and diffs that are never needed at
    once share memory (the solver's nets; afterwards they hold other blobs' values, memory.py).

    blobs {name: Blob}, params {layer: [Blob]}, layers, layer_names, inputs, outputs,
    loss (after forward), learnable_params (ParamSlots for the solver), steps (the plan).
    """

    def __init__(self, model, weights=None, phase="TEST", backend="numpy", inputs=None, seed=None,
                 stages=(), level=0, dtype="float32", share_memory=False):
        from .graph import build_graph, load_source, mark_backward, phase_value
        self.xp = get_xp(backend)
        self.backend = "cupy" if self.xp is not np else "numpy"
        self.phase = phase_value(phase)
        self.dtype = np.dtype(dtype)
        self.source = load_source(model)
        self.name = self.source.param.name
        self.graph = build_graph(self.source, phase=self.phase, stages=tuple(stages), level=level)
        self.shapes = self._infer(inputs)      # raises every error of the graph and shape pass
        mark_backward(self.graph)              # again: a Python layer's blobs exist once the shape pass set it up
        self.nodes = list(self.graph.nodes)
        # the executor's own layer objects: blobs, random streams and read positions live in
        # them, and the checked graph stays as the shape pass left it
        self.layers = [n.layer.for_executor() for n in self.nodes]
        self.layer_names = [layer.name for layer in self.layers]
        self.outputs = list(self.graph.outputs)
        # a data layer given an input shape is fed instead of read, as `netspec check --input` takes it
        self._fed = {t for n in self.nodes if not n.bottoms and not n.layer.is_input and set(n.tops) & set(inputs or ())
                     for t in n.tops}
        self.inputs = list(self.graph.inputs) + [t for n in self.nodes for t in n.tops if t in self._fed]
        # forward() takes the inputs, and the tops of any layer without bottoms (a data layer's)
        self.feedable = self.inputs + [t for n in self.nodes if not n.bottoms for t in n.tops if t not in self.inputs]
        self.loss = None
        self.after_backward = []        # f(step) after each layer's backward (layer-wise gradient reduction)
        self._seeds = np.random.SeedSequence(seed)
        filler_seed, *layer_seeds = self._seeds.spawn(len(self.layers) + 1)
        for layer, s in zip(self.layers, layer_seeds):
            layer.rng = np.random.default_rng(s)
        self.blobs = {}
        self._allocate()
        self.steps = self._bind()
        self._make_params(np.random.default_rng(filler_seed))
        self._plan_backward()
        self._mark_fed()
        self.loss_tops = [(self.blobs[t], w) for node in self.nodes
                          for t, w in zip(node.tops, node.loss_weights) if w != 0]
        self.share_memory = share_memory
        self._share_memory()
        if weights:
            self.copy_from(weights)

    # -- lowering ------------------------------------------------------------------------
    def _infer(self, inputs):
        """Blob shapes from the shape pass; every error it finds, together, as one NetspecError."""
        from .shapes import infer_shapes
        result = infer_shapes(self.graph, inputs=dict(inputs) if inputs else None, stats=False, suggest=False,
                              require_sources=True)
        errors = list(result.errors) + [r.unknown for r in result.layers if r.unknown]
        if len(errors) == 1:
            raise errors[0].to_error()
        if errors:
            text = "\n".join(str(e) for e in errors)
            raise NetspecError(f"the net does not check ({len(errors)} errors):\n{text}",
                               file=self.source.path, hint="`netspec check` explains each one")
        return {name: tuple(int(d) for d in shape) for name, shape in result.blob_shapes.items()}

    def _allocate(self):
        """A Blob for each blob name; arrays made anew only where a shape changed. The tops of
        a layer that shares data (Split) are its bottom's data, as in Caffe (the graph refuses
        an in-place write to a blob that was split, which would change its siblings too)."""
        xp = self.xp
        for node, layer in zip(self.nodes, self.layers):
            for name in node.tops:
                shape = self.shapes[name]
                blob = self.blobs.get(name)
                if blob is None:
                    blob = self.blobs[name] = Blob.zeros(xp, shape, self.dtype)
                elif blob.diff.shape != shape:
                    blob.data, blob.diff = xp.zeros(shape, self.dtype), xp.zeros(shape, self.dtype)
                if layer.shares_data:
                    blob.data = self.blobs[node.bottoms[0]].data

    def _bind(self):
        """The plan's steps; an in-place layer is told where the layer before it keeps a copy
        of their shared blob (BatchNorm's normalised values for the Scale after it). A layer and
        the in-place layers right after it that it can run in its own passes (Layer.fuses: a
        BatchNorm with the batch's statistics, its Scale and ReLU) form a group that runs as one
        where all of it runs."""
        steps, writer = [], {}
        for node, layer in zip(self.nodes, self.layers):
            steps.append(Step(node, layer, [self.blobs[b] for b in node.bottoms], [self.blobs[t] for t in node.tops]))
            in_place = node.tops and node.bottoms and node.bottoms[0] == node.tops[0]
            before = writer.get(node.tops[0]) if in_place else None
            layer.kept_input = before.kept_top if before is not None else None
            step, last = steps[-1], steps[-2] if len(steps) > 1 else None
            if before is not None and last.layer is before:     # in place, right after its blob's writer
                group = (last.group or [last]) + [step]
                if group[0].layer.fuses([s.layer for s in group[1:]], self.shapes[node.bottoms[0]]):
                    for s in group:
                        s.group = group
            writer.update((t, layer) for t in node.tops)
        return steps

    def _bottom_shapes(self, node):
        return [self.shapes[b] for b in node.bottoms]

    def _make_params(self, rng):
        """Fill each layer's parameter Blobs; a ParamSpec name seen before shares its Blob."""
        self.learnable_params, owners = [], {}
        for node, layer in zip(self.nodes, self.layers):
            lp = node.lp
            blobs = layer.param_blobs(self._bottom_shapes(node))
            values = layer.param_values()
            specs = param_specs(lp, len(blobs))
            layer.blobs = []
            for j, ((shape, filler), spec) in enumerate(zip(blobs, specs)):
                statistics = layer.learnable is not None and not layer.learnable[j]
                owner = owners.get(spec.name) if spec.name else None
                if owner is not None:
                    layer.blobs.append(self._share(spec, owner))
                    continue
                shape = tuple(shape)
                data = self.xp.asarray(values[j], self.dtype).copy() if values is not None else \
                    fill(self.xp, rng, shape, filler, self.dtype)
                blob = Blob(data, self.xp.zeros(shape, self.dtype))
                layer.blobs.append(blob)
                slot = ParamSlot(blob, layer.name, j, 0.0 if statistics else spec.lr_mult, spec.decay_mult,
                                 spec.name, spec.HasField("lr_mult"), spec.HasField("decay_mult"))
                if spec.name:
                    owners[spec.name] = slot
                if not statistics:
                    self.learnable_params.append(slot)

    def _share(self, spec, owner):
        """Caffe's AppendParam for a named parameter seen before (the shape pass checked that the
        sharers agree): the owner's Blob, and the first lr_mult/decay_mult given for it."""
        for name, has in (("lr_mult", "has_lr"), ("decay_mult", "has_decay")):
            if spec.HasField(name) and not getattr(owner, has):
                setattr(owner, name, getattr(spec, name))
                setattr(owner, has, True)
        return owner.blob

    def _plan_backward(self):
        """The graph's backward marks (Caffe's); a layer with no diff to write is not called."""
        for step in self.steps:
            node = step.node
            step.propagate_down = node.propagate_down
            step.needs_backward = node.needs_backward and (any(node.propagate_down) or any(node.param_propagate_down))
            step.layer.param_propagate_down = node.param_propagate_down

    def _share_memory(self):
        """share_memory: activations and diffs never needed at once share buffers (memory.py)."""
        if not self.share_memory:
            return
        seeded = [t for node in self.nodes for t, w in zip(node.tops, node.loss_weights) if w != 0]
        for name, diff in shared_diff_arrays(self.xp, self.steps, seeded, self.shapes, self.dtype).items():
            self.blobs[name].diff = diff
        keep = set(self.feedable) | set(self.outputs) | set(seeded)
        for name, data in shared_data_arrays(self.xp, self.steps, keep, self.shapes, self.dtype).items():
            self.blobs[name].data = data

    def _mark_fed(self):
        """Layers without bottoms whose tops are all fed (Input layers always) do not run."""
        for step in self.steps:
            tops = set(step.node.tops)
            step.feeds_only = not step.node.bottoms and bool(tops) and (
                step.layer.is_input or tops <= self._fed)

    def _error(self, node, message, hint=None):
        return NetspecError(message, file=self.source.path, line=node.line,
                            layer=node.name, layer_type=node.type, hint=hint)

    # -- running -------------------------------------------------------------------------
    def forward(self, blobs=(), start=None, end=None, **feeds):
        """Run the net on the given inputs; a dict of the output blobs as NumPy arrays (on NumPy,
        the blobs' own arrays, as pycaffe returns them: copy what must outlive the next call).

        As pycaffe: `blobs` names more blobs to return; `start`/`end` name the first and last
        layers to run (with `end`, the outputs are that layer's tops)."""
        self._feed(feeds)
        if any(self.blobs[k].shape != self.shapes[k] for k in self.feedable):
            self.reshape()          # an input Blob reshaped by hand (Blob.reshape), as Caffe's Forward follows it
        first, last = self._index(start, 0), self._index(end, len(self.steps) - 1)
        self._run(self.steps[first:last + 1], forward=True)
        self.loss = float(sum(w * self.xp.sum(blob.data) for blob, w in self.loss_tops))
        names = self.outputs if end is None else self.steps[last].node.tops
        return {name: to_numpy(self.blobs[name].data) for name in self._known(list(names) + list(blobs))}

    def backward(self, diffs=(), start=None, end=None, **top_diffs):
        """Backward from every loss; a dict of the inputs' diffs as NumPy arrays. Parameter
        diffs accumulate (clear_param_diffs() zeroes them, as the solver does).

        As pycaffe: keyword arrays set output blobs' diffs (d something / d output) besides
        the losses' seeds; `diffs` names more blobs to return; `start`/`end` name the layers
        backward starts at and stops after."""
        self._seed_loss_diffs()
        for name in self._known(top_diffs):
            self.blobs[name].diff[...] = self.xp.asarray(top_diffs[name], dtype=self.dtype)
        first, last = self._index(start, len(self.steps) - 1), self._index(end, 0)
        self._run(self.steps[last:first + 1][::-1], forward=False)
        return {name: to_numpy(self.blobs[name].diff) for name in self._known(self.inputs + list(diffs))}

    def run_forward(self):
        """Every layer's forward on the Blobs as they are (no feeding, no copies out)."""
        self._run(self.steps, forward=True)

    def run_backward(self):
        """Seed each loss top's diff with its weight, then every needed layer's backward."""
        self._seed_loss_diffs()
        self._run(reversed(self.steps), forward=False)

    def _seed_loss_diffs(self):
        for blob, w in self.loss_tops:
            blob.diff.fill(w)

    def _index(self, layer_name, default=None):
        """The plan position of a layer (`default` for None)."""
        if layer_name is None:
            return default
        if layer_name not in self.layer_names:
            near = did_you_mean(layer_name, self.layer_names)
            raise NetspecError(f"net '{self.name}' has no layer '{layer_name}'{near}")
        return self.layer_names.index(layer_name)

    def _known(self, names):
        """The names, checked to be blobs of this net."""
        for name in names:
            if name not in self.blobs:
                raise NetspecError(f"net '{self.name}' has no blob '{name}'{did_you_mean(name, self.blobs)}")
        return list(names)

    def run_step(self, step, forward=True):
        """One layer's forward (or backward, where it needs one): for per-layer timing."""
        self._run((step,), forward)

    def _run(self, steps, forward):
        xp = self.xp
        step = None
        try:
            for group in _grouped(steps):
                step = group[0]
                if forward:
                    if len(group) > 1:
                        step.layer.forward_fused(xp, step.bottoms, step.tops, [s.layer for s in group[1:]])
                    elif not step.feeds_only:
                        step.layer.forward(xp, step.bottoms, step.tops)
                    continue
                if len(group) > 1 and all(s.needs_backward and s.propagate_down[0] for s in group):
                    head = group[-1]                # backward meets them in reverse
                    head.layer.backward_fused(xp, head.tops, head.propagate_down, head.bottoms,
                                              [s.layer for s in group[-2::-1]])
                else:
                    for step in group:
                        if step.needs_backward:
                            step.layer.backward(xp, step.tops, step.propagate_down, step.bottoms)
                for step in group:
                    if step.needs_backward:
                        for hook in self.after_backward:
                            hook(step)
        except LayerError as e:
            raise self._error(step.node, f"{'forward' if forward else 'backward'}: {e.message}", e.hint) from None
        except NetspecError as e:       # a data layer's reader: place it at the layer's line
            if e.file is not None or step is None:
                raise
            raise self._error(step.node, e.message, e.hint) from None

    def _feed(self, feeds):
        if not feeds:
            return
        unknown = [k for k in feeds if k not in self.feedable]
        if unknown:
            raise NetspecError(f"'{unknown[0]}' is not an input of net '{self.name}'"
                               f"{did_you_mean(unknown[0], self.feedable)}",
                               file=self.source.path, hint="inputs: " + ", ".join(self.feedable))
        arrays = {k: self.xp.asarray(_numeric(self, k, v), dtype=self.dtype) for k, v in feeds.items()}
        changed = {k: a.shape for k, a in arrays.items() if self.blobs[k].shape != a.shape}
        if changed:
            self.reshape(**changed)
        for k, a in arrays.items():
            self.blobs[k].data[...] = a
        if not set(arrays) <= self._fed:
            self._fed |= set(arrays)
            self._mark_fed()

    def reshape(self, **input_shapes):
        """Re-run the shape pass for new input shapes and re-allocate the blobs that change.
        forward() calls this itself when an input's shape differs."""
        inputs = {name: self.blobs[name].shape for name in self.feedable}
        inputs.update({k: tuple(int(d) for d in v) for k, v in input_shapes.items()})
        shapes = self._infer(inputs)
        for node, layer in zip(self.nodes, self.layers):
            wanted = [tuple(blob.shape) for blob in layer.param_blobs([shapes[b] for b in node.bottoms])]
            have = [b.shape for b in layer.blobs]
            if wanted != have:
                given = ", ".join(f"{k} {v}" for k, v in input_shapes.items())
                raise self._error(node, f"with input {given} its parameters would need shapes {wanted}, "
                                        f"but they are {have}", hint="feed inputs of the size the net was made for")
        self.shapes = shapes
        self._allocate()
        self._share_memory()

    def clear_param_diffs(self):
        for layer in self.layers:
            for blob in layer.blobs:
                blob.diff.fill(0)

    def first_nonfinite(self):
        """(layer name, top name) of the first layer whose output holds NaN or inf, else None.

        The net runs forward again layer by layer, each top checked as it is made (after a
        whole pass an in-place layer would hide whose output it was); data layers are not
        re-run, so no batch is consumed."""
        xp = self.xp
        for step in self.steps:
            if step.node.bottoms:
                self._run((step,), forward=True)
            for name, blob in zip(step.node.tops, step.tops):
                if not bool(xp.isfinite(blob.data).all()):
                    return step.name, name
        return None

    # -- parameters --------------------------------------------------------------------------
    @property
    def params(self):
        """{layer name: [parameter Blob, ...]} for layers that have parameters (as pycaffe)."""
        return {layer.name: layer.blobs for layer in self.layers if layer.blobs}

    def layer(self, name):
        return self.layers[self._index(name)]

    def share_with(self, other):
        """Use `other`'s parameter Blobs in the layers of the same name (Caffe's ShareTrainedLayersWith):
        a TEST net sees each update of its TRAIN net."""
        by_name = {layer.name: layer for layer in other.layers}
        for node, layer in zip(self.nodes, self.layers):
            source = by_name.get(layer.name)
            if source is None or not layer.blobs:
                continue
            if len(source.blobs) != len(layer.blobs):
                raise self._error(node, f"has {len(layer.blobs)} parameter blobs but the net it shares with "
                                        f"has {len(source.blobs)}")
            for j, (mine, theirs) in enumerate(zip(layer.blobs, source.blobs)):
                if mine.shape != theirs.shape:
                    raise self._error(node, f"parameter {j} has shape {mine.shape} here but {theirs.shape} "
                                            "in the net it shares with")
            layer.blobs = list(source.blobs)

    def copy_from(self, path, legacy_reshape=False):
        """Load weights by layer name from a .caffemodel (Caffe's CopyTrainedLayersFrom):
        layers the file lacks keep their values, layers only the file has are ignored. A layer
        whose blobs do not fit is an error, raised before any blob changes. Returns the plan's
        rows: (layer, status, detail) for every layer, as `netspec train --weights` shows them.
        legacy_reshape: take blobs whose element count fits but whose shape is a legacy form."""
        plan = self.weights_plan(read_weights(path, required=bool(self.params)), legacy_reshape)
        if plan.refused:
            node, message = plan.refused[0]
            raise self._error(node, f"the weights file does not fit this layer: {message}",
                              hint=f"check num_output and kernel sizes against {path}")
        plan.apply(self)
        return plan.rows

    def weights_plan(self, found, legacy_reshape=False):
        """What copying {layer name: [BlobProto]} into this net by layer name would do."""
        plan = WeightsPlan()
        for node, layer in zip(self.nodes, self.layers):
            if not layer.blobs:
                continue
            protos = found.get(layer.name)
            if protos is None:
                plan.rows.append((layer.name, "new", "not in the weights file: keeps its filler values"))
                continue
            if len(protos) != len(layer.blobs):
                plan.refuse(node, f"{len(protos)} blobs in the file, {len(layer.blobs)} in the net")
                continue
            problems, arrays, reshaped = [], [], False
            for j, (blob, bp) in enumerate(zip(layer.blobs, protos)):
                if shapes_match(blob.shape, bp):
                    arrays.append(proto_to_array(bp, blob.shape))
                elif legacy_reshape and int(np.prod(proto_shape(bp))) == blob.count:
                    arrays.append(proto_to_array(bp, proto_shape(bp)).reshape(blob.shape))
                    reshaped = True
                else:
                    problems.append(f"blob {j}: file {proto_shape(bp)} vs net {blob.shape}")
            if problems:
                plan.refuse(node, "; ".join(problems))
                continue
            plan.copies += list(zip(layer.blobs, arrays))
            shapes = ", ".join(format_shape(b.shape) for b in layer.blobs)
            plan.rows.append((layer.name, "copied", shapes + (" (reshaped from the legacy shape)" if reshaped else "")))
        plan.rows += [(name, "skipped", "in the weights file, not in the net")
                      for name, protos in found.items() if name not in self.layer_names and protos]
        return plan

    def to_proto(self, write_diff=False):
        """A NetParameter with every layer and its blobs, as Caffe's Net::ToProto writes it."""
        param = caffe_pb2.NetParameter(name=self.name)
        for node, layer in zip(self.nodes, self.layers):
            lp = param.layer.add()
            lp.CopyFrom(node.lp)
            if not lp.HasField("phase"):
                lp.phase = self.phase
            del lp.blobs[:]
            for blob in layer.blobs:
                array_to_proto(to_numpy(blob.data), to_numpy(blob.diff) if write_diff else None, lp.blobs.add())
        return param

    def close(self):
        """Stop the layers that hold resources (data readers and their read-ahead threads)."""
        for layer in self.layers:
            if hasattr(layer, "close"):
                layer.close()

    def save(self, path, write_diff=False):
        """Write the weights as a binary .caffemodel (atomically)."""
        atomic_write(path, self.to_proto(write_diff).SerializeToString())

    def save_hdf5(self, path, write_diff=False):
        """Write the weights as a .caffemodel.h5, laid out as Caffe's Net::ToHDF5 (atomically)."""
        from .io import hdf5
        seen, layers = set(), []
        for layer in self.layers:
            blobs = []
            for blob in layer.blobs:        # a shared Blob is written by its first (owning) layer only
                blobs.append((to_numpy(blob.data), to_numpy(blob.diff), id(blob) not in seen))
                seen.add(id(blob))
            layers.append((layer.name, blobs))
        hdf5.write_net(path, layers, write_diff)

    def load_hdf5(self, path):
        """Load weights from a .caffemodel.h5 (copy_from takes either format by the suffix)."""
        self.copy_from(path)

    def __repr__(self):
        phase = caffe_pb2.Phase.Name(self.phase)
        return f"Net('{self.name}', {len(self.layers)} layers, phase={phase}, backend={self.backend})"


def _numeric(net, name, value):
    """A fed value as a number array: None, strings and objects are refused by name, where
    NumPy would turn None into NaN and fail deep inside on the others."""
    if value is None:
        raise NetspecError(f"forward({name}=None): '{name}' needs an array of numbers",
                           file=net.source.path, hint=f"pass a NumPy array for '{name}', or leave it out")
    try:
        array = value if hasattr(value, "__cuda_array_interface__") else np.asarray(value)
    except (ValueError, TypeError) as e:        # ragged lists
        raise NetspecError(f"'{name}' is not an array of numbers: {e}", file=net.source.path,
                           hint="pass a NumPy array of one shape") from None
    if getattr(array, "dtype", None) is not None and array.dtype.kind not in "biuf":
        raise NetspecError(f"'{name}' holds {array.dtype} values ({array.dtype.kind!r} kind); the net takes numbers",
                           file=net.source.path, hint=f"convert it first, e.g. np.asarray({name}, np.float32)")
    return array
