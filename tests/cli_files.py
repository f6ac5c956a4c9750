"""What the command-line tests share: a small net with its weights, a training net and
solver that need no data files, in a temporary folder made the working directory."""
import pytest

import netspec
from netspec.cli import main

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
