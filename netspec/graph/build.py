"""From a NetParameter to the graph the shape pass and the executor walk.

Caffe's order of work, kept here: select the layers the net state admits (NetStateRule:
phase, level, stages), give every top its loss weight, insert a Split layer for every blob
read by more than one layer (named as Caffe's insert_splits.cpp names them), and check the
wiring (bottoms nobody produced, tops produced twice, cycles, blob counts). Problems are
collected as Issues, all of them, and the graph is built as far as it can be, so the shape
pass can go on and report everything together; Graph.check() raises the first one.
"""
from collections import Counter

from .. import caffe_pb2
from ..errors import LayerError, NetspecError
from ..findings import Findings, Issue, by_name, node_issue
from ..io import NetSource, net_source, read_net
from ..layers import LAYERS, layer_class
from ..layers.registry import blame_unknown_type
from ..utils import closest
from .backward import mark_backward
from .state import exclusion, net_state, unused_stages

class Node:
    """One layer of the graph in execution order (an implicit Split is a node too)."""

    def __init__(self, index, lp, layer, bottoms, tops, line=None, loss_weights=None, *, split=False, cls=None):
        self.index = index
        self.lp = lp                        # caffe_pb2.LayerParameter
        self.layer = layer                  # the Layer instance, or None when it could not be made
        self.bottoms = bottoms
        self.tops = tops
        self.line = line
        self.loss_weights = loss_weights if loss_weights is not None else []   # one float per top
        self.needs_backward = False
        self.propagate_down = []            # one bool per bottom: it gets a diff
        self.param_propagate_down = []      # one bool per parameter blob
        self.reaches_loss = False           # its output reaches a nonzero loss weight
        self.split = split                  # inserted by the graph, not written in the file
        self.anonymous = []                 # tops Caffe makes for a loss layer given none
        self.cls = cls                      # the layer type's class, None when the type is unknown
        self.miscounted = False             # wrong number of bottoms or tops: reported, never shaped or run

    @property
    def name(self):
        return self.lp.name

    @property
    def type(self):
        return self.lp.type

    def in_place(self, j):
        """Top j overwrites bottom j (Caffe's only in-place form: same name, same index)."""
        return j < len(self.bottoms) and j < len(self.tops) and self.tops[j] == self.bottoms[j]


class Graph(Findings):
    """The nodes in execution order, what the net state left out, and the wiring's findings."""

    def __init__(self, notices, *, phase, stages, level, path, name, force_backward):
        self.nodes = []
        self.excluded = []                  # (layer name, reason) for layers the net state leaves out
        self.inputs = []                    # blobs the caller feeds (tops of Input layers)
        self.outputs = []                   # blobs nobody reads after they are made
        self.errors = []                    # Issues
        self.warnings = []
        self.notices = notices              # what the reader upgraded or read from a dialect
        self.stage_warning = None           # an Issue: stages asked for that no rule of the net names
        self.phase = phase
        self.stages = stages
        self.level = level
        self.path = path
        self.name = name
        self.force_backward = force_backward

    def node(self, name):
        return by_name(self.nodes, name)

    def consumers(self):
        """blob name -> nodes that read it."""
        readers = {}
        for n in self.nodes:
            for b in n.bottoms:
                readers.setdefault(b, []).append(n)
        return readers

    @property
    def has_loss(self):
        return any(w for n in self.nodes for w in n.loss_weights)


# -- building -------------------------------------------------------------------------------

def build_graph(source, phase=None, stages=(), level=None, insert_splits=True, inputs=None):
    """The checked graph of a net in a state.

    source: a NetSource, a NetParameter, or a path. phase: caffe_pb2.TRAIN/TEST or 'TRAIN'/'TEST';
    phase and level left as None take the file's `state` (TEST and 0 when it has none).
    inputs: {blob: shape} fed from outside; a blob read but made by no layer becomes a top of an
    Input layer named 'input' at the front, as Caffe's legacy `input:` fields do.
    """
    source = load_source(source)
    param, path, lines, notices = _unpack(source)
    dropped = {w.layer: w for w in source.warnings if hasattr(w, "field_name")}   # io.unknown_fields
    inputs = inputs or {}
    state = net_state(param, phase, stages, level)
    graph = Graph(notices, phase=state.phase, stages=tuple(state.stage),
                  level=state.level, path=path, name=param.name,
                  force_backward=param.force_backward)
    graph.stage_warning = unused_stages(param, stages, path)
    if graph.stage_warning:
        graph.warnings.append(graph.stage_warning)
    nodes = []
    for lp, line in _declared_layers(param, lines):
        if lp.include and lp.exclude:
            graph.errors.append(Issue("a layer may have include rules or exclude rules, not both",
                                      lp.name, lp.type, line, path,
                                      "keep one kind of rule: Caffe refuses this layer"))
            continue
        reason = exclusion(lp, state)
        if reason:
            graph.excluded.append((lp.name, reason))
            continue
        nodes.append(_make_node(graph, len(nodes), lp, line, inputs))
        if lp.name in dropped:          # a parameter block set aside: this layer cannot be checked
            graph.errors.append(node_issue(graph, nodes[-1], dropped[lp.name].message, dropped[lp.name].hint))
            nodes[-1].layer = None
    fed = _fed_input_layer(nodes, inputs)
    if fed is not None:
        nodes.insert(0, _make_node(graph, 0, fed, None))
        for i, n in enumerate(nodes):
            n.index = i
    _check_names(graph, nodes)
    _check_bottoms(graph, nodes)
    if insert_splits:
        nodes = _insert_splits(graph, nodes)
    graph.nodes = nodes
    _check_tops(graph)
    mark_backward(graph)
    graph.inputs = [t for n in nodes if n.cls is not None and n.cls.is_input for t in n.tops]
    graph.outputs = _outputs(nodes)
    return graph


def load_source(source, label=None):
    """A NetSource from a path, a NetSource, or a NetParameter (`label` names it in messages)."""
    if isinstance(source, NetSource):
        return source
    if isinstance(source, caffe_pb2.NetParameter):
        return net_source(source, label)
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        try:
            return read_net(source)
        except NetspecError as e:
            raise blame_unknown_type(e) from None
    raise TypeError(f"expected a NetSource, NetParameter or path, not {type(source).__name__}")


def _unpack(source):
    source = load_source(source)
    return source.param, source.path, list(source.lines), [str(w) for w in source.warnings]


def _declared_layers(param, lines):
    """(LayerParameter, line) in file order."""
    for i, lp in enumerate(param.layer):
        yield lp, lines[i] if i < len(lines) else None


def _shaped_by_caller(lp, inputs):
    """An Input layer written without shapes (legal in Caffe: the caller shapes its blobs) takes
    the given ones."""
    if len(lp.input_param.shape) or not all(t in inputs for t in lp.top):
        return lp
    shaped = caffe_pb2.LayerParameter()
    shaped.CopyFrom(lp)
    for t in lp.top:
        shaped.input_param.shape.add(dim=[int(d) for d in inputs[t]])
    return shaped


def _fed_input_layer(nodes, inputs):
    """An Input layer for the given blobs that layers read but no layer makes, or None."""
    made = {t for n in nodes for t in n.tops}
    read = {b for n in nodes for b in n.bottoms}
    fed = [name for name in inputs if name in read and name not in made]
    if not fed:
        return None
    names = {n.name for n in nodes}
    lp = caffe_pb2.LayerParameter(name="input" if "input" not in names else "input_fed", type="Input", top=fed)
    for name in fed:
        lp.input_param.shape.add(dim=[int(d) for d in inputs[name]])
    return lp


def _make_node(graph, index, lp, line, inputs=None):
    cls = LAYERS.get(lp.type)
    if cls is not None and cls.is_input and inputs:
        lp = _shaped_by_caller(lp, inputs)
    node = Node(index, lp, None, list(lp.bottom), list(lp.top), line, cls=cls)
    issue = lambda msg, hint=None: node_issue(graph, node, msg, hint)  # noqa: E731
    try:
        layer_class(lp.type)                    # an unknown type names the nearest known ones
        node.layer = cls(lp, lp.phase if lp.HasField("phase") else graph.phase)
        node.layer.source_path = graph.path
    except (LayerError, NetspecError) as e:     # an unknown type, or parameters the layer refuses
        hint = e.hint
        if cls is not None and cls.is_input and lp.top:   # the caller may shape it (see _shaped_by_caller)
            flags = " ".join(f"--input {t}=N,C,H,W" for t in lp.top)
            hint = f"{hint}; or give the shape: {flags}" if hint else f"give the shape: {flags}"
        graph.errors.append(issue(e.message, hint))
    if cls is not None:
        if cls.loss and len(node.tops) < cls.tops[0]:   # Caffe's AutoTopBlobs: loss layers only
            node.anonymous = [f"{lp.name} (automatic top {j})" for j in range(len(node.tops), cls.tops[0])]
            node.tops += node.anonymous
        for what, have, (low, high) in (("bottom", node.bottoms, cls.bottoms), ("top", node.tops, cls.tops)):
            if len(have) < low or (high is not None and len(have) > high):
                graph.errors.append(issue(f"takes {_count_text(low, high, what)}, got {len(have)}",
                                          f"give it {_count_text(low, high, what)}"))
                node.miscounted = True      # its shape rule would index blobs that are not there
    if len(lp.propagate_down) not in (0, len(node.bottoms)):
        graph.errors.append(issue(f"{len(lp.propagate_down)} propagate_down values for "
                                  f"{len(node.bottoms)} bottoms", "give propagate_down once per bottom, or not at all"))
    node.loss_weights = _loss_weights(graph, node, cls)
    return node


def _count_text(low, high, what):
    if high == low:
        return f"{low} {what}{'s' if low != 1 else ''}"
    if high is None:
        return f"at least {low} {what}{'s' if low != 1 else ''}"
    return f"{low} to {high} {what}s"


def _loss_weights(graph, node, cls, given=None):
    """Caffe's rule: the file's loss_weight, one per top; else a loss layer's single default
    of 1, which fits a loss layer of one top only (Caffe refuses it for more)."""
    given = list(node.lp.loss_weight) if given is None else given
    if not given and cls is not None and cls.loss:
        given = [1.0]
        if len(node.tops) > 1:
            graph.errors.append(node_issue(
                graph, node, f"a loss layer with {len(node.tops)} tops needs its loss_weight given once per top: "
                "Caffe's default is one weight, for top 0 alone",
                "write loss_weight: 1 then loss_weight: 0 for each other top"))
    elif given and len(given) != len(node.tops):
        graph.errors.append(node_issue(graph, node, f"{len(given)} loss_weight values for {len(node.tops)} tops",
                                       "give loss_weight once per top, or not at all"))
    return (given + [0.0] * len(node.tops))[:len(node.tops)]


def _check_names(graph, nodes):
    seen = {}
    for n in nodes:
        first = seen.setdefault(n.name, n)
        if first is not n:
            where = f" (line {first.line})" if first.line else ""
            graph.warnings.append(node_issue(graph, n, f"the layer name '{n.name}' is used before{where}",
                                             "weights are matched by layer name: rename one"))


def _check_bottoms(graph, nodes):
    """Every bottom must be made by an earlier layer; say what was meant, or why not."""
    made, producer_of = set(), {}
    for n in nodes:
        for t in n.tops:
            if t not in n.anonymous:
                producer_of.setdefault(t, n)
    for n in nodes:
        for j, b in enumerate(n.bottoms):
            if b not in made:
                graph.errors.append(_missing_bottom(graph, n, j, b, made, producer_of))
        made.update(t for t in n.tops if t not in n.anonymous)   # Caffe lets no layer read those


def _missing_bottom(graph, node, j, blob, made, producer_of):
    later = producer_of.get(blob)
    issue = lambda msg, hint: node_issue(graph, node, msg, hint)  # noqa: E731
    if later is None:
        near = closest(blob, made)
        if near:
            return issue(f"bottom '{blob}' (bottom {j}) is produced by no layer before it",
                         "did you mean " + " or ".join(f"'{c}'" for c in near) + "?")
        return issue(f"bottom '{blob}' (bottom {j}) is produced by no layer before it",
                     f"add a layer with this top before it, or give its shape: --input {blob}=N,C,H,W")
    path = _dependency_path(later, node, producer_of)
    if path:
        loop = " -> ".join([node.name] + [p.name for p in path])
        return issue(f"cycle: bottom '{blob}' comes from '{later.name}', which depends on this layer ({loop})",
                     "a net is a directed acyclic graph: break the loop")
    where = f" (line {later.line})" if later.line else ""
    return issue(f"bottom '{blob}' is produced only later, by '{later.name}'{where}",
                 f"layers run in file order: move '{later.name}' above '{node.name}'")


def _dependency_path(start, target, producer_of):
    """Layers from `start` back through its bottoms' producers to `target`, or None."""
    stack, seen = [(start, [start])], set()
    while stack:
        n, path = stack.pop()
        if n is target:
            return path
        if id(n) in seen:
            continue
        seen.add(id(n))
        for b in n.bottoms:
            p = producer_of.get(b)
            if p is not None and p is not n:
                stack.append((p, path + [p]))
    return None


def split_layer_name(layer_name, blob, top_index):
    return f"{blob}_{layer_name}_{top_index}_split"


def split_blob_name(layer_name, blob, top_index, split_index):
    return f"{blob}_{layer_name}_{top_index}_split_{split_index}"


def _insert_splits(graph, nodes):
    """Caffe's InsertSplits: a blob read more than once (a nonzero explicit loss_weight counts
    as a reader) is fanned out by a Split layer right after the layer that made it."""
    last_top, source_of, readers = {}, {}, Counter()
    for n in nodes:
        for j, b in enumerate(n.bottoms):
            if b in last_top:
                source_of[(n.index, j)] = last_top[b]
                readers[last_top[b]] += 1
        for j, t in enumerate(n.tops):
            last_top[t] = (n.index, j)
        for j, w in enumerate(n.lp.loss_weight[:len(n.tops)]):
            if w:
                readers[last_top[n.tops[j]]] += 1
    by_index = {n.index: n for n in nodes}
    next_split = {}
    out = []
    for n in nodes:
        for j, b in enumerate(n.bottoms):
            src = source_of.get((n.index, j))
            if src is not None and readers[src] > 1:
                k = next_split.get(src, 0)
                next_split[src] = k + 1
                n.bottoms[j] = split_blob_name(by_index[src[0]].name, b, src[1], k)
        out.append(n)
        moved = False
        for j, t in enumerate(n.tops):
            count = readers[(n.index, j)]
            if count > 1:
                weight = n.lp.loss_weight[j] if j < len(n.lp.loss_weight) else 0.0
                out.append(_split_node(graph, n, j, t, count, weight))
                if weight:                      # the Split's top 0 carries it now
                    moved = True
                    next_split[(n.index, j)] = 1
        if moved:
            _drop_loss_weights(graph, n)
    for i, n in enumerate(out):
        n.index = i
    return out


def _drop_loss_weights(graph, node):
    """Caffe clears all of the layer's loss weights once a Split took one: its defaults apply
    again, so a loss layer's own top weighs 1 besides the Split's (Caffe reports the sum)."""
    node.loss_weights = _loss_weights(graph, node, type(node.layer) if node.layer else None, given=[])
    if any(node.loss_weights):
        graph.warnings.append(node_issue(
            graph, node, "its top is read by other layers, so Caffe moves its loss_weight to a Split and gives "
            "this layer its default weight of 1 as well: the loss is counted twice",
            "end the loss's top in no other layer, or drop its loss_weight"))


def _split_node(graph, producer, j, blob, count, loss_weight):
    tops = [split_blob_name(producer.name, blob, j, k) for k in range(count)]
    lp = caffe_pb2.LayerParameter(name=split_layer_name(producer.name, blob, j), type="Split",
                                  bottom=[blob], top=tops)
    node = Node(-1, lp, None, [blob], tops, producer.line, [0.0] * count, split=True, cls=LAYERS["Split"])
    node.loss_weights[0] = loss_weight
    try:
        node.layer = layer_class("Split")(lp, graph.phase)
    except LayerError as e:
        graph.errors.append(node_issue(graph, node, e.message, e.hint))
    return node


def _check_tops(graph):
    """A top name is made once, except by a layer that writes it in place (top j == bottom j)."""
    made_by = {}
    for n in graph.nodes:
        for j, t in enumerate(n.tops):
            if n.in_place(j):
                continue
            first = made_by.get(t)
            if first is not None:
                where = f" (line {first.line})" if first.line else ""
                hint = "give this top its own name"
                if t in n.lp.bottom:
                    hint = (f"'{t}' is read by other layers too, so it was split and cannot be "
                            "overwritten in place here: give this top its own name")
                graph.errors.append(node_issue(graph, n, f"top '{t}' is already produced by '{first.name}'{where}",
                                               hint))
            else:
                made_by[t] = n


def _outputs(nodes):
    """Blobs whose last version nobody reads: Caffe's net outputs, in its order (by name);
    the anonymous tops of loss layers are not among them."""
    available = set()
    for n in nodes:
        available.difference_update(n.bottoms)
        available.update(n.tops)
    return sorted(available.difference(t for n in nodes for t in n.anonymous))

