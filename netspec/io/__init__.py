"""Readers and writers for nets, solvers and blobs in every format netspec knows.

Formats come from the file extension: protobuf text (.prototxt, .pt, .txt, .prototext, .pbtxt),
binary (.caffemodel, .binaryproto, .solverstate, .pb, .bin), YAML (.yaml, .yml) and JSON
(.json), all of the same schema (proto/caffe.proto). Nets and solvers are upgraded from
legacy forms on load, as Caffe does, with a warning saying what changed. Errors are
NetspecErrors naming file, line and column; writes are atomic.
"""
import os

from .. import caffe_pb2
from ..errors import NetspecError
from .formats import (FORMATS, KINDS, check_output, detect_kind, dump, format_of, load, parse_text,
                      read_bytes, save)
from .upgrade import needs_upgrade, upgrade_net, upgrade_solver

__all__ = [
    "NetSource", "net_source", "read_net", "parse_net", "parse_net_text", "write_net", "read_solver",
    "write_solver", "read_message", "write_message", "read_blobproto", "read_caffemodel", "read_weights",
    "detect_kind", "format_of", "check_output", "dump", "upgrade_net", "upgrade_solver", "needs_upgrade",
    "FORMATS", "KINDS",
]


class NetSource:
    """A loaded net: the upgraded NetParameter, where it came from, and each layer's line."""

    def __init__(self, param, path=None, lines=None, warnings=None):
        self.param = param                  # caffe_pb2.NetParameter
        self.path = path
        self.lines = lines if lines is not None else []         # lines[i]: 1-based source line of param.layer[i], or None
        self.warnings = warnings if warnings is not None else []  # what was upgraded or read from a fork dialect

    def line_of(self, index):
        return self.lines[index] if index < len(self.lines) else None


def _net_source(loaded):
    net = loaded.message
    positions, warnings = upgrade_net(net, loaded.path, loaded.positions)
    lines = [at[0] if at else None for at in positions]
    return NetSource(net, loaded.path, lines, loaded.warnings + warnings)


def net_source(param, label=None):
    """A NetSource for a NetParameter held in memory (a copy, upgraded as a file would be)."""
    net = caffe_pb2.NetParameter()
    net.CopyFrom(param)
    _, warnings = upgrade_net(net, label)
    return NetSource(net, label, [], warnings)


def read_net(path, fmt=None):
    """Read a net (prototxt, YAML, JSON or binary) into an upgraded NetSource."""
    return _net_source(load(path, caffe_pb2.NetParameter, fmt))


def parse_net(source, fmt="text", path="<string>"):
    """Parse a net held in memory: text for 'text'/'yaml'/'json', bytes for 'binary'."""
    if fmt == "binary":
        return _net_source(load(path, caffe_pb2.NetParameter, fmt, data=source))
    return _net_source(parse_text(source, caffe_pb2.NetParameter, fmt, path))


def parse_net_text(text, path="<string>"):
    return parse_net(text, "text", path)


def write_net(net, path):
    """Write a NetParameter (or NetSource) in the format `path`'s extension names."""
    save(net.param if isinstance(net, NetSource) else net, path)


def read_solver(path, fmt=None, warnings=None):
    """Read a solver file into an upgraded SolverParameter; upgrade notes go to `warnings`."""
    loaded = load(path, caffe_pb2.SolverParameter, fmt)
    notes = loaded.warnings + upgrade_solver(loaded.message, loaded.path)
    if warnings is not None:
        warnings.extend(notes)
    return loaded.message


def write_solver(solver, path):
    save(solver, path)


def read_message(path, cls, fmt=None):
    """Read any message of the schema from `path`, as stored (no upgrade)."""
    return load(path, cls, fmt).message


def write_message(message, path, fmt=None):
    """Write any message in the format of `path`'s extension (or `fmt`), atomically."""
    save(message, path, fmt)


def read_blobproto(path):
    """A BlobProto file, such as an image mean (mean.binaryproto)."""
    return read_message(path, caffe_pb2.BlobProto)


def read_caffemodel(path):
    """Trained weights: a NetParameter with blobs, upgraded from V0/V1 if needed."""
    return read_net(path).param


def read_weights(path, required=True):
    """{layer name: [BlobProto, ...]} from a .caffemodel or .caffemodel.h5 (Caffe matches weights to a net's layers
    by name); V0/V1 files (`layers` blocks) are upgraded to `layer` on the way in. When weights are `required`, a file without a
    single blob (a .prototxt given as the weights, say) is refused."""
    from . import hdf5
    if hdf5.is_hdf5(path):          # .caffemodel.h5, as Caffe picks its reader by the suffix
        found = hdf5.read_weights(path)
    else:
        found = {lp.name: list(lp.blobs) for lp in read_caffemodel(str(path)).layer}
    if required and not any(found.values()):
        raise NetspecError("this file holds no weights: no layer in it has blobs (a net definition, "
                           "not a trained model)", file=str(path),
                           hint="give the .caffemodel that training (or Net.save) wrote; the .prototxt "
                                "is the model (--model), not the weights")
    return found


def _check_given_kind(path, data, kind, fmt):
    """--kind names how to read an ambiguous file; a binary file that is plainly another kind
    (a .caffemodel read as a solver fits only as unknown fields) is refused, not converted."""
    if (fmt or format_of(path, data)) != "binary":
        return
    try:
        _, unknown, _ = binary.fit(binary.wire_fields(data), KINDS[kind])
    except binary._Broken:
        return                  # the parse says what is broken
    best = next(iter(binary.fitting_kinds(data)), None)
    if unknown and best and best != kind:
        raise NetspecError(f"found {binary.DESCRIBE[best]}; --kind {kind} expects {binary.describe(KINDS[kind])}",
                           file=path, hint=f"drop --kind (or give --kind {best}), or pass the {kind} file")


def read_kind(path, kind=None, fmt=None):
    """(kind, message, warnings) for any file; nets and solvers upgraded. For the CLI."""
    if kind and kind not in KINDS:
        raise NetspecError(f"found kind '{kind}'; expected one of " + ", ".join(KINDS))
    path = os.fspath(path)
    data = read_bytes(path)                     # read once, for the kind and the message
    if kind:
        _check_given_kind(path, data, kind, fmt)
    kind = kind or detect_kind(path, data, fmt)
    loaded = load(path, KINDS[kind], fmt, data)
    if kind == "net":
        source = _net_source(loaded)
        return kind, source.param, source.warnings
    if kind == "solver":
        return kind, loaded.message, loaded.warnings + upgrade_solver(loaded.message, loaded.path)
    return kind, loaded.message, loaded.warnings
