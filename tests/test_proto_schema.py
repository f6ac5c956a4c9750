"""The schema: the shipped caffe_pb2 is generated from proto/caffe.proto, and the wire
format matches BVLC Caffe's field numbers (bytes encoded by hand from Caffe's schema)."""
import ast
import pathlib
import struct

import pytest
from google.protobuf import descriptor_pb2

from netspec import caffe_pb2 as pb

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _serialized_descriptor(generated_source):
    """The FileDescriptorProto bytes a generated *_pb2.py registers."""
    tree = ast.parse(generated_source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile":
            return ast.literal_eval(node.args[0])
    raise AssertionError("no AddSerializedFile call in the generated module")


def test_shipped_module_is_generated_from_the_schema(tmp_path):
    protoc = pytest.importorskip("grpc_tools.protoc")
    rc = protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"--python_out={tmp_path}",
                      str(ROOT / "proto" / "caffe.proto")])
    assert rc == 0
    fresh = _serialized_descriptor((tmp_path / "caffe_pb2.py").read_text())
    shipped = _serialized_descriptor((ROOT / "netspec" / "caffe_pb2.py").read_text())
    assert fresh == shipped, "regenerate netspec/caffe_pb2.py from proto/caffe.proto (see README)"
    schema = descriptor_pb2.FileDescriptorProto.FromString(shipped)
    assert [m.name for m in schema.message_type] == list(pb.DESCRIPTOR.message_types_by_name)


def _key(number, wire):
    value, out = (number << 3) | wire, b""
    while value >= 0x80:
        out += bytes([(value & 0x7F) | 0x80])
        value >>= 7
    return out + bytes([value])


def _len(number, payload):
    return _key(number, 2) + bytes([len(payload)]) + payload


def _f32(x):
    return struct.pack("<f", x)


def test_net_wire_bytes_match_caffe_field_numbers():
    net = pb.NetParameter(name="x")
    layer = net.layer.add(name="c", type="Conv")
    layer.convolution_param.num_output = 3
    layer.convolution_param.kernel_size.append(5)
    conv = _key(1, 0) + b"\x03" + _key(4, 0) + b"\x05"   # kernel_size is not packed (proto2)
    expected = (_len(1, b"x")
                + _len(100, _len(1, b"c") + _len(2, b"Conv") + _len(106, conv)))
    assert net.SerializeToString() == expected
    assert _key(100, 2) == b"\xa2\x06"


@pytest.mark.parametrize("build, expected", [
    (lambda: pb.BlobShape(dim=[1, 3]), _len(1, b"\x01\x03")),                    # packed int64
    (lambda: pb.BlobProto(data=[1.0], num=2),
     _key(1, 0) + b"\x02" + _len(5, _f32(1.0))),                                   # packed float
    (lambda: pb.LayerParameter(clip_param=pb.ClipParameter(min=-1, max=1)),
     _len(148, _key(1, 5) + _f32(-1) + _key(2, 5) + _f32(1))),
    (lambda: pb.LayerParameter(swish_param=pb.SwishParameter(beta=2)),
     _len(147, _key(1, 5) + _f32(2))),
    (lambda: pb.LayerParameter(pooling_param=pb.PoolingParameter(round_mode=pb.PoolingParameter.FLOOR)),
     _len(121, _key(13, 0) + b"\x01")),
    (lambda: pb.SolverParameter(weights=["w"], layer_wise_reduce=False),
     _key(41, 0) + b"\x00" + _len(42, b"w")),
    (lambda: pb.SolverState(iter=7, learned_net="n"), _key(1, 0) + b"\x07" + _len(2, b"n")),
    (lambda: pb.V1LayerParameter(type=pb.V1LayerParameter.CONVOLUTION, blobs_lr=[1.0]),
     _key(5, 0) + b"\x04" + _key(7, 5) + _f32(1.0)),
    (lambda: pb.Datum(channels=1, data=b"\x07", label=3),
     _key(1, 0) + b"\x01" + _len(4, b"\x07") + _key(5, 0) + b"\x03"),
])
def test_wire_bytes(build, expected):
    assert build().SerializeToString() == expected


def test_defaults_match_caffe():
    assert pb.PoolingParameter().round_mode == pb.PoolingParameter.CEIL
    assert pb.LossParameter().normalization == pb.LossParameter.VALID
    assert pb.BatchNormParameter().moving_average_fraction == pytest.approx(0.999)
    assert pb.BatchNormParameter().eps == pytest.approx(1e-5)
    assert pb.SolverParameter().type == "SGD"
    assert pb.SolverParameter().random_seed == -1
    assert pb.SolverParameter().snapshot_format == pb.SolverParameter.BINARYPROTO
    assert pb.NetState().phase == pb.TEST
    assert pb.DataParameter().prefetch == 4
    assert pb.FillerParameter().type == "constant"
    assert pb.ImageDataParameter().batch_size == 1
    assert pb.CropParameter().axis == 2
