"""BlobProto <-> arrays. Blobs written by old Caffe have a legacy 4-d
num/channels/height/width shape instead of `shape`; both read here unchanged."""
import math

import numpy as np

from .. import caffe_pb2
from ..errors import NetspecError


LEGACY_FIELDS = ("num", "channels", "height", "width")


def is_legacy(bp):
    """A BlobProto in old Caffe's 4-d form (any legacy field set wins over `shape`, as in Caffe)."""
    return any(bp.HasField(f) for f in LEGACY_FIELDS)


def proto_shape(bp):
    """A BlobProto's shape: the legacy 4-d num/channels/height/width when set, else `shape`."""
    if is_legacy(bp):
        return tuple(getattr(bp, f) for f in LEGACY_FIELDS)
    if bp.HasField("shape"):
        return tuple(int(d) for d in bp.shape.dim)
    return (len(bp.double_data) or len(bp.data),)


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
    """A BlobProto's values (double ones when present, as Caffe's FromProto) as a NumPy array
    of `shape` (default: the proto's own)."""
    doubles, floats = (bp.double_diff, bp.diff) if diff else (bp.double_data, bp.data)
    array = np.asarray(doubles, np.float64) if len(doubles) else np.asarray(floats, np.float32)
    shape = proto_shape(bp) if shape is None else tuple(shape)
    if any(d < 0 for d in shape):
        raise NetspecError(f"blob has the shape {shape}: a dimension below 0",
                           hint="the file is damaged or was not written by Caffe")
    need = math.prod(shape)         # Python's integers: np.prod wraps around silently
    if array.size != need:
        raise NetspecError(f"blob holds {array.size} values but its shape {shape} needs {need}")
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
