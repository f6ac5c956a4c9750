"""Nets, solvers and weights files whose content is wrong: each is named with its file,
line and layer, exit status 2 (1 for a net that `check` finds wrong), never a traceback."""
import numpy as np
import pytest

import netspec
from cli_files import DATA_NET, NET, files, run  # noqa: F401  (files: a fixture)
from netspec.data.datum import array_to_datum
from netspec.data.db import write_lmdb
from netspec.errors import NetspecError


# a solver without a net -------------------------------------------------------------------

def test_solver_without_a_net_is_named(files, capsys):
    (files / "nonet.prototxt").write_text('base_lr: 0.01\nmax_iter: 1\nlr_policy: "fixed"\n')
    code, _, err = run(capsys, "train", "--solver", "nonet.prototxt")
    assert code == 2 and "nonet.prototxt: the solver names no net" in err
    assert 'fix: add net: "path/to/train_val.prototxt" to the solver file' in err


# stages no rule names --------------------------------------------------------------------

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


# an Input dim of zero or below ------------------------------------------------------------

@pytest.mark.parametrize("dim", ["0", "-3"])
def test_input_dim_below_one_names_the_dim(files, capsys, dim):
    (files / "bad.prototxt").write_text(NET.replace("dim: 3 dim: 4", f"dim: {dim} dim: 4"))
    code, out, _ = run(capsys, "check", "bad.prototxt")
    assert code == 1
    assert f"bad.prototxt:2: data (Input): input_param gives top 'data' the shape 2x{dim}x4x4: dim 1 is {dim}; " \
           "every dim must be 1 or more" in out
    assert "fix: write a positive dim 1 in its input_param shape, or give the shape: --input data=N,C,H,W" in out
    assert "reduce kernel" not in out


# --input in place of a Data layer's source; data errors placed at the layer ----------------

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


# Python layers ---------------------------------------------------------------------------

def test_python_layer_whose_module_does_not_import(files, capsys):
    (files / "py.prototxt").write_text(NET.replace(
        'type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } }',
        'type: "Python" top: "data" python_param { module: "my_data" layer: "Loader" }'))
    code, out, _ = run(capsys, "check", "py.prototxt")
    assert code == 0 and "unknown layer type" not in out       # a warning: the rest is checked
    assert "py.prototxt:2: data (Python): module 'my_data' does not import" in out
    assert "the shapes of its tops and of the layers reading them are unknown" in out
    assert "fix: put my_data.py beside the prototxt or on PYTHONPATH" in out
    with pytest.raises(NetspecError, match="module 'my_data' does not import"):
        netspec.Net("py.prototxt")
    # a Python data layer given its shape is fed, as a Data layer is
    net = netspec.Net("py.prototxt", inputs={"data": (2, 3, 4, 4)})
    assert net.forward(data=np.ones((2, 3, 4, 4)))["ip"].shape == (2, 3)


# a net given as the weights ---------------------------------------------------------------

def test_a_prototxt_as_weights_says_it_holds_none(files, capsys):
    code, _, err = run(capsys, "test", "--model", "net.prototxt", "--weights", "net.prototxt")
    assert code == 2 and "net.prototxt: this file holds no weights" in err and "blob(s)" not in err
    assert "fix: give the .caffemodel that training (or Net.save) wrote" in err
    code, _, err = run(capsys, "train", "--solver", "solver.prototxt", "--weights", "train.prototxt")
    assert code == 2 and "train.prototxt: this file holds no weights" in err
    with pytest.raises(NetspecError, match="this file holds no weights"):
        netspec.Net("net.prototxt", weights="net.prototxt")
