"""`netspec check --html`: the report as one self-contained page.

Everything is inline (style, script, the drawing as SVG, the chart as SVG): the page fetches
nothing and opens from a file. It holds the drawing (pan with the mouse, zoom with the wheel),
the per-layer table (click a header to sort; `#sort=params` or `#sort=-params` in the address
sorts on load), the totals by layer type as a bar chart, the arithmetic of every shape, and
each warning and error linked to its layer's row, node and file line.
"""
import html
import shutil

from .draw import COLOURS, drawing, family
from .errors import NetspecError
from .report import BYTES_PER_PARAM, field_text, human, trainable
from .utils import atomic_write, format_shape

CSS = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #222; }
header { padding: 14px 24px; background: #f4f6f8; border-bottom: 1px solid #dde; }
header h1 { font-size: 20px; margin: 0 0 4px; }
.ok { color: #2b7a2b; } .bad { color: #cb181d; } .warn { color: #c05a00; }
main { padding: 0 24px 40px; }
h2 { font-size: 16px; margin: 26px 0 8px; }
#drawing { border: 1px solid #ccd; height: 70vh; overflow: hidden; position: relative; background: #fff;
           cursor: grab; }
#drawing svg { transform-origin: 0 0; position: absolute; left: 0; top: 0; }
#drawing .controls { position: absolute; right: 8px; top: 8px; z-index: 2; }
#drawing .controls button { font-size: 14px; margin-left: 4px; }
#drawing g.node.picked path, #drawing g.node.picked polygon { stroke: #08519c; stroke-width: 4; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e4e4e4; text-align: left; vertical-align: top; }
th { background: #f4f6f8; cursor: pointer; user-select: none; position: sticky; top: 0; }
th.sorted-asc::after { content: " \\25B2"; } th.sorted-desc::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.picked td { background: #fff3b0; }
tr.has-error td:first-child { border-left: 4px solid #cb181d; }
tr.has-warning td:first-child { border-left: 4px solid #e6550d; }
.swatch { display: inline-block; width: 10px; height: 10px; border: 1px solid #999; margin-right: 5px; }
details summary { cursor: pointer; color: #555; }
.notes { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; white-space: pre-wrap; }
ul.issues li { margin-bottom: 6px; }
.muted { color: #777; }
"""

SCRIPT = r"""
(function () {
  var box = document.getElementById('drawing'), svg = box && box.querySelector('svg');
  var scale = 1, x = 0, y = 0;
  function apply() { if (svg) svg.style.transform = 'translate(' + x + 'px,' + y + 'px) scale(' + scale + ')'; }
  function fit() {
    if (!svg) return;
    var w = svg.width.baseVal.value, h = svg.height.baseVal.value;
    scale = Math.min(box.clientWidth / w, box.clientHeight / h, 1.5); x = (box.clientWidth - w * scale) / 2; y = 0;
    apply();
  }
  function zoom(f, cx, cy) { x = cx - (cx - x) * f; y = cy - (cy - y) * f; scale *= f; apply(); }
  if (svg) {
    box.addEventListener('wheel', function (e) {
      e.preventDefault(); var r = box.getBoundingClientRect();
      zoom(e.deltaY < 0 ? 1.15 : 1 / 1.15, e.clientX - r.left, e.clientY - r.top);
    }, {passive: false});
    var drag = null;
    box.addEventListener('mousedown', function (e) { drag = [e.clientX - x, e.clientY - y]; box.style.cursor = 'grabbing'; });
    window.addEventListener('mouseup', function () { drag = null; box.style.cursor = 'grab'; });
    window.addEventListener('mousemove', function (e) { if (drag) { x = e.clientX - drag[0]; y = e.clientY - drag[1]; apply(); } });
    document.getElementById('zoom-in').onclick = function () { zoom(1.25, box.clientWidth / 2, box.clientHeight / 2); };
    document.getElementById('zoom-out').onclick = function () { zoom(0.8, box.clientWidth / 2, box.clientHeight / 2); };
    document.getElementById('zoom-fit').onclick = fit;
    fit();
  }
  // A layer picked in the table, the issue list or the drawing: its row and node stand out.
  function pick(name, centre) {
    document.querySelectorAll('.picked').forEach(function (e) { e.classList.remove('picked'); });
    var row = document.getElementById('row-' + name);
    if (row) row.classList.add('picked');
    var node = svg && svg.querySelector('[id="layer-' + (row ? row.dataset.node : name) + '"]');
    if (node) {
      node.classList.add('picked');
      if (centre) {
        var b = node.getBBox(), m = node.getCTM(), s = svg.getCTM();
        var r = svg.createSVGPoint(); r.x = b.x + b.width / 2; r.y = b.y + b.height / 2;
        var p = r.matrixTransform(m), q = p.matrixTransform(s.inverse());
        var w = svg.width.baseVal.value / svg.viewBox.baseVal.width;
        x = box.clientWidth / 2 - q.x * w * scale; y = box.clientHeight / 2 - q.y * w * scale; apply();
      }
    }
    return row;
  }
  document.querySelectorAll('a.layer-link').forEach(function (a) {
    a.addEventListener('click', function () { pick(a.dataset.layer, true); });
  });
  if (svg) svg.querySelectorAll('g.node').forEach(function (g) {
    g.addEventListener('click', function () {
      var name = g.id.replace(/^layer-/, ''), row = pick(name, false);
      if (row) row.scrollIntoView({block: 'center'});
    });
  });
  // Sorting: numbers by their data-value, text as text.
  var table = document.getElementById('layers'), body = table.tBodies[0];
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  function sortBy(key, desc) {
    var col = heads.findIndex(function (h) { return h.dataset.key === key; });
    if (col < 0) return;
    var rows = Array.prototype.slice.call(body.rows);
    var numeric = heads[col].classList.contains('num');
    rows.sort(function (a, b) {
      var u = a.cells[col].dataset.value, v = b.cells[col].dataset.value, d;
      if (numeric) d = parseFloat(u) - parseFloat(v); else d = u < v ? -1 : u > v ? 1 : 0;
      if (d === 0) d = parseInt(a.dataset.order) - parseInt(b.dataset.order);
      return desc ? -d : d;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    heads.forEach(function (h) { h.classList.remove('sorted-asc', 'sorted-desc'); });
    heads[col].classList.add(desc ? 'sorted-desc' : 'sorted-asc');
    table.dataset.sorted = (desc ? '-' : '') + key;
  }
  heads.forEach(function (h) {
    h.addEventListener('click', function () {
      var desc = h.classList.contains('sorted-asc') || (!h.classList.contains('sorted-desc') && h.classList.contains('num'));
      sortBy(h.dataset.key, desc);
    });
  });
  var m = /sort=(-?)(\w+)/.exec(location.hash);
  if (m) sortBy(m[2], m[1] === '-');
  document.body.dataset.ready = 'yes';
})();
"""


def _e(text):
    return html.escape(str(text), quote=True)


def _svg_drawing(report):
    """The drawing as inline SVG, or None (with the reason) where Graphviz is missing."""
    if not shutil.which("dot"):
        return None, "Graphviz's dot program is not installed (apt-get install graphviz), so the page has no drawing."
    try:
        svg = drawing(report).render("svg").decode()
    except NetspecError as e:
        return None, str(e)
    return svg[svg.index("<svg"):], None


def _table(report, node_of):
    cols = [("order", "#", True), ("name", "layer", False), ("type", "type", False), ("output", "output", False),
            ("params", "params", True), ("trainable", "trainable", True), ("macs", "MACs", True),
            ("memory", "memory", True), ("field", "receptive field", True), ("line", "line", True),
            ("notes", "arithmetic", False)]
    head = "".join(f'<th data-key="{k}" class="{"num" if num else ""}">{_e(t)}</th>' for k, t, num in cols)
    problems = {}
    for kind, issues in (("error", report.errors), ("warning", report.warnings)):
        for issue in issues:
            problems.setdefault(issue.layer, set()).add(kind)
    rows = []
    for k, r in enumerate(x for x in report.layers if not x.node.split):
        named = len(r.node.tops) > 1
        tops = [(f"{_e(t)}: " if named else "") + _e(format_shape(s)) + (" (in place)" if r.node.in_place(j) else "")
                for j, (t, s) in enumerate(zip(r.node.tops, r.top_shapes))]
        field = r.receptive_fields.get(r.node.tops[0]) if r.node.tops else None
        size = max(field.size) if field and field.size else 0
        notes = ("<details><summary>%d</summary><div class='notes'>%s</div></details>"
                 % (len(r.notes), "<br>".join(_e(n) for n in r.notes))) if r.notes else ""
        kinds = problems.get(r.name, set())
        cls = "has-error" if "error" in kinds else ("has-warning" if kinds else "")
        colour = COLOURS.get(family(r), "#fff")
        cells = [
            (k + 1, str(k + 1), True),
            (r.name, f'<a class="layer-link" href="#drawing" data-layer="{_e(r.name)}">{_e(r.name)}</a>', False),
            (r.type, f'<span class="swatch" style="background:{colour}"></span>{_e(r.type)}', False),
            (" ".join(tops), "<br>".join(tops), False),
            (r.param_count, human(r.param_count) if r.param_count else "", True),
            (trainable(r), human(trainable(r)) if r.param_count else "", True),
            (r.macs, human(r.macs) if r.macs else "", True),
            (r.memory, human(r.memory, "B") if r.memory else "", True),
            (size, _e(field_text(field)), True),
            (r.node.line or 0, str(r.node.line or ""), True),
            (len(r.notes), notes, False),
        ]
        tds = "".join(f'<td class="{"num" if num else ""}" data-value="{_e(v)}">{text}</td>' for v, text, num in cells)
        rows.append(f'<tr id="row-{_e(r.name)}" data-order="{k}" data-node="{_e(node_of.get(r.name, r.name))}" '
                    f'class="{cls}">{tds}</tr>')
    return f'<table id="layers"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _chart(report):
    """Parameters and MACs by layer type, as bars of their share (inline SVG)."""
    groups = [g for g in report.by_type if g["params"] or g["macs"]]
    if not groups:
        return "<p class='muted'>No parameters or MACs to chart.</p>"
    row_h, label_w, bar_w = 34, 130, 340
    height = 30 + row_h * len(groups)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + 2 * bar_w + 140}" height="{height}" '
             f'font-family="Helvetica, Arial, sans-serif" font-size="12">',
             f'<text x="{label_w}" y="14" font-weight="bold">parameters (% of {human(report.totals.get("params", 0))})</text>',
             f'<text x="{label_w + bar_w + 70}" y="14" font-weight="bold">MACs (% of {human(report.totals.get("macs", 0))})</text>']
    for i, g in enumerate(groups):
        top = 24 + i * row_h
        parts.append(f'<text x="{label_w - 8}" y="{top + 15}" text-anchor="end">{_e(g["type"])}</text>')
        for j, (key, value, colour) in enumerate((("params_percent", g["params"], "#4292c6"),
                                                  ("macs_percent", g["macs"], "#ef6548"))):
            left = label_w + j * (bar_w + 70)
            w = max(1, bar_w * g[key] / 100) if value else 0
            parts.append(f'<rect x="{left}" y="{top + 4}" width="{w:.1f}" height="14" fill="{colour}">'
                         f'<title>{_e(g["type"])}: {value:,}</title></rect>')
            parts.append(f'<text x="{left + w + 4:.1f}" y="{top + 15}">{g[key]}% ({human(value)})</text>')
    parts.append("</svg>")
    return "".join(parts)


def _issues(report):
    items = []
    for kind, issues in (("error", report.errors), ("warning", report.warnings)):
        for issue in issues:
            place = ":".join(str(p) for p in (issue.file, issue.line) if p is not None)
            layer = (f' <a class="layer-link" href="#row-{_e(issue.layer)}" data-layer="{_e(issue.layer)}">'
                     f'{_e(issue.layer)}</a> ({_e(issue.type or "")})') if issue.layer else ""
            fix = f"<br><span class='muted'>fix: {_e(issue.hint)}</span>" if issue.hint else ""
            items.append(f'<li class="issue-{kind}"><b class="{"bad" if kind == "error" else "warn"}">{kind}</b> '
                         f'<code>{_e(place)}</code>{layer}: {_e(issue.message)}{fix}</li>')
    return f'<ul class="issues">{"".join(items)}</ul>' if items else "<p class='ok'>No warnings and no errors.</p>"


def render_html(report):
    """The page as a string."""
    svg, why = _svg_drawing(report)
    node_of = {}
    if svg is not None:
        # the drawing's node for each layer (folded and collapsed layers share their node's id)
        from .blocks import units
        for u in units(report.layers):
            for r in u.layers:
                node_of[r.name] = u.head.name
    t = report.totals
    verdict = ("<span class='ok'>clean</span>" if report.ok and not report.warnings else
               f"<span class='{'bad' if report.errors else 'warn'}'>{len(report.errors)} error(s), "
               f"{len(report.warnings)} warning(s)</span>")
    params = t.get("params", 0)
    summary = (f"{t.get('layers', 0)} layers · {params:,} parameters ({t.get('trainable_params', 0):,} trainable, "
               f"{t.get('non_trainable_params', 0):,} not; {BYTES_PER_PARAM * params / 1e6:.2f} MB) · "
               f"{human(t.get('macs', 0))} MACs · {human(t.get('memory', 0), 'B')} of activations")
    drawing_html = (f'<div id="drawing"><div class="controls"><button id="zoom-in">+</button>'
                    f'<button id="zoom-out">&minus;</button><button id="zoom-fit">fit</button></div>{svg}</div>'
                    if svg is not None else f"<p class='muted' id='no-drawing'>{_e(why)}</p>")
    notices = "".join(f"<p class='muted'>note: {_e(n)}</p>" for n in report.notices)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>netspec check: {_e(report.path or 'net')}</title>
<style>{CSS}</style></head>
<body>
<header><h1>{_e(report.path or 'net')}</h1>
<div>phase {_e(report.to_dict()['state']['phase'])} · {verdict}</div><div>{_e(summary)}</div></header>
<main>{notices}
<h2>Warnings and errors</h2>{_issues(report)}
<h2>Drawing</h2><p class="muted">Drag to pan, wheel to zoom; click a node to find its row.
Shapes on the edges leave out the batch.</p>{drawing_html}
<h2>Layers</h2><p class="muted">Click a header to sort; the arithmetic column shows how each shape
was reached.</p>{_table(report, node_of)}
<h2>Totals by layer type</h2>{_chart(report)}
</main>
<script>{SCRIPT}</script>
</body></html>
"""


def write_html(report, path):
    atomic_write(path, render_html(report))


__all__ = ["render_html", "write_html"]
