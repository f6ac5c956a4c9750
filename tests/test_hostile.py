"""Hostile and careless input, item by item: internal errors are told apart, nothing is
written through a link or over a file of another kind, snapshot sets stay whole."""
import json
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from netspec import cli
from netspec.errors import NetspecError
from netspec.net import Net
from netspec.utils import atomic_write

INPUT = 'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }\n'
TRAIN = ('layer { name: "d" type: "DummyData" top: "data" top: "label" dummy_data_param { '
         'shape { dim: 2 dim: 3 } shape { dim: 2 } } }\n'
         'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }\n'
         'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }\n')
HDF5_OUT = INPUT + ('layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 2 } } }\n'
                    'layer { name: "out" type: "HDF5Output" bottom: "data" bottom: "label" '
                    'hdf5_output_param { file_name: "{path}" } }\n')


def _solver(tmp_path, name="s.prototxt", **fields):
    (tmp_path / "t.prototxt").write_text(TRAIN)
    text = f'net: "{tmp_path}/t.prototxt"\nbase_lr: 0.1\nlr_policy: "fixed"\nrandom_seed: 1\n'
    text += "".join(f"{k}: {json.dumps(v) if isinstance(v, str) else v}\n" for k, v in fields.items())
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


# 1 ---------------------------------------------------------------------------------------------
def test_a_miscounted_layer_is_an_error_in_the_api_too(tmp_path):
    (tmp_path / "n.prototxt").write_text(INPUT + 'layer { name: "l" type: "SoftmaxWithLoss" bottom: "data" top: "l" }\n')
    with pytest.raises(NetspecError, match="takes 2 bottoms, got 1"):
        Net(str(tmp_path / "n.prototxt"))


def test_an_internal_error_exits_3_with_one_line(monkeypatch, tmp_path, capsys):
    from netspec.commands import check
    (tmp_path / "n.prototxt").write_text(INPUT)

    def broken(args):
        raise IndexError("list index out of range")
    monkeypatch.setattr(check, "run", broken)
    monkeypatch.delenv("NETSPEC_TRACEBACK", raising=False)
    assert cli.main(["check", str(tmp_path / "n.prototxt")]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "this is a bug in netspec" in err and "IndexError" in err
    assert f"netspec check {tmp_path / 'n.prototxt'}" in err and "Traceback" not in err


# 3 ---------------------------------------------------------------------------------------------
def test_atomic_write_replaces_a_link_and_keeps_the_mode(tmp_path):
    target, link = tmp_path / "target", tmp_path / "link"
    target.write_text("precious")
    link.symlink_to(target)
    atomic_write(link, "new")
    assert target.read_text() == "precious" and not link.is_symlink() and link.read_text() == "new"
    private = tmp_path / "private"
    private.write_text("a")
    os.chmod(private, 0o600)
    atomic_write(private, "b")
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600


def test_hdf5output_refuses_another_kind_of_file_unless_forced(tmp_path, capsys):
    victim = tmp_path / "notes.txt"
    victim.write_text("keep me")
    net = tmp_path / "n.prototxt"
    net.write_text(HDF5_OUT.replace("{path}", str(victim)))
    assert cli.main(["check", str(net)]) == 0
    assert cli.main(["time", str(net), "-n", "1"]) == 2
    assert "not an HDF5 file" in capsys.readouterr().err and victim.read_text() == "keep me"
    assert cli.main(["time", str(net), "-n", "1", "--force"]) == 0
    import h5py
    assert h5py.is_hdf5(victim)


def test_check_and_net_construction_write_nothing(tmp_path):
    out = tmp_path / "out.h5"
    net = tmp_path / "n.prototxt"
    net.write_text(HDF5_OUT.replace("{path}", str(out)))
    assert cli.main(["check", str(net)]) == 0
    Net(str(net))
    assert not out.exists()
    link = tmp_path / "link.h5"
    link.symlink_to(tmp_path / "elsewhere.h5")
    net.write_text(HDF5_OUT.replace("{path}", str(link)))
    Net(str(net)).forward()
    assert not (tmp_path / "elsewhere.h5").exists() and not link.is_symlink()


def test_a_snapshot_path_holding_another_file_is_refused(tmp_path, capsys):
    solver = _solver(tmp_path, max_iter=1, snapshot_prefix=str(tmp_path / "snap"))
    (tmp_path / "snap_iter_1.caffemodel").write_text("my thesis")
    assert cli.main(["train", "--solver", solver]) == 2
    assert "not a .caffemodel" in capsys.readouterr().err
    assert (tmp_path / "snap_iter_1.caffemodel").read_text() == "my thesis"
    assert cli.main(["train", "--solver", solver, "--force"]) == 0


# 5 ---------------------------------------------------------------------------------------------
def test_an_unwritable_snapshot_prefix_fails_before_training(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    solver = _solver(tmp_path, max_iter=100000, snapshot=100000, snapshot_prefix=str(tmp_path / "file" / "s"))
    assert cli.main(["train", "--solver", solver]) == 2
    assert "Iteration" not in capsys.readouterr().out


# 6 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("side", ["{", '{"nets": 3}', '{"seed": 1, "nets": [{"ip": {"rng": 5}}]}', "\xff"])
def test_a_damaged_rng_file_is_a_clear_error(tmp_path, capsys, side):
    solver = _solver(tmp_path, max_iter=2, snapshot=2, snapshot_prefix=str(tmp_path / "s"))
    assert cli.main(["train", "--solver", solver]) == 0
    state = tmp_path / "s_iter_2.solverstate"
    (tmp_path / "s_iter_2.solverstate.rng.json").write_text(side, errors="surrogateescape")
    capsys.readouterr()
    code = cli.main(["train", "--solver", _solver(tmp_path, max_iter=4, snapshot_prefix=str(tmp_path / "s")),
                     "--snapshot", str(state)])
    err = capsys.readouterr().err
    assert code == 2 and "rng.json" in err and "bug" not in err


# 7 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value,words", [(None, "needs an array"), (np.array(["a", "b"]), "<U1"),
                                         (np.array([object()]), "object")])
def test_forward_refuses_what_is_not_numbers(tmp_path, value, words):
    (tmp_path / "n.prototxt").write_text(INPUT)
    with pytest.raises(NetspecError, match=words):
        Net(str(tmp_path / "n.prototxt")).forward(data=value)


# 8 ---------------------------------------------------------------------------------------------
def test_a_mixed_snapshot_set_is_refused(tmp_path, capsys):
    a = _solver(tmp_path, max_iter=2, snapshot=2, snapshot_prefix=str(tmp_path / "a" / "s"))
    assert cli.main(["train", "--solver", a]) == 0
    b = _solver(tmp_path, "b.prototxt", max_iter=2, snapshot=2, snapshot_prefix=str(tmp_path / "b" / "s"))
    assert cli.main(["train", "--solver", b, "--seed", "7"]) == 0
    os.replace(tmp_path / "b" / "s_iter_2.caffemodel", tmp_path / "a" / "s_iter_2.caffemodel")
    capsys.readouterr()
    code = cli.main(["train", "--solver", a, "--snapshot", str(tmp_path / "a" / "s_iter_2.solverstate")])
    assert code == 2 and "not the weights written with this solver state" in capsys.readouterr().err


def test_a_held_prefix_is_refused_and_stale_temporary_files_removed(tmp_path, capsys):
    from netspec.training.guard import SnapshotLock
    from netspec.training.log import Log
    prefix = str(tmp_path / "s")
    stale = tmp_path / ".s_iter_4.caffemodel.abc123.tmp"
    stale.write_bytes(b"half")
    other = tmp_path / ".other_iter_4.caffemodel.x.tmp"
    other.write_bytes(b"not ours")
    held = SnapshotLock(prefix, Log())
    assert not stale.exists() and other.exists()
    solver = _solver(tmp_path, max_iter=2, snapshot=1, snapshot_prefix=prefix)
    assert cli.main(["train", "--solver", solver]) == 2
    assert "another run is writing snapshots" in capsys.readouterr().err
    held.close()
    assert cli.main(["train", "--solver", solver]) == 0


def test_kill_9_during_snapshots_leaves_whole_sets(tmp_path):
    """Kill a run while it snapshots every iteration; every set left resumes, and the next
    run with that prefix removes the temporary files the killed one left."""
    solver = _solver(tmp_path, max_iter=100000, snapshot=1, snapshot_prefix=str(tmp_path / "s"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd()] + sys.path))
    proc = subprocess.Popen([sys.executable, "-m", "netspec.cli", "train", "--solver", solver],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("s_iter_*.solverstate"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    states = sorted(tmp_path.glob("s_iter_*.solverstate"), key=lambda p: int(p.stem.split("_")[-1]))
    assert len(states) >= 5
    last = states[-1]
    (tmp_path / ".s_iter_999.caffemodel.dead.tmp").write_bytes(b"x")      # as a kill mid-write leaves
    it = int(last.stem.split("_")[-1])
    resume = _solver(tmp_path, max_iter=it + 1, snapshot_prefix=str(tmp_path / "s"))
    assert cli.main(["train", "--solver", resume, "--snapshot", str(last)]) == 0
    assert not list(tmp_path.glob(".s_iter_*.tmp"))


def test_hdf5_weights_replace_a_link_and_keep_the_mode(tmp_path):
    (tmp_path / "n.prototxt").write_text(TRAIN)
    net = Net(str(tmp_path / "n.prototxt"))
    target, link = tmp_path / "target.h5", tmp_path / "w.caffemodel.h5"
    target.write_text("precious")
    link.symlink_to(target)
    net.save_hdf5(str(link))
    assert target.read_text() == "precious" and not link.is_symlink()
    os.chmod(link, 0o600)
    net.save_hdf5(str(link))
    assert stat.S_IMODE(os.stat(link).st_mode) == 0o600


def test_the_log_replaces_a_link_and_refuses_another_file_before_training(tmp_path, capsys):
    solver = _solver(tmp_path, max_iter=1, snapshot_prefix=str(tmp_path / "s"))
    target, log = tmp_path / "precious.txt", tmp_path / "train.log"
    target.write_text("precious")
    log.symlink_to(target)
    assert cli.main(["train", "--solver", solver, "--log", str(log)]) == 0
    assert target.read_text() == "precious" and not log.is_symlink() and "Optimization Done" in log.read_text()
    assert cli.main(["train", "--solver", solver, "--log", str(log)]) == 0      # a log is appended to
    assert log.read_text().count("Optimization Done") == 2
    capsys.readouterr()
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    assert cli.main(["train", "--solver", solver, "--log", str(notes)]) == 2
    out = capsys.readouterr()
    assert "not a log" in out.err and "--force" in out.err and "Iteration" not in out.out
    assert notes.read_text() == "my notes\n"
    weights = str(tmp_path / "s_iter_1.caffemodel")
    assert cli.main(["test", "--model", str(tmp_path / "t.prototxt"), "--weights", weights,
                     "--log", str(notes), "--force"]) == 0
    assert notes.read_text().startswith("my notes\n") and "Running for" in notes.read_text()


def test_a_log_to_a_stream_is_written_and_a_fifo_nobody_reads_is_an_error(tmp_path, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    assert cli.main(["train", "--solver", _solver(tmp_path, max_iter=1), "--log", str(fifo)]) == 2
    assert "no process is reading that FIFO" in capsys.readouterr().err and time.monotonic() - started < 30
    assert cli.main(["train", "--solver", _solver(tmp_path, max_iter=1), "--log", os.devnull]) == 0


def test_a_link_at_the_snapshot_lock_is_dropped_not_followed(tmp_path):
    lock = tmp_path / ".s.lock"
    lock.symlink_to(tmp_path / "created-elsewhere")
    solver = _solver(tmp_path, max_iter=1, snapshot_prefix=str(tmp_path / "s"))
    assert cli.main(["train", "--solver", solver]) == 0
    assert not (tmp_path / "created-elsewhere").exists()
