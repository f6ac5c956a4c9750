"""`netspec time`: per-layer lines as `caffe time` prints them, whole-net totals, the comparison."""
import re

from netspec import cli

NET = """
name: "tiny"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 4 dim: 1 dim: 8 dim: 8 } shape { dim: 4 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "ip1" type: "InnerProduct" bottom: "conv1" top: "ip1" inner_product_param { num_output: 5 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }
"""


def run_time(tmp_path, capsys, *extra):
    path = tmp_path / "tiny.prototxt"
    path.write_text(NET)
    code = cli.main(["time", str(path), "--iterations", "2", *extra])
    return code, capsys.readouterr()


def test_time_prints_every_layer_and_honest_totals(tmp_path, capsys):
    code, out = run_time(tmp_path, capsys)
    assert code == 0, out.err
    text = out.out
    for name in ("data", "conv1", "relu1", "ip1", "loss"):
        assert re.search(rf"^\s*{name}\tforward: [0-9.e+-]+ ms\.$", text, re.M), name
        assert re.search(rf"^\s*{name}\tbackward: [0-9.e+-]+ ms\.$", text, re.M), name
    for label in ("Average Forward pass", "Average Backward pass", "Average Forward-Backward", "Total Time"):
        assert re.search(rf"^{label}: [0-9.e+-]+ ms\.$", text, re.M), label
    share = re.search(r"Sum of per-layer Forward-Backward times: ([0-9.e+-]+) ms \(([0-9.]+)% of the whole-net", text)
    assert share and float(share.group(1)) > 0
    assert len(re.findall(r"^Iteration: \d forward-backward time: [0-9.e+-]+ ms\.$", text, re.M)) == 2
    assert "4, 1, 8, 8" in text and text.rstrip().endswith("*** Benchmark ends ***")


def test_time_with_another_input_shape(tmp_path, capsys):
    code, out = run_time(tmp_path, capsys, "--input", "data=2,1,8,8", "--input", "label=2", "--phase", "TEST")
    assert code == 0, out.err
    assert "(2, 1, 8, 8)" in out.out and "TEST phase" in out.out


def test_time_bad_input_is_exit_2(tmp_path, capsys):
    code, out = run_time(tmp_path, capsys, "--input", "data=two")
    assert code == 2 and "NAME=N,C,H,W" in out.err and "Traceback" not in out.err
    code, out = run_time(tmp_path, capsys, "--input", "dat=1,1,8,8")
    assert code == 2 and "did you mean 'data'" in out.err


def test_time_takes_caffes_model_flag(tmp_path, capsys):
    path = tmp_path / "tiny.prototxt"
    path.write_text(NET)
    assert cli.main(["time", "--model", str(path), "--iterations", "1"]) == 0
    assert "conv1\tforward:" in capsys.readouterr().out
    assert cli.main(["time"]) == 2 and "no net given" in capsys.readouterr().err
