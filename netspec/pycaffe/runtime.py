"""pycaffe's process-level helpers besides the mode: logging, a timer, the multi-process counts."""
import sys
import time

_SOLVERS = {"count": 1, "rank": 0, "multiprocess": False}


def init_log(level=0, stderr=False):
    """Caffe's glog set-up; netspec's logs are always on (stderr for solvers)."""


def log(message):
    print(f"I{time.strftime('%m%d %H:%M:%S')} {message}", file=sys.stderr, flush=True)


def has_nccl():
    """False: netspec's pycaffe has no NCCL object (multi-GPU runs go through `netspec train`)."""
    return False


def solver_count():
    return _SOLVERS["count"]


def set_solver_count(count):
    _SOLVERS["count"] = int(count)


def solver_rank():
    return _SOLVERS["rank"]


def set_solver_rank(rank):
    _SOLVERS["rank"] = int(rank)


def set_multiprocess(value):
    _SOLVERS["multiprocess"] = bool(value)


class Timer:
    """caffe.Timer: start(), stop(), ms (milliseconds between them)."""

    def __init__(self):
        self._start = self._stop = None

    def start(self):
        self._start, self._stop = time.perf_counter(), None

    def stop(self):
        self._stop = time.perf_counter()

    @property
    def ms(self):
        if self._start is None:
            return 0.0
        end = self._stop if self._stop is not None else time.perf_counter()
        return (end - self._start) * 1000.0
