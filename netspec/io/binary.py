"""Binary protobuf (.caffemodel, .binaryproto, .solverstate): read with a kind check, write.

Protobuf parses almost any bytes as almost any message, so before parsing we walk the
top-level fields of the wire format: that finds truncation, text given where binary was
expected, and a file of another kind (a solverstate given as a caffemodel), and says which.
"""
from google.protobuf import message as protobuf_message
from google.protobuf import unknown_fields
from google.protobuf.descriptor import FieldDescriptor as FD

from .. import caffe_pb2
from ..errors import NetspecError

KINDS = {
    "net": caffe_pb2.NetParameter,
    "solver": caffe_pb2.SolverParameter,
    "blob": caffe_pb2.BlobProto,
    "solverstate": caffe_pb2.SolverState,
}
DESCRIBE = {
    "net": "a net (NetParameter: .prototxt or .caffemodel)",
    "solver": "a solver (SolverParameter)",
    "blob": "a blob (BlobProto, e.g. a mean .binaryproto)",
    "solverstate": "a solver snapshot (SolverState, .solverstate)",
}

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
_WIRE_OF_TYPE = {
    FD.TYPE_DOUBLE: _FIXED64, FD.TYPE_FIXED64: _FIXED64, FD.TYPE_SFIXED64: _FIXED64,
    FD.TYPE_FLOAT: _FIXED32, FD.TYPE_FIXED32: _FIXED32, FD.TYPE_SFIXED32: _FIXED32,
    FD.TYPE_STRING: _LENGTH, FD.TYPE_BYTES: _LENGTH, FD.TYPE_MESSAGE: _LENGTH,
}


class _Broken(Exception):
    def __init__(self, why, offset):
        super().__init__(why)
        self.why, self.offset = why, offset


def _varint(data, i):
    value, shift = 0, 0
    while True:
        if i >= len(data):
            raise _Broken("truncated", i)
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            return value, i
        shift += 7
        if shift >= 70:
            raise _Broken("a malformed number", i)


def wire_fields(data):
    """[(field number, wire type)] of the top-level fields; raises _Broken."""
    fields, i = [], 0
    while i < len(data):
        start = i
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Broken("field number 0", start)
        if wire == _VARINT:
            _, i = _varint(data, i)
        elif wire == _FIXED64:
            i += 8
        elif wire == _FIXED32:
            i += 4
        elif wire == _LENGTH:
            length, i = _varint(data, i)
            i += length
        else:
            raise _Broken(f"wire type {wire}", start)
        if i > len(data):
            raise _Broken("truncated", start)
        fields.append((number, wire))
    return fields


def fit(fields, cls):
    """(wrong, unknown, right): how many top-level fields do not fit `cls`, are unknown, fit."""
    wrong = unknown = right = 0
    by_number = cls.DESCRIPTOR.fields_by_number
    for number, wire in fields:
        fd = by_number.get(number)
        if fd is None:
            unknown += 1
            continue
        expected = _WIRE_OF_TYPE.get(fd.type, _VARINT)
        packed = fd.is_repeated and expected != _LENGTH and wire == _LENGTH
        if wire == expected or packed:
            right += 1
        else:
            wrong += 1
    return wrong, unknown, right


def looks_like_text(data):
    try:
        text = data[:4096].decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < 4090:       # a character cut at the 4096-byte boundary is fine
            return False
        text = data[:e.start].decode("utf-8")
    return all(ch.isprintable() or ch in "\t\r\n" for ch in text)


def fitting_kinds(data):
    """The kinds whose schema fits the file's top-level fields, best first."""
    try:
        return _kinds_fitting(wire_fields(data))
    except _Broken:
        return []


def _kinds_fitting(fields):
    scored = [(fit(fields, cls), kind) for kind, cls in KINDS.items()]
    return [kind for (wrong, unknown, right), kind in
            sorted(scored, key=lambda s: (s[0][1], -s[0][2])) if wrong == 0 and right > 0]


_KIND_FIX = {
    ("solver", "net"): "this is a solver: give the net file its `net:` field names "
                       "(a solver goes to `netspec train --solver`)",
    ("net", "solver"): "this is a net: give the solver file (the one with base_lr, max_iter "
                       "and net: \"...\")",
    ("solverstate", "net"): "this is a training snapshot: give the .caffemodel saved beside it",
    ("blob", "net"): "this is a single blob (such as an image mean), not a net or its weights",
}


def _kind_of(cls):
    return next((kind for kind, known in KINDS.items() if known is cls), None)


def wrong_kind_hint(found, cls):
    """What to do when a file of kind `found` was given where a `cls` message was expected."""
    return _KIND_FIX.get((found, _kind_of(cls)), "check which file you passed")


def describe(cls):
    """Words for a message class: 'a net (NetParameter ...)', or its schema name."""
    kind = _kind_of(cls)
    return DESCRIBE[kind] if kind else f"a {cls.DESCRIPTOR.name}"


def parse(data, cls, path):
    """Parse binary `data` as a `cls` message. Returns (message, warnings); raises NetspecError."""
    what = describe(cls)
    if not data:
        raise NetspecError(f"the file is empty; expected {what} in binary form", file=path)
    try:
        fields = wire_fields(data)
    except _Broken as e:
        raise _broken_error(e, data, what, path) from None
    wrong, unknown, right = fit(fields, cls)
    if wrong or not right:
        if looks_like_text(data):
            raise _broken_error(None, data, what, path)
        other = next(iter(_kinds_fitting(fields)), None)
        if other and KINDS[other] is not cls:
            raise NetspecError(f"found {DESCRIBE[other]}; expected {what}", file=path,
                               hint=wrong_kind_hint(other, cls))
        raise NetspecError(f"the top-level fields do not match {what}: "
                           f"{wrong} of {len(fields)} have the wrong wire type", file=path,
                           hint="is this file from another program, or corrupted?")
    message = cls()
    try:
        message.ParseFromString(data)
    except (protobuf_message.DecodeError, ValueError, RecursionError) as e:
        raise NetspecError(f"corrupt or truncated {what}: {e}", file=path) from None
    _check_text(message, "", path)
    return message, unknown_field_warnings(message, path)


def _check_text(message, where, path):
    """Protobuf hands a string field whose bytes are not UTF-8 back as bytes; every later
    stage expects text, so say where it is now."""
    for fd, value in message.ListFields():
        if fd.type == fd.TYPE_STRING:
            for item in (value if fd.is_repeated else [value]):
                if isinstance(item, bytes):
                    raise NetspecError(f"{where}{fd.name} holds {item[:40]!r}, which is not UTF-8 text",
                                       file=path, hint="the file is damaged, or was written with another "
                                                       "text encoding: rewrite that field as UTF-8")
        elif fd.message_type is not None and fd.message_type.name != "BlobProto":
            for i, child in enumerate(value if fd.is_repeated else [value]):
                name = getattr(child, "name", None) if fd.name in ("layer", "layers") else None
                label = f"layer '{name}'" if isinstance(name, str) and name else \
                    f"{fd.name}[{i}]" if fd.is_repeated else fd.name
                _check_text(child, f"{where}{label}: ", path)


def unknown_field_warnings(message, path):
    """Fields a fork added (an SSD caffemodel's permute_param, say) survive a binary copy but
    not a text, YAML or JSON one: say where they are."""
    found = {}
    _collect_unknown(message, "", found)
    return [f"{path}: {where or 'top level'}: field number(s) "
            + ", ".join(str(n) for n in sorted(numbers))
            + " unknown to Caffe's schema (a fork's extension?) are kept in binary copies and "
              "dropped from text, YAML and JSON ones" for where, numbers in found.items()]


def _collect_unknown(message, where, found):
    numbers = {f.field_number for f in unknown_fields.UnknownFieldSet(message)}
    if numbers:
        found.setdefault(where, set()).update(numbers)
    for fd, value in message.ListFields():
        if fd.message_type is None or fd.message_type.name == "BlobProto":
            continue
        children = value if fd.is_repeated else [value]
        for i, child in enumerate(children):
            if fd.name in ("layer", "layers") and child.name:
                label = f"layer '{child.name}'"
            else:
                label = f"{fd.name}[{i}]" if fd.is_repeated else fd.name
            _collect_unknown(child, f"{where} {label}".strip(), found)


def _broken_error(e, data, what, path):
    if looks_like_text(data):
        return NetspecError(f"found text; expected {what} in binary form", file=path,
                            hint="give a text file a text extension (.prototxt, .yaml, .json)")
    if e.why == "truncated":
        return NetspecError(f"truncated: the field at byte {e.offset} runs past the end of the file "
                            f"({len(data)} bytes); expected {what}", file=path,
                            hint="the file was cut short; copy or download it again")
    return NetspecError(f"not a binary protobuf: {e.why} at byte {e.offset}; expected {what}",
                        file=path)


def serialize(message, path):
    try:
        return message.SerializeToString()
    except protobuf_message.EncodeError as e:
        raise NetspecError(f"cannot write: {e}", file=path) from None
