"""Learned weights: BlobProto <-> arrays, and .caffemodel files <-> layers by name.

A .caffemodel is a binary NetParameter whose layers carry their parameter blobs. Caffe
matches them to a net's layers by name; blobs written by old Caffe have a legacy 4-d
num/channels/height/width shape instead of `shape`, and old files list layers under the V1
`layers` field. Both read here unchanged.
"""
import numpy as np

from . import caffe_pb2
from .errors import NetspecError


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


def read_weights(path, required=True):
    """{layer name: [BlobProto, ...]} from a .caffemodel; netspec.io upgrades V0/V1 files
    (`layers` blocks) to `layer` on the way in. When weights are `required`, a file without a
    single blob (a .prototxt given as the weights, say) is refused."""
    from .io import read_caffemodel
    found = {lp.name: list(lp.blobs) for lp in read_caffemodel(str(path)).layer}
    if required and not any(found.values()):
        raise NetspecError("this file holds no weights: no layer in it has blobs (a net definition, "
                           "not a trained model)", file=str(path),
                           hint="give the .caffemodel that training (or Net.save) wrote; the .prototxt "
                                "is the model (--model), not the weights")
    return found
