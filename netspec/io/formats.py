"""File formats by extension, kinds by content, and the generic load and dump of a message."""
import os
from dataclasses import dataclass, field

from ..errors import NetspecError
from ..utils import atomic_write
from . import binary, structured, text

KINDS = binary.KINDS
FORMATS = {
    "text": (".prototxt", ".pt", ".txt", ".prototext", ".pbtxt"),
    "binary": (".caffemodel", ".binaryproto", ".solverstate", ".pb", ".bin"),
    "yaml": (".yaml", ".yml"),
    "json": (".json",),
}
_PREFERRED_KIND = {".caffemodel": "net", ".solverstate": "solverstate", ".binaryproto": "blob"}


def format_of(path, data=None):
    """'text', 'binary', 'yaml' or 'json' from the extension; by content when it says nothing."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    for fmt, extensions in FORMATS.items():
        if ext in extensions:
            return fmt
    if data is None:
        known = ", ".join(e for exts in FORMATS.values() for e in exts)
        raise NetspecError(f"found extension '{ext or '(none)'}'; expected one of {known}",
                           file=os.fspath(path), hint="the extension chooses the output format")
    return "text" if binary.looks_like_text(data) else "binary"


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise NetspecError(f"cannot read the file: {e.strerror}", file=os.fspath(path)) from None


def decode_text(data, path):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NetspecError(f"found bytes that are not UTF-8 text at byte {e.start}; expected a "
                           "text file", file=path,
                           hint="a binary file needs a binary extension (.caffemodel, "
                                ".binaryproto, .solverstate)") from None


@dataclass
class Loaded:
    """A message as read, before any upgrade, with where its top-level fields start."""
    message: object
    path: str
    format: str
    positions: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)


def load(path, cls, fmt=None, data=None):
    """Read `path` as a `cls` message in its format. Raises NetspecError."""
    path = os.fspath(path)
    if data is None:
        data = read_bytes(path)
    fmt = fmt or format_of(path, data)
    if fmt == "binary":
        message, warnings = binary.parse(data, cls, path)
        return _checked(Loaded(message, path, fmt, {}, warnings))
    return parse_text(decode_text(data, path), cls, fmt, path)


def parse_text(source, cls, fmt, path):
    """Parse text `source` in format 'text', 'yaml' or 'json' as a `cls` message."""
    if fmt == "text":
        _check_kind(text.scan(source.lstrip("\ufeff")).positions, cls, path)
        message, scan, warnings = text.parse(source, cls, path)
        return _checked(Loaded(message, path, fmt, scan.positions, warnings))
    data = structured.load_yaml(source, path) if fmt == "yaml" else structured.load_json(source, path)
    if data is not None and not isinstance(data, dict):
        raise NetspecError(f"found {structured._describe(data)} at the top; expected a map of "
                           f"{cls.DESCRIPTOR.name} fields", file=path, line=1)
    positions = structured.positions(data)
    _check_kind(positions, cls, path)
    message, warnings = structured.to_message(data, cls, path)
    return _checked(Loaded(message, path, fmt, positions, warnings))


def _fields(cls):
    return set(cls.DESCRIPTOR.fields_by_name)


def kind_of_fields(names, preferred=None):
    """The kind whose top-level fields include all `names` (most overlap if none does)."""
    names = set(names)
    fits = [kind for kind, cls in KINDS.items() if names <= _fields(cls)]
    if preferred in fits:
        return preferred
    if fits:
        return fits[0]
    return max(KINDS, key=lambda kind: len(names & _fields(KINDS[kind])))


def _check_kind(positions, cls, path):
    """A whole file of another kind (a solver given as a net) is named as such."""
    names = set(positions)
    if not names or names <= _fields(cls):
        return
    other = [kind for kind, known in KINDS.items() if known is not cls and names <= _fields(known)]
    if other:
        raise NetspecError(f"found {binary.DESCRIBE[other[0]]}; expected {binary.describe(cls)}",
                           file=path, hint="check which file you passed (or --kind)")


def _checked(loaded):
    """Caffe refuses a message with a required field unset (ClipParameter min/max): so do we."""
    message = loaded.message
    if not message.IsInitialized():
        missing = message.FindInitializationErrors()
        line = None
        first = missing[0] if missing else ""
        for name in ("layer", "layers"):
            if first.startswith(name + "["):
                index = int(first[len(name) + 1:first.index("]")])
                spots = loaded.positions.get(name) or []
                line = spots[index][0] if index < len(spots) else None
        raise NetspecError("missing required field(s): " + ", ".join(missing),
                           file=loaded.path, line=line,
                           hint="ClipParameter needs both min and max")
    return loaded


def detect_kind(path, data=None, fmt=None):
    """'net', 'solver', 'blob' or 'solverstate', from the content (and the extension)."""
    path = os.fspath(path)
    if data is None:
        data = read_bytes(path)
    fmt = fmt or format_of(path, data)
    preferred = _PREFERRED_KIND.get(os.path.splitext(path)[1].lower())
    if fmt == "binary":
        kinds = binary.fitting_kinds(data)
        if preferred in kinds:
            return preferred
        return kinds[0] if kinds else (preferred or "net")
    source = decode_text(data, path)
    if fmt == "text":
        names = text.scan(source.lstrip("\ufeff")).positions
    else:
        loaded = structured.load_yaml(source, path) if fmt == "yaml" else structured.load_json(source, path)
        names = loaded if isinstance(loaded, dict) else {}
    return kind_of_fields(names, preferred)


def dump(message, fmt, path="<output>"):
    """The message in format `fmt`, as str (text formats) or bytes (binary)."""
    if not message.IsInitialized():
        raise NetspecError("cannot write: missing required field(s): "
                           + ", ".join(message.FindInitializationErrors()), file=path)
    if fmt == "binary":
        return binary.serialize(message, path)
    if fmt == "yaml":
        return structured.format_yaml(message)
    if fmt == "json":
        return structured.format_json(message)
    return text.format_message(message)


def save(message, path, fmt=None):
    """Write the message to `path` in the format its extension names; never half-written."""
    path = os.fspath(path)
    payload = dump(message, fmt or format_of(path), path)
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    try:
        atomic_write(path, payload)
    except OSError as e:
        raise NetspecError(f"cannot write the file: {e.strerror}", file=path) from None
