"""The package's layout, as docs/layout.md draws it: every import points down the floors
(none up, no circle), no source file grows past 600 lines, and no layer type string is
compared outside netspec/layers/ (the legacy upgrader's V0/V1 tables aside)."""
import ast
from pathlib import Path

import pytest

from netspec.layers import LAYERS

PACKAGE = Path(__file__).resolve().parents[1] / "netspec"

# Lowest first; a module may import its own floor and the floors below it.
FLOORS = [
    ("errors", "utils", "outputs", "caffe_pb2", "findings", "backend", "blob"),
    ("io", "dsl"),
    ("data",),
    ("ops", "fillers"),
    ("layers",),
    ("graph",),
    ("shapes", "depth", "blocks", "report"),
    ("net", "memory"),
    ("solver",),
    ("training", "parallel"),
    ("onnx", "compare", "draw", "html", "html_report", "curves", "plot", "pycaffe"),
    ("commands", "cli", "__main__"),
]
FLOOR = {name: level for level, names in enumerate(FLOORS) for name in names}
MAX_LINES = 600


def modules():
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.name != "caffe_pb2.py"]


def dotted(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module):
    """The floor of 'netspec.x.y' (by its first component below netspec), None for netspec itself."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    name = parts[1]
    assert name in FLOOR, f"netspec.{name} is on no floor: add it to FLOORS here and to docs/layout.md"
    return FLOOR[name]


def imports(path, top_level_only=False):
    """The netspec modules `path` imports (relative imports resolved)."""
    here = dotted(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if module.split(".")[0] != "netspec":
                continue
            folder = PACKAGE.parent / module.replace(".", "/")
            submodules = [a.name for a in node.names
                          if (folder / a.name).is_dir() or (folder / (a.name + ".py")).exists()]
            yield from (f"{module}.{name}" for name in submodules)     # `from . import x`: the module x
            if len(submodules) < len(node.names):
                yield module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "netspec")


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_floors(path):
    own = floor_of(dotted(path))
    if own is None:
        return          # netspec/__init__.py: its names load lazily, on first use
    upward = [m for m in imports(path) if (floor_of(m) or 0) > own]
    assert not upward, f"{dotted(path)} (floor {own}) imports from a floor above: {upward}"


def test_no_import_circle():
    graph = {dotted(p): {m for m in imports(p, top_level_only=True)} for p in modules()}
    state = {}

    def visit(module, path):
        state[module] = "open"
        for target in graph.get(module, ()):
            if target == module or target not in graph:
                continue
            if state.get(target) == "open":
                raise AssertionError("import circle: " + " -> ".join(path + [target]))
            if target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_source_file_is_over_the_limit(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines: split it by concern"


def test_no_layer_type_string_is_compared_outside_the_layers():
    found = []
    for path in modules():
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "layers" or relative.as_posix() == "io/upgrade.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                for operand in [node.left] + node.comparators:
                    values = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
                    found += [f"{relative}:{node.lineno}: '{v.value}'" for v in values
                              if isinstance(v, ast.Constant) and v.value in LAYERS]
    assert not found, "layer types compared outside netspec/layers/ (ask the layer class instead):\n" + \
        "\n".join(found)
