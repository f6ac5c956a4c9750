"""`netspec train` and `netspec test` end to end on tiny data made in tmp_path."""
import re

import numpy as np
import pytest

from netspec import caffe_pb2
from netspec.cli import main
from netspec.data.datum import array_to_datum
from netspec.data.db import write_lmdb
from netspec.layers import LAYERS
from netspec.io import read_weights
from netspec.io.blobs import proto_to_array

NET = """name: "tiny"
layer {{ name: "d" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
  transform_param {{ scale: {scale} mirror: true }} data_param {{ source: "{db}" batch_size: 8 backend: LMDB }} }}
layer {{ name: "d" type: "Data" top: "data" top: "label" include {{ phase: TEST }}
  transform_param {{ scale: {scale} }} data_param {{ source: "{db}" batch_size: 10 backend: LMDB }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param {{ num_output: 12 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "relu" type: "ReLU" bottom: "ip1" top: "ip1" }}
{mid}layer {{ name: "drop" type: "Dropout" bottom: "ip1" top: "ip1" dropout_param {{ dropout_ratio: 0.3 }} }}
layer {{ name: "{last}" type: "InnerProduct" bottom: "ip1" top: "score"
  inner_product_param {{ num_output: {classes} weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "acc" type: "Accuracy" bottom: "score" bottom: "label" top: "accuracy" include {{ phase: TEST }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" }}
"""

SOLVER = """net: "{net}"
test_iter: 3
test_interval: 10
base_lr: {lr}
momentum: 0.9
weight_decay: 0.0005
lr_policy: "inv"
gamma: 0.0001
power: 0.75
display: 5
max_iter: {max_iter}
snapshot: 10
snapshot_prefix: "{prefix}"
solver_mode: CPU
{extra}
"""


@pytest.fixture
def data(tmp_path):
    """30 items of 1x3x3 whose class (0, 1, 2) is which third of the image is bright."""
    rng = np.random.default_rng(0)
    items = []
    for i in range(30):
        label = i % 3
        pixels = rng.integers(0, 60, (1, 3, 3)).astype(np.uint8)
        pixels[0, label] += 180
        items.append((b"%08d" % i, array_to_datum(pixels, label).SerializeToString()))
    write_lmdb(str(tmp_path / "db"), items)
    return tmp_path


def write_files(tmp, name="run", scale=0.00390625, lr=0.05, max_iter=20, extra="", last="ip2", classes=3, mid=""):
    net = tmp / f"{name}_net.prototxt"
    net.write_text(NET.format(db=tmp / "db", scale=scale, last=last, classes=classes, mid=mid))
    solver = tmp / f"{name}_solver.prototxt"
    solver.write_text(SOLVER.format(net=net, lr=lr, max_iter=max_iter, prefix=tmp / name / "snap", extra=extra))
    return str(solver)


def weights(path):
    return {name: [proto_to_array(bp) for bp in blobs] for name, blobs in read_weights(path).items() if blobs}


def test_train_logs_in_caffes_format_and_snapshots(data, capsys):
    solver = write_files(data, max_iter=30, extra="test_compute_loss: true")
    log = data / "train.log"
    assert main(["train", "--solver", solver, "--seed", "1", "--log", str(log), "--plot", str(data / "c.png")]) == 0
    text = log.read_text()
    glog = re.compile(r"^[IWE]\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ \S+\] ")
    assert all(glog.match(line) for line in text.splitlines())          # what parse_log's time parser needs
    assert "] Solving tiny" in text and "] Optimization Done." in text
    assert re.search(r"Iteration 5 \([\d.e+-]+ iter/s, [\d.e+-]+s/5 iters\), loss = [\d.]+\n", text)
    assert re.search(r"    Train net output #0: loss = [\d.]+ \(\* 1 = [\d.]+ loss\)", text)
    assert re.search(r"Iteration 5, lr = 0\.0499\d+", text)
    assert "Iteration 10, Testing net (#0)" in text and re.search(r"\] Test loss: [\d.]+\n", text)
    accuracies = [float(a) for a in re.findall(r"Test net output #0: accuracy = ([\d.]+)", text)]
    assert len(accuracies) == 4 and accuracies[-1] > 0.9                # an easy problem, learnt
    assert "Effective batch: 8 (batch_size) x 1 (iter_size) = 8" in text
    for it in (10, 20, 30):
        for ext in (".caffemodel", ".solverstate", ".solverstate.rng.json"):
            assert (data / "run" / f"snap_iter_{it}{ext}").exists()
    state = caffe_pb2.SolverState.FromString((data / "run" / "snap_iter_20.solverstate").read_bytes())
    assert state.iter == 20 and state.learned_net.endswith("snap_iter_20.caffemodel") and len(state.history) == 4
    assert (data / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("extra", ["", 'type: "Adam" momentum2: 0.999\nbase_lr: 0.01', "iter_size: 2"])
def test_resume_is_bit_exact(data, extra):
    whole = write_files(data, "whole", extra=extra.replace("base_lr: 0.01", ""))
    assert main(["train", "--solver", whole, "--seed", "7"]) == 0
    split = write_files(data, "split", extra=extra.replace("base_lr: 0.01", ""))
    assert main(["train", "--solver", split, "--seed", "7"]) == 0
    # resume the second run from its iteration-10 snapshot: the iteration-20 weights come again
    final = weights(data / "split" / "snap_iter_20.caffemodel")
    (data / "split" / "snap_iter_20.caffemodel").unlink()
    assert main(["train", "--solver", split, "--snapshot", str(data / "split" / "snap_iter_10.solverstate")]) == 0
    resumed = weights(data / "split" / "snap_iter_20.caffemodel")
    reference = weights(data / "whole" / "snap_iter_20.caffemodel")
    for name in reference:
        for a, b, c in zip(reference[name], resumed[name], final[name]):
            assert np.array_equal(a, b) and np.array_equal(a, c), name


def test_fine_tune_table_and_refusal(data, capsys):
    base = write_files(data, "base", max_iter=10)
    assert main(["train", "--solver", base, "--seed", "1"]) == 0
    model = str(data / "base" / "snap_iter_10.caffemodel")
    capsys.readouterr()
    # same names, 5 classes instead of 3: the classifier is refused, with both shapes and the fix
    wider = write_files(data, "wider", max_iter=10, classes=5)
    assert main(["train", "--solver", wider, "--weights", model]) == 2
    out, err = capsys.readouterr()
    assert re.search(r"ip1 +copied +12x9, 12", out) and re.search(r"ip2 +refused", out)
    assert "(3, 12) vs net (5, 12)" in err and "rename the layer" in err
    # renamed classifier: copied / new, and training goes on
    renamed = write_files(data, "renamed", max_iter=10, classes=5, last="ip2_new")
    assert main(["train", "--solver", renamed, "--weights", model]) == 0
    out = capsys.readouterr().out
    assert re.search(r"ip2_new +new", out) and re.search(r"ip2 +skipped", out)
    tuned = weights(data / "renamed" / "snap_iter_10.caffemodel")
    assert tuned["ip2_new"][0].shape == (5, 12)


def test_fine_tune_legacy_reshape(data, capsys):
    base = write_files(data, "base", max_iter=10)
    assert main(["train", "--solver", base, "--seed", "1"]) == 0
    param = caffe_pb2.NetParameter.FromString((data / "base" / "snap_iter_10.caffemodel").read_bytes())
    for lp in param.layer:                   # rewrite the weights as an old 4-d (num, channels, 1, 1) form
        for bp in lp.blobs:
            if len(bp.shape.dim) == 2:
                out, inp = bp.shape.dim
                bp.ClearField("shape")
                bp.num, bp.channels, bp.height, bp.width = out, inp, 1, 1
    legacy = data / "legacy.caffemodel"
    legacy.write_bytes(param.SerializeToString())
    tune = write_files(data, "tune", max_iter=10)
    assert main(["train", "--solver", tune, "--weights", str(legacy)]) == 2
    assert main(["train", "--solver", tune, "--weights", str(legacy), "--weights-legacy-reshape"]) == 0
    assert "reshaped from the legacy shape" in capsys.readouterr().out


def test_nan_loss_stops_and_names_the_layer(data, capsys):
    # a square root of negative numbers: NaN from layer 'root' on, at iteration 12 (after two snapshots)
    root = ('layer { name: "root" type: "Power" bottom: "ip1" top: "ip1" '
            'power_param { power: 0.5 shift: -1000 } include { min_level: 1 } }\n')
    solver = write_files(data, "nan", max_iter=30, mid=root)
    assert main(["train", "--solver", solver, "--seed", "1", "--level", "1"]) == 2
    err = capsys.readouterr().err
    assert "layer 'root' (top 'ip1') is the first" in err and "iteration 0" in err

    solver = write_files(data, "diverge", lr=1e30, max_iter=30)
    assert main(["train", "--solver", solver, "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"the loss became (nan|inf) at iteration [1-9]", err) and "layer '" in err


def test_test_command_scores_every_output(data, capsys):
    solver = write_files(data, "t", max_iter=10)
    assert main(["train", "--solver", solver, "--seed", "1"]) == 0
    capsys.readouterr()
    assert main(["test", "--model", str(data / "t_net.prototxt"), "--weights",
                 str(data / "t" / "snap_iter_10.caffemodel"), "--iterations", "3"]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"Batch \d, accuracy = ", out)) == 3 and len(re.findall(r"Batch \d, loss = ", out)) == 3
    batch = [float(v) for v in re.findall(r"Batch \d, accuracy = ([\d.]+)", out)]
    mean = float(re.search(r"\] accuracy = ([\d.]+)", out).group(1))
    assert mean == pytest.approx(np.mean(batch), abs=1e-5)
    assert re.search(r"\] loss = [\d.]+ \(\* 1 = [\d.]+ loss\)", out)


def test_solver_mistakes_are_clear_errors(data, capsys):
    bad = data / "bad.prototxt"
    bad.write_text('base_lr: 0.1 lr_policy: "fixed" max_iter: 1')
    assert main(["train", "--solver", str(bad)]) == 2
    assert "names no net" in capsys.readouterr().err
    mismatch = write_files(data, "m", extra='test_state { stage: "a" } test_state { stage: "b" }')
    assert main(["train", "--solver", mismatch]) == 2
    assert "2 test_state entries for 1 test nets" in capsys.readouterr().err
    assert main(["train", "--solver", str(data / "absent.prototxt")]) == 2


@pytest.mark.skipif("Convolution" not in LAYERS or "Pooling" not in LAYERS, reason="needs the vision layers")
def test_example_trains_lenet_on_the_shipped_sample(capsys):
    assert main(["train", "--example", "--iterations", "5"]) == 0
    out = capsys.readouterr().out
    assert out.index("conv1") < out.index("Solving LeNet")            # the shape check comes first
    assert re.search(r"Test accuracy after 5 iterations: [\d.]+%", out.splitlines()[-1])


def test_labels_out_of_range_are_a_clear_error(data, capsys):
    solver = write_files(data, "labels", classes=2)          # labels 0..2 with 2 classes
    assert main(["train", "--solver", solver, "--seed", "1"]) == 2
    assert "out of range" in capsys.readouterr().err


def test_progress_line_only_at_a_terminal(tmp_path):
    import io
    from netspec.training import Log
    screen = io.StringIO()
    log = Log(str(tmp_path / "x.log"), stream=screen, progress=True)
    log.progress("iter 3/10  loss 0.5")
    log.info("Iteration 3, loss = 0.5")
    log.close()
    assert "\r\033[Kiter 3/10" in screen.getvalue() and screen.getvalue().rstrip().endswith("Iteration 3, loss = 0.5")
    assert "iter 3/10" not in (tmp_path / "x.log").read_text()
    quiet = io.StringIO()
    Log(stream=quiet).progress("iter 1")              # StringIO is not a terminal
    assert quiet.getvalue() == ""


def test_ctrl_c_snapshots_and_stops(data):
    import signal
    import subprocess
    import sys
    solver = write_files(data, "int", max_iter=10 ** 6)
    proc = subprocess.Popen([sys.executable, "-m", "netspec.cli", "train", "--solver", solver, "--seed", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = ""
    while "Iteration 5, lr" not in seen:
        line = proc.stdout.readline()
        assert line, seen
        seen += line
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "Optimization stopped early." in out
    assert list((data / "int").glob("snap_iter_*.caffemodel"))


def test_iter_size_with_batchnorm_warns(data, capsys):
    bn = 'layer { name: "bn" type: "BatchNorm" bottom: "ip1" top: "ip1" }\n'
    solver = write_files(data, "bn", max_iter=2, mid=bn, extra="iter_size: 2")
    assert main(["train", "--solver", solver, "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "Effective batch: 8 (batch_size) x 2 (iter_size) = 16" in out
    assert re.search(r"^W.*iter_size 2 with BatchNorm in TRAIN \(bn\)", out, re.M)


def test_solver_mode_gpu_asks_for_cupy_and_never_falls_back(tmp_path, capsys, monkeypatch):
    """`solver_mode: GPU` means CuPy; where CuPy or a GPU is missing that is an error (exit 2)
    with the fix, not a silent run on the CPU. Unset solver_mode runs on NumPy."""
    from netspec.commands.train import _default_backend
    monkeypatch.setitem(__import__("sys").modules, "cupy", None)     # `import cupy` fails
    solver = tmp_path / "s.prototxt"
    solver.write_text('net: "n.prototxt"\nbase_lr: 0.01\nmax_iter: 1\nsolver_mode: GPU\n')
    assert main(["train", "--solver", str(solver)]) == 2
    err = capsys.readouterr().err
    assert "solver_mode: GPU" in err and "--backend numpy" in err and "Traceback" not in err
    assert _default_backend(caffe_pb2.SolverParameter(), None) == "numpy"
