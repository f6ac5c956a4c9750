"""YAML and JSON of the Caffe schema: the same field names as the prototxt, nested as maps.

The readers (yaml_reader.py, json_reader.py) keep where every key and list item starts; this
module fills a message from what they read, so a wrong field is reported at its own line and
column, and every layer keeps its line; and turns messages back into YAML and JSON.
"""
import base64
import binascii
import json
import math
import re
import struct

import numpy as np
import yaml
from google.protobuf.descriptor import FieldDescriptor as FD

from ..errors import NetspecError, UnknownFieldError
from . import dialects, unknown_fields
from .located import Mapping, Sequence
from .text import field_hint, suggest
from .text_fast import FLOATING, INT_RANGE


_FLOAT_WORDS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "infinity": math.inf,
                "-infinity": -math.inf}


class _Filler:
    """Builds a message from Mapping/Sequence data, with located errors and dialect warnings."""

    LIMIT = 1_000_000      # maps filled; YAML aliases could otherwise expand exponentially

    def __init__(self, path):
        self.path, self.warnings, self.filled = path, [], 0

    def error(self, message, where, layer=None, hint=None):
        line, col = where if where else (None, None)
        return NetspecError(message, file=self.path, line=line, column=col, layer=layer, hint=hint)

    def fill(self, message, data, where, layer=None):
        desc = message.DESCRIPTOR
        self.filled += 1
        if self.filled > self.LIMIT:
            raise self.error(f"more than {self.LIMIT} messages (do YAML aliases expand "
                             "exponentially?)", where, layer)
        if not isinstance(data, dict):
            raise self.error(f"found {_describe(data)}; expected a map of {desc.name} fields",
                             where, layer)
        keys_at = getattr(data, "keys_at", {})
        for key, value in data.items():
            at = keys_at.get(key, where)
            fd = desc.fields_by_name.get(key) if isinstance(key, str) else None
            if fd is None:
                self.unknown(message, data, key, value, at, layer)
            elif value is not None:
                self.set_field(message, fd, value, at, layer)

    def unknown(self, message, data, key, value, at, layer):
        where = (self.path,) + tuple(at or (None, None))
        warning = dialects.apply_structured(message, data, key, value, where, layer)
        if warning:
            self.warnings.append(warning)
            return
        layer_type = data.get("type") if message.DESCRIPTOR.full_name == "caffe.LayerParameter" else None
        if (isinstance(layer_type, str) and layer is not None and isinstance(key, str)
                and unknown_fields.droppable(message.DESCRIPTOR.full_name, key,
                                             message.DESCRIPTOR.fields_by_name, layer_type)):
            self.warnings.append(unknown_fields.DroppedField(self.path, (at or (None,))[0], layer, layer_type, key))
            return
        text = f"found unknown field '{key}' in {message.DESCRIPTOR.name}; expected one of its fields"
        hint = field_hint(message.DESCRIPTOR, str(key))
        if isinstance(layer_type, str):
            line, col = at if at else (None, None)
            raise UnknownFieldError(text, message_name=message.DESCRIPTOR.full_name, field_name=str(key),
                                    file=self.path, line=line, column=col, layer=layer,
                                    layer_type=layer_type, hint=hint)
        raise self.error(text, at, layer, hint)

    def set_field(self, message, fd, value, at, layer):
        if fd.is_repeated:
            items = value if isinstance(value, list) else [value]
            if fd.type in FLOATING and all(type(v) is float for v in items):
                getattr(message, fd.name).extend(items)     # a weight blob: nothing to check per value
                return
            items_at = getattr(value, "items_at", None) or [at] * len(items)
            target = getattr(message, fd.name)
            for item, item_at in zip(items, items_at):
                if fd.message_type is not None:
                    self.fill_child(target.add(), fd, item, item_at, layer)
                else:
                    target.append(self.scalar(fd, item, item_at, layer))
        elif fd.message_type is not None:
            child = getattr(message, fd.name)
            child.SetInParent()
            self.fill_child(child, fd, value, at, layer)
        else:
            setattr(message, fd.name, self.scalar(fd, value, at, layer))

    def fill_child(self, child, fd, data, at, layer):
        if fd.name in ("layer", "layers") and isinstance(data, dict) and layer is None:
            layer = data.get("name") if isinstance(data.get("name"), str) else None
        self.fill(child, data, at, layer)

    def scalar(self, fd, value, at, layer):
        try:
            return _convert(fd, value)
        except (ValueError, TypeError, binascii.Error) as e:
            raise self.error(f"{fd.name}: {e}", at, layer,
                             _enum_hint(fd, value) if fd.enum_type else None) from None


def _describe(value):
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {value!r}"


def _enum_hint(fd, value):
    return suggest(str(value), [v.name for v in fd.enum_type.values])


def _convert(fd, value):
    """A YAML/JSON value as the Python value of field `fd`; ValueError says found/expected."""
    kind = fd.type
    if kind == FD.TYPE_BOOL:
        if isinstance(value, bool):
            return value
        raise ValueError(f"found {_describe(value)}; expected true or false")
    if kind in INT_RANGE:
        return _integer(value, *INT_RANGE[kind])
    if kind in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            word = value.strip().lower()
            if word in _FLOAT_WORDS:
                return _FLOAT_WORDS[word]
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"found {_describe(value)}; expected a number")
    if kind == FD.TYPE_STRING:
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as e:     # JSON's "\ud800": a lone surrogate, no character
                raise ValueError(f"found a string with a lone surrogate {value[e.start]!a} at character "
                                 f"{e.start}; expected text that UTF-8 can hold") from None
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"found {_describe(value)}; expected a string")
    if kind == FD.TYPE_BYTES:
        if isinstance(value, str):
            return base64.b64decode(value.encode("ascii", "strict"), validate=True)
        raise ValueError(f"found {_describe(value)}; expected base64 text")
    if kind == FD.TYPE_ENUM:
        if isinstance(value, str) and value in fd.enum_type.values_by_name:
            return fd.enum_type.values_by_name[value].number
        if isinstance(value, int) and not isinstance(value, bool) and value in fd.enum_type.values_by_number:
            return value
        raise ValueError(f"found {_describe(value)}, not a value of {fd.enum_type.name}; "
                         "expected one of " + ", ".join(v.name for v in fd.enum_type.values))
    raise ValueError(f"unsupported field type {kind}")


def _integer(value, low, high):
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        number = int(value)
    if number is None:
        raise ValueError(f"found {_describe(value)}; expected an integer")
    if not low <= number <= high:
        raise ValueError(f"found {number}; expected an integer from {low} to {high}")
    return number


def to_message(data, cls, path):
    """Build a `cls` message from loaded YAML/JSON. Returns (message, warnings)."""
    message = cls()
    if data is None:
        return message, []
    filler = _Filler(path)
    try:
        filler.fill(message, data, getattr(data, "where", None))
    except RecursionError:
        raise NetspecError("nested too deeply (a YAML alias that contains itself?)",
                           file=path) from None
    return message, filler.warnings


def positions(data):
    """Top-level field -> [(line, col)] of each value (each item, for lists)."""
    found = {}
    if not isinstance(data, Mapping):
        return found
    for key, value in data.items():
        if isinstance(value, Sequence):
            found[key] = list(value.items_at)
        else:
            found[key] = [data.keys_at[key]]
    return found


def to_data(message):
    """The message as plain dicts and lists (field names as in the prototxt)."""
    out = {}
    for fd, value in message.ListFields():
        if fd.is_extension:
            continue
        if fd.is_repeated and fd.type == FD.TYPE_FLOAT:
            out[fd.name] = _floats32(value)     # a weight blob: hundreds of thousands at once
        elif fd.is_repeated:
            out[fd.name] = [_plain(fd, v) for v in value]
        else:
            out[fd.name] = _plain(fd, value)
    return out


def _plain(fd, value):
    if fd.message_type is not None:
        return to_data(value)
    if fd.type == FD.TYPE_ENUM:
        known = fd.enum_type.values_by_number.get(value)
        return known.name if known else value
    if fd.type == FD.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    if fd.type in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        if not math.isfinite(value):
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return shortest_float32(value) if fd.type == FD.TYPE_FLOAT else value
    return value


def _floats32(values):
    """shortest_float32 of each value, at NumPy's speed: its float32 repr is the shortest."""
    array = np.asarray(values, np.float32)
    if not np.isfinite(array).all():
        return [_plain_float(float(v)) for v in array]
    return [float(str(v)) for v in array]


def _plain_float(value):
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return shortest_float32(value)


def shortest_float32(value):
    """The shortest decimal that reads back as the same float32 (0.1, not 0.10000000149)."""
    single = struct.unpack("f", struct.pack("f", value))[0]
    for digits in range(6, 10):
        short = float(f"{single:.{digits}g}")
        if struct.pack("f", short) == struct.pack("f", single):
            return short
    return single


# --- writing -----------------------------------------------------------------------------

def _scalar_list(value):
    return isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value)


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):     # libyaml's emitter when built
    """Block style, but lists of numbers or names on one line (dim: [1, 3, 224, 224])."""


def _represent_list(dumper, value):
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=_scalar_list(value))


_Dumper.add_representer(list, _represent_list)


def format_yaml(message):
    numbers = []
    data = _stash_numbers(to_data(message), numbers)
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=100)
    for i, values in enumerate(numbers):      # a weight blob's values, written at join speed
        text = text.replace(_placeholder(i), "[" + ", ".join(map(_yaml_float, values)) + "]", 1)
    return text


def _yaml_float(value):
    """A finite float as YAML 1.1 reads a float (as PyYAML writes it): 1e-05 would read as a
    string there, 1.0e-05 is a number."""
    text = repr(value)
    return text.replace("e", ".0e", 1) if "e" in text and "." not in text else text


_STASHED = 256      # lists longer than this skip the YAML emitter (one line of flow style)


def _placeholder(i):
    return f"netspec-numbers-{i}-"


def _stash_numbers(value, numbers):
    if isinstance(value, dict):
        return {k: _stash_numbers(v, numbers) for k, v in value.items()}
    if isinstance(value, list):
        if len(value) > _STASHED and all(type(v) is float for v in value):
            numbers.append(value)
            return _placeholder(len(numbers) - 1)
        return [_stash_numbers(v, numbers) for v in value]
    return value


def format_json(message):
    return _json(to_data(message), 0) + "\n"


def _json(value, depth):
    pad, inner = "  " * depth, "  " * (depth + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        body = ",\n".join(f"{inner}{json.dumps(k)}: {_json(v, depth + 1)}" for k, v in value.items())
        return "{\n" + body + "\n" + pad + "}"
    if isinstance(value, list) and not _scalar_list(value):
        body = ",\n".join(inner + _json(v, depth + 1) for v in value)
        return "[\n" + body + "\n" + pad + "]"
    return json.dumps(value, ensure_ascii=False)
