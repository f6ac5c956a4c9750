"""Bad files get one clear message (file, line, column, found, expected); never a traceback."""
import os
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netspec import caffe_pb2 as pb
from netspec.cli import main
from netspec.errors import NetspecError
from netspec.io import (detect_kind, dump, parse_net, read_caffemodel, read_net,
                        read_solver, write_message)

from io_nets import DATA, NETS

LENET_TEXT = (DATA / "lenet_train_test.prototxt").read_text()


def error_of(text, fmt="text", path="bad.prototxt"):
    with pytest.raises(NetspecError) as e:
        parse_net(text, fmt, path)
    return e.value


def test_unknown_field_names_closest():
    e = error_of('layer {\n  name: "conv1"\n  convolution_param { num_ouput: 3 }\n}\n')
    assert (e.file, e.line, e.column, e.layer) == ("bad.prototxt", 3, 23, "conv1")
    assert "found unknown field 'num_ouput' in ConvolutionParameter" in str(e)
    assert "did you mean 'num_output'?" in str(e)
    assert str(e).startswith("bad.prototxt:3:23: layer 'conv1': ")


def test_unknown_enum_value_names_valid_ones():
    e = error_of('layer { name: "p" pooling_param { pool: MAXX } }')
    assert "found 'MAXX', not a value of PoolingParameter.PoolMethod" in str(e)
    assert "expected one of MAX, AVE, STOCHASTIC" in str(e) and "did you mean 'MAX'?" in str(e)
    assert (e.line, e.column) == (1, 41)


def test_far_field_name_still_gets_suggestions():
    e = error_of("xyzzy: 1")
    assert "found unknown field 'xyzzy' in NetParameter" in str(e)
    assert "did you mean" in str(e)


@pytest.mark.parametrize("text, words, line, column", [
    ('layer { name: "a" ', "found end of file; expected '}'", 1, 15),
    ('layer { name: a }', "found 'a'; expected a quoted string", 1, 15),
    ('layer {\n convolution_param { num_output: 3.5 } }', "found '3.5'; expected an integer", 2, 34),
    ('layer { convolution_param { num_output: -3 } }', "out of range", 1, 41),
    ('layer { name: "a" name: "b" }', "found a second 'name' in LayerParameter", 1, 25),
    ('layer } ', "found '}'; expected '{'", 1, 7),
    ('layer { top: "a }', "String missing ending quote", 1, 14),
])
def test_malformed_text(text, words, line, column):
    e = error_of(text)
    assert words in str(e)
    assert (e.line, e.column) == (line, column)


def test_missing_required_field():
    e = error_of('layer { name: "c" type: "Clip" clip_param { min: 0 } }')
    assert "missing required field(s): layer[0].clip_param.max" in str(e)


def test_yaml_errors_are_located():
    e = error_of("layer:\n- name: a\n  typo: ReLU\n", "yaml", "n.yaml")
    assert (e.line, e.column, e.layer) == (3, 3, "a")
    assert "found unknown field 'typo' in LayerParameter" in str(e) and "'type'" in str(e)
    e = error_of("layer:\n- name: a\n  convolution_param: {num_output: many}\n", "yaml", "n.yaml")
    assert "found str 'many'; expected an integer" in str(e) and e.line == 3
    e = error_of("layer: [\n", "yaml", "n.yaml")
    assert "malformed YAML" in str(e) and e.line is not None
    e = error_of("name: a\nname: b\n", "yaml", "n.yaml")
    assert "found key 'name' a second time" in str(e) and e.line == 2
    e = error_of("- 1\n- 2\n", "yaml", "n.yaml")
    assert "expected a map of NetParameter fields" in str(e)
    e = error_of("layer:\n- name: a\n  pooling_param: {pool: MAXX}\n", "yaml", "n.yaml")
    assert "not a value of PoolMethod" in str(e) and "did you mean 'MAX'?" in str(e)


def test_json_errors_are_located():
    e = error_of('{\n  "layer": [\n    {"name": "a",}\n  ]\n}', "json", "n.json")
    assert (e.line, e.column) == (3, 18)
    assert "malformed JSON: found '}'; expected a quoted key" in str(e)
    e = error_of('{"layer": [{"name": "a", "bottom": 3.5}]}', "json", "n.json")
    assert "bottom: found float 3.5; expected a string" in str(e) and e.column == 26
    e = error_of('{"name": "a"} x', "json", "n.json")
    assert "found 'x'; expected end of file" in str(e)
    e = error_of('{"name": "a\\q"}', "json", "n.json")
    assert "malformed JSON" in str(e)


def test_wrong_kind_text(tmp_path):
    with pytest.raises(NetspecError, match=r"found a solver \(SolverParameter\); expected a net"):
        read_net(DATA / "lenet_solver.prototxt")
    with pytest.raises(NetspecError, match=r"found a net .*; expected a solver"):
        read_solver(DATA / "lenet_train_test.prototxt")


def test_binary_errors(tmp_path):
    model = tmp_path / "m.caffemodel"
    model.write_bytes(b"")
    with pytest.raises(NetspecError, match="the file is empty; expected a net"):
        read_caffemodel(model)
    good = dump(NETS["resnet"](), "binary")
    model.write_bytes(good[:len(good) // 2])
    with pytest.raises(NetspecError, match="truncated: the field at byte \\d+ runs past the end"):
        read_caffemodel(model)
    state = tmp_path / "s.solverstate"
    write_message(pb.SolverState(iter=100, learned_net="x.caffemodel", current_step=1), state)
    model.write_bytes(state.read_bytes())
    with pytest.raises(NetspecError, match=r"found a solver snapshot \(SolverState"):
        read_caffemodel(model)
    model.write_text(LENET_TEXT)
    with pytest.raises(NetspecError, match="found text; expected a net .* in binary form"):
        read_caffemodel(model)
    model.write_bytes(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")
    with pytest.raises(NetspecError, match="not a binary protobuf"):
        read_caffemodel(model)
    assert detect_kind(state) == "solverstate"


def test_binary_in_a_text_file(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_bytes(dump(NETS["resnet"](), "binary"))
    with pytest.raises(NetspecError, match="not UTF-8 text"):
        read_net(path)


def test_missing_file():
    with pytest.raises(NetspecError, match="cannot read the file"):
        read_net("no/such/net.prototxt")


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.prototxt"
    bad.write_text('layer {\n  nme: "x"\n}\n')
    assert main(["convert", str(bad), str(tmp_path / "out.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"netspec convert: error: {bad}:2:3: found unknown field 'nme'")
    assert "Traceback" not in err
    assert not (tmp_path / "out.yaml").exists()
    assert main(["convert", str(DATA / "lenet_solver.prototxt"), str(tmp_path / "x.docx")]) == 2


def test_convert_command_detects_kinds(tmp_path, capsys):
    blob = pb.BlobProto(data=[1, 2])
    write_message(blob, tmp_path / "mean.binaryproto")
    assert main(["convert", str(tmp_path / "mean.binaryproto"), str(tmp_path / "mean.json")]) == 0
    assert "(blob, json)" in capsys.readouterr().out
    assert main(["convert", str(DATA / "lenet_solver.prototxt"), str(tmp_path / "s.json")]) == 0
    assert "(solver, json)" in capsys.readouterr().out
    assert main(["convert", "--kind", "solverstate", str(tmp_path / "mean.binaryproto"),
                 str(tmp_path / "x.json")]) == 2


# --- fuzz --------------------------------------------------------------------------------

def _parse_or_clean_error(text, fmt="text", name="fuzz.prototxt"):
    """Parse, or fail as a user should see it: the message starts with the file's name and,
    where it gives one, a line of the file (always for prototxt and JSON); no traceback."""
    try:
        parse_net(text, fmt, name)
    except NetspecError as e:
        message = str(e)
        assert e.file == name and message.startswith(f"{e.where()}: "), message
        assert fmt == "yaml" or e.line is not None, message
        if e.line is not None:
            assert message.startswith(f"{name}:{e.line}") and 1 <= e.line <= text.count("\n") + 2, message
        assert e.message.strip() and "Traceback" not in message, message
        return e
    return None


_edit = st.tuples(st.integers(0, len(LENET_TEXT)), st.integers(0, 3),
                  st.sampled_from(list('{}<>[]:;,"\'#\n ') + ["layers", "layer", "input_dim: 1",
                                   "ceil_mode: true", "-1", "3.5e9", "\\", "MAX", "nan", "\x00"]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_edit, min_size=1, max_size=4))
def test_fuzz_mutated_prototxt(edits):
    text = LENET_TEXT
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut:]
    _parse_or_clean_error(text)


@pytest.mark.parametrize("at, cut, insert", [(0, 0, "{"), (200, 0, "\x00"), (400, 3, "-1"), (-2, 0, "layers")])
def test_a_mutated_prototxt_through_the_cli(tmp_path, capsys, at, cut, insert):
    """What the fuzzed parser says is what the user reads: exit status 2, the file and line
    first, and no output written."""
    text = LENET_TEXT[:at] + insert + LENET_TEXT[at + cut:]
    error = _parse_or_clean_error(text)
    assert error is not None
    path = tmp_path / "fuzz.prototxt"
    path.write_text(text)
    assert main(["convert", str(path), str(tmp_path / "out.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"netspec convert: error: {path}:{error.line}:") and "Traceback" not in err
    assert os.listdir(tmp_path) == ["fuzz.prototxt"]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=string.printable + "{}<>é\x00", max_size=200))
def test_fuzz_random_text(text):
    _parse_or_clean_error(text)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(alphabet='{}[]:,"0123456789.-eE tnrufalsNIy\n\x0b&*!|>-', max_size=80),
                 st.text(max_size=60)))
def test_fuzz_random_json_and_yaml(text):
    _parse_or_clean_error(text, "json")
    _parse_or_clean_error(text, "yaml")


def test_help_lists_the_io_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "convert" in out and "upgrade" in out
    for command in ("convert", "upgrade"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "IN" in capsys.readouterr().out


LENET_JSON = dump(NETS["lenet"](), "json")
LENET_YAML = dump(NETS["lenet"](), "yaml")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["json", "yaml"]), st.lists(_edit, min_size=1, max_size=3))
def test_fuzz_mutated_json_and_yaml(fmt, edits):
    text = LENET_JSON if fmt == "json" else LENET_YAML
    for at, cut, insert in edits:
        at = at % (len(text) + 1)
        text = text[:at] + insert + text[at + cut:]
    _parse_or_clean_error(text, fmt)


def test_fork_fields_in_a_caffemodel_are_named(tmp_path):
    layer = pb.LayerParameter(name="conv4_3_norm", type="Normalize").SerializeToString()
    layer += b"\x8a\x0d\x02\x08\x01"            # field 209 (a YOLOv2 fork's region_loss_param), 2 bytes
    model = tmp_path / "ssd.caffemodel"
    model.write_bytes(b"\x0a\x03ssd" + b"\xa2\x06" + bytes([len(layer)]) + layer)
    source = read_net(model)
    assert source.param.layer[0].name == "conv4_3_norm"
    assert source.warnings == [f"{model}: layer 'conv4_3_norm': field number(s) 209 unknown to "
                               "Caffe's schema (a fork's extension?) are kept in binary copies "
                               "and dropped from text, YAML and JSON ones"]
    write_message(source.param, tmp_path / "copy.caffemodel")
    assert (tmp_path / "copy.caffemodel").read_bytes() == model.read_bytes()
