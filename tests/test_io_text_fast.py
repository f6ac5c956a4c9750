"""The fast protobuf-text reader against protobuf's own parser: on every file of the zoo and on
mutated nets, it either reads exactly what protobuf reads or steps aside, and the error a
file gets is the one protobuf's parser alone would give it."""
import glob
import os

import pytest
from google.protobuf import text_format
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from netspec import caffe_pb2 as pb
from netspec.errors import NetspecError
from netspec.io import formats, text_fast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = sorted(glob.glob(os.path.join(ROOT, "models", "**", "*.prototxt"), recursive=True)
               + glob.glob(os.path.join(ROOT, "tests", "**", "*.prototxt"), recursive=True))
NET = """name: "m"  # a comment
input: "data" input_dim: 1 input_dim: 3
layer { name: "c" type: "Convolution" bottom: "data" top: "c"
  param { lr_mult: 1 decay_mult: 1.5e-1 } param < lr_mult: 2 >
  convolution_param: { num_output: 8 kernel_size: [3, 3] pad: 1; stride: 2, bias_term: false
    weight_filler { type: 'xavier' std: -.01 } } }
layer { name: "p" type: "Pooling" bottom: "c" top: "p" pooling_param { pool: AVE global_pooling: true } }
layer { name: "w" type: "InnerProduct" bottom: "p" top: "w"
  blobs { shape { dim: 2 } data: 0.5 data: -1 data: 2e3
    data: 0.25 } }
"""
PIECES = ['"', "'", "\\", "{", "}", "<", ">", ":", "[", "]", ",", ";", "#", "\n", " ", "-", "0x1F",
          "010", "1e5", "1.5f", "inf", "-inf", "nan", "t", "True", "1", "-0", "99999999999", '"a" "b"',
          '"\\n"', "[caffe.x]", "layer", "name", "data: 1", "MAX", "4294967296", "é", "\t", "+1"]


def _protobuf(text, cls):
    message = cls()
    try:
        text_format.Parse(text, message)
    except (text_format.ParseError, ValueError, TypeError, OverflowError, RecursionError):
        return None
    return message


def _agrees(text, cls=pb.NetParameter):
    """The fast reader's message is protobuf's, or the fast reader stepped aside."""
    expected = _protobuf(text, cls)
    try:
        message, _ = text_fast.parse(text, cls)
    except text_fast.Unsupported:
        return
    assert expected is not None, "the fast reader accepted what protobuf refuses"
    assert message == expected


def _error(read):
    """What an error says and where, and the layer it names apart (protobuf's parser alone puts
    a wrong top-level field in the layer before it; read from that field on, it names none)."""
    try:
        read()
    except NetspecError as e:
        return (e.file, e.line, e.column, e.message, e.hint), (e.layer, type(e))
    return None, None


@pytest.mark.parametrize("path", FILES, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_zoo_file_reads_as_protobuf_reads_it(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    _agrees(text, pb.SolverParameter if "solver" in os.path.basename(path) else pb.NetParameter)


def test_the_forms_it_reads_and_their_places():
    message, positions = text_fast.parse(NET, pb.NetParameter)
    assert message == _protobuf(NET, pb.NetParameter)
    assert positions["layer"] == [(3, 1), (7, 1), (8, 1)] and positions["input_dim"] == [(2, 15), (2, 28)]
    assert list(message.layer[2].blobs[0].data) == [0.5, -1, 2000, 0.25]


@seed(17)
@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.integers(0, len(NET)), st.integers(0, 6), st.sampled_from(PIECES)),
                min_size=1, max_size=4))
def test_mutated_nets_read_as_protobuf_reads_them_with_protobufs_error(edits):
    text = NET
    for at, cut, piece in edits:
        text = text[:at] + piece + text[at + cut:]
    _agrees(text)
    fast, fast_layer = _error(lambda: formats.parse_text(text, pb.NetParameter, "text", "n.prototxt"))
    slow, slow_layer = _error(lambda: formats._checked(formats._parse_protobuf_text(text, pb.NetParameter,
                                                                                    "n.prototxt")))
    assert fast == slow
    assert fast_layer == slow_layer or fast_layer[0] is None


def test_an_error_late_in_a_big_file_is_found_in_the_field_that_has_it():
    layers = "".join(f'layer {{ name: "l{i}" type: "ReLU" bottom: "x" top: "x" }}\n' for i in range(20000))
    text = layers + 'layer { name: "bad" type: "ReLU" bottom: "x" kernel_size: 3 }\n' + layers
    with pytest.raises(NetspecError) as e:
        formats.parse_text(text, pb.NetParameter, "text", "big.prototxt")
    assert (e.value.line, e.value.column, e.value.layer) == (20001, 46, "bad")
    assert "kernel_size" in str(e.value) and "convolution_param" in e.value.hint


def test_a_forks_block_set_aside_in_a_big_file_does_not_hide_a_later_error():
    layers = "".join(f'layer {{ name: "l{i}" type: "ReLU" bottom: "x" top: "x" }}\n' for i in range(2000))
    fork = 'layer { name: "t" type: "Transpose" bottom: "x" top: "y" transpose_param {\n  dim: 1 }\n}\n'
    loaded = formats.parse_text(layers + fork + layers, pb.NetParameter, "text", "f.prototxt")
    assert len(loaded.message.layer) == 4001 and "transpose_param" in str(loaded.warnings[0])
    with pytest.raises(NetspecError) as e:
        formats.parse_text(layers + fork + layers + 'layer { name: "bad" kernel_size: 3 }\n', pb.NetParameter,
                           "text", "f.prototxt")
    assert (e.value.line, e.value.layer) == (4004, "bad")


@pytest.mark.parametrize("ext", ["prototxt", "yaml", "json"])
def test_weights_written_as_text_read_back_the_same(tmp_path, ext):
    """A blob's values go out and come back in bulk, each exactly (1e-05 included: YAML 1.1
    would read that spelling as a string)."""
    import numpy as np
    from netspec import io as nio
    net = pb.NetParameter(name="w")
    values = np.random.default_rng(0).standard_normal(5000).astype(np.float32)
    values[:4] = [1e-05, -0.0, 3.4028235e38, 0.1]
    blob = net.layer.add(name="ip", type="InnerProduct").blobs.add(data=values.tolist())
    blob.shape.dim.append(5000)
    blob.double_data.extend([1 / 3, 1e-300])
    nio.write_message(net, tmp_path / f"w.{ext}")
    assert nio.read_message(tmp_path / f"w.{ext}", pb.NetParameter) == net


def test_a_yaml_number_list_inside_a_string_stays_a_string(tmp_path):
    numbers = ", ".join(str(i) for i in range(100))
    path = tmp_path / "n.yaml"
    path.write_text(f'name: "[{numbers}]"\ninput_dim: [{numbers}]\n')
    from netspec import io as nio
    net = nio.read_message(path, pb.NetParameter)
    assert net.name == f"[{numbers}]" and list(net.input_dim) == list(range(100))


def test_a_bad_value_in_a_long_json_list_is_named_at_its_place(tmp_path):
    numbers = ", ".join(["1"] * 99 + ["4294967296"])
    path = tmp_path / "n.json"
    path.write_text('{"input_dim":\n  [' + numbers + "]}")
    from netspec import io as nio
    with pytest.raises(NetspecError) as e:
        nio.read_message(path, pb.NetParameter)
    assert (e.value.line, e.value.column) == (2, 4 + 3 * 99) and "4294967296" in str(e.value)
