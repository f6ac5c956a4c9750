"""A fast reader for the protobuf text that nets, solvers and weights are written in.

protobuf's own text parser spends about 10 us a token: seconds for a 1 MB net, tens of
seconds for weights written as text. This one reads the plain forms (fields, nested
messages, `[...]` lists of scalars, decimal numbers, quoted strings without escapes, enum
names, true/false) with the same meaning, and a run of `data: 0.5` lines at once. At the
first thing it does not take as protobuf would (an error, or a rarer form: escapes, hex,
extensions, lists of messages) it stops and says where, and protobuf's parser takes over
(text.py), from that top-level field on when what came before cannot change the outcome.
"""
import bisect
import itertools
import re

from google.protobuf.descriptor import FieldDescriptor as FD

from .text import MAX_DEPTH, TOKEN

_GAP = r"\s*(?:\#[^\n]*\s*)*"            # white space and comments
_IDENT = r"[A-Za-z_][0-9A-Za-z_+-]*"      # protobuf's tokens: an identifier,
_NUMBER_TOKEN = r"(?:[0-9+-]|\.[0-9])[0-9A-Za-z_.+-]*"    # a number,
_STRING = r"\"[^\"\n\\]*\"|'[^'\n\\]*'"    # a quoted string (here: without escapes)
# One step of a message: a field opening a message, a field with its scalar value (with the
# separator after it), or the end of the message.
_STEP = re.compile(rf"""{_GAP}(?:
    (?P<name>{_IDENT}){_GAP}(?:
        :?{_GAP}(?P<open>[{{<])
      | :{_GAP}(?:(?P<number>{_NUMBER_TOKEN})|(?P<string>{_STRING})(?!{_GAP}["'])|(?P<word>{_IDENT}))
            {_GAP}[,;]?
      | :{_GAP}(?P<list>\[))
  | (?P<close>[}}>]){_GAP}[,;]?
  | (?P<end>\Z))""", re.VERBOSE)
_ITEM = re.compile(rf"{_GAP}(?:(?P<number>{_NUMBER_TOKEN})|(?P<string>{_STRING})(?!{_GAP}[\"'])|(?P<word>{_IDENT}))"
                   rf"{_GAP}(?P<sep>[,\]])")
_LIST_END = re.compile(rf"{_GAP}\]{_GAP}[,;]?")
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")
_FLOAT = r"-?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_FLOAT_TOKEN = re.compile(_FLOAT + r"\Z")
_FLOAT_VALUE = re.compile(r":[ \t]*(" + _FLOAT + ")")
INT_RANGE = {                  # the schema's integer types: (lowest, highest)
    FD.TYPE_INT32: (-2**31, 2**31 - 1), FD.TYPE_SINT32: (-2**31, 2**31 - 1),
    FD.TYPE_SFIXED32: (-2**31, 2**31 - 1), FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1), FD.TYPE_INT64: (-2**63, 2**63 - 1),
    FD.TYPE_SINT64: (-2**63, 2**63 - 1), FD.TYPE_SFIXED64: (-2**63, 2**63 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1), FD.TYPE_FIXED64: (0, 2**64 - 1),
}
FLOATING = (FD.TYPE_FLOAT, FD.TYPE_DOUBLE)
_RUNS = {}          # field name -> regex of a run of `name: number` lines
_TABLES = {}        # message descriptor -> its fields as the reader asks about them (see _table)


def _table(descriptor):
    """{field name: (descriptor, is a message, is repeated, type)}: what the reader asks of
    each field at every step, asked of protobuf once per message type."""
    table = _TABLES.get(descriptor)
    if table is None:
        table = _TABLES[descriptor] = {name: (fd, fd.message_type is not None, fd.is_repeated, fd.type)
                                       for name, fd in descriptor.fields_by_name.items()}
    return table


class Unsupported(Exception):
    """The fast reader stopped at offset `at`. `start` is the offset of the top-level field it
    stopped in when that field shows the same problem alone; None when it needs all the text
    before (a top-level field given twice)."""

    def __init__(self, start, at, fields):
        super().__init__(start, at)
        self.start, self.at, self.fields = start, at, fields     # fields: each top-level field's offset


def parse(text, cls):
    """(message, {top-level field: [(line, column)]}) or Unsupported."""
    reader = _Reader(text)
    message = cls()
    reader.fill(message, None, 0)
    return message, reader.positions()


def excerpt(text, stop):
    """(text, line) or None: `text` from the line where the top-level field the reader stopped
    in starts, to the end of the line after the stop (all before blanked, every position kept),
    and the stop's line; the whole of that field at least (what protobuf's parser sets aside, it
    sets aside to its end). protobuf's first error there is the file's own when it is on the
    stop's line or before. None when that line starts inside an earlier field."""
    if not stop.start:          # None, or the first field: the whole text then
        return None
    line_start = text.rfind("\n", 0, stop.start) + 1
    start = stop.fields[bisect.bisect_left(stop.fields, line_start)]
    if text[line_start:start].strip():
        return None
    newlines = text.count("\n", 0, start)
    line = newlines + 1 + text.count("\n", start, stop.at)
    end = text.find("\n", max(stop.at, _field_end(text, start)))
    end = len(text) if end < 0 else text.find("\n", end + 1)
    blank = "\n" * newlines + " " * (start - line_start)
    return blank + (text[start:] if end < 0 else text[start:end + 1]), line


_BRACKET = re.compile(r""""(?:[^"\n\\]|\\.)*"?|'(?:[^'\n\\]|\\.)*'?|\#[^\n]*|([{<])|([}>])""")


def _field_end(text, start):
    """Where the top-level field at `start` closes its brackets (the end of the text if never)."""
    depth = 0
    for m in _BRACKET.finditer(text, start):
        if m.group(1):
            depth += 1
        elif m.group(2):
            depth -= 1
            if depth <= 0:
                return m.end()
    return len(text)


class _Reader:
    def __init__(self, text):
        self.text, self.pos = text, 0
        self.top = []               # (field name, offset) of each top-level field
        self.field_start = 0        # offset of the top-level field being read
        self.at = 0                 # offset of the step being read

    def stop(self, start=True):
        raise Unsupported(self.field_start if start else None, self.at, [at for _, at in self.top])

    def stop_in_step(self):
        """Stop in a step that does not match: at its fourth token (a step has three, name,
        colon and value; what protobuf refuses in it is before that)."""
        found = (m.start() for m in TOKEN.finditer(self.text, self.pos) if m.lastgroup != "space")
        fourth = list(itertools.islice(found, 4))
        self.at = fourth[3] if len(fourth) == 4 else len(self.text)
        self.stop()

    def fill(self, message, closer, depth):
        if depth > MAX_DEPTH:
            self.stop()
        fields = _table(message.DESCRIPTOR)
        pending = {}                # repeated scalars, appended at once at the end
        text = self.text
        match = _STEP.match
        while True:
            m = match(text, self.pos)
            if m is None:
                self.stop_in_step()
            kind = m.lastgroup
            self.at = m.start(kind)
            if kind == "close" or kind == "end":
                if m.group(kind) != (closer or ""):
                    self.stop()
                self.pos = m.end()
                break
            name = m.group("name")
            if depth == 0:
                self.field_start = self.at = m.start("name")
                self.top.append((name, self.at))
            field = fields.get(name)
            if field is None or field[1] != (kind == "open"):
                self.stop()
            fd, _, repeated, type_ = field
            self.pos = m.end()
            if kind == "open":
                self.child(message, fd, repeated, m.group(kind), depth)
            elif kind == "list":
                if not repeated:
                    self.stop()
                self.items(fd, pending.setdefault(name, []))
            elif repeated:
                values = pending.setdefault(name, [])
                values.append(self.scalar(fd, type_, kind, m.group(kind)))
                if type_ in FLOATING:
                    self.run(name, values)
            else:
                if message.HasField(name):
                    self.stop(depth > 0)
                setattr(message, name, self.scalar(fd, type_, kind, m.group(kind)))
        for name, values in pending.items():
            getattr(message, name).extend(values)

    def child(self, message, fd, repeated, opener, depth):
        if repeated:
            child = getattr(message, fd.name).add()
        else:
            if message.HasField(fd.name):
                self.stop(depth > 0)
            child = getattr(message, fd.name)
            child.SetInParent()
        self.fill(child, "}" if opener == "{" else ">", depth + 1)

    def items(self, fd, values):
        """`[a, b, c]` of scalars."""
        end = _LIST_END.match(self.text, self.pos)
        while end is None:
            m = _ITEM.match(self.text, self.pos)
            if m is None:
                self.stop_in_step()
            kind = m.lastgroup if m.lastgroup != "sep" else next(
                k for k in ("number", "string", "word") if m.group(k) is not None)
            values.append(self.scalar(fd, fd.type, kind, m.group(kind)))
            if m.group("sep") == "]":
                self.pos = m.start("sep")
                end = _LIST_END.match(self.text, self.pos)
            else:
                self.pos = m.end()
                if _LIST_END.match(self.text, self.pos):
                    self.stop()             # `[1, ]`
        self.pos = end.end()

    def run(self, name, values):
        """The `name: number` lines that follow, read at once (a weight blob's values)."""
        pattern = _RUNS.get(name)
        if pattern is None:
            pattern = _RUNS[name] = re.compile(rf"(?:{name}[ \t]*:[ \t]*{_FLOAT}(?=\s)\s*)+")
        m = pattern.match(self.text, self.pos)
        if m:
            values.extend(map(float, _FLOAT_VALUE.findall(self.text, m.start(), m.end())))
            self.pos = m.end()

    def scalar(self, fd, kind_of_field, kind, tok):
        if kind_of_field in FLOATING:
            if kind == "number" and _FLOAT_TOKEN.match(tok):
                return float(tok)
        elif kind_of_field in INT_RANGE:
            if kind == "number" and _INT.match(tok):
                low, high = INT_RANGE[kind_of_field]
                if low <= int(tok) <= high:
                    return int(tok)
        elif kind_of_field == FD.TYPE_STRING:
            if kind == "string":
                return tok[1:-1]
        elif kind_of_field == FD.TYPE_BOOL:
            if kind == "word" and tok in ("true", "false"):
                return tok == "true"
        elif kind_of_field == FD.TYPE_ENUM:
            value = fd.enum_type.values_by_name.get(tok) if kind == "word" else None
            if value is not None:
                return value.number
        self.stop()

    def positions(self):
        """{field: [(line, column)]}, the offsets turned into places in one pass."""
        found, line, last, line_start = {}, 1, 0, 0
        for name, offset in self.top:
            newlines = self.text.count("\n", last, offset)
            if newlines:
                line += newlines
                line_start = self.text.rfind("\n", 0, offset) + 1
            last = offset
            found.setdefault(name, []).append((line, offset - line_start + 1))
        return found


_QUOTED_OR_COMMENT = re.compile(r""""(?:[^"\n\\]|\\.)*"?|'(?:[^'\n\\]|\\.)*'?|\#[^\n]*""")
_INNERMOST = re.compile(r"\{[^{}]*\}|<[^<>]*>")
_FIELD = re.compile(r"([A-Za-z_][0-9A-Za-z_]*)\s*[:{<\[]")


def top_level_names(text):
    """The names of a text message's top-level fields, found at regex speed (for telling a
    net from a solver before reading it)."""
    text = _QUOTED_OR_COMMENT.sub("", text)
    for _ in range(MAX_DEPTH + 1):          # deeper than that, the reader says what is wrong
        text, count = _INNERMOST.subn("", text)
        if not count:
            break
    return set(_FIELD.findall(text))
