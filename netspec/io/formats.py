"""File formats by extension, kinds by content, and the generic load and dump of a message."""
import contextlib
import errno
import os
import re

from ..errors import NetspecError
from ..utils import PROTO_LIMIT, atomic_write, read_regular
from . import binary, text, text_fast

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
        return read_regular(path, "the file", PROTO_LIMIT)
    except OSError as e:
        raise NetspecError(f"cannot read the file: {_why(path, e)}", file=os.fspath(path),
                           hint=_READ_FIX.get(e.errno)) from None


_READ_FIX = {errno.ENOENT: "check the path (relative paths start from the current folder)",
             errno.EISDIR: "give a file inside it",
             errno.EACCES: "check the file's permissions"}


def _why(path, e):
    """The OS's reason, and a symbolic link's target when that is what is missing."""
    if e.errno == errno.EISDIR:
        return "it is a folder, not a file"
    if e.errno == errno.ENOENT and os.path.islink(path):
        return f"it is a symbolic link to {os.readlink(path)}, which does not exist"
    return e.strerror or str(e)


def decode_text(data, path):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NetspecError(f"found bytes that are not UTF-8 text at byte {e.start}; expected a "
                           "text file", file=path,
                           hint="a binary file needs a binary extension (.caffemodel, "
                                ".binaryproto, .solverstate)") from None


class Loaded:
    """A message as read, before any upgrade, with where its top-level fields start."""

    def __init__(self, message, path, format, positions, warnings=None):    # noqa: A002
        self.message = message
        self.path = path
        self.format = format
        self.positions = positions
        self.warnings = warnings if warnings is not None else []


def load(path, cls, fmt=None, data=None):
    """Read `path` as a `cls` message in its format. Raises NetspecError."""
    path = os.fspath(path)
    if data is None:
        data = read_bytes(path)
    fmt = fmt or format_of(path, data)
    if fmt == "binary":
        message, warnings = binary.parse(data, cls, path)
        return _checked(Loaded(message, path, fmt, {}, warnings))
    source = decode_text(data, path)
    if _blank(source, fmt):
        raise NetspecError(f"the file is empty (nothing but spaces or comments); expected "
                           f"{binary.describe(cls)}", file=path,
                           hint="check that you passed the right file, and that it was saved")
    with _naming_the_format(source, fmt):
        return parse_text(source, cls, fmt, path)


_FORMAT_NAMES = {"text": "protobuf text", "yaml": "YAML", "json": "JSON"}


@contextlib.contextmanager
def _naming_the_format(source, fmt):
    """A file that fails in the format its extension names but reads in another (a prototxt
    saved as .yaml) gets a hint naming the extension it needs."""
    try:
        yield
    except NetspecError as e:
        if len(source) <= HINT_CHARS:
            other = None if _reads_in(source, fmt) else _written_in(source, fmt)
        else:       # re-reading a big file in every format costs more than the hint is worth
            other = _sniffed(source, fmt)
        if other:
            e.hint = (f"the file reads as {_FORMAT_NAMES[other]}, not {_FORMAT_NAMES[fmt]}: "
                      f"give it a {FORMATS[other][0]} extension")
        raise


HINT_CHARS = 1 << 14     # re-read in each format below this size: well under a second


def _sniffed(source, fmt):
    """The other format a big file's first line shows (JSON's brace, protobuf text's 'layer {')."""
    head = source.lstrip("\ufeff \t\r\n")[:200].split("\n", 1)[0]
    if fmt != "json" and head[:1] == "{" and head[1:].lstrip()[:1] in ('"', ""):
        return "json"
    if fmt != "text" and re.match(r"[A-Za-z_]\w*\s*\{", head):
        return "text"
    return None


def _reads_in(source, fmt):
    """Whether `source` is well formed in `fmt` (the error is then in what it says)."""
    if fmt == "text":
        return any(_parses(text.parse, source, cls, "") for cls in KINDS.values())
    return _parses(_load_structured, source, fmt, "")


def _written_in(source, fmt):
    """The other text format in which `source` reads as a net, solver, blob or solverstate."""
    for other in ("json", "yaml"):
        if other == fmt:
            continue
        try:
            data = _load_structured(source, other, "")
        except NetspecError:
            continue
        if isinstance(data, dict) and data and any(set(data) <= _fields(cls) for cls in KINDS.values()):
            return other
    return "text" if fmt != "text" and _reads_in(source, "text") else None


def _parses(read, *args):
    try:
        read(*args)
    except NetspecError:
        return False
    return True


def _blank(source, fmt):
    """Nothing but white space (and, outside JSON, '#' comments)."""
    source = source.lstrip("\ufeff")
    if fmt == "json":
        return not source.strip()
    return _SOMETHING.search(source) is None


_SOMETHING = re.compile(r"^[^\S\n]*[^\s#]", re.M)      # a line that is not blank nor a comment


def parse_text(source, cls, fmt, path):
    """Parse text `source` in format 'text', 'yaml' or 'json' as a `cls` message."""
    if fmt == "text":
        source = source.lstrip("\ufeff")
        try:
            message, positions = text_fast.parse(source, cls)
            return _checked(Loaded(message, path, fmt, positions))
        except text_fast.Unsupported as stop:
            excerpt = text_fast.excerpt(source, stop)
            if excerpt and text_fast.top_level_names(source) <= _fields(cls):
                _first_error(*excerpt, cls, path)   # that field first: a big file's error in a blink
        return _checked(_parse_protobuf_text(source, cls, path))
    data = _load_structured(source, fmt, path)
    if data is not None and not isinstance(data, dict):
        raise NetspecError(f"found {_structured()._describe(data)} at the top; expected a map of "
                           f"{cls.DESCRIPTOR.name} fields", file=path, line=1)
    positions = _structured().positions(data)
    _check_kind(positions, cls, path)
    message, warnings = _structured().to_message(data, cls, path)
    return _checked(Loaded(message, path, fmt, positions, warnings))


def _first_error(excerpt, last_line, cls, path):
    """Raise protobuf's error in `excerpt` if it is on `last_line` or before (after that, it
    may come from the cut or from what the scan did not reach). The file's kind is the caller's
    to check, on the whole file."""
    try:
        _parse_protobuf_text(excerpt, cls, path, first_lines=last_line + 1)
    except NetspecError as e:
        if e.line is not None and e.line <= last_line:
            raise


def _parse_protobuf_text(source, cls, path, first_lines=None):
    """protobuf's parser with netspec's scan beside it; a scan of the `first_lines` only (and
    no check of the file's kind) when only an error there matters."""
    found = text.scan(source, path, first_lines)
    if first_lines is None:
        _check_kind(found.positions, cls, path)     # a file of another kind is named before parsing
    message, _, warnings = text.parse(source, cls, path, found)
    return Loaded(message, path, "text", found.positions, warnings)


def _structured():
    """YAML/JSON support, imported when a file needs it (PyYAML costs a text-only `check` ~15 ms)."""
    from . import structured
    return structured


def _load_structured(source, fmt, path):
    """YAML or JSON text as Mapping/Sequence data. The last one is kept for one more read of
    the same text: finding a file's kind and then reading it parse it once."""
    if _last[:3] == [source, fmt, path]:
        data, _last[:] = _last[3], [None] * 4
        return data
    if fmt == "yaml":
        from .yaml_reader import load_yaml
        data = load_yaml(source, path)
    else:
        from .json_reader import load_json
        data = load_json(source, path)
    _last[:] = [source, fmt, path, data]
    return data


_last = [None, None, None, None]      # source, format, path, data


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
        first = min((at for name in names - _fields(cls) for at in positions[name] if at), default=None)
        raise NetspecError(f"found {binary.DESCRIBE[other[0]]}; expected {binary.describe(cls)}",
                           file=path, line=first[0] if first else None, column=first[1] if first else None,
                           hint=binary.wrong_kind_hint(other[0], cls))


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
    if _blank(source, fmt):
        return preferred or "net"           # whose reader says that the file is empty
    if fmt == "text":
        names = text_fast.top_level_names(source)
    else:
        with _naming_the_format(source, fmt):
            loaded = _load_structured(source, fmt, path)
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
        return _structured().format_yaml(message)
    if fmt == "json":
        return _structured().format_json(message)
    return text.format_message(message)


def check_output(path, kind=None):
    """The format `path` names, after making sure it can take a `kind` file: not a folder,
    in a folder that exists, with an extension that names a format (and not another kind)."""
    path = os.fspath(path)
    _check_folder(path)
    fmt = format_of(path)
    ext = os.path.splitext(path)[1].lower()
    named = _PREFERRED_KIND.get(ext)
    if kind and named and named != kind:
        ours = [e for e, k in _PREFERRED_KIND.items() if k == kind]
        raise NetspecError(f"found the extension '{ext}', which names {binary.DESCRIBE[named]}; "
                           f"the file to write is {binary.DESCRIBE[kind]}", file=path,
                           hint="name it " + " or ".join(ours + [".pb", ".bin"])
                                + " for binary, or use a text extension (.prototxt, .yaml, .json)")
    return fmt


def _check_folder(path):
    if os.path.isdir(path):
        raise NetspecError("cannot write: it is a folder; expected a file name", file=path,
                           hint=f"name a file inside it, e.g. {os.path.join(path, 'out.prototxt')}")
    folder = os.path.dirname(path)
    if folder and not os.path.isdir(folder):
        import shlex    # here: only this error needs it
        raise NetspecError(f"cannot write: the folder '{folder}' does not exist", file=path,
                           hint=f"create it first (mkdir -p {shlex.quote(folder)}), or write elsewhere")


def save(message, path, fmt=None):
    """Write the message to `path` in the format its extension names; never half-written."""
    path = os.fspath(path)
    _check_folder(path)
    payload = dump(message, fmt or format_of(path), path)
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    try:
        atomic_write(path, payload)
    except OSError as e:
        raise NetspecError(f"cannot write the file: {e.strerror or e}", file=path,
                           hint="check that the folder is writable and the disk is not full") from None
