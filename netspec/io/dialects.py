"""Fork dialects: fields that published models use but BVLC Caffe's schema lacks.

Each is read with a warning and mapped onto the schema, never silently dropped:
- Pooling `ceil_mode: true|false` (from forks that predate `round_mode`) -> `round_mode: CEIL|FLOOR`.
"""
import re

from .. import caffe_pb2
from ..errors import NetspecError

_TRUE = {"true", "True", "t", "1"}
_FALSE = {"false", "False", "f", "0"}
_ROUND = caffe_pb2.PoolingParameter.RoundMode


def ceil_mode_to_round_mode(value, where, layer=None):
    """CEIL or FLOOR for a ceil_mode value (text token or YAML/JSON bool). Raises NetspecError."""
    if value is True or (isinstance(value, str) and value in _TRUE):
        return "CEIL"
    if value is False or (isinstance(value, str) and value in _FALSE):
        return "FLOOR"
    file, line, col = where
    raise NetspecError(f"found ceil_mode: {value}; expected true or false", file=file,
                       line=line, column=col, layer=layer)


def ceil_mode_warning(value, mode, where, layer=None):
    file, line, _ = where
    place = ":".join(str(p) for p in (file, line) if p is not None)
    who = f" layer '{layer}':" if layer else ""
    return (f"{place}:{who} Pooling 'ceil_mode: {str(value).lower()}' is a fork dialect that "
            f"BVLC Caffe's schema rejects; read as 'round_mode: {mode}'")


def _both_given(where, layer):
    file, line, col = where
    return NetspecError("found both ceil_mode and round_mode in one pooling_param; expected one "
                        "of them", file=file, line=line, column=col, layer=layer,
                        hint="keep round_mode (BVLC Caffe's field)")


def apply_structured(message, data, key, value, where, layer=None):
    """A dialect key met in YAML/JSON: set its schema field and return the warning, or None
    when `key` is no dialect."""
    if not (isinstance(message, caffe_pb2.PoolingParameter) and key == "ceil_mode"):
        return None
    mode = ceil_mode_to_round_mode(value, where, layer)
    if data.get("round_mode") is not None:
        raise _both_given(where, layer)
    message.round_mode = _ROUND.Value(mode)
    return ceil_mode_warning(value, mode, where, layer)


def rewrite_text(text, scan, path):
    """Blank out dialect fields in `text` (keeping every other position) and say how to set them.

    Returns (text, fixes, warnings); fixes go to apply_fixes() after parsing.
    """
    fixes, warnings, blanks = [], [], []
    for field_path, name, token, spans in scan.scalars:
        if name != "ceil_mode" or not field_path or field_path[-1][0] != "pooling_param":
            continue
        line, col, _ = spans[0]
        layer = scan.names.get(field_path[0])
        mode = ceil_mode_to_round_mode(token, (path, line, col), layer)
        fixes.append((field_path, mode, (path, line, col), layer))
        warnings.append(ceil_mode_warning(token, mode, (path, line, col), layer))
        blanks.extend(spans)
    return _blank(text, blanks), fixes, warnings


def _blank(text, spans):
    if not spans:
        return text
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    chars = list(text)
    for line, col, length in spans:
        at = starts[line - 1] + col - 1
        chars[at:at + length] = " " * length
    return "".join(chars)


def apply_fixes(message, fixes):
    for field_path, mode, where, layer in fixes:
        pooling = _follow(message, field_path)
        if pooling is None:
            continue
        if pooling.HasField("round_mode"):
            raise _both_given(where, layer)
        pooling.round_mode = _ROUND.Value(mode)


def _follow(message, field_path):
    """The sub-message at [(field, index), ...] under `message`, or None."""
    for name, index in field_path:
        desc = message.DESCRIPTOR.fields_by_name.get(name)
        if desc is None or desc.message_type is None:
            return None
        value = getattr(message, name)
        if desc.is_repeated:
            if index >= len(value):
                return None
            value = value[index]
        message = value
    return message
