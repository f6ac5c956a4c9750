"""YAML of the Caffe schema, read with a SafeLoader subclass (no Python objects can be built)
that keeps where every key and list item starts."""
import re

import yaml

from ..errors import NetspecError
from .located import Mapping, Sequence
from .text import MAX_DEPTH


class _LocatingLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """The safe loader (LibYAML's when present), building Mapping/Sequence with positions."""

    numbers = {}            # (line, column) of a '[' -> the _Numbers read there in bulk


def _mark(mark):
    return mark.line + 1, mark.column + 1


def _error_mark(e):
    """(line, column) of a YAML error, or (None, None)."""
    mark = e.problem_mark or e.context_mark
    return _mark(mark) if mark else (None, None)


def _construct_map(loader, node):
    mapping = Mapping(_mark(node.start_mark))
    yield mapping
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        where = _mark(key_node.start_mark)
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise _LocatedProblem(f"found a {type(key).__name__} as a key; expected a field name", where)
        if key in mapping:
            raise _LocatedProblem(f"found key '{key}' a second time in one map; expected each key once",
                                  where)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.keys_at[key] = where


def _construct_seq(loader, node):
    where = _mark(node.start_mark)
    numbers = loader.numbers.pop(where, None)
    seq = Sequence(where, numbers and numbers.items_at)
    yield seq
    if numbers:
        seq.extend(numbers.values)
        return
    for item in node.value:
        seq.append(loader.construct_object(item, deep=True))
        seq.items_at.append(_mark(item.start_mark))


_LocatingLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LocatingLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


class _LocatedProblem(Exception):
    def __init__(self, message, where):
        super().__init__(message)
        self.message, self.where = message, where


def _check_depth(text, path):
    """Refuse deep nesting before LibYAML composes it: its composer recurses in C and would
    overflow the stack (a crash, not an exception)."""
    depth = 0
    for event in yaml.parse(text, Loader=_LocatingLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                line, col = _mark(event.start_mark)
                raise NetspecError(f"found maps and lists nested more than {MAX_DEPTH} deep; "
                                   "expected the shallow nesting of a net or solver", file=path,
                                   line=line, column=col, hint="look for brackets that are never closed")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


# A number that YAML 1.1 (PyYAML) and Python read as the same int or float.
_NUMBER = r"-?(?:[0-9]+\.[0-9]*(?:[eE][-+][0-9]+)?|0|[1-9][0-9]*)"
_BULK = 64          # flow lists of at least this many numbers skip the YAML composer
_NUMBER_LIST = re.compile(rf"\[[ \t]*{_NUMBER}(?:[ \t]*,[ \t]*{_NUMBER}){{{_BULK - 1},}}[ \t]*\]")
_NUMBER_ITEM = re.compile(_NUMBER)


class _Numbers:
    """One flow list of numbers on one line, read at once (a weight blob's hundreds of thousands
    of values would cost the composer seconds)."""

    def __init__(self, body, line, column):
        self.body, self.line, self.column = body, line, column
        self.values = [float(t) if "." in t else int(t) for t in _NUMBER_ITEM.findall(body)]

    def items_at(self):
        return [(self.line, self.column + m.start()) for m in _NUMBER_ITEM.finditer(self.body)]


def _set_aside_numbers(text):
    """`text` with each long one-line list of numbers emptied to '[]' (every other position
    kept), and {(line, column) of its '[': _Numbers}."""
    found, pieces, last, line, line_start = {}, [], 0, 1, 0
    for m in _NUMBER_LIST.finditer(text):
        newlines = text.count("\n", last, m.start())
        if newlines:
            line += newlines
            line_start = text.rfind("\n", 0, m.start()) + 1
        column = m.start() - line_start + 1
        found[(line, column)] = _Numbers(m.group(), line, column)
        pieces += [text[last:m.start()], "[]", " " * (m.end() - m.start() - 2)]
        last = m.end()
    return "".join(pieces) + text[last:], found


def _load(text, numbers):
    loader = _LocatingLoader(text)
    loader.numbers = numbers
    try:
        return loader.get_single_data(), not loader.numbers
    finally:
        loader.dispose()


def load_yaml(text, path):
    try:
        short, numbers = _set_aside_numbers(text)
        _check_depth(short, path)
        data, all_lists = _load(short, numbers)
        if not all_lists:       # a '[' set aside was no list's start (inside a string, say)
            data, _ = _load(text, {})
        return data
    except _LocatedProblem as e:
        raise NetspecError(e.message, file=path, line=e.where[0], column=e.where[1]) from None
    except yaml.constructor.ConstructorError as e:
        raise _tag_error(e, path) from None
    except yaml.MarkedYAMLError as e:
        what = " ".join(p for p in (e.context, e.problem) if p) or "malformed YAML"
        line, col = _error_mark(e)
        raise NetspecError(f"malformed YAML: {what}", file=path, line=line, column=col) from None
    except (yaml.YAMLError, RecursionError, ValueError) as e:
        raise NetspecError(f"malformed YAML: {e}", file=path) from None


def _tag_error(e, path):
    """A tag the safe loader refuses (!!python/object...): said plainly, never constructed."""
    line, col = _error_mark(e)
    tag = re.search(r"tag '([^']*)'", e.problem or "")
    if not tag:
        return NetspecError(f"malformed YAML: {e.problem}", file=path, line=line, column=col)
    shown_tag = tag.group(1).replace("tag:yaml.org,2002:", "!!")
    return NetspecError(f"found the YAML tag '{shown_tag}'; expected plain data (maps, lists, "
                        "strings, numbers, true/false)", file=path, line=line, column=col,
                        hint="remove the tag: netspec reads YAML safely and builds no objects from tags")
