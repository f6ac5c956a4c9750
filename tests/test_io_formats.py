"""Every format reads back what it wrote: nets, solvers, blobs, solver states, datums."""
import math
import os

import pytest

from netspec import caffe_pb2 as pb
from netspec.errors import NetspecError
from netspec.io import (dump, format_of, read_blobproto, read_caffemodel, read_message,
                        read_net, read_solver, write_message, write_net, write_solver)
from netspec.io.structured import shortest_float32

from io_nets import DATA, NETS, odd_values_solver

EXTENSIONS = [".prototxt", ".yaml", ".json", ".caffemodel", ".pt", ".yml", ".bin"]


@pytest.mark.parametrize("ext", EXTENSIONS)
@pytest.mark.parametrize("name", list(NETS))
def test_net_round_trip(tmp_path, name, ext):
    net = NETS[name]()
    path = tmp_path / f"{name}{ext}"
    write_net(net, path)
    source = read_net(path)
    assert source.param == net
    assert source.warnings == []
    assert len(source.lines) == len(net.layer)


@pytest.mark.parametrize("name", list(NETS))
def test_chain_of_formats_is_lossless(tmp_path, name):
    net = NETS[name]()
    current = net
    for ext in (".yaml", ".json", ".caffemodel", ".prototxt", ".json", ".yaml"):
        path = tmp_path / f"step{ext}"
        write_net(current, path)
        current = read_net(path).param
    assert current == net


@pytest.mark.parametrize("fixture", ["lenet_train_test.prototxt", "vgg_v1_deploy.prototxt",
                                     "lenet_solver.prototxt"])
def test_caffe_files_convert_to_every_format_and_back(tmp_path, fixture):
    """The acceptance case: each loads, goes to YAML, JSON and binary and back, equal."""
    is_solver = "solver" in fixture
    read = read_solver if is_solver else (lambda p: read_net(p).param)
    write = write_solver if is_solver else write_net
    original = read(DATA / fixture)
    for ext in (".yaml", ".json", ".binaryproto", ".prototxt"):
        path = tmp_path / f"copy{ext}"
        write(original, path)
        assert read(path) == original, ext


def test_solver_with_odd_values_round_trips(tmp_path):
    solver = odd_values_solver()
    for ext in (".prototxt", ".yaml", ".json", ".pb"):
        write_solver(solver, tmp_path / f"s{ext}")
        assert read_solver(tmp_path / f"s{ext}") == solver


@pytest.mark.parametrize("ext", [".binaryproto", ".prototxt", ".yaml", ".json"])
def test_blob_solverstate_and_datum_round_trip(tmp_path, ext):
    blob = pb.BlobProto(data=[0.25, -1e-12, 7.0], diff=[1, 2, 3])
    blob.shape.dim.extend([1, 3])
    state = pb.SolverState(iter=500, learned_net="lenet_iter_500.caffemodel", current_step=2)
    state.history.add(data=[0.5, 0.75])
    datum = pb.Datum(channels=1, height=2, width=2, data=bytes([0, 7, 255, 128]), label=9)
    for message in (blob, state, datum):
        path = tmp_path / f"{type(message).__name__}{ext}"
        write_message(message, path)
        assert read_message(path, type(message)) == message
    write_message(blob, tmp_path / f"mean{ext}")
    assert read_blobproto(tmp_path / f"mean{ext}") == blob


def test_caffemodel_keeps_weights(tmp_path):
    net = NETS["resnet"]()
    write_net(net, tmp_path / "w.caffemodel")
    loaded = read_caffemodel(tmp_path / "w.caffemodel")
    assert list(loaded.layer[1].blobs[0].shape.dim) == [4, 4, 3, 3]
    assert loaded.layer[2].blobs[0].data[2] == pytest.approx(3e30, rel=1e-7)
    assert list(loaded.layer[3].blobs[0].double_data) == [0.1, 1e-300]


def test_special_floats_survive_text_formats(tmp_path):
    blob = pb.BlobProto(data=[math.nan, math.inf, -math.inf, 0.1])
    for ext in (".prototxt", ".yaml", ".json", ".binaryproto"):
        write_message(blob, tmp_path / f"b{ext}")
        back = list(read_blobproto(tmp_path / f"b{ext}").data)
        assert math.isnan(back[0]) and back[1:3] == [math.inf, -math.inf]
        assert back[3] == pytest.approx(0.1)


def test_shortest_float32():
    assert shortest_float32(0.10000000149011612) == 0.1
    assert shortest_float32(16777217.0) == 16777216.0


def test_lines_follow_the_source():
    text = (DATA / "lenet_train_test.prototxt").read_text().split("\n")
    source = read_net(DATA / "lenet_train_test.prototxt")
    starts = [i + 1 for i, line in enumerate(text) if line.startswith("layer {")]
    assert source.lines == starts
    assert source.line_of(2) == starts[2] and source.line_of(99) is None


@pytest.mark.parametrize("ext", [".yaml", ".json"])
def test_lines_in_yaml_and_json(tmp_path, ext):
    net = NETS["googlenet"]()
    write_net(net, tmp_path / f"g{ext}")
    source = read_net(tmp_path / f"g{ext}")
    text = (tmp_path / f"g{ext}").read_text().split("\n")
    assert len(source.lines) == len(net.layer)
    assert source.lines == sorted(source.lines)
    for line, layer in zip(source.lines, net.layer):
        # each layer's line opens it: '- name: x' in YAML, '{' before '"name": "x"' in JSON
        window = " ".join(text[line - 1:line + 1])
        assert layer.name in window


def test_text_with_list_syntax_and_comments_keeps_lines():
    from netspec.io import parse_net_text
    source = parse_net_text('# comment { layer {\nname: "x"\nlayer: [ { name: "a" type: "ReLU" },\n'
                            '  { name: "b" type: "ReLU" } ]\nlayer < name: "c" >\n')
    assert [l.name for l in source.param.layer] == ["a", "b", "c"]
    assert source.lines == [3, 4, 5]


def test_format_of():
    assert format_of("a.prototxt") == "text" and format_of("a.PROTOTXT") == "text"
    assert format_of("a.caffemodel") == "binary" and format_of("m.binaryproto") == "binary"
    assert format_of("a.yml") == "yaml" and format_of("a.json") == "json"
    with pytest.raises(NetspecError, match="expected one of"):
        format_of("a.doc")


def test_unknown_extension_input_is_sniffed(tmp_path):
    net = NETS["lenet"]()
    (tmp_path / "net.model").write_bytes(dump(net, "binary"))
    (tmp_path / "net.def").write_text(dump(net, "text"))
    assert read_net(tmp_path / "net.model").param == net
    assert read_net(tmp_path / "net.def").param == net


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text("old")
    bad = pb.NetParameter()
    bad.layer.add(name="clip", type="Clip").clip_param.min = 0     # max is required
    for ext in (".prototxt", ".caffemodel"):
        with pytest.raises(NetspecError, match="required"):
            write_net(bad, path.with_suffix(ext))
    assert path.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["net.prototxt"]
