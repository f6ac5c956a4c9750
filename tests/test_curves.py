"""Training curves: Caffe's log lines read, matplotlib panels drawn, one test point readable."""
import math

import pytest

from netspec.cli import main
from netspec.curves import Curves, figure, plot_curves, read_log, smooth

pytest.importorskip("matplotlib")

CAFFE_LOG = """I0101 10:00:00.000000  1234 solver.cpp:330] Iteration 0, Testing net (#0)
I0101 10:00:01.000000  1234 solver.cpp:397]     Test net output #0: accuracy = 0.1
I0101 10:00:01.000000  1234 solver.cpp:397]     Test net output #1: loss = 2.3 (* 1 = 2.3 loss)
I0101 10:00:01.100000  1234 solver.cpp:218] Iteration 0 (0 iter/s, 1.1s/100 iters), loss = 2.31
I0101 10:00:01.100000  1234 solver.cpp:237]     Train net output #0: loss = 2.31 (* 1 = 2.31 loss)
I0101 10:00:01.100000  1234 sgd_solver.cpp:105] Iteration 0, lr = 0.01
I0101 10:00:02.000000  1234 solver.cpp:218] Iteration 100 (111 iter/s, 0.9s/100 iters), loss = 0.52
I0101 10:00:02.000000  1234 sgd_solver.cpp:105] Iteration 100, lr = 0.00992565
I0101 10:00:03.000000  1234 solver.cpp:330] Iteration 200, Testing net (#0)
I0101 10:00:03.500000  1234 solver.cpp:397]     Test net output #0: accuracy = 0.85
I0101 10:00:03.500000  1234 solver.cpp:397]     Test net output #1: loss = 0.45 (* 1 = 0.45 loss)
I0101 10:00:03.600000  1234 solver.cpp:218] Iteration 200, loss = nan
"""


def test_reads_caffe_log_lines(tmp_path):
    path = tmp_path / "train.log"
    path.write_text(CAFFE_LOG)
    c = read_log(str(path))
    assert c.train[:2] == [(0, 2.31), (100, 0.52)] and c.train[2][0] == 200 and math.isnan(c.train[2][1])
    assert c.tests == {"accuracy": [(0, 0.1), (200, 0.85)], "loss": [(0, 2.3), (200, 0.45)]}
    assert c.lr == [(0, 0.01), (100, 0.00992565)]


def test_smooth_is_a_trailing_mean():
    assert smooth([1, 3, 5, 7], window=2) == [1, 2, 4, 6]
    assert smooth([2.0] * 50) == [2.0] * 50


def test_one_test_point_gives_readable_axes():
    c = Curves(train=[(i, 2.0 / (1 + i / 50)) for i in range(600)], tests={"accuracy": [(600, 0.834)],
               "loss": [(600, 0.6)]}, lr=[(i, 0.01) for i in range(600)])
    fig = figure(c, "one test")
    loss_ax, out_ax, lr_ax = fig.axes
    assert loss_ax.get_xlim()[0] == 0 and loss_ax.get_xlim()[1] >= 600      # from 0, not 600-601
    low, high = out_ax.get_ylim()
    assert low < 0.834 < high and high - low < 0.5
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == [
        "train loss (raw)", "train loss (smoothed)", "test loss"]
    assert any(t.get_text() == "0.834" for t in out_ax.texts)             # the lone value said
    assert lr_ax.get_ylabel() == "learning rate" and lr_ax.get_xlabel() == "iteration"


def test_log_scale(tmp_path):
    c = Curves(train=[(i, 1.0 / (i + 1)) for i in range(100)])
    assert figure(c, log_scale=True).axes[0].get_yscale() == "log"
    assert figure(c).axes[0].get_yscale() == "linear"


def test_plot_command_writes_a_picture(tmp_path, capsys):
    from PIL import Image
    log, out = tmp_path / "train.log", tmp_path / "curves.png"
    log.write_text(CAFFE_LOG)
    assert main(["plot", str(log), str(out), "--log-scale"]) == 0
    assert "3 training points" in capsys.readouterr().out
    image = Image.open(out).convert("L")
    low, high = image.getextrema()
    assert image.size[0] > 800 and low < 100 and high == 255                # drawn on, not blank


@pytest.mark.parametrize("case", ["empty", "missing", "extension"])
def test_plot_command_bad_input_is_exit_2(tmp_path, capsys, case):
    log = tmp_path / "train.log"
    log.write_text("nothing to see\n" if case == "empty" else CAFFE_LOG)
    path = str(tmp_path / "nope.log") if case == "missing" else str(log)
    out = tmp_path / ("c.jpeg" if case == "extension" else "c.png")
    assert main(["plot", path, str(out)]) == 2
    assert "error" in capsys.readouterr().err and not out.exists()


def test_plot_curves_writes_svg(tmp_path):
    plot_curves(tmp_path / "c.svg", Curves(train=[(0, 1.0), (10, 0.5)]))
    assert (tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")
