"""What the trainer calls in a data-parallel run, in the order of Caffe's parallel.cpp.

  * when the nets are built: rank r seeds its nets with seed + r (Caffe: random_seed +
    solver_rank), its TRAIN data layers read records r, r+N, ... (DataLayer::Skip), in rank 0's
    reading order (its shuffle seeds and rand_skip start);
  * before the first step (after fillers, --weights and a resume): every rank must run the same
    solver and train net (digests compared), rank 0's weights are broadcast, and the weights'
    digests compared again;
  * after each step's backward: the gradients summed over ranks and scaled by 1/N, before the
    solver's update (which clips, regularizes and divides by iter_size, as on one process).
Only rank 0 tests, logs and writes; the trainer asks `root`.
"""
import time

from ..backend import to_numpy
from .mpi import FlatReducer, digest

SAME_FILES = "start every rank with the same solver, net and weight files (a shared folder, or copies)"


class DataParallel:
    def __init__(self, group):
        self.group, self.backend = group, None
        self.rank, self.size, self.root = group.rank, group.size, group.rank == 0
        self.reducer = None
        self.exchange_seconds, self.exchanges = 0.0, 0

    def seed(self, seed):
        return seed + self.rank

    def share_records(self, net):
        readers = [layer for layer in net.layers if hasattr(layer, "set_solver_rank")]
        for layer in readers:
            layer.set_solver_rank(self.rank, self.size)
        states = self.group.bcast({layer.name: layer.data_state() for layer in readers},
                                  "sharing the data layers' reading order")
        for layer in readers:
            layer.set_data_state(states[layer.name])

    def start(self, sp, net, params):
        """Refuse ranks that differ; then every rank takes rank 0's weights."""
        params, self.backend = list(params), net.backend
        shapes = repr([tuple(p.blob.data.shape) for p in params]).encode()
        self.group.check_same("solver and train net", digest(
            sp.SerializeToString(deterministic=True), net.source.param.SerializeToString(deterministic=True),
            shapes), hint=SAME_FILES)
        if self.backend == "cupy":
            from .nccl import NcclReducer
            self.reducer = NcclReducer(self.group, net, params, sp.layer_wise_reduce)
        else:
            self.reducer = FlatReducer(self.group, params)
        self.reducer.broadcast_data()
        self.group.check_same("weights after the broadcast", digest(*[to_numpy(p.blob.data) for p in params]),
                              hint="the ranks' parameter blobs differ in layout: " + SAME_FILES)

    def gradients_ready(self, stop=False):
        """Sum and scale the diffs; True when any rank asked to stop."""
        started = time.monotonic()
        stop = self.reducer.reduce(stop)
        self.exchange_seconds += time.monotonic() - started
        self.exchanges += 1
        return stop

    def exchange_summary(self):
        """Rank 0's wait for the gradient exchange (waiting for slower ranks included)."""
        per_step = 1000 * self.exchange_seconds / max(self.exchanges, 1)
        return f"Gradient exchange: {per_step:.1f} ms per step on rank 0 ({self.exchange_seconds:.1f} s in all)"

    def agree(self, fn, what):
        return self.group.agree(fn, what)

    def gather(self, value, what):
        return self.group.allgather(value, what)

    def describe(self):
        return (f"Data-parallel training on {self.size} ranks (MPI; NCCL between GPUs): rank r reads "
                f"records r, r+{self.size}, ... of each train data layer; rank 0 tests and writes")

    def close(self):
        if self.reducer is not None:
            self.reducer.close()
