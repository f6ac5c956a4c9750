"""Follow-ups to the review of user-facing errors: each mistake gives one clear message (exit
status 2 for arguments and unreadable inputs, 1 for a net that `check` finds wrong), never a
traceback."""
import subprocess
import sys

import numpy as np
import pytest

import netspec
from netspec import cli
from netspec.cli import main
from netspec.data.datum import array_to_datum
from netspec.data.db import write_lmdb
from netspec.errors import NetspecError

NET = """name: "small"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 3 } }
"""
# A net that trains without data files: constant inputs and labels of class 0.
TRAIN_NET = """name: "dummy"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 2 }
  include { stage: "deploy_free" } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 2 }
  exclude { stage: "deploy_free" } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""
DATA_NET = """name: "reads"
layer { name: "mnist" type: "Data" top: "data" top: "label" data_param { source: "{db}" batch_size: 2 backend: LMDB } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(NET)
    netspec.Net(str(tmp_path / "net.prototxt"), seed=0).save(str(tmp_path / "net.caffemodel"))
    (tmp_path / "train.prototxt").write_text(TRAIN_NET)
    (tmp_path / "solver.prototxt").write_text('net: "train.prototxt"\nbase_lr: 0.01\nmax_iter: 1\n'
                                              'lr_policy: "fixed"\nsnapshot_after_train: false\n')
    return tmp_path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def refused(capsys, *argv):
    """An argument argparse refuses: exit status 2 and the reason, no traceback."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert e.value.code == 2 and "Traceback" not in out + err
    return err


# 1. seeds and levels -------------------------------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["train", "--solver", "solver.prototxt", "--seed", "-1"], "argument --seed: found -1; expected an integer of 0 or more"),
    (["test", "--model", "net.prototxt", "--weights", "net.caffemodel", "--seed", "-1"],
     "argument --seed: found -1; expected an integer of 0 or more"),
    (["test", "--model", "net.prototxt", "--weights", "net.caffemodel", "--level", "99999999999999"],
     "argument --level: found 99999999999999; expected an integer from -2147483648 to 2147483647"),
    (["train", "--solver", "solver.prototxt", "--level", "99999999999999"], "argument --level: found 99999999999999"),
])
def test_seed_and_level_out_of_range_are_refused(files, capsys, argv, words):
    assert words in refused(capsys, *argv)


# 2. test --phase in any case; --backend explained -------------------------------------------

def test_test_takes_a_lowercase_phase_and_explains_backend(files, capsys):
    code, out, _ = run(capsys, "test", "--model", "net.prototxt", "--weights", "net.caffemodel",
                       "--phase", "test", "--iterations", "1")
    assert code == 0 and "Batch 0, ip = " in out
    with pytest.raises(SystemExit):
        main(["test", "--help"])
    assert "array backend (default numpy)" in " ".join(capsys.readouterr().out.split())


# 3. --iterations 0 with --example ----------------------------------------------------------

def test_example_refuses_zero_iterations(capsys):
    code, out, err = run(capsys, "train", "--example", "--iterations", "0")
    assert code == 2 and "--iterations must be at least 1, found 0" in err
    assert "Converted" not in out              # refused before any work


# 4. a solver without a net -------------------------------------------------------------------

def test_solver_without_a_net_is_named(files, capsys):
    (files / "nonet.prototxt").write_text('base_lr: 0.01\nmax_iter: 1\nlr_policy: "fixed"\n')
    code, _, err = run(capsys, "train", "--solver", "nonet.prototxt")
    assert code == 2 and "nonet.prototxt: the solver names no net" in err
    assert 'fix: add net: "path/to/train_val.prototxt" to the solver file' in err


# 5. stages no rule names --------------------------------------------------------------------

def test_check_warns_of_a_stage_no_rule_names(files, capsys):
    code, out, _ = run(capsys, "check", "train.prototxt", "--stage", "deploy_fre")
    assert code == 0
    assert "warning: train.prototxt: stage 'deploy_fre' (did you mean 'deploy_free'?) is named by no include " \
           "or exclude rule of this net: it changes nothing" in out
    assert "fix: the net's stages are 'deploy_free'" in out
    code, out, _ = run(capsys, "check", "train.prototxt", "--stage", "deploy_free")
    assert code == 0 and "named by no include" not in out
    code, out, _ = run(capsys, "check", "net.prototxt", "--stage", "a,b", "--strict")
    assert code == 1 and "stages 'a', 'b' are named by no include" in out and "this net has no stage rules" in out


def test_train_and_test_log_a_stage_no_rule_names(files, capsys):
    code, out, _ = run(capsys, "test", "--model", "net.prototxt", "--weights", "net.caffemodel",
                       "--iterations", "1", "--stage", "deploy")
    assert code == 0 and "test.py] stage 'deploy' is named by no include or exclude rule" in out
    assert out.split("stage 'deploy'")[0].splitlines()[-1].startswith("W")
    code, out, _ = run(capsys, "train", "--solver", "solver.prototxt", "--stage", "deploy_fre")
    assert code == 0 and "stage 'deploy_fre' (did you mean 'deploy_free'?) is named by no include" in out


# 6. an Input dim of zero or below ------------------------------------------------------------

@pytest.mark.parametrize("dim", ["0", "-3"])
def test_input_dim_below_one_names_the_dim(files, capsys, dim):
    (files / "bad.prototxt").write_text(NET.replace("dim: 3 dim: 4", f"dim: {dim} dim: 4"))
    code, out, _ = run(capsys, "check", "bad.prototxt")
    assert code == 1
    assert f"bad.prototxt:2: data (Input): input_param gives top 'data' the shape 2x{dim}x4x4: dim 1 is {dim}; " \
           "every dim must be 1 or more" in out
    assert "fix: write a positive dim 1 in its input_param shape, or give the shape: --input data=N,C,H,W" in out
    assert "reduce kernel" not in out


# 7. --input in place of a Data layer's source; data errors placed at the layer ----------------

def test_time_input_overrides_a_data_layer(files, capsys):
    (files / "reads.prototxt").write_text(DATA_NET.replace("{db}", "no_such_lmdb"))
    code, out, err = run(capsys, "time", "reads.prototxt", "--input", "data=2,1,3,3", "-n", "1")
    assert code == 0, err
    assert "Inputs: data (2, 1, 3, 3), label (2,)" in out
    net = netspec.Net("reads.prototxt", phase="TRAIN", inputs={"data": (2, 1, 3, 3)})
    assert net.inputs == ["data", "label"]
    images = np.ones((2, 1, 3, 3))
    out = net.forward(data=images, label=np.array([0, 1]))
    assert np.isclose(net.loss, float(out["loss"])) and np.array_equal(net.blobs["data"].data, images)


def test_a_data_error_at_forward_names_file_and_line(files, capsys):
    records = [array_to_datum(np.zeros(shape, np.uint8), 0).SerializeToString() for shape in ((1, 3, 3), (1, 4, 4))]
    write_lmdb(str(files / "mixed_lmdb"), ((b"%08d" % i, r) for i, r in enumerate(records)))
    (files / "reads.prototxt").write_text(DATA_NET.replace("{db}", "mixed_lmdb"))
    code, _, err = run(capsys, "time", "reads.prototxt", "-n", "1")
    assert code == 2
    assert "reads.prototxt:2: layer 'mnist' (Data): records of different shapes in one batch of 'mixed_lmdb'" in err


# 8. Python layers ---------------------------------------------------------------------------

def test_python_layers_are_named_as_not_supported(files, capsys):
    (files / "py.prototxt").write_text(NET.replace(
        'type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } }',
        'type: "Python" top: "data" python_param { module: "my_data" layer: "Loader" }'))
    code, out, _ = run(capsys, "check", "py.prototxt")
    assert code == 1 and "unknown layer type" not in out
    assert "py.prototxt:2: data (Python): the shape of 'data' is unknown: Python layers (module 'my_data', " \
           "layer 'Loader') run user code that netspec does not load: this layer is not supported" in out
    assert "fix: replace it with netspec's built-in layers" in out
    with pytest.raises(NetspecError, match="module 'my_data', layer 'Loader'"):
        netspec.Net("py.prototxt")
    # a Python data layer given its shape is fed, as a Data layer is
    net = netspec.Net("py.prototxt", inputs={"data": (2, 3, 4, 4)})
    assert net.forward(data=np.ones((2, 3, 4, 4)))["ip"].shape == (2, 3)


# 9. a net given as the weights ---------------------------------------------------------------

def test_a_prototxt_as_weights_says_it_holds_none(files, capsys):
    code, _, err = run(capsys, "test", "--model", "net.prototxt", "--weights", "net.prototxt")
    assert code == 2 and "net.prototxt: this file holds no weights" in err and "blob(s)" not in err
    assert "fix: give the .caffemodel that training (or Net.save) wrote" in err
    code, _, err = run(capsys, "train", "--solver", "solver.prototxt", "--weights", "train.prototxt")
    assert code == 2 and "train.prototxt: this file holds no weights" in err
    with pytest.raises(NetspecError, match="this file holds no weights"):
        netspec.Net("net.prototxt", weights="net.prototxt")


# 10. Ctrl-C while loading ----------------------------------------------------------------------

def test_ctrl_c_while_loading_is_one_line(capsys, monkeypatch):
    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["check", "x.prototxt"]) == 130
    out, err = capsys.readouterr()
    assert err == "netspec: interrupted\n" and out == ""


def test_entry_point_module_loads_no_heavy_libraries():
    """What the console script imports before main() runs stays small, so that main's own
    handler covers the long imports (NumPy, protobuf)."""
    code = "import sys, netspec.cli; print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'google'}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
