"""`type: "Python"` layers: the user's caffe.Layer subclass, run as pycaffe runs it."""
import os
import shutil

import numpy as np
import pytest

from netspec import Net, caffe_pb2
from netspec.cli import main
from netspec.errors import NetspecError
from netspec.report import check

from gradcheck import check_gradient, make_layer

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = os.path.join(HERE, "pycaffe_files")

SCALE_NET = """name: "scaled"
layer { name: "data" type: "Python" top: "data"
  python_param { module: "pylayers" layer: "ConstantData" param_str: '{"shape": [2, 3, 2, 2], "value": 2.0}' } }
layer { name: "target" type: "Input" top: "target" input_param { shape { dim: 2 dim: 3 dim: 2 dim: 2 } } }
layer { name: "scale" type: "Python" bottom: "data" top: "scaled"
  python_param { module: "pylayers" layer: "ScaleLayer" param_str: '{"init": 0.5}' } }
layer { name: "loss" type: "EuclideanLoss" bottom: "scaled" bottom: "target" top: "loss" }
"""


@pytest.fixture
def files(tmp_path, monkeypatch):
    """The fixture modules and nets copied beside a prototxt in tmp_path, run from another folder."""
    for name in ("pylayers.py", "linreg.prototxt", "linreg_solver.prototxt"):
        shutil.copy(os.path.join(FILES, name), tmp_path / name)
    shutil.copytree(os.path.join(FILES, "layers"), tmp_path / "layers")
    (tmp_path / "scale.prototxt").write_text(SCALE_NET)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return tmp_path


def test_module_beside_the_prototxt_runs_with_param_str_phase_and_blobs(files):
    net = Net(str(files / "scale.prototxt"), phase="TRAIN")
    assert net.blobs["data"].shape == (2, 3, 2, 2) and net.blobs["scaled"].shape == (2, 3, 2, 2)
    np.testing.assert_allclose(net.params["scale"][0].data, [0.5, 0.5, 0.5])     # set in setup()
    out = net.forward(target=np.zeros((2, 3, 2, 2), np.float32))
    np.testing.assert_allclose(net.blobs["scaled"].data, 1.0)                    # 2.0 * 0.5
    # EuclideanLoss: sum(1^2) / 2 / N = 24 / 2 / 2
    assert out["loss"] == pytest.approx(6.0)
    net.backward()
    # d loss / d w_c = sum over N, H, W of (scaled - target) / N * data = 2 * 4 * (1 / 2) * 2
    np.testing.assert_allclose(net.params["scale"][0].diff, [8.0, 8.0, 8.0])
    test_net = Net(str(files / "scale.prototxt"), phase="TEST")
    test_net.forward(target=np.zeros((2, 3, 2, 2), np.float32))
    np.testing.assert_allclose(test_net.blobs["data"].data, -2.0)                # self.phase == caffe.TEST


def test_gradient_of_a_python_layer_with_a_learnable_blob(files):
    import sys
    sys.path.insert(0, str(files))
    try:
        layer = make_layer('name: "s" type: "Python" bottom: "x" top: "y" '
                           'python_param { module: "pylayers" layer: "ScaleLayer" }')
        x = np.random.default_rng(0).standard_normal((2, 3, 2, 2))
        check_gradient(layer, [x])
    finally:
        sys.path.remove(str(files))


def test_linreg_from_bvlc_examples_trains_and_snapshots_learned_blobs(files, capsys, monkeypatch):
    monkeypatch.chdir(files)                         # the solver's net path is relative to the working directory
    solver = files / "linreg_solver.prototxt"
    text = solver.read_text().replace("snapshot_after_train: false", "snapshot_after_train: true")
    solver.write_text(text + 'snapshot_prefix: "%s"\n' % (files / "linreg"))
    import sys
    sys.path.insert(0, str(files / "layers"))        # as BVLC's example asks: the layers folder on the path
    try:
        assert main(["train", "--solver", str(solver)]) == 0
    finally:
        sys.path.remove(str(files / "layers"))
    log = capsys.readouterr().out
    losses = [float(line.rsplit("=", 1)[1]) for line in log.splitlines() if ", loss = " in line]
    assert losses[-1] < 0.5 * losses[0]
    assert os.path.exists(files / "linreg_iter_50.caffemodel")


def test_scale_blob_is_updated_by_the_solver_and_saved(files, tmp_path):
    from netspec.training import Trainer
    sp = caffe_pb2.SolverParameter(net=str(files / "scale.prototxt"), base_lr=0.1, lr_policy="fixed",
                                   max_iter=1, display=0, snapshot_after_train=False)
    trainer = Trainer(sp, seed=1)
    trainer.net.blobs["target"].data[...] = 0
    trainer.step(1)
    # w = 0.5 - 0.1 * 8.0
    np.testing.assert_allclose(trainer.net.params["scale"][0].data, [-0.3, -0.3, -0.3], rtol=1e-6)
    trainer.net.save(str(tmp_path / "w.caffemodel"))
    again = Net(str(files / "scale.prototxt"), weights=str(tmp_path / "w.caffemodel"), phase="TRAIN")
    np.testing.assert_allclose(again.params["scale"][0].data, [-0.3, -0.3, -0.3], rtol=1e-6)


def test_user_exception_names_layer_module_and_user_lines(files, capsys):
    (files / "fail.prototxt").write_text(
        'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }\n'
        'layer { name: "boom" type: "Python" bottom: "x" top: "y" '
        'python_param { module: "pylayers" layer: "FailingForward" } }\n')
    net = Net(str(files / "fail.prototxt"))
    with pytest.raises(NetspecError) as e:
        net.forward(x=np.zeros((1, 2), np.float32))
    text = str(e.value)
    assert "boom" in text and "pylayers.FailingForward.forward()" in text and "ZeroDivisionError" in text
    assert "pylayers.py" in text and "helper_that_fails" in text and "x / 0" in text
    assert "netspec/layers" not in text
    assert main(["time", str(files / "fail.prototxt"), "--iterations", "1"]) == 2
    assert "ZeroDivisionError" in capsys.readouterr().err


def test_check_warns_where_the_module_does_not_import_and_checks_the_rest(tmp_path):
    path = tmp_path / "n.prototxt"
    path.write_text(
        'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 dim: 4 dim: 4 } } }\n'
        'layer { name: "py" type: "Python" bottom: "x" top: "y" python_param { module: "no_such_module" layer: "L" } }\n'
        'layer { name: "after" type: "ReLU" bottom: "y" top: "z" }\n'
        'layer { name: "bad" type: "Pooling" bottom: "x" top: "p" pooling_param { kernel_size: 9 } }\n')
    report = check(str(path))
    assert [e.layer for e in report.errors] == ["bad"]            # the rest is still checked
    (warning,) = [w for w in report.warnings if w.layer == "py"]
    assert "no_such_module" in warning.message and "unknown" in warning.message
    assert report.layer("after").top_shapes == [None]
    with pytest.raises(NetspecError, match="no_such_module"):     # running it is an error
        Net(str(path))


def test_missing_class_is_an_error_naming_the_nearest(files):
    (files / "typo.prototxt").write_text(
        'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 3 dim: 1 dim: 1 } } }\n'
        'layer { name: "s" type: "Python" bottom: "x" top: "y" python_param { module: "pylayers" layer: "ScaleLayr" } }\n')
    report = check(str(files / "typo.prototxt"))
    assert report.errors and "ScaleLayer" in report.errors[0].message
