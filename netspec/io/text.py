"""Protobuf text format (.prototxt): parse with located errors, print, and scan positions.

protobuf's own parser does the parsing; a light token scan beside it finds where each
top-level field (every `layer`) starts, the name of each layer, and fork dialects, which
the parser cannot report.
"""
import itertools
import math
import re
import struct
import warnings as warnings_module

from google.protobuf import text_encoding, text_format
from google.protobuf.descriptor import FieldDescriptor as FD

from ..errors import NetspecError, UnknownFieldError
from ..utils import closest
from . import dialects, unknown_fields
from .. import caffe_pb2

# protobuf's tokens, and the space between them
TOKEN = re.compile(r"""
    (?P<space>(?:\s|\#[^\n]*)+)
  | (?P<ident>[A-Za-z_][0-9A-Za-z_+-]*)
  | (?P<number>(?:[0-9+-]|\.[0-9])[0-9A-Za-z_.+-]*)
  | (?P<string>"(?:[^"\n\\]|\\.)*(?:"|\\?$)|'(?:[^'\n\\]|\\.)*(?:'|\\?$))
  | (?P<char>.)
""", re.VERBOSE | re.MULTILINE)


def tokens(text):
    """(kind, token, line, column) for each token, 1-based positions; comments skipped."""
    line, line_start = 1, 0
    for m in TOKEN.finditer(text):
        kind = m.lastgroup
        if kind != "space":
            yield kind, m.group(), line, m.start() - line_start + 1
        newlines = m.group().count("\n")
        if newlines:
            line += newlines
            line_start = m.start() + m.group().rfind("\n") + 1


class Frame:
    """One open message while scanning: its field path and per-field occurrence counts."""

    def __init__(self, path):
        self.path = path
        self.counts = {}
        self.list_field = None          # inside `field: [ ... ]`
        self.list_start = False         # no item of that list seen yet

    def occurrence(self, name):
        index = self.counts.get(name, 0)
        self.counts[name] = index + 1
        return index


class Scan:
    """What the token scan learned: where top-level fields start, layer names, dialect uses."""

    def __init__(self):
        self.positions = {}     # top-level field -> [(line, col)]
        self.names = {}         # (field, index) -> layer name
        self.types = {}         # (field, index) -> layer type string
        self.scalars = []       # (path, field, value token, token spans)


MAX_DEPTH = 100     # nets and solvers nest a few levels deep; far deeper means unclosed brackets


def scan(text, path=None, last_line=None):
    """Walk the tokens of a text message (up to `last_line`, if given), tolerant of errors
    (the parser reports those)."""
    result = Scan()
    stack = [Frame(())]
    last = None                 # the last field name seen: [name, index, spans]
    expecting_value = False
    for kind, tok, line, col in tokens(text):
        if last_line is not None and line > last_line:
            break
        frame, span = stack[-1], (line, col, len(tok))
        if kind == "char" and tok in "{<":
            if len(stack) > MAX_DEPTH:
                raise NetspecError(f"found messages nested more than {MAX_DEPTH} deep; expected "
                                   "the shallow nesting of a net or solver", file=path, line=line,
                                   column=col, hint="look for '{' that are never closed")
            name, index = _opened(frame, last)
            if len(stack) == 1 and frame.list_field:
                _note_list_item(result.positions.setdefault(name, []), frame, (line, col))
            stack.append(Frame(frame.path + ((name, index),)))
            last, expecting_value = None, False     # no field of the new frame seen yet
        elif kind == "char" and tok in "}>":
            if len(stack) > 1:
                stack.pop()
            last, expecting_value = None, False
        elif kind == "char" and tok == "[" and expecting_value and last:
            frame.list_field, expecting_value = last[0], False
            frame.counts[last[0]] -= 1          # each item counts as one occurrence
            frame.list_start = True
        elif kind == "char" and tok == "]":
            frame.list_field = None
        elif kind == "char" and tok == ":":
            expecting_value = True
            if last:
                last[2].append(span)
        elif expecting_value:
            if last and kind != "char":
                last[2].append(span)
                result.scalars.append((frame.path, last[0], tok, last[2]))
                _note_name(result, frame, last[0], tok)
            expecting_value = False
        elif kind == "ident" and not frame.list_field:
            last = [tok, frame.occurrence(tok), [span]]
            if len(stack) == 1:
                result.positions.setdefault(tok, []).append((line, col))
    return result


def _note_list_item(positions, frame, where):
    """The first item of `layer: [{...}, ...]` takes the place of the field name's position."""
    if frame.list_start and positions:
        positions[-1] = where
    else:
        positions.append(where)
    frame.list_start = False


def _opened(frame, last):
    """(field, index) of a message opened by '{': the last field, or the next list item."""
    if frame.list_field:
        return frame.list_field, frame.occurrence(frame.list_field)
    if last is None:
        return None, 0
    return last[0], last[1]


def _note_name(result, frame, field_name, tok):
    if field_name in ("name", "type") and len(frame.path) == 1 and tok[:1] in "\"'":
        found = result.names if field_name == "name" else result.types
        found.setdefault(frame.path[0], tok[1:-1])


def parse(text, cls, path, found=None):
    """Parse text into a new `cls` message. Returns (message, Scan, warnings); `found` is the
    text's scan when the caller has already made it."""
    text = text.lstrip("\ufeff")
    if found is None:
        found = scan(text, path)
    text, fixes, warnings = dialects.rewrite_text(text, found, path)
    while True:
        message = cls()
        try:
            with warnings_module.catch_warnings():      # protobuf warns on escapes like "\L"
                warnings_module.simplefilter("ignore", DeprecationWarning)
                text_format.Parse(text, message, allow_unknown_field=False)
            break
        except text_format.ParseError as e:
            dropped = _drop_unknown_param(e, text, path, found)
            if dropped is None:
                raise located_error(e, text, path, found, message) from None
            text, warning = dropped
            warnings.append(warning)
        except (ValueError, TypeError, OverflowError, RecursionError) as e:
            raise NetspecError(f"cannot parse this file as protobuf text: {e}", file=path) from None
    dialects.apply_fixes(message, fixes)
    return message, found, warnings


def format_message(message):
    """Text format as Caffe writes it: protobuf's layout (layer blocks, two-space indent) and
    numbers as C++ protobuf prints them (`lr_mult: 1`, `std: 0.01`, `eps: 1e-05`)."""
    return "".join(_text_lines(message, ""))


def _text_lines(message, indent):
    for fd, value in message.ListFields():
        if fd.is_repeated and fd.type in _FLOAT_DIGITS and len(value) > 1:     # a weight blob
            yield "".join(f"{indent}{fd.name}: {t}\n" for t in float_texts(value, *_FLOAT_DIGITS[fd.type]))
            continue
        for item in value if fd.is_repeated else (value,):
            if fd.message_type is not None:
                yield f"{indent}{fd.name} {{\n"
                yield from _text_lines(item, indent + "  ")
                yield f"{indent}}}\n"
            else:
                yield f"{indent}{fd.name}: {_text_scalar(fd, item)}\n"


def _text_scalar(fd, value):
    if fd.type == FD.TYPE_ENUM:
        known = fd.enum_type.values_by_number.get(value)
        return known.name if known else str(value)
    if fd.type in (FD.TYPE_STRING, FD.TYPE_BYTES):
        return '"' + text_encoding.CEscape(value, fd.type == FD.TYPE_STRING) + '"'
    if fd.type == FD.TYPE_BOOL:
        return "true" if value else "false"
    if fd.type == FD.TYPE_FLOAT:
        return c_float_text(value, 6, 9, lambda v: struct.unpack("f", struct.pack("f", v))[0])
    if fd.type == FD.TYPE_DOUBLE:
        return c_float_text(value, 15, 17, float)
    return str(value)


_FLOAT_DIGITS = {FD.TYPE_FLOAT: (6, 9, "float32"), FD.TYPE_DOUBLE: (15, 17, "float64")}


def float_texts(values, digits, more_digits, dtype):
    """c_float_text of many values at once: the short form of each, the long one where the
    short does not read back (non-finite values come out as nan, inf, -inf either way)."""
    import numpy as np
    values = list(values)
    short_form, long_form = f"%.{digits}g", f"%.{more_digits}g"
    short = [short_form % v for v in values]
    same = np.fromiter(map(float, short), np.float64, len(short)).astype(dtype) == np.array(values, dtype)
    if same.all():
        return short
    return [s if ok else long_form % v for s, v, ok in zip(short, values, same.tolist())]


def c_float_text(value, digits, more_digits, narrow):
    """C++ protobuf's SimpleFtoa/SimpleDtoa: %g with `digits` significant digits when that
    reads back as the same value (after `narrow` to the field's precision), else `more_digits`."""
    if not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    short = f"{value:.{digits}g}"
    return short if narrow(float(short)) == narrow(value) else f"{value:.{more_digits}g}"


# --- errors ----------------------------------------------------------------------------

_LOCATION = re.compile(r"^\d+(?::\d+)? : (?:'.*?': )?", re.S)


def located_error(error, text, path, found, message):
    """Turn protobuf's ParseError into one NetspecError: file:line:col, found, expected."""
    line, col = error.GetLine(), error.GetColumn()
    detail = _LOCATION.sub("", str(error), count=1)
    source_line = text.split("\n")[line - 1] if line and line <= text.count("\n") + 1 else ""
    token = _token_at(source_line, col)
    if not _AT_CURRENT.match(str(error)):        # protobuf points at the token before the problem
        token = _token_after(text, line, col)
    layer, layer_type = _layer_at(found, line, col)
    unknown = _UNKNOWN_FIELD.search(detail)
    message_text, hint = explain(detail, token, message)
    where = dict(file=path, line=line, column=col, layer=layer, layer_type=layer_type, hint=hint)
    if unknown and isinstance(layer_type, str):
        return UnknownFieldError(message_text, message_name=unknown.group(1), field_name=unknown.group(2),
                                 excerpt=_excerpt(source_line, col), **where)
    return NetspecError(message_text + _excerpt(source_line, col), **where)


def _excerpt(source_line, col, width=100):
    """The offending line, as a second line of the message (a window of it when long)."""
    start = max(0, (col or 1) - 1 - width // 2) if len(source_line) > width else 0
    piece = source_line[start:start + width].strip()
    if not piece:
        return ""
    return "\n    " + ("..." if start else "") + piece + ("..." if start + width < len(source_line) else "")


_AT_CURRENT = re.compile(r"^\d+(?::\d+)? : '")


def _token_after(text, line, col):
    """The token after the one at (line, col), or None at the end of the file."""
    if not line:
        return None
    start = 0
    for _ in range(line - 1):
        start = text.index("\n", start) + 1
    following = itertools.islice(tokens(text[start + (col or 1) - 1:]), 1, 2)
    return next((tok for _, tok, _, _ in following), None)


def _token_at(source_line, col):
    if not col or col > len(source_line):
        return None
    m = TOKEN.match(source_line, col - 1)
    return m.group() if m and m.lastgroup != "space" else None


def _layer_at(found, line, col):
    """(name, type string) of the top-level layer holding (line, col); Nones if none."""
    if not line:
        return None, None
    best = None
    for field_name in ("layer", "layers"):
        for index, start in enumerate(found.positions.get(field_name, ())):
            if start <= (line, col or 0) and (best is None or start > best[0]):
                best = (start, (field_name, index))
    return (found.names.get(best[1]), found.types.get(best[1])) if best else (None, None)


def _drop_unknown_param(error, text, path, found):
    """(text without the field, DroppedField) for an unknown `*_param` of a layer, else None."""
    m = _UNKNOWN_FIELD.search(str(error))
    line, col = error.GetLine(), error.GetColumn()
    layer, layer_type = _layer_at(found, line, col)
    if not m or layer is None or not unknown_fields.droppable(
            m.group(1), m.group(2), caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name, layer_type):
        return None
    blanked = unknown_fields.blank_field(text, line, col, tokens)
    if blanked is None:
        return None
    return blanked, unknown_fields.DroppedField(path, line, layer, layer_type, m.group(2))


_UNKNOWN_FIELD = re.compile(r'Message type "([\w.]+)" has no field named "([^"]*)"')
_UNKNOWN_ENUM = re.compile(r'Enum type "([\w.]+)" has no value named (\S+?)\.?$')
_EXPECTED = re.compile(r'^Expected "(.*)"\.$')
_DUPLICATE = re.compile(r'Message type "([\w.]+)" should not have multiple "(\w+)" fields')


def explain(detail, token, message):
    """(message, hint) in words for a protobuf text parse error."""
    pool = message.DESCRIPTOR.file.pool
    found = "end of file" if token is None else shown(token)
    m = _UNKNOWN_FIELD.search(detail)
    if m:
        desc = pool.FindMessageTypeByName(m.group(1))
        return (f"found unknown field '{m.group(2)}' in {desc.name}; expected one of its fields",
                field_hint(desc, m.group(2)))
    m = _UNKNOWN_ENUM.search(detail)
    if m:
        enum = pool.FindEnumTypeByName(m.group(1))
        names = [v.name for v in enum.values]
        return (f"found '{m.group(2)}', not a value of {_short(enum.full_name)}; expected one of "
                + ", ".join(names), suggest(m.group(2), names))
    m = _DUPLICATE.search(detail)
    if m:
        return (f"found a second '{m.group(2)}' in {_short(m.group(1))}; expected it at most once "
                "(it is not a repeated field)", f"keep one '{m.group(2)}'")
    m = _EXPECTED.match(detail)
    if m:
        return f"found {found}; expected '{m.group(1)}'", None
    if detail.startswith("Expected string"):
        return f"found {found}; expected a quoted string", f'write it as "{token}"' if token else None
    if detail.startswith("Couldn't parse integer"):
        return f"found {found}; expected an integer", None
    if detail.startswith("Couldn't parse float") or detail.startswith("Expected double"):
        return f"found {found}; expected a number", None
    if detail.startswith("Value out of range"):
        return (f"found {found}; out of range for this field's type (a negative value for an "
                "unsigned field, or too large)", None)
    if detail.startswith("Expected identifier"):
        return f"found {found}; expected a field name", None
    return f"{detail.rstrip('.')} (found {found})", None


def shown(token, limit=40):
    """A found token for a message: quoted, cut when long, escaped when unprintable."""
    cut = token if len(token) <= limit else token[:limit] + "..."
    return f"'{cut}'" if cut.isprintable() else repr(cut)


def field_hint(desc, name):
    """Where a misplaced field belongs (kernel_size -> convolution_param), or the closest names."""
    homes = [f.name for f in desc.fields
             if f.message_type is not None and name in f.message_type.fields_by_name]
    if homes and name not in desc.fields_by_name:
        return f"'{name}' belongs inside " + " or ".join(homes[:4])
    return suggest(name, [f.name for f in desc.fields])


def suggest(name, names):
    """A hint naming the closest valid names (always some, so the user sees what is valid)."""
    import difflib      # here, as in utils.closest: only a mistake needs it
    near = closest(name, names) or difflib.get_close_matches(name, names, n=3, cutoff=0.0)
    return "did you mean " + " or ".join(f"'{n}'" for n in near) + "?"


def _short(full_name):
    return full_name.split(".", 1)[1] if full_name.startswith("caffe.") else full_name
