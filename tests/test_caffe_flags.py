"""Caffe's command lines pasted: -flag spellings, -gpu, signal effects, the CPU command for a GPU solver."""
import os
import re
import shutil

import pytest

from netspec.backend import gpu_available
from netspec.cli import main
from netspec.commands.caffe_flags import translate

HERE = os.path.dirname(os.path.abspath(__file__))

NET = """name: "signalled"
layer { name: "data" type: "Python" top: "data"
  python_param { module: "pylayers" layer: "SignalAt" param_str: '{"signal": "%s", "at": %d}' } }
layer { name: "target" type: "DummyData" top: "target" dummy_data_param { shape { dim: 4 dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "target" top: "loss" }
"""

SOLVER = """net: "net.prototxt"
base_lr: 0.01
lr_policy: "fixed"
display: 1
max_iter: 6
snapshot_prefix: "snap"
solver_mode: %s
"""


def test_translate_keeps_values_and_other_words():
    assert translate(["train", "-solver", "s.prototxt", "-weights=a.caffemodel,b.caffemodel", "-gpu", "all",
                      "--sigint_effect", "snapshot", "-level", "-1"]) == \
        ["train", "--solver", "s.prototxt", "--weights=a.caffemodel,b.caffemodel", "--gpu", "all",
         "--sigint-effect", "snapshot", "--level", "-1"]
    assert translate(["check", "-solver"]) == ["check", "-solver"]       # only Caffe's own commands
    assert translate(["time", "-model", "m", "-iterations", "3", "-phase", "TEST", "-stage", "a,b"]) == \
        ["time", "--model", "m", "--iterations", "3", "--phase", "TEST", "--stage", "a,b"]


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    shutil.copy(os.path.join(HERE, "pycaffe_files", "pylayers.py"), tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(run_dir, signal_name, at, mode="CPU"):
    (run_dir / "net.prototxt").write_text(NET % (signal_name, at))
    (run_dir / "solver.prototxt").write_text(SOLVER % mode)


def test_sighup_snapshots_and_goes_on(run_dir, capsys):
    write(run_dir, "SIGHUP", 3)
    assert main(["train", "-solver", "solver.prototxt"]) == 0
    out = capsys.readouterr().out
    assert os.path.exists(run_dir / "snap_iter_3.caffemodel")       # after the iteration the signal came in
    assert "Optimization Done." in out and "stopped early" not in out
    assert re.search(r"Iteration 1 \([\d.e+-]+ iter/s, [\d.e+-]+s/1 iters\), loss = ", out)
    assert out.count("receptive field") == 1                           # the shape table, once at start


def test_sigint_stops_and_effects_can_be_changed(run_dir, capsys):
    write(run_dir, "SIGINT", 2)
    assert main(["train", "-solver", "solver.prototxt"]) == 0
    out = capsys.readouterr().out
    assert "Optimization stopped early." in out and os.path.exists(run_dir / "snap_iter_2.caffemodel")
    write(run_dir, "SIGINT", 2)
    assert main(["train", "-solver", "solver.prototxt", "-sigint_effect", "none", "-sighup_effect", "stop"]) == 0
    assert "Optimization Done." in capsys.readouterr().out
    write(run_dir, "SIGHUP", 2)
    assert main(["train", "-solver", "solver.prototxt", "-sighup_effect", "stop"]) == 0
    assert "Optimization stopped early." in capsys.readouterr().out


@pytest.mark.skipif(gpu_available(), reason="checks the message where there is no GPU")
def test_gpu_solver_without_gpu_names_the_cpu_command(run_dir, capsys):
    write(run_dir, "SIGHUP", 1000, mode="GPU")
    assert main(["train", "-solver", "solver.prototxt"]) == 2
    err = capsys.readouterr().err
    command = re.search(r"to train on the CPU: netspec (.*) \(or set", err).group(1)
    assert main(command.split()) == 0                               # the command given runs
    assert main(["train", "-solver", "solver.prototxt", "-gpu", "0"]) == 2
    assert "--backend numpy" in capsys.readouterr().err
    assert main(["time", "-model", "net.prototxt", "-iterations", "1", "-gpu", "0"]) == 2
    assert "to run on the CPU: netspec time --model net.prototxt --iterations 1 --backend numpy" in \
        capsys.readouterr().err
    assert main(["device_query", "-gpu", "0"]) == 2
    assert "no GPU to query" in capsys.readouterr().err


def test_test_and_time_take_caffe_flags(run_dir, capsys):
    write(run_dir, "SIGHUP", 1000)
    assert main(["train", "-solver", "solver.prototxt"]) == 0
    assert main(["test", "-model", "net.prototxt", "-weights", "snap_iter_6.caffemodel", "-iterations", "2"]) == 0
    assert main(["time", "-model", "net.prototxt", "-iterations", "1", "-phase", "TRAIN"]) == 0
    assert "Average Forward pass" in capsys.readouterr().out
