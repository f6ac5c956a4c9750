"""`netspec draw`: a net as a Graphviz picture, with every blob's shape on its edge.

Built on the report of netspec.report.check(): one node per layer (name, type, key
parameters from the layer's describe(), coloured by its family), in-place layers folded
onto the node that made their blob, an edge per blob labelled with its shape (the batch
said once, in the title), shared weights as dashed links, loss tops marked, and the shape
pass's errors in red at their layer, so a broken net still draws. With collapse, a run of
blocks of the same structure (Inception modules, ResNet bottlenecks) is one node with a count.
pydot writes the graph; Graphviz's `dot` lays it out (not needed for .dot output).
"""
import html
import os
import shutil
import textwrap

from .blocks import blocks, runs, units
from .errors import NetspecError
from .utils import atomic_write, format_shape

FORMATS = ("svg", "png", "pdf", "dot")
COLOURS = {"data": "#d9f0d3", "conv": "#c6dbef", "pool": "#fdd0a2", "norm": "#dadaeb",
           "fc": "#9ecae1", "neuron": "#fff7bc", "join": "#e5e5e5", "loss": "#fcbba1",
           "metric": "#fde0ef", "other": "#ffffff"}
RED = "#cb181d"
FONT = "Helvetica"


def family(r):
    layer = r.node.layer
    return getattr(layer, "family", "other") if layer is not None else "other"


def words(r):
    """A layer's key parameters, and its loss weight when it has one."""
    layer = r.node.layer
    out = list(layer.describe()) if layer is not None else []
    out += [f"loss weight {w:g}" for w in r.node.loss_weights if w]
    return out


def batch_of(report):
    sizes = [s[0] for s in report.inputs.values() if s]
    return sizes[0] if sizes else None


def shape_text(shape, batch):
    """C x H x W with the batch left out where it is the net's, '?' where unknown."""
    if shape is None:
        return "?"
    if batch is not None and len(shape) > 1 and shape[0] == batch:
        shape = shape[1:]
    return format_shape(shape) if shape else "scalar"


def _issues(report):
    by_layer = {}
    for kind, issues in (("error", report.errors), ("warning", report.warnings)):
        for issue in issues:
            if issue.layer is not None:
                by_layer.setdefault(issue.layer, []).append((kind, issue))
    return by_layer


def _escape(text):
    return html.escape(str(text), quote=True)


def _lines(text, width=44, most=3):
    lines = textwrap.wrap(text, width) or [""]
    return lines[:most - 1] + [lines[most - 1] + " ..."] if len(lines) > most else lines


class Drawing:
    """The pydot graph of a report; to_string() is the .dot text, render() the picture."""

    def __init__(self, report, rankdir="TB", collapse=False, title=None):
        import pydot
        self.pydot = pydot
        self.report, self.batch, self.issues = report, batch_of(report), _issues(report)
        self.graph = pydot.Dot("net", graph_type="digraph", rankdir=rankdir, nodesep="0.25", ranksep="0.35",
                               fontname=FONT, labelloc="t", fontsize="14",
                               label=_escape(title or self._title()))
        self.graph.set_node_defaults(shape="box", style="rounded,filled", fontname=FONT, fontsize="11",
                                     margin="0.12,0.05", penwidth="1")
        self.graph.set_edge_defaults(fontname=FONT, fontsize="9", color="#555555", arrowsize="0.7")
        self.node_of = {}           # id(Unit) -> graph node name
        self.ids = {}               # layer name -> graph node name (folded and collapsed ones too)
        self._count = 0
        self.edges = set()
        self._build(collapse)

    def _title(self):
        r = self.report
        name = r.path or "net"
        batch = f"batch {self.batch}, " if self.batch is not None else ""
        return f"{name}: {batch}shapes on the edges as C x H x W"

    # -- nodes ---------------------------------------------------------------------------------
    def _build(self, collapse):
        unit_list = units(self.report.layers)
        for k, run in enumerate(runs(blocks(unit_list))):
            if collapse and len(run) > 1:
                self._collapsed(run, k)
                continue
            for b in run:
                if len(b.units) > 1:
                    cluster = self.pydot.Cluster(f"block{len(self.graph.get_subgraphs())}", label=_escape(b.name),
                                                 style="rounded,dashed", color="#999999", fontsize="10",
                                                 fontname=FONT, labeljust="l")
                    self.graph.add_subgraph(cluster)
                    for u in b.units:
                        self._unit(u, cluster)
                else:
                    self._unit(b.units[0], self.graph)
        for u in unit_list:
            self._edges(u)
        self._outputs(unit_list)
        self._shared()

    def _name(self):
        self._count += 1
        return f"n{self._count}"

    def _node(self, parent, key, label, fill, problems, tooltip):
        name = self._name()
        colour = RED if any(kind == "error" for kind, _ in problems) else ("#e6550d" if problems else "#333333")
        parent.add_node(self.pydot.Node(
            name, label=f"<{label}>", fillcolor=fill, color=colour, tooltip=_escape(tooltip),
            penwidth="2.5" if problems else "1", id=_escape(f"layer-{key}")))
        return name

    def _unit(self, u, parent):
        head = u.head
        problems = [p for r in u.layers for p in self.issues.get(r.name, [])]
        rows = [f"<b>{_escape(head.name)}</b>",
                f'<font point-size="9">{_escape(" · ".join([head.type] + words(head)))}</font>']
        if u.folded:
            folded = ", ".join(" ".join([r.type] + words(r)) for r in u.folded)
            rows.append(f'<font point-size="9" color="#555555">+ {_escape(folded)}</font>')
        shared = [f"shares {name} with {owner}" for r in u.layers for _, name, owner in r.shared]
        rows += [f'<font point-size="9" color="#6a51a3">{_escape(s)}</font>' for s in shared]
        rows += self._problem_rows(problems)
        tooltip = "; ".join(f"{r.name} ({r.type}), line {r.node.line}" for r in u.layers)
        tooltip += "".join(f"; {kind}: {issue.message}" for kind, issue in problems)
        node = self._node(parent, head.name, "<br/>".join(rows), COLOURS.get(family(head), "#ffffff"),
                          problems, tooltip)
        self.node_of[id(u)] = node
        for r in u.layers:
            self.ids[r.name] = node

    def _problem_rows(self, problems):
        """Errors in words, in red; warnings only counted (their words are in the tooltip)."""
        rows = []
        for _, issue in [p for p in problems if p[0] == "error"][:2]:
            rows += [f'<font point-size="9" color="{RED}">{_escape(line)}</font>'
                     for line in _lines(f"error: {issue.message}")]
        warnings = sum(kind == "warning" for kind, _ in problems)
        if warnings:
            rows.append(f'<font point-size="9" color="#e6550d">{warnings} warning(s)</font>')
        return rows

    def _collapsed(self, run, k):
        first, last = run[0], run[-1]
        counts = {}
        for u in first.units:
            counts[u.head.type] = counts.get(u.head.type, 0) + 1
        inplace = {}
        for u in first.units:
            for r in u.folded:
                inplace[r.type] = inplace.get(r.type, 0) + 1
        body = ", ".join(f"{n} {t}" for t, n in counts.items())
        params = sum(r.param_count for b in run for r in b.layers)
        rows = [f"<b>{_escape(first.name)} … {_escape(last.name)}</b>",
                f'<font point-size="10">× {len(run)} blocks of the same structure</font>',
                f'<font point-size="9">{_escape(body)}</font>']
        if inplace:
            rows.append(f'<font point-size="9" color="#555555">+ in place: '
                        f'{_escape(", ".join(f"{n} {t}" for t, n in inplace.items()))}</font>')
        if params:
            rows.append(f'<font point-size="9">{params:,} params</font>')
        problems = [p for b in run for r in b.layers for p in self.issues.get(r.name, [])]
        rows += self._problem_rows(problems)
        node = self._node(self.graph, first.name, "<br/>".join(rows), COLOURS["join"], problems,
                          ", ".join(b.name for b in run))
        self.graph.get_node(node)[0].set("peripheries", "2")
        for b in run:
            for u in b.units:
                self.node_of[id(u)] = node
                for r in u.layers:
                    self.ids[r.name] = node

    # -- edges ---------------------------------------------------------------------------------
    def _edge(self, src, dst, blob, shape, **attrs):
        label = shape_text(shape, self.batch)
        style = {"fontcolor": RED, "color": RED} if shape is None else {}
        self.graph.add_edge(self.pydot.Edge(src, dst, label=_escape(" " + label), tooltip=_escape(blob),
                                            **style, **attrs))

    def _edges(self, u):
        dst = self.node_of[id(u)]
        for blob, src, shape in u.inputs:
            if src is None:
                continue
            node = self.node_of[id(src)]
            if node != dst and (node, dst, blob) not in self.edges:   # inside a collapsed run: none
                self.edges.add((node, dst, blob))
                self._edge(node, dst, blob, shape)

    def _outputs(self, unit_list):
        """The blobs nobody reads: a small node each, a loss top marked as such."""
        outputs = set(self.report.outputs)
        for u in unit_list:
            last = {}               # top -> (shape, loss weight) after the unit's last writer
            for r in u.layers:
                for j, t in enumerate(r.node.tops):
                    weights = r.node.loss_weights
                    last[t] = (r.top_shapes[j], weights[j] if j < len(weights) else 0)
            for t, (shape, weight) in last.items():
                if t not in outputs:
                    continue
                name = self._name()
                label = f"<b>{_escape(t)}</b>" + (f'<br/><font point-size="9">loss × {weight:g}</font>' if weight else "")
                self.graph.add_node(self.pydot.Node(
                    name, label=f"<{label}>", shape="ellipse", style="filled",
                    fillcolor=COLOURS["loss"] if weight else "#ffffff", peripheries="2" if weight else "1"))
                self._edge(self.node_of[id(u)], name, t, shape)

    def _shared(self):
        drawn = set()
        for r in self.report.layers:
            for _, name, owner in r.shared:
                a, b = self.ids.get(owner), self.ids.get(r.name)
                if a and b and a != b and (a, b) not in drawn:
                    drawn.add((a, b))
                    self.graph.add_edge(self.pydot.Edge(
                        a, b, style="dashed", color="#6a51a3", dir="none", constraint="false",
                        label=_escape(f" shares {name}"), fontcolor="#6a51a3"))

    # -- output --------------------------------------------------------------------------------
    def to_string(self):
        return self.graph.to_string()

    def render(self, fmt):
        """The picture as bytes in fmt (svg, png, pdf); needs Graphviz's dot."""
        if fmt == "dot":
            return self.to_string().encode()
        if not shutil.which("dot"):
            raise NetspecError(
                "Graphviz's `dot` program is not installed; it lays out the drawing",
                hint="install it (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz), "
                     "or write a .dot file, which needs no program")
        return self.graph.create(prog="dot", format=fmt)


def drawing(report, **options):
    try:
        import pydot  # noqa: F401
    except ImportError:
        raise NetspecError("drawing needs the Python package pydot",
                           hint="pip install 'netspec[draw]' (or pip install pydot)") from None
    return Drawing(report, **options)


def output_format(path):
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in FORMATS:
        raise NetspecError(f"cannot tell the picture format from '{path}'",
                           hint="end the file name in " + ", ".join("." + f for f in FORMATS))
    return ext


def draw(report, path, **options):
    """Write the drawing of a report to path (.svg, .png, .pdf or .dot)."""
    fmt = output_format(path)
    atomic_write(path, drawing(report, **options).render(fmt))


__all__ = ["Drawing", "drawing", "draw", "shape_text", "COLOURS"]
