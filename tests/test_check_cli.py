"""`netspec check`: exit codes, the table, --explain, --strict, and the JSON schema."""
import json

import pytest

import netspec
from netspec.cli import main

CLEAN = """name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }
layer { name: "fc1" type: "InnerProduct" bottom: "data" top: "fc1" inner_product_param { num_output: 10 } }
layer { name: "relu1" type: "ReLU" bottom: "fc1" top: "fc1" }
layer { name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc2" top: "prob" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc2" bottom: "label" top: "loss" include { phase: TRAIN } }
"""

WARNS = CLEAN.replace('top: "fc2" inner', 'top: "fc2" top: "unused" inner').replace(
    'type: "InnerProduct" bottom: "fc1" top: "fc2"', 'type: "Slice" bottom: "fc1" top: "fc2"').replace(
    'inner_product_param { num_output: 5 }', 'slice_param { slice_point: 5 }')

BROKEN = CLEAN.replace('bottom: "fc1" top: "fc2"', 'bottom: "fc" top: "fc2"')


@pytest.fixture
def net(tmp_path):
    def write(text, name="net.prototxt"):
        path = tmp_path / name
        path.write_text(text)
        return str(path)
    return write


def check(capsys, *argv):
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_clean_net_exits_0_with_a_table(net, capsys):
    code, out, err = check(capsys, net(CLEAN))
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[1].split() == ["layer", "type", "output", "params", "MACs", "memory", "receptive", "field"]
    row = next(line for line in lines if line.startswith("fc1 "))
    assert row.split()[:5] == ["fc1", "InnerProduct", "2x10", "490", "960"]
    assert "relu1  ReLU" in out and "2x10 (in place)" in out
    assert "total: 5 layers, 545 params, 1.1K MACs, 544 B of activations (float32)" in out
    assert "  InnerProduct: 545 params, 100.0%; 1.1K MACs, 97.2%" in out
    assert "whole input (4x4)" in row
    assert "left out in this state (1):" in out and "loss: include { phase: TRAIN }" in out
    assert lines[-1] == "clean"


def test_explain_prints_the_notes(net, capsys):
    text = CLEAN.replace('top: "prob" }', 'top: "prob" }\nlayer { name: "cat" type: "Concat" bottom: "fc2" bottom: "prob" top: "cat" }')
    _, plain, _ = check(capsys, net(text))
    _, explained, _ = check(capsys, net(text), "--explain")
    assert "concat along axis 1: 5 + 5 = 10" in explained and "concat along axis 1" not in plain


def test_errors_exit_1_and_name_file_line_layer(net, capsys):
    path = net(BROKEN)
    code, out, err = check(capsys, path)
    assert code == 1
    assert f"error: {path}:5: fc2 (InnerProduct): bottom 'fc' (bottom 0) is produced by no layer before it" in out
    assert "fix: did you mean 'fc1'?" in out
    assert out.splitlines()[-1] == "1 error(s), 0 warning(s)"


def test_warnings_exit_0_but_1_under_strict(net, capsys):
    code, out, _ = check(capsys, net(WARNS))
    assert code == 0 and "warning:" in out and "top 'unused' is used by no layer" in out
    code, out, _ = check(capsys, net(WARNS), "--strict")
    assert code == 1 and "error:" in out and "warning:" not in out


def test_unreadable_file_and_bad_arguments_exit_2(net, tmp_path, capsys):
    code, out, err = check(capsys, str(tmp_path / "missing.prototxt"))
    assert code == 2 and out == "" and "netspec check: error:" in err and "cannot read" in err
    code, out, err = check(capsys, net("layer { name: 'x' type: }"))
    assert code == 2 and "netspec check: error:" in err
    code, _, err = check(capsys, net(CLEAN), "--input", "data=2,3,x")
    assert code == 2 and "is not NAME=N,C,H,W" in err
    code, _, err = check(capsys, net(CLEAN), "--input", "dta=2,3,4,4")
    assert code == 2 and "did you mean 'data'" in err
    with pytest.raises(SystemExit) as e:
        main(["check", net(CLEAN), "--phase", "VAL"])
    assert e.value.code == 2


def test_phase_stage_level_and_input(net, capsys):
    code, out, _ = check(capsys, net(CLEAN), "--phase", "train", "--input", "data=8,3,4,4", "--json")
    doc = json.loads(out)
    assert code == 1          # TRAIN keeps the loss, whose bottom 'label' nobody makes
    assert doc["state"] == {"phase": "TRAIN", "stages": [], "level": 0}
    assert doc["layers"][1]["tops"] == {"fc1": [8, 10]}
    assert doc["errors"][0]["layer"] == "loss" and "'label'" in doc["errors"][0]["message"]
    code, out, _ = check(capsys, net(CLEAN), "--stage", "a", "--stage", "b", "--level", "2", "--json")
    assert json.loads(out)["state"] == {"phase": "TEST", "stages": ["a", "b"], "level": 2}


# -- the JSON document (docs/check-json.md) ---------------------------------------------------------

TOP_KEYS = {"schema", "file", "state", "ok", "inputs", "outputs", "layers", "totals", "by_type",
            "blocks", "excluded", "errors", "warnings", "notices"}
LAYER_KEYS = {"name", "type", "line", "implicit", "bottoms", "tops", "in_place", "params", "macs",
              "memory", "receptive_field", "loss_weights", "notes"}
ISSUE_KEYS = {"layer", "type", "line", "message", "hint"}


def test_json_schema(net, capsys):
    text = CLEAN.replace('top: "prob" }', 'top: "prob" }\nlayer { name: "fc3" type: "InnerProduct" bottom: "fc1" top: "fc3" inner_product_param { num_output: 2 } }')
    path = net(text)
    code, out, _ = check(capsys, path, "--json")
    doc = json.loads(out)
    assert code == 0 and set(doc) == TOP_KEYS
    assert doc["schema"] == "netspec-check/1" and doc["file"] == path and doc["ok"] is True
    assert doc["inputs"] == {"data": [2, 3, 4, 4]} and doc["outputs"] == ["fc3", "prob"]   # Caffe's order: by name
    assert [x["name"] for x in doc["layers"]] == ["data", "fc1", "relu1", "fc1_relu1_0_split", "fc2", "prob", "fc3"]
    for layer in doc["layers"]:
        assert set(layer) == LAYER_KEYS
    fc1, relu, split = doc["layers"][1:4]
    assert fc1 == {"name": "fc1", "type": "InnerProduct", "line": 3, "implicit": False, "bottoms": ["data"],
                   "tops": {"fc1": [2, 10]}, "in_place": [],
                   "params": {"count": 490, "trainable": 490, "shapes": [[10, 48], [10]], "shared": []},
                   "macs": 960, "memory": 80,
                   "receptive_field": {"fc1": {"size": [4, 4], "stride": [4, 4], "whole_input": True}},
                   "loss_weights": [0.0], "notes": fc1["notes"]}
    assert relu["in_place"] == ["fc1"] and relu["memory"] == 0
    assert split["implicit"] is True and split["line"] == 4 and split["bottoms"] == ["fc1"]
    assert set(doc["totals"]) == {"layers", "params", "macs", "memory", "depth", "trainable_params",
                                  "non_trainable_params", "param_memory", "lower_bound"}
    assert doc["totals"]["lower_bound"] == []
    assert doc["totals"]["params"] == 490 + 55 + 22 and doc["totals"]["layers"] == 6
    top = doc["by_type"][0]
    assert set(top) == {"type", "layers", "params", "params_percent", "macs", "macs_percent", "memory"}
    assert (top["type"], top["layers"], top["params"], top["params_percent"]) == ("InnerProduct", 3, 567, 100.0)
    assert doc["notices"] == []
    assert doc["excluded"] == [{"name": "loss", "reason": "include { phase: TRAIN } does not match the net "
                                                         "state (phase TEST, level 0, stages: none)"}]


def test_json_issues(net, capsys):
    _, out, _ = check(capsys, net(BROKEN), "--json")
    doc = json.loads(out)
    assert doc["ok"] is False and doc["warnings"] == []
    assert [set(e) for e in doc["errors"]] == [ISSUE_KEYS]
    assert doc["errors"][0] == {"layer": "fc2", "type": "InnerProduct", "line": 5,
                                "message": "bottom 'fc' (bottom 0) is produced by no layer before it",
                                "hint": "did you mean 'fc1'?"}
    _, out, _ = check(capsys, net(WARNS), "--json", "--strict")
    doc = json.loads(out)
    assert doc["ok"] is False and doc["warnings"] == [] and len(doc["errors"]) == 1


def test_the_python_api_returns_the_same_report(net, capsys):
    path = net(CLEAN)
    report = netspec.check(path, inputs={"data": (4, 3, 4, 4)})
    assert report.ok and report.exit_code == 0
    assert report.shape("fc2") == (4, 5)
    assert report.layer("fc1").param_count == 490
    assert report.totals["params"] == 545
    _, out, _ = check(capsys, path, "--input", "data=4,3,4,4", "--json")
    assert report.to_dict() == json.loads(out)
    from netspec.io import read_net
    half = netspec.check(read_net(path).param).totals      # the file's batch of 2 instead of 4
    assert half == {"layers": 5, "params": 545, "macs": report.totals["macs"] // 2,
                    "memory": report.totals["memory"] // 2, "depth": 2, "trainable_params": 545,
                    "non_trainable_params": 0, "param_memory": 4 * 545, "lower_bound": []}


def test_the_python_api_takes_a_netspec_too():
    from netspec import NetSpec, layers as L
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    n.fc = L.InnerProduct(n.data, num_output=4)
    report = netspec.check(n)
    assert report.ok and report.shape("fc") == (1, 4) and report.totals["params"] == 4 * 192 + 4


def test_a_net_without_an_input_layer_takes_its_input_from_the_command_line(net, capsys):
    path = net(CLEAN.split("\n", 2)[2])                       # no Input layer: 'data' comes from nowhere
    code, out, _ = check(capsys, path)
    assert code == 1 and "fix: add a layer with this top before it, or give its shape: --input data=N,C,H,W" in out
    code, out, _ = check(capsys, path, "--input", "data=2,3,4,4", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["inputs"] == {"data": [2, 3, 4, 4]} and doc["layers"][0]["name"] == "input"


def test_an_input_layer_without_a_shape_takes_the_given_one(net, capsys):
    path = net(CLEAN.replace(" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } }", ""))
    code, out, _ = check(capsys, path, "--input", "data=5,3,4,4", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["layers"][1]["tops"] == {"fc1": [5, 10]}
    code, out, _ = check(capsys, path)
    assert code == 1 and "give the shape: --input data=N,C,H,W" in out
