"""Training from a solver file, as `caffe train` does it.

The train net and the test nets come from the solver's net fields (nets.py); the test nets
share the train net's parameter Blobs. The loop follows Caffe's Solver::Step: test every
test_interval iterations, run forward/backward iter_size times, display the smoothed loss
every `display` iterations, update, snapshot every `snapshot` iterations (snapshots.py).

With `parallel` (netspec.parallel.DataParallel) the loop is one rank of a data-parallel run, as
Caffe's multi-GPU solvers: the gradients are summed over ranks and scaled by 1/N before each
update; only rank 0 builds test nets, tests, and writes snapshots.
"""
import math
import signal
import threading
import time

import numpy as np

from .. import caffe_pb2
from ..errors import NetspecError
from ..solver import Solver
from .log import Log, fmt
from .nets import caffe_learnable_params, make_net, test_net_sources, train_net_source
from .scoring import output_lines, score
from .guard import SnapshotLock, check_counts
from .snapshots import restore_snapshot, rng_state, snapshot_prefix, write_snapshot


class Trainer:
    """Caffe's Solver loop over a train net and its test nets. share_memory: the train net's
    activations and diffs share memory (netspec.memory); pycaffe's solvers keep every blob's own."""

    def __init__(self, sp, backend="numpy", seed=None, log=None, solver_path=None, parallel=None, share_memory=True):
        self.sp, self.log = sp, log or Log()
        self.parallel, self.root = parallel, parallel is None or parallel.root
        self.solver_path = solver_path
        seed = sp.random_seed if seed is None and sp.random_seed >= 0 else seed
        self.seed = int(seed) if seed is not None else int(np.random.SeedSequence().entropy % (2 ** 31))
        self.log.info(f"Random seed: {self.seed}")
        source, state = train_net_source(sp, solver_path)
        self.log.info(f"Creating training net from {source.path}")
        self.net = make_net(source, state, backend, parallel.seed(self.seed) if parallel else self.seed, share_memory)
        if parallel:
            self.log.info(parallel.describe())
        self.test_nets = []
        for i, (source, state) in enumerate(test_net_sources(sp) if self.root else ()):
            self.log.info(f"Creating test net (#{i}) specified by {source.path}")
            net = make_net(source, state, backend, [self.seed, i + 1])
            net.share_with(self.net)
            self.test_nets.append(net)
        check_counts(sp)
        if sp.average_loss < 1:
            raise NetspecError(f"average_loss must be at least 1, found {sp.average_loss}",
                               hint="average_loss: 1 shows each iteration's own loss")
        self.solver = Solver(sp, caffe_learnable_params(self.net), self.net.xp, log=self.log.info)
        self.xp = self.net.xp
        self.losses, self.smoothed_loss = [], 0.0
        self.last_snapshot, self._lock = None, None
        self.prefix = snapshot_prefix(sp, solver_path, self.log)
        self.test_curves = {}                            # for --plot
        self.loss_curve, self.lr_curve = [], []          # every iteration's loss and rate
        self.stop_requested = self.snapshot_requested = False
        self.sigint_effect, self.sighup_effect = "stop", "snapshot"     # Caffe's defaults
        self._describe_batch()

    # -- set-up notes --------------------------------------------------------------------------------
    def batch_size(self):
        for node in self.net.nodes:
            if not node.bottoms and node.tops:
                shape = self.net.blobs[node.tops[0]].shape
                if shape:
                    return shape[0]
        return 1

    def ranks(self):
        return self.parallel.size if self.parallel else 1

    def _describe_batch(self):
        size, iter_size, ranks = self.batch_size(), self.sp.iter_size, self.ranks()
        times = f"{ranks} (ranks) x " if ranks > 1 else ""
        self.log.info(f"Effective batch: {times}{size} (batch_size) x {iter_size} (iter_size) = "
                      f"{ranks * size * iter_size} images per iteration")
        if iter_size > 1:
            bn = [layer.name for layer in self.net.layers if layer.batch_statistics]
            if bn:
                self.log.warn(f"iter_size {iter_size} with BatchNorm in TRAIN ({', '.join(bn)}): its statistics "
                              f"see one batch of {size}, not the effective batch of {size * iter_size}")

    # -- the loop ------------------------------------------------------------------------------------
    def solve(self, resume=None):
        try:
            return self._solve(resume)
        finally:            # the prefix is free again, whatever stopped the run
            if self._lock is not None:
                self._lock.close()
                self._lock = None

    def _lock_prefix(self):
        """Rank 0 (the one that writes snapshots) holds the prefix, before the first iteration."""
        sp = self.sp
        if self.root and (sp.snapshot or sp.snapshot_after_train) and self._lock is None:
            self._lock = SnapshotLock(self.prefix, self.log)

    def _solve(self, resume):
        sp = self.sp
        self.log.info(f"Solving {self.net.name}")
        self.log.info(f"Learning Rate Policy: {sp.lr_policy}")
        if self.parallel:       # before any batch is read; a resume then moves the position
            self.parallel.share_records(self.net)
        if resume:
            self.log.info(f"Restoring previous solver status from {resume}")
            if self.parallel:
                self.parallel.agree(lambda: self.restore(resume), "restoring the snapshot")
            else:
                self.restore(resume)
        if self.parallel:           # after start(), which refuses ranks that differ, before any iteration
            self.parallel.start(sp, self.net, self.solver.params)
            self.parallel.agree(self._lock_prefix, "locking the snapshot prefix")
        else:
            self._lock_prefix()
        start_iter = self.solver.iter
        with _Signals(self):
            self.step(sp.max_iter - self.solver.iter)
        if sp.snapshot_after_train and (not sp.snapshot or self.solver.iter % sp.snapshot != 0):
            self.snapshot()
        if self.stop_requested:
            self.log.info("Optimization stopped early.")
            self.close()
            return None
        if self.root and sp.display and self.solver.iter % sp.display == 0:
            self.net.forward()
            self._check_finite(self.net.loss)
            self._smooth(self.net.loss, start_iter)
            self.log.info(f"Iteration {self.solver.iter}, loss = {fmt(self.smoothed_loss)}")
        scores = None
        if self.root and sp.test_interval and self.solver.iter % sp.test_interval == 0:
            scores = self.test_all()
        self.log.info("Optimization Done.")
        self.close()
        return scores

    def step(self, iters):
        sp, solver, net = self.sp, self.solver, self.net
        start_iter, stop_iter = solver.iter, solver.iter + iters
        self.losses, self.smoothed_loss = [], 0.0
        images = self.batch_size() * sp.iter_size * self.ranks()
        started, started_iter = time.monotonic(), solver.iter
        wall, testing = time.monotonic(), 0.0
        shown, shown_iter = time.monotonic(), solver.iter         # Caffe's iteration timer, reset at each display
        while solver.iter < stop_iter:
            net.clear_param_diffs()
            if self.root and sp.test_interval and solver.iter % sp.test_interval == 0 and \
                    (solver.iter > 0 or sp.test_initialization):
                test_started = time.monotonic()
                self.test_all()
                testing += time.monotonic() - test_started
                started, started_iter = time.monotonic(), solver.iter   # speed of training alone
            display = sp.display and solver.iter % sp.display == 0
            loss, outputs = self._forward_backward()
            if self.parallel:       # Caffe's on_gradients_ready: sum over ranks, scale by 1/N
                self.stop_requested = self.parallel.gradients_ready(self.stop_requested)
            self._smooth(loss, start_iter)
            self.loss_curve.append((solver.iter, float(loss)))
            if display:
                lapse = time.monotonic() - shown
                per_s = (solver.iter - shown_iter) / (lapse or 1)
                self.log.info(f"Iteration {solver.iter} ({fmt(per_s)} iter/s, {fmt(lapse)}s/{sp.display} iters), "
                              f"loss = {fmt(self.smoothed_loss)}")
                shown, shown_iter = time.monotonic(), solver.iter
                self._log_outputs("Train", net, outputs)
            rate = solver.rate()
            if display:
                self.log.info(f"Iteration {solver.iter}, lr = {fmt(rate)}")
            self.lr_curve.append((solver.iter, float(rate)))
            solver.apply_update(rate)
            solver.iter += 1
            self._progress(rate, solver.iter - started_iter, time.monotonic() - started, stop_iter, images)
            if (sp.snapshot and solver.iter % sp.snapshot == 0) or self.snapshot_requested:
                self.snapshot_requested = False
                self.snapshot()
            if self.stop_requested:
                break
        done, wall = solver.iter - start_iter, time.monotonic() - wall
        if done:
            train_time = max(wall - testing, 1e-9)
            self.log.info(f"Trained {done} iterations in {wall:.1f} s ({testing:.1f} s of it testing): "
                          f"{done * images / train_time:.0f} images/s")
            if self.parallel:
                self.log.info(self.parallel.exchange_summary())

    def _forward_backward(self):
        """iter_size passes accumulating diffs: the mean loss, and the last pass's outputs."""
        loss = 0.0
        for _ in range(self.sp.iter_size):
            outputs = self.net.forward()
            self._check_finite(self.net.loss)
            self.net.backward()
            loss += self.net.loss
        return loss / self.sp.iter_size, outputs

    def _progress(self, rate, done, elapsed, stop_iter, images):
        speed = done * images / elapsed if elapsed > 0 else 0.0
        left = (stop_iter - self.solver.iter) * elapsed / done if done else 0.0
        self.log.progress(f"iter {self.solver.iter}/{self.sp.max_iter}  loss {self.smoothed_loss:.4f}  "
                          f"lr {rate:.3g}  {speed:.0f} img/s  {_duration(left)} left")

    def _smooth(self, loss, start_iter):
        """Caffe's UpdateSmoothedLoss: the mean of the last average_loss losses."""
        window = self.sp.average_loss
        if len(self.losses) < window:
            self.losses.append(loss)
            self.smoothed_loss = (self.smoothed_loss * (len(self.losses) - 1) + loss) / len(self.losses)
        else:
            idx = (self.solver.iter - start_iter) % window
            self.smoothed_loss += (loss - self.losses[idx]) / window
            self.losses[idx] = loss

    def _check_finite(self, loss):
        if math.isfinite(loss):
            return
        where = self.net.first_nonfinite()
        if where:
            layer, top = where
            xp, blobs = self.net.xp, self.net.layer(layer).blobs
            bad_params = any(not bool(xp.isfinite(b.data).all()) for b in blobs)
            culprit = f"layer '{layer}' (top '{top}') is the first whose output is not finite" + \
                (" (its parameters already are not)" if bad_params else "")
        else:
            culprit = "no layer's output is non-finite on a second pass (check the loss weights)"
        kept = f"; the last good snapshot is {self.last_snapshot}" if self.last_snapshot else \
            "; no snapshot was written before it"
        raise NetspecError(f"the loss became {loss} at iteration {self.solver.iter}: {culprit}{kept}",
                           hint="lower base_lr, set clip_gradients, or check the data (scale) and fillers")

    def _log_outputs(self, kind, net, outputs):
        for line in output_lines(net, outputs, f"    {kind} net"):
            self.log.info(line)

    def test_all(self):
        return [self.test(i) for i in range(len(self.test_nets))]

    def test(self, i):
        """Caffe's Solver::Test: mean of each output over test_iter batches; {name: [means]}."""
        net, iters = self.test_nets[i], self.sp.test_iter[i]
        self.log.info(f"Iteration {self.solver.iter}, Testing net (#{i})")
        means, loss = score(net, iters)
        if self.sp.test_compute_loss:
            self.log.info(f"Test loss: {fmt(loss)}")
        if iters:                           # no output lines with test_iter 0, as in Caffe
            self._log_outputs("Test", net, means)
        for name, value in means.items():
            if np.size(value) == 1:
                key = name if len(self.test_nets) == 1 else f"#{i} {name}"
                self.test_curves.setdefault(key, []).append((self.solver.iter, float(value)))
        return means

    # -- snapshots --------------------------------------------------------------------------------
    def snapshot(self):
        rng = rng_state(self.seed, self._nets())
        if self.parallel:       # every rank's random state, written by rank 0 alone
            ranks = self.parallel.gather(rng["nets"][0], "gathering the ranks' random state for a snapshot")
            if not self.root:
                return None, None
            rng["ranks"] = ranks[1:]
        self.last_snapshot, state = write_snapshot(self.prefix, self.solver.iter, self.net, self.solver,
                                                   rng, self.log, write_diff=self.sp.snapshot_diff,
                                                   h5=self.sp.snapshot_format == caffe_pb2.SolverParameter.HDF5)
        return self.last_snapshot, state

    def restore(self, path):
        restore_snapshot(path, self.net, self.solver, self._nets(), self.log,
                         rank=self.parallel.rank if self.parallel else 0)

    def _nets(self):
        return [self.net] + self.test_nets

    def close(self):
        for net in self._nets():
            net.close()


class _Signals:
    """Caffe's -sigint_effect and -sighup_effect: "stop" finishes the iteration and stops (the
    final snapshot is taken as at the end of training), "snapshot" snapshots after the iteration
    and goes on, "none" ignores the signal. A second Ctrl-C while stopping interrupts at once."""
    EFFECTS = ("stop", "snapshot", "none")

    def __init__(self, trainer):
        self.trainer, self.previous = trainer, {}

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        for name, effect in (("SIGINT", self.trainer.sigint_effect), ("SIGHUP", self.trainer.sighup_effect)):
            number = getattr(signal, name, None)        # no SIGHUP on Windows
            if number is not None:
                self.previous[number] = signal.signal(number, self._handler(name, effect))
        return self

    def _handler(self, name, effect):
        trainer = self.trainer

        def handle(signum, frame):
            if effect == "none":
                return
            if effect == "snapshot":
                trainer.snapshot_requested = True
                trainer.log.warn(f"{name}: a snapshot after this iteration, then training goes on")
                return
            if trainer.stop_requested and signum == signal.SIGINT:
                raise KeyboardInterrupt
            trainer.stop_requested = True
            again = " (Ctrl-C again to stop at once)" if signum == signal.SIGINT else ""
            trainer.log.warn(f"{name}: stopping after this iteration{again}")
        return handle

    def __exit__(self, *exc):
        for number, previous in self.previous.items():
            signal.signal(number, previous)
        return False


def _duration(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"
