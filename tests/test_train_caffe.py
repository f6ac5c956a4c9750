"""Training as Caffe's Solver and `caffe train` behave: solver state layout, smoothed loss,
snapshot prefix, train_state level, fine-tuning into test nets, and logs that Caffe's
tools/extra/parse_log.py reads (its regular expressions and time parser, written out here)."""
import datetime
import io
import math
import re

import numpy as np
import pytest
from google.protobuf import text_format

from netspec import caffe_pb2
from netspec.cli import main
from netspec.solver import Solver, learning_rate
from netspec.training import Log, Trainer, read_solver
from netspec.io.blobs import array_to_proto
from test_train import data, write_files  # noqa: F401  (the fixture and the tiny net)

BN = 'layer { name: "bn" type: "BatchNorm" bottom: "ip1" top: "ip1" }\n'


def test_solverstate_has_caffes_history_count_with_batchnorm(data):
    # Caffe's learnable_params keep BatchNorm's 3 statistics blobs (lr_mult 0): 2 + 3 + 2 history blobs
    solver = write_files(data, "bn", max_iter=10, mid=BN)
    assert main(["train", "--solver", solver, "--seed", "1"]) == 0
    state = caffe_pb2.SolverState.FromString((data / "bn" / "snap_iter_10.solverstate").read_bytes())
    assert [tuple(bp.shape.dim) for bp in state.history] == [(12, 9), (12,), (12,), (12,), (1,), (3, 12), (3,)]
    assert main(["train", "--solver", solver, "--snapshot", str(data / "bn" / "snap_iter_10.solverstate")]) == 0


def test_batchnorm_statistics_are_not_moved_by_the_solver(data):
    sp = read_solver(write_files(data, "still", mid=BN, extra='type: "Adam" momentum2: 0.999'))
    trainer = Trainer(sp, seed=1, log=Log(stream=io.StringIO()))
    slots = [s for s in trainer.solver.params if s.layer == "bn"]
    assert len(slots) == 3 and all(s.lr_mult == 0 and s.decay_mult == 1 for s in slots)
    trainer.net.forward()
    before = [s.blob.data.copy() for s in slots]
    trainer.net.clear_param_diffs()
    trainer.solver.apply_update()
    assert all(np.array_equal(a, s.blob.data) for a, s in zip(before, slots))


def test_multistep_logs_each_step_as_caffe():
    sp = text_format.Parse('base_lr: 1 lr_policy: "multistep" gamma: 0.5 stepvalue: 2 stepvalue: 3',
                           caffe_pb2.SolverParameter())
    notes = []
    solver = Solver(sp, [], log=notes.append)
    rates = []
    for it in range(5):
        solver.iter = it
        rates.append(solver.rate())
    assert rates == [1, 1, 0.5, 0.25, 0.25]
    assert notes == ["MultiStep Status: Iteration 2, step = 1", "MultiStep Status: Iteration 3, step = 2"]


def test_snapshot_prefix_rules_of_caffe(data):
    solver = write_files(data, "pre", max_iter=10)
    text = open(solver).read()
    folder = data / "snaps"
    folder.mkdir()
    with open(solver, "w") as f:                        # a directory: the solver's stem goes inside it
        f.write(re.sub(r'snapshot_prefix: ".*"', f'snapshot_prefix: "{folder}"', text))
    assert main(["train", "--solver", solver, "--seed", "1"]) == 0
    assert (folder / "pre_solver_iter_10.caffemodel").exists()
    with open(solver, "w") as f:                        # none: the solver's path without its extension
        f.write(re.sub(r'snapshot_prefix: ".*"\n', "", text))
    assert main(["train", "--solver", solver, "--seed", "1"]) == 0
    assert (data / "pre_solver_iter_10.solverstate").exists()


def test_average_loss_below_one_is_refused(data, capsys):
    solver = write_files(data, "avg", extra="average_loss: 0")
    assert main(["train", "--solver", solver]) == 2
    assert "average_loss must be at least 1, found 0" in capsys.readouterr().err


def test_displayed_loss_is_the_mean_of_the_last_average_loss(data, capsys):
    solver = write_files(data, "smooth", max_iter=9, extra="average_loss: 3")
    text = open(solver).read().replace("display: 5", "display: 1").replace("test_interval: 10", "test_interval: 100")
    with open(solver, "w") as f:
        f.write(text)
    assert main(["train", "--solver", solver, "--seed", "3"]) == 0
    out = capsys.readouterr().out
    shown = {int(i): float(v) for i, v in re.findall(r"Iteration (\d+)(?: \([^)]*\))?, loss = (\S+)\n", out)}
    raw = [float(v) for v in re.findall(r"Train net output #0: loss = (\S+) ", out)]
    assert len(raw) == 9
    for it in range(9):
        assert shown[it] == pytest.approx(np.mean(raw[max(0, it - 2):it + 1]), rel=3e-5), it


def test_caffe_train_sets_the_level_from_the_command(data, capsys):
    # a layer that makes NaN, in level 1 only: `caffe train` replaces train_state's level by -level (0)
    root = ('layer { name: "root" type: "Power" bottom: "ip1" top: "ip1" '
            'power_param { power: 0.5 shift: -1000 } include { min_level: 1 } }\n')
    solver = write_files(data, "lvl", max_iter=5, mid=root, extra="train_state { level: 1 }")
    assert main(["train", "--solver", solver, "--seed", "1"]) == 0
    assert "train_state level 1 is replaced by --level 0" in capsys.readouterr().out
    assert main(["train", "--solver", solver, "--seed", "1", "--level", "1"]) == 2
    assert "layer 'root'" in capsys.readouterr().err


def test_weights_list_also_fills_layers_only_a_test_net_has(data, tmp_path):
    from netspec.commands.train import fine_tune
    base = write_files(data, "base", max_iter=10)
    assert main(["train", "--solver", base, "--seed", "1"]) == 0
    probe = ('layer { name: "probe" type: "InnerProduct" bottom: "data" top: "probe" include { phase: TEST } '
             'inner_product_param { num_output: 2 } }\n')
    sp = read_solver(write_files(data, "probe", max_iter=10, mid=probe))
    extra = caffe_pb2.NetParameter()
    lp = extra.layer.add(name="probe", type="InnerProduct")
    w, b = np.arange(18, dtype=np.float32).reshape(2, 9), np.array([5, 6], np.float32)
    array_to_proto(w, bp=lp.blobs.add())
    array_to_proto(b, bp=lp.blobs.add())
    (tmp_path / "probe.caffemodel").write_bytes(extra.SerializeToString())
    screen = io.StringIO()
    log = Log(stream=screen)
    trainer = Trainer(sp, seed=2, log=log)
    for path in (str(data / "base" / "snap_iter_10.caffemodel"), str(tmp_path / "probe.caffemodel")):
        fine_tune(trainer, path, False, log)
    probe_blobs = trainer.test_nets[0].layer("probe").blobs
    assert np.array_equal(probe_blobs[0].data, w) and np.array_equal(probe_blobs[1].data, b)
    first, second = screen.getvalue().split("Fine-tuning from")[1:]
    assert re.search(r"probe \(test net #0\) +new", first) and re.search(r"ip1 +copied", first)
    assert re.search(r"probe \(test net #0\) +copied", second) and re.search(r"ip2 +new", second)


# -- what Caffe's tools/extra/parse_log.py and extract_seconds.py do with a log ----------------------
ITERATION = re.compile(r"Iteration (\d+)")
TRAIN_OUTPUT = re.compile(r"Train net output #(\d+): (\S+) = ([\.\deE+-]+)")
TEST_OUTPUT = re.compile(r"Test net output #(\d+): (\S+) = ([\.\deE+-]+)")
LEARNING_RATE = re.compile(r"lr = ([-+]?[0-9]*\.?[0-9]+([eE]?[-+]?[0-9]+)?)")


def glog_time(line, year=2024):
    """extract_seconds.py's reading: 'Lmmdd hh:mm:ss.micro ...'; anything else stops it."""
    first, clock = line.strip().split()[:2]
    month, day = int(first[1:3]), int(first[3:])
    pos = clock.rfind(".")
    hour, minute, second = (int(x) for x in clock[:pos].split(":"))
    return datetime.datetime(year, month, day, hour, minute, second, int(clock[pos + 1:]))


def parse_log(text):
    """parse_log.py's tables: rows of NumIters, Seconds, LearningRate and each output, for train and test."""
    lines = text.splitlines()
    start = next(glog_time(line) for line in lines if "Solving" in line)
    iteration, rate = -1, math.nan
    tables, rows = {"train": [], "test": []}, {"train": None, "test": None}
    for line in lines:
        match = ITERATION.search(line)
        if match:
            iteration = float(match.group(1))
        if iteration == -1:
            continue
        seconds = (glog_time(line) - start).total_seconds()
        match = LEARNING_RATE.search(line)
        if match:
            rate = float(match.group(1))
        for kind, regex in (("train", TRAIN_OUTPUT), ("test", TEST_OUTPUT)):
            row, table = rows[kind], tables[kind]
            match = regex.search(line)
            if match:
                if not row or row["NumIters"] != iteration:
                    if row:
                        table.append(row)
                    row = {"NumIters": iteration, "Seconds": seconds, "LearningRate": rate}
                row[match.group(2)] = float(match.group(3))
            if row and table and len(row) == len(table[0]):
                table.append(row)
                row = None
            rows[kind] = row
    return tables["train"], tables["test"]


def test_log_reads_with_caffes_parse_log(data):
    solver = write_files(data, "parsed", max_iter=20, extra="test_compute_loss: true")
    log = data / "parsed.log"
    assert main(["train", "--solver", solver, "--seed", "1", "--log", str(log)]) == 0
    text = log.read_text()
    train, test = parse_log(text)
    assert [r["NumIters"] for r in train] == [0, 5, 10, 15]
    assert all(set(r) == {"NumIters", "Seconds", "LearningRate", "loss"} for r in train)
    assert [r["NumIters"] for r in test] == [0, 10, 20]
    assert all(set(r) == {"NumIters", "Seconds", "LearningRate", "accuracy", "loss"} for r in test)
    assert all(0 <= r["Seconds"] for r in train + test)
    sp = read_solver(solver)
    shown = [float(m.group(1)) for m in LEARNING_RATE.finditer(text)]
    assert shown == pytest.approx([learning_rate(sp, it)[0] for it in (0, 5, 10, 15)], rel=1e-5)
    # the row at iteration 5 carries the rate printed at 0: parse_log's one-display lag, as with Caffe's logs
    assert train[1]["LearningRate"] == pytest.approx(shown[0], rel=1e-6)


def test_zero_test_iter_prints_a_nan_test_loss_as_caffe(data, capsys):
    solver = write_files(data, "zero", max_iter=10, extra="test_compute_loss: true")
    with open(solver) as f:
        text = f.read().replace("test_iter: 3", "test_iter: 0")
    with open(solver, "w") as f:
        f.write(text)
    assert main(["train", "--solver", solver, "--seed", "1"]) == 0
    assert re.search(r"\] Test loss: nan\n", capsys.readouterr().out)
