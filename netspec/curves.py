"""Training curves drawn with matplotlib (headless Agg): from a run, or read from a log.

Panels sharing the iteration axis: the losses (training loss raw and smoothed, and every
test output named like a loss), the other test outputs (accuracy ...), and the learning
rate. read_log() reads Caffe's log lines (`caffe train` or `netspec train`), as Caffe's
tools/extra/plot_training_log.py does.
"""
import io
import math
import re
from dataclasses import dataclass, field

from .errors import NetspecError
from .utils import atomic_write, read_regular

FORMATS = ("png", "svg", "pdf")


@dataclass
class Curves:
    train: list = field(default_factory=list)       # (iteration, loss): every iteration, or each display
    tests: dict = field(default_factory=dict)       # output name -> [(iteration, value)]
    lr: list = field(default_factory=list)          # (iteration, rate)

    @property
    def empty(self):
        return not self.train and not any(self.tests.values())


# -- reading logs ---------------------------------------------------------------------------------
_LOSS = re.compile(r"Iteration (\d+)(?: \([^)]*\))?, loss = (\S+)")
_TESTING = re.compile(r"Iteration (\d+)(?: \([^)]*\))?, Testing net \(#(\d+)\)")
_TEST_OUT = re.compile(r"Test net output #\d+: (\S+) = (\S+)")
_LR = re.compile(r"Iteration (\d+)(?: \([^)]*\))?, lr = (\S+)")


def _number(text):
    try:
        return float(text)
    except ValueError:
        return math.nan


LOG_LIMIT = 2 ** 30       # a training log: a few hundred bytes an iteration


def read_log(path):
    """A Caffe or netspec training log as Curves; a log with no training lines is an error."""
    try:
        lines = read_regular(path, "the log", LOG_LIMIT, text=True).splitlines()
    except OSError as e:
        raise NetspecError(f"cannot read the log: {e.strerror}", file=path,
                           hint="give the file written by `caffe train` (its stderr) or `netspec train --log`")
    curves, test_iter, test_net, tests = Curves(), None, 0, []
    for line in lines:
        if m := _LOSS.search(line):
            curves.train.append((int(m[1]), _number(m[2])))
        elif m := _TESTING.search(line):
            test_iter, test_net = int(m[1]), int(m[2])
            tests.append(test_net)
        elif (m := _TEST_OUT.search(line)) and test_iter is not None:
            name = m[1] if test_net == 0 else f"#{test_net} {m[1]}"
            curves.tests.setdefault(name, []).append((test_iter, _number(m[2])))
        elif m := _LR.search(line):
            curves.lr.append((int(m[1]), _number(m[2])))
    if curves.empty:
        raise NetspecError("found no 'Iteration N, loss = X' or 'Test net output' lines in the log", file=path,
                           hint="give the log of a training run (`caffe train ... 2> train.log`, "
                                "or `netspec train --log train.log`)")
    return curves


# -- drawing --------------------------------------------------------------------------------------
def smooth(values, window=None):
    """Trailing moving average; the first points average what there is so far."""
    n = len(values)
    window = window or max(1, min(200, n // 10))
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _finite(points):
    return [(x, y) for x, y in points if math.isfinite(y)]


def plot_curves(path, curves, title="training", log_scale=False):
    """Write the curves to path (.png, .svg or .pdf, from its extension)."""
    path = str(path)
    fmt = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if fmt not in FORMATS:
        raise NetspecError(f"cannot tell the picture format from '{path}'",
                           hint="end the file name in " + ", ".join("." + f for f in FORMATS))
    fig = figure(curves, title, log_scale)
    out = io.BytesIO()
    fig.savefig(out, format=fmt, dpi=150)
    atomic_write(path, out.getvalue())


def figure(curves, title="training", log_scale=False):
    """The matplotlib Figure of the curves (Agg, no window)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError:
        raise NetspecError("plotting needs the Python package matplotlib",
                           hint="pip install 'netspec[plot]' (or pip install matplotlib)") from None
    losses = {k: v for k, v in curves.tests.items() if "loss" in k.lower()}
    others = {k: v for k, v in curves.tests.items() if "loss" not in k.lower()}
    panels = ["loss"] + (["outputs"] if others else []) + (["lr"] if curves.lr else [])
    heights = {"loss": 3, "outputs": 2, "lr": 1.2}
    fig = Figure(figsize=(8, 2.2 + 1.3 * sum(heights[p] for p in panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": [heights[p] for p in panels]})[:, 0]
    last = max([x for pts in [curves.train, curves.lr, *curves.tests.values()] for x, _ in pts] + [1])
    colours = iter(["#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"])
    for panel, ax in zip(panels, axes):
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", alpha=0.12)
        ax.minorticks_on()
        if panel == "loss":
            _loss_panel(ax, curves.train, losses, colours, log_scale)
        elif panel == "outputs":
            for name, pts in others.items():
                _test_series(ax, pts, f"test {name}", next(colours))
            ax.set_ylabel(next(iter(others)) if len(others) == 1 else "test output")
            ax.legend(loc="best", frameon=False)
        else:
            xs, ys = zip(*_finite(curves.lr)) if _finite(curves.lr) else ((), ())
            ax.plot(xs, ys, color="#555555", linewidth=1.2)
            if ys and min(ys) > 0 and max(ys) / min(ys) > 20:
                _log_axis(ax)
            ax.set_ylabel("learning rate")
    axes[0].set_xlim(0, last * 1.02)
    axes[-1].set_xlabel("iteration")
    axes[0].set_title(title)
    return fig


def _loss_panel(ax, train, losses, colours, log_scale):
    pts = _finite(train)
    if pts:
        xs, ys = zip(*pts)
        many = len(pts) > 20
        ax.plot(xs, ys, color="#1f77b4", alpha=0.35 if many else 1, linewidth=0.8,
                marker=None if many else "o", markersize=3, label="train loss" + (" (raw)" if many else ""))
        if many:
            ax.plot(xs, smooth(list(ys)), color="#1f77b4", linewidth=1.8, label="train loss (smoothed)")
    for name, series in losses.items():
        _test_series(ax, series, f"test {name}", next(colours))
    if log_scale and all(y > 0 for _, y in pts + [p for s in losses.values() for p in _finite(s)]):
        _log_axis(ax)
    ax.set_ylabel("loss")
    if pts or losses:
        ax.legend(loc="best", frameon=False)


def _log_axis(ax):
    """A log axis labelled 0.2, 0.5, 1, 2 ... rather than in powers of ten."""
    from matplotlib import ticker
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def _test_series(ax, pts, label, colour):
    pts = _finite(pts)
    if pts:
        xs, ys = zip(*pts)
        ax.plot(xs, ys, color=colour, marker="o", markersize=4, linewidth=1.5, label=label)
        if len(pts) == 1:       # one point: say its value, which a lone marker hardly shows
            ax.annotate(f"{ys[0]:.4g}", (xs[0], ys[0]), textcoords="offset points", xytext=(6, 6),
                        color=colour, fontsize=9)


__all__ = ["Curves", "read_log", "plot_curves", "figure", "smooth"]
