"""BlobProto <-> arrays, with Caffe's rules for legacy 4-d blobs."""
import numpy as np
import pytest

from netspec import caffe_pb2
from netspec.errors import NetspecError
from netspec.io.blobs import array_to_proto, proto_shape, proto_to_array, shapes_match


def legacy(num, channels, height, width, values=()):
    bp = caffe_pb2.BlobProto(num=num, channels=channels, height=height, width=width)
    bp.data.extend(values)
    return bp


@pytest.mark.parametrize("shape, ok", [((10,), True), ((1, 10), True), ((1, 1, 1, 10), True),
                                       ((10, 1), False), ((1, 1, 1, 1, 10), False)])
def test_legacy_shape_matches_from_the_right(shape, ok):
    assert shapes_match(shape, legacy(1, 1, 1, 10)) is ok


def test_modern_shape_matches_exactly():
    bp = array_to_proto(np.zeros((4, 3)))
    assert proto_shape(bp) == (4, 3)
    assert shapes_match((4, 3), bp) and not shapes_match((1, 4, 3), bp) and not shapes_match((12,), bp)


def test_round_trip_and_double_data():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    bp = array_to_proto(x, diff=-x)
    np.testing.assert_array_equal(proto_to_array(bp), x)
    np.testing.assert_array_equal(proto_to_array(bp, diff=True), -x)
    doubles = caffe_pb2.BlobProto()
    doubles.shape.dim.extend([3])
    doubles.double_data.extend([0.1, 0.2, 0.3])
    out = proto_to_array(doubles)
    assert out.dtype == np.float64 and out[1] == 0.2


def test_legacy_values_reshaped_to_the_target():
    bp = legacy(1, 1, 2, 3, range(6))
    assert proto_shape(bp) == (1, 1, 2, 3)
    np.testing.assert_array_equal(proto_to_array(bp, (2, 3)), np.arange(6).reshape(2, 3))


def test_count_mismatch_is_an_error():
    with pytest.raises(NetspecError, match="holds 2 values but its shape"):
        proto_to_array(legacy(1, 1, 1, 3, [1, 2]))
