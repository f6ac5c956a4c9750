"""caffe.io: BlobProto / Datum conversions, and images in and out of a net's input layout
(netspec.data.images: load_image, resize_image, oversample, Transformer)."""
import numpy as np

from .. import caffe_pb2
from ..data import datum as _datum
from ..data.images import Preprocessor as Transformer, load_image, oversample, resize_image  # noqa: F401
from ..io.blobs import array_to_proto, proto_to_array


# -- arrays and protos --------------------------------------------------------------------------------
def blobproto_to_array(blob, return_diff=False):
    """A BlobProto's data (or diff) as an array of its shape (legacy 4-d num/channels/height/width too)."""
    return proto_to_array(blob, diff=return_diff)


def array_to_blobproto(arr, diff=None):
    """An array (and optionally its diff) as a BlobProto with `shape`."""
    if diff is not None and np.shape(diff) != np.shape(arr):
        raise ValueError(f"diff shape {np.shape(diff)} does not match data shape {np.shape(arr)}")
    return array_to_proto(np.asarray(arr), None if diff is None else np.asarray(diff))


def arraylist_to_blobprotovector_str(arraylist):
    vec = caffe_pb2.BlobProtoVector()
    vec.blobs.extend([array_to_blobproto(arr) for arr in arraylist])
    return vec.SerializeToString()


def blobprotovector_str_to_arraylist(str):  # noqa: A002 (pycaffe's parameter name)
    vec = caffe_pb2.BlobProtoVector()
    vec.ParseFromString(str)
    return [blobproto_to_array(blob) for blob in vec.blobs]


def array_to_datum(arr, label=None):
    """A C x H x W array as a Datum: uint8 to its bytes, any other type to float_data."""
    if np.ndim(arr) != 3:
        raise ValueError(f"Incorrect array shape: a Datum holds a 3-d (C, H, W) array, got {np.ndim(arr)}-d")
    return _datum.array_to_datum(np.asarray(arr), label)


def datum_to_array(datum):
    """A raw Datum's C x H x W array (uint8 for bytes, float for float_data); not the label."""
    if datum.encoded:
        raise ValueError("the Datum is encoded: decode its image bytes (caffe.io.load_image on a file)")
    array = _datum.datum_to_array(datum)
    return array if array.dtype == np.uint8 else array.astype(float)
