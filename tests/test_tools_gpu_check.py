"""tools/gpu_check.py's parts that need no GPU: the timing nets and the test summary, so the
script works the first time a GPU machine runs it."""
import importlib.util
import pathlib
import sys

import numpy as np
import pytest

from netspec import Net

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tools" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_timing_net_has_a_loss_and_the_batch_asked_for(gpu_check, tmp_path):
    path = gpu_check.net_with_loss("lenet", tmp_path)
    net = Net(str(path), phase="TRAIN", seed=0)
    shape = gpu_check.NETS["lenet"][1]
    assert net.blobs["data"].shape == shape and net.blobs["label"].shape == shape[:1]
    rng = np.random.default_rng(0)
    net.forward(data=rng.standard_normal(shape), label=np.zeros(shape[0]))
    assert np.isfinite(net.loss) and net.loss > 0
    net.backward()
    assert all(p.diff.any() for p in net.params["ip2"])


JUNIT = """<testsuites><testsuite>
<testcase classname="tests.test_layers_neuron" name="test_relu[numpy]"/>
<testcase classname="tests.test_layers_neuron" name="test_relu[cupy]"/>
<testcase classname="tests.test_layers_vision" name="test_pool[cupy-3]"><failure message="x"/></testcase>
<testcase classname="tests.test_ops_cuda" name="test_lrn[float32]"/>
<testcase classname="tests.test_net" name="test_save"><skipped message="no lmdb"/></testcase>
</testsuite></testsuites>"""


def test_summary_counts_the_cupy_tests_apart(gpu_check, tmp_path):
    (tmp_path / "junit.xml").write_text(JUNIT)
    lines, ok = gpu_check.test_summary(tmp_path / "junit.xml")
    assert lines[0] == "CuPy tests: 2 passed, 1 failed, 0 skipped"
    assert lines[1] == "other tests: 1 passed, 0 failed, 1 skipped"
    assert lines[2:] == ["  FAILED tests.test_layers_vision::test_pool[cupy-3]"]
    assert not ok


def test_summary_warns_when_no_cupy_test_ran(gpu_check, tmp_path):
    (tmp_path / "junit.xml").write_text(JUNIT.replace("[cupy", "[numpy").replace("test_ops_cuda", "test_ops")
                                        .replace('<failure message="x"/>', ""))
    lines, ok = gpu_check.test_summary(tmp_path / "junit.xml")
    assert lines[0] == "CuPy tests: 0 passed, 0 failed, 0 skipped"
    assert "no CuPy test passed" in lines[2]
    assert not ok


def test_exits_2_where_no_gpu_is_usable(gpu_check, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cupy", None)       # import cupy raises ImportError
    with pytest.raises(SystemExit) as stop:
        gpu_check.environment()
    assert stop.value.code == 2
    assert "CuPy/GPU not usable" in capsys.readouterr().out
