"""Findings: the errors and warnings that the graph and the shape pass collect, each placed
at a layer, a file and a line, with a fix where one is known. Shared by both floors, so it
lives below them."""
from .errors import NetspecError


class Issue:
    """One error or warning, with where it happened and, when known, a fix."""
    __slots__ = ("message", "layer", "type", "line", "file", "hint")

    def __init__(self, message, layer=None, type=None, line=None, file=None, hint=None):   # noqa: A002
        self.message, self.layer, self.type = message, layer, type
        self.line, self.file, self.hint = line, file, hint

    def __repr__(self):         # what a failed `assert not result.errors` shows
        return "Issue(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in Issue.__slots__) + ")"

    def where(self):
        place = ":".join(str(p) for p in (self.file, self.line) if p is not None)
        if self.layer is not None:
            kind = f" ({self.type})" if self.type else ""
            place = f"{place}: {self.layer}{kind}" if place else f"{self.layer}{kind}"
        return place

    def __str__(self):
        head = self.where()
        text = f"{head}: {self.message}" if head else self.message
        return text + (f"\n  fix: {self.hint}" if self.hint else "")

    def to_dict(self):
        return {"layer": self.layer, "type": self.type, "line": self.line,
                "message": self.message, "hint": self.hint}

    def to_error(self):
        return NetspecError(self.message, file=self.file, line=self.line, layer=self.layer,
                            layer_type=self.type, hint=self.hint)


def node_issue(graph, node, message, hint=None):
    """An Issue placed at a node: its file, line, name and type."""
    return Issue(message, node.name, node.type, node.line, graph.path, hint)


def by_name(items, name):
    """The Node (or the shape pass's LayerResult) called `name`; KeyError when none is."""
    for item in items:
        if item.name == name:
            return item
    raise KeyError(name)


class Findings:
    """What gathers Issues in `errors`: check() raises the first, for callers that cannot go on."""

    def check(self):
        if self.errors:
            raise self.errors[0].to_error()
        return self
