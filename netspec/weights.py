"""Learned weights: BlobProto <-> arrays, and .caffemodel files <-> layers by name.

A .caffemodel is a binary NetParameter whose layers carry their parameter blobs. Caffe
matches them to a net's layers by name; blobs written by old Caffe have a legacy 4-d
num/channels/height/width shape instead of `shape`, and old files list layers under the V1
`layers` field. Both read here unchanged.
"""
import numpy as np

from . import caffe_pb2
from .errors import NetspecError


def proto_shape(bp):
    """A BlobProto's shape: `shape` when set, else the legacy 4-d num/channels/height/width."""
    if bp.HasField("shape"):
        return tuple(int(d) for d in bp.shape.dim)
    if any(bp.HasField(f) for f in ("num", "channels", "height", "width")):
        return (bp.num, bp.channels, bp.height, bp.width)
    return (len(bp.data) or len(bp.double_data),)


def is_legacy(bp):
    return not bp.HasField("shape") and any(bp.HasField(f) for f in ("num", "channels", "height", "width"))


def legacy_shape(shape):
    """Caffe's 4-d legacy view of a shape of at most 4 axes: padded with 1s on the left."""
    return (1,) * (4 - len(shape)) + tuple(shape)


def shapes_match(target_shape, bp):
    """Caffe's Blob::ShapeEquals: a legacy proto matches any blob of <= 4 axes whose
    left-padded 4-d shape equals num/channels/height/width."""
    if is_legacy(bp):
        return len(target_shape) <= 4 and legacy_shape(target_shape) == proto_shape(bp)
    return tuple(target_shape) == proto_shape(bp)


def proto_to_array(bp, shape=None, diff=False):
    """The values of a BlobProto (float or double) as a NumPy array of `shape` (default: its own)."""
    values = (bp.double_diff or bp.diff) if diff else (bp.double_data or bp.data)
    shape = proto_shape(bp) if shape is None else tuple(shape)
    array = np.asarray(values, dtype=np.float64 if (bp.double_diff if diff else bp.double_data) else np.float32)
    if array.size != int(np.prod(shape)):
        raise NetspecError(f"blob holds {array.size} values but its shape {shape} needs {int(np.prod(shape))}")
    return array.reshape(shape)


def array_to_proto(data, diff=None, bp=None):
    """A BlobProto with `shape` and float data (and diff when given), as Caffe's Blob::ToProto writes."""
    bp = caffe_pb2.BlobProto() if bp is None else bp
    data = np.asarray(data)
    bp.shape.dim.extend(int(d) for d in data.shape)
    bp.data.extend(data.astype(np.float32, copy=False).ravel())
    if diff is not None:
        bp.diff.extend(np.asarray(diff).astype(np.float32, copy=False).ravel())
    return bp


def read_weights(path):
    """{layer name: [BlobProto, ...]} from a .caffemodel; netspec.io upgrades V0/V1 files
    (`layers` blocks) to `layer` on the way in."""
    from .io import read_caffemodel
    return {lp.name: list(lp.blobs) for lp in read_caffemodel(str(path)).layer}
