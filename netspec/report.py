"""`netspec check` as objects: the report of a net's shapes, costs and problems.

check() runs the graph builder and the shape pass; Report holds the answer in the terms a
reader wants (per-layer rows, totals, parameters and MACs grouped by layer type, layers left
out, errors and warnings apart), prints it as a table, and gives it as one JSON document
whose schema is documented in docs/check-json.md.
"""
from math import prod

from .blocks import blocks, units
from .errors import NetspecError
from .graph import build_graph, phase_name
from .shapes import infer_shapes
from .utils import format_shape

SCHEMA = "netspec-check/1"
BYTES_PER_PARAM = 4                 # float32
# The table's columns: header, right-aligned; --columns picks and orders them.
COLUMNS = {"name": ("layer", False), "type": ("type", False), "output": ("output", False),
           "params": ("params", True), "trainable": ("trainable", True), "param_memory": ("param memory", True),
           "macs": ("MACs", True), "memory": ("memory", True), "receptive_field": ("receptive field", False)}
DEFAULT_COLUMNS = ("name", "type", "output", "params", "macs", "memory", "receptive_field")


class Report:
    def __init__(self, *, path, phase, stages, level, layers, excluded, inputs, outputs, found_errors,
                 found_warnings, notices, strict, totals, by_type):
        self.path = path
        self.phase = phase
        self.stages = stages
        self.level = level
        self.layers = layers                # shapes.LayerResult, in execution order (implicit Splits too)
        self.excluded = excluded            # (layer name, reason)
        self.inputs = inputs                # blob -> shape of every source top (data and Input layers)
        self.outputs = outputs              # blobs nobody reads
        self.found_errors = found_errors    # Issues
        self.found_warnings = found_warnings
        self.notices = notices              # what the reader upgraded (legacy forms, dialects)
        self.strict = strict
        self.totals = totals
        self.by_type = by_type

    # -- verdict ----------------------------------------------------------------------------
    @property
    def errors(self):
        """Errors; under strict, the warnings too."""
        return self.found_errors + (self.found_warnings if self.strict else [])

    @property
    def warnings(self):
        return [] if self.strict else self.found_warnings

    @property
    def ok(self):
        return not self.errors

    @property
    def exit_code(self):
        return 0 if self.ok else 1

    def layer(self, name):
        for r in self.layers:
            if r.name == name:
                return r
        raise KeyError(name)

    def shape(self, blob):
        """The shape of a blob (after its last writer), or None when unknown."""
        shape = None
        for r in self.layers:
            for t, s in zip(r.node.tops, r.top_shapes):
                if t == blob:
                    shape = s
        return shape

    # -- JSON -------------------------------------------------------------------------------
    def to_dict(self):
        return {
            "schema": SCHEMA,
            "file": self.path,
            "state": {"phase": phase_name(self.phase), "stages": list(self.stages), "level": self.level},
            "ok": self.ok,
            "inputs": {k: _shape_list(v) for k, v in self.inputs.items()},
            "outputs": list(self.outputs),
            "layers": [_layer_dict(r) for r in self.layers],
            "totals": dict(self.totals),
            "by_type": [dict(row) for row in self.by_type],
            "blocks": [_block_dict(b) for b in self.blocks()],
            "excluded": [{"name": n, "reason": why} for n, why in self.excluded],
            "errors": [e.to_dict() for e in self.errors],
            "warnings": [w.to_dict() for w in self.warnings],
            "notices": list(self.notices),
        }

    def to_json(self, indent=2):
        import json     # here: the table needs none of it
        return json.dumps(self.to_dict(), indent=indent)

    # -- text -------------------------------------------------------------------------------
    def blocks(self):
        """The net's blocks (blocks.Block): runs of layers between single-blob cut points."""
        return blocks(units(self.layers))

    def format(self, explain=False, depth=None, columns=DEFAULT_COLUMNS):
        """The report as text for a terminal. depth 1: a row per block; 2: blocks and their layers."""
        return "\n".join(_text(self, explain, depth, columns)) + "\n"

    __str__ = format


def check(path_or_param, inputs=None, phase="TEST", stages=(), level=0, strict=False):
    """Check a net: a path, a NetSource, a NetParameter, or a NetSpec (anything with to_proto()).

    inputs: {blob: shape} for data or Input layers' tops. phase: 'TRAIN'/'TEST' or
    caffe_pb2.TRAIN/TEST; None (and level None) take the file's own `state`.
    Raises NetspecError when the net cannot be read or an argument is wrong.
    """
    source = path_or_param.to_proto() if hasattr(path_or_param, "to_proto") else path_or_param
    graph = build_graph(source, phase=phase, stages=tuple(stages), level=level, inputs=inputs)
    result = infer_shapes(graph, inputs)
    totals = {"layers": sum(not r.node.split for r in result.layers), **result.stats}
    if "params" in totals:
        totals["trainable_params"] = sum(trainable(r) for r in result.layers)
        totals["non_trainable_params"] = totals["params"] - totals["trainable_params"]
        totals["param_memory"] = BYTES_PER_PARAM * totals["params"]
    return Report(
        path=graph.path, phase=graph.phase, stages=graph.stages, level=graph.level,
        layers=result.layers, excluded=list(graph.excluded),
        inputs={t: s for r in result.layers if not r.node.bottoms for t, s in zip(r.node.tops, r.top_shapes)},
        outputs=list(graph.outputs), found_errors=result.errors, found_warnings=result.warnings,
        notices=list(graph.notices), strict=strict, totals=totals, by_type=_by_type(result.layers, totals))


def _by_type(layers, totals):
    groups = {}
    for r in layers:
        if r.node.split:
            continue
        g = groups.setdefault(r.type, {"type": r.type, "layers": 0, "params": 0, "macs": 0, "memory": 0})
        g["layers"] += 1
        g["params"] += r.param_count or 0
        g["macs"] += r.macs
        g["memory"] += r.memory
    rows = sorted(groups.values(), key=lambda g: (-g["params"], -g["macs"], g["type"]))
    for g in rows:
        g["params_percent"] = _percent(g["params"], totals.get("params", 0))
        g["macs_percent"] = _percent(g["macs"], totals.get("macs", 0))
    return rows


def trainable(r):
    """Parameters of a layer the solver updates: not a blob the layer keeps fixed (BatchNorm's
    statistics) nor one with lr_mult 0; a shared blob counts at its first owner. 0 while a
    blob's shape is not known (the layer's count is None then)."""
    if r.param_count is None:
        return 0
    layer, specs = r.node.layer, r.node.lp.param
    shared = {j for j, _, _ in r.shared}
    fixed = getattr(layer, "learnable", None) or ()
    return sum(prod(s) for j, s in enumerate(r.param_shapes)
               if j not in shared and (j >= len(fixed) or fixed[j])
               and not (j < len(specs) and specs[j].HasField("lr_mult") and specs[j].lr_mult == 0))


def _block_dict(b):
    last = b.units[-1].head
    return {"name": b.name, "layers": [r.name for r in b.layers],
            "output": {t: _shape_list(s) for t, s in zip(last.node.tops, last.top_shapes)},
            "params": sum(r.param_count or 0 for r in b.layers), "trainable": sum(trainable(r) for r in b.layers),
            "macs": sum(r.macs for r in b.layers), "memory": sum(r.memory for r in b.layers)}


def _percent(part, whole):
    return round(100.0 * part / whole, 1) if whole else 0.0


def _shape_list(shape):
    return None if shape is None else list(shape)


def _layer_dict(r):
    return {
        "name": r.name,
        "type": r.type,
        "line": r.node.line,
        "implicit": r.node.split,
        "bottoms": list(r.node.bottoms),
        "tops": {t: _shape_list(s) for t, s in zip(r.node.tops, r.top_shapes)},
        "in_place": [t for j, t in enumerate(r.node.tops) if r.node.in_place(j)],
        "params": {"count": r.param_count, "trainable": None if r.param_count is None else trainable(r), "shapes": [list(s) for s in r.param_shapes],
                   "shared": [{"index": j, "name": name, "owner": owner} for j, name, owner in r.shared]},
        "macs": r.macs if r.counted else None,
        "memory": r.memory if r.counted else None,
        "receptive_field": {t: (f.to_dict() if f else None) for t, f in r.receptive_fields.items()},
        "loss_weights": list(r.node.loss_weights),
        "notes": list(r.notes),
    }


# -- the text form --------------------------------------------------------------------------------

def human(n, unit=""):
    """3.9G, 61.0M, 4.1K, 812 (powers of 1000) or, with unit 'B', bytes in KiB/MiB/GiB."""
    if unit == "B":
        for scale, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if n >= scale:
                return f"{n / scale:.1f} {suffix}"
        return f"{n} B"
    for scale, suffix in ((10 ** 9, "G"), (10 ** 6, "M"), (10 ** 3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{suffix}"
    return str(n)



def field_text(f):
    if f is None:
        return ""
    if f.whole:
        return f"whole input ({format_shape(f.size)})" if f.size else "whole input"
    stride = f.stride[0] if len(set(f.stride)) == 1 else format_shape(f.stride)
    return f"{format_shape(f.size)} /{stride}"


# A layer's figures: column -> its text for a layer's result r (on the row of its first top).
_FIGURES = {
    "params": lambda r: human(r.param_count) if r.param_count else "",
    "trainable": lambda r: human(trainable(r)) if r.param_count else "",
    "param_memory": lambda r: human(BYTES_PER_PARAM * r.param_count, "B") if r.param_count else "",
    "macs": lambda r: human(r.macs) if r.macs else "",
    "memory": lambda r: human(r.memory, "B") if r.memory else "",
}


def _cells(r, t, shape, in_place, figures):
    """The cells of one top's row: its output and receptive field, and the figures asked for."""
    cells = {c: _FIGURES[c](r) for c in figures if c in _FIGURES}
    cells["output"] = format_shape(shape) + (" (in place)" if in_place else "") if t else "-"
    cells["receptive_field"] = field_text(r.receptive_fields.get(t))
    return cells


def _rows(r, columns, indent=""):
    """Table rows of one layer: one per top, the layer's figures on the first."""
    tops = list(zip(r.node.tops, r.top_shapes)) or [("", None)]
    rows = []
    for k, (t, s) in enumerate(tops):
        cells = _cells(r, t, s, r.node.in_place(k), columns if k == 0 else ())
        if len(tops) > 1:
            cells["output"] = f"{t}: {cells['output']}"
        if k == 0:
            cells.update(name=indent + r.name, type=r.type)
        else:
            cells = {"name": "", "type": "", "output": cells["output"], "receptive_field": cells["receptive_field"]}
        rows.append([cells.get(c, "") for c in columns])
    return rows


def _block_row(b, columns):
    """One row for a block: its name, size, the output of its last layer, its sums."""
    last = b.units[-1].layers[-1]
    top = last.node.tops[0] if last.node.tops else ""
    layers = b.layers
    params, train = sum(r.param_count or 0 for r in layers), sum(trainable(r) for r in layers)
    cells = {"name": b.name, "type": f"block of {len(layers)}" if len(layers) > 1 else last.type,
             "output": format_shape(last.top_shapes[0]) if last.top_shapes else "-",
             "params": human(params) if params else "", "trainable": human(train) if params else "",
             "param_memory": human(BYTES_PER_PARAM * params, "B") if params else "",
             "macs": human(sum(r.macs for r in layers)) or "",
             "memory": human(sum(r.memory for r in layers), "B"),
             "receptive_field": field_text(last.receptive_fields.get(top))}
    cells["macs"] = "" if cells["macs"] == "0" else cells["macs"]
    cells["memory"] = "" if cells["memory"] == "0 B" else cells["memory"]
    return [cells[c] for c in columns]


def _table(report, explain, depth, columns):
    """[(rows, notes)] per table entry: a layer, or at depth 1/2 a block (and its layers)."""
    if not depth:
        return [(_rows(r, columns), r.notes) for r in report.layers if not r.node.split]
    out = []
    for b in report.blocks():
        if len(b.units) == 1:       # one layer and what it does in place: no block of its own
            out += [(_rows(r, columns), r.notes) for r in b.layers]
            continue
        out.append(([_block_row(b, columns)], []))
        if depth >= 2:
            out += [(_rows(r, columns, "  "), r.notes) for r in b.layers]
    return out


def _text(report, explain, depth=None, columns=DEFAULT_COLUMNS):
    state = f"phase {phase_name(report.phase)}"
    if report.stages:
        state += ", stages " + ", ".join(report.stages)
    if report.level:
        state += f", level {report.level}"
    yield f"{report.path or 'net'} ({state})"
    for notice in report.notices:
        yield f"note: {notice}"
    header = [COLUMNS[c][0] for c in columns]
    right = [COLUMNS[c][1] for c in columns]
    entries = _table(report, explain, depth, columns)
    widths = [max(map(len, column)) for column in zip(header, *(row for rows, _ in entries for row in rows))]
    pads = [str.rjust if r else str.ljust for r in right]
    line = lambda cells: "  ".join([pad(c, w) for pad, c, w in zip(pads, cells, widths)]).rstrip()  # noqa: E731
    yield line(header)
    yield line(["-" * w for w in widths])
    for rows, notes in entries:
        yield from map(line, rows)
        if explain:
            yield from (f"    {note}" for note in notes)
    t = report.totals
    if t:
        yield ""
        low = lambda key: ">= " if key in t.get("lower_bound", ()) else ""  # noqa: E731
        params = (f"{low('params')}{t.get('params', 0):,} params"
                  + (f" ({human(t['params'])})" if t.get("params", 0) >= 1000 else ""))
        yield (f"total: {t.get('layers', 0)} layers, {params}, "
               f"{low('macs')}{human(t.get('macs', 0))} MACs, {low('memory')}{human(t.get('memory', 0), 'B')} "
               "of activations (float32)")
        if t.get("lower_bound"):
            yield ("  (>=: layers with dimensions known only when the net runs, or with errors, are not counted)")
        if t.get("depth"):
            yield f"depth: {t['depth']} weight layers (convolutions, inner products) on the longest path"
        if t.get("params"):
            yield (f"  trainable {t['trainable_params']:,}, non-trainable {t['non_trainable_params']:,}; "
                   f"parameters take {t['param_memory'] / 1e6:.2f} MB (float32)")
        for g in report.by_type:
            if g["params"] or g["macs"]:
                yield (f"  {g['type']}: {human(g['params'])} params, {g['params_percent']}%; "
                       f"{human(g['macs'])} MACs, {g['macs_percent']}%")
    if report.outputs:
        yield f"outputs: {', '.join(report.outputs)}"
    if report.excluded:
        yield ""
        yield f"left out in this state ({len(report.excluded)}):"
        for name, why in report.excluded:
            yield f"  {name}: {why}"
    for title, issues in (("warning", report.warnings), ("error", report.errors)):
        if issues:
            yield ""
            for issue in issues:
                yield f"{title}: {issue}"
    yield ""
    n_err, n_warn = len(report.errors), len(report.warnings)
    yield "clean" if report.ok and not n_warn else f"{n_err} error(s), {n_warn} warning(s)"


def parse_input(text):
    """'data=10,3,227,227' (or 10x3x227x227) -> ('data', (10, 3, 227, 227))."""
    name, sep, dims_text = (part.strip() for part in text.partition("="))
    if not sep or not name:
        problem = "found no '='" if not sep else "found no blob name before '='"
        raise _input_error(text, problem)
    parts = [p.strip() for p in dims_text.replace("x", ",").split(",")]
    if parts == [""]:
        raise _input_error(text, f"found no dimensions after '{name}='")
    shape = []
    for p in parts:
        try:
            shape.append(int(p))
        except ValueError:
            raise _input_error(text, f"found {p!r}; expected an integer dimension" if p
                               else "found an empty dimension (two commas in a row?)") from None
        if shape[-1] <= 0:
            raise _input_error(text, f"found the dimension {shape[-1]}; expected a positive integer")
    return name, tuple(shape)


def parse_inputs(texts):
    """The --input options as {name: shape}; two shapes for one name are a mistake, not an override."""
    inputs = {}
    for text in texts:
        name, shape = parse_input(text)
        if inputs.get(name, shape) != shape:
            raise NetspecError(f"--input '{name}' given twice, as {format_shape(inputs[name])} and as {format_shape(shape)}",
                               hint="give each input blob's shape once")
        inputs[name] = shape
    return inputs


def _input_error(text, problem):
    return NetspecError(f"--input '{text}' is not NAME=N,C,H,W: {problem}",
                        hint="write e.g. --input data=10,3,227,227 (a blob name, then positive integers)")


__all__ = ["Report", "check", "parse_input", "parse_inputs", "human", "field_text", "trainable"]
