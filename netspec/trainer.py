"""Training from a solver file, as `caffe train` does it.

The train net and the test nets come from the solver's net fields; the test nets share the
train net's parameter Blobs. The loop follows Caffe's Solver::Step: test every test_interval
iterations, run forward/backward iter_size times, display the smoothed loss every `display`
iterations, update, snapshot every `snapshot` iterations.

Logs are in glog's line format, so Caffe's tools/extra/parse_log.py reads them; at a terminal
a progress line (iteration, loss, lr, images/s, time left) is kept below them.

A snapshot writes <prefix>_iter_N.caffemodel, <prefix>_iter_N.solverstate (Caffe's
SolverState: iter, current_step, learned_net, history) and beside it
<prefix>_iter_N.solverstate.rng.json: the seed, the random-generator state of every layer and
the number of batches each data layer has read. Caffe ignores that file; with it a resumed
run takes the very steps the uninterrupted one would (the same weights, bit for bit, on the CPU).
"""
import json
import math
import os
import signal
import sys
import threading
import time
from datetime import datetime

import numpy as np

from . import caffe_pb2
from .errors import NetspecError
from .graph import load_source
from .net import Net, ParamSlot
from .graph import param_specs
from .solver import Solver
from .utils import atomic_write, format_shape
from .weights import proto_shape, proto_to_array, read_weights, shapes_match

RNG_SUFFIX = ".rng.json"


# -- logging --------------------------------------------------------------------------------------
class Log:
    """glog-style lines ("I1126 16:22:09.123456 4242 solver.py] ...") to a stream and a file,
    and a live progress line at a terminal only."""

    def __init__(self, path=None, stream=None, progress=None):
        self.stream = stream if stream is not None else sys.stdout
        self.file = open(path, "a") if path else None
        self.show_progress = self.stream.isatty() if progress is None else progress
        self._progress_shown = False

    def _line(self, level, message):
        now = datetime.now()
        return f"{level}{now:%m%d %H:%M:%S.%f} {os.getpid()} solver.py] {message}"

    def info(self, message, level="I"):
        self._clear_progress()
        for part in str(message).split("\n"):
            line = self._line(level, part)
            print(line, file=self.stream, flush=True)
            if self.file:
                self.file.write(line + "\n")
                self.file.flush()

    def warn(self, message):
        self.info(message, level="W")

    def progress(self, text):
        if self.show_progress:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
            self._progress_shown = True

    def _clear_progress(self):
        if self._progress_shown:
            self.stream.write("\r\033[K")
            self._progress_shown = False

    def close(self):
        self._clear_progress()
        if self.file:
            self.file.close()
            self.file = None


def fmt(x):
    """A number as C++'s ostream prints a float (6 significant digits)."""
    return f"{float(x):.6g}"


# -- reading the solver and its nets ---------------------------------------------------------------
def read_solver(path, log=None):
    """A SolverParameter from a solver file (upgraded: legacy solver_type -> type ...);
    the upgrade notes go to the log as warnings."""
    from .io import read_solver as read
    notes = []
    sp = read(path, warnings=notes)
    if log is not None:
        for note in notes:
            log.warn(str(note))
    return sp


def _state(phase, source, extra=None):
    """Caffe's rule: the phase, then the net file's own state, then the solver's train/test_state."""
    state = caffe_pb2.NetState(phase=phase)
    state.MergeFrom(source.param.state)
    if extra is not None:
        state.MergeFrom(extra)
    return state


def train_net_source(sp, path=None):
    """The train net's NetSource and NetState; path: the solver file, named in errors."""
    fields = [f for f in ("train_net_param", "train_net", "net_param", "net") if sp.HasField(f)]
    if not fields:
        raise NetspecError("the solver names no net", file=path,
                           hint="add net: \"path/to/train_val.prototxt\" to the solver file")
    if len(fields) > 1:
        raise NetspecError(f"the solver names its train net more than once ({', '.join(fields)})", file=path,
                           hint="keep one of train_net_param, train_net, net_param, net")
    source = load_source(getattr(sp, fields[0]), f"<solver {fields[0]}>")
    return source, _state(caffe_pb2.TRAIN, source, sp.train_state if sp.HasField("train_state") else None)


def test_net_sources(sp):
    """[(NetSource, NetState)] for each test net, in Caffe's order: test_net_param, test_net,
    then the generic net once for each remaining test_iter."""
    generic = [f for f in ("net_param", "net") if sp.HasField(f)]
    if len(generic) > 1:
        raise NetspecError("the solver sets both net and net_param", hint="keep one")
    specific = [(p, "test_net_param") for p in sp.test_net_param] + [(p, "test_net") for p in sp.test_net]
    if generic:
        if len(sp.test_iter) < len(specific):
            raise NetspecError(f"{len(specific)} test nets but only {len(sp.test_iter)} test_iter values",
                               hint="give one test_iter per test net")
        specific += [(getattr(sp, generic[0]), generic[0])] * (len(sp.test_iter) - len(specific))
    elif len(sp.test_iter) != len(specific):
        raise NetspecError(f"{len(specific)} test nets but {len(sp.test_iter)} test_iter values",
                           hint="give one test_iter per test net")
    if len(sp.test_state) and len(sp.test_state) != len(specific):
        raise NetspecError(f"{len(sp.test_state)} test_state entries for {len(specific)} test nets",
                           hint="give test_state once per test net, or not at all")
    if specific and sp.test_interval <= 0:
        raise NetspecError("the solver has test nets but no test_interval", hint="add test_interval: 500")
    out = []
    for i, (value, what) in enumerate(specific):
        source = load_source(value, f"<solver {what}>")
        out.append((source, _state(caffe_pb2.TEST, source, sp.test_state[i] if len(sp.test_state) else None)))
    return out


def caffe_learnable_params(net):
    """The parameters in Caffe's learnable_params order: every blob a layer owns, layer by layer.
    Unlike the net's own list it keeps BatchNorm's statistics (lr_mult 0, so they never move, and
    decay_mult as the file says, default 1, as Caffe's BatchNorm set-up leaves it): Caffe keeps
    history for them, and a .solverstate must hold as many history blobs as Caffe's."""
    slots = {id(slot.blob): slot for slot in net.learnable_params}
    out, seen = [], set()
    for node, layer in zip(net.nodes, net.layers):
        for j, (blob, spec) in enumerate(zip(layer.blobs, param_specs(node.lp, len(layer.blobs)))):
            if id(blob) not in seen:
                seen.add(id(blob))
                out.append(slots.get(id(blob)) or ParamSlot(blob, layer.name, j, 0.0, spec.decay_mult))
    return out


def make_net(source, state, backend, seed):
    return Net(source, phase=state.phase, backend=backend, seed=seed, stages=tuple(state.stage), level=state.level)


# -- fine-tuning ------------------------------------------------------------------------------------
def copy_weights(net, path, legacy_reshape=False):
    """Copy blobs by layer name from a .caffemodel, as Caffe's CopyTrainedLayersFrom, and say what
    happened to each layer: rows of (layer, status, detail). Shape mismatches are refused (the
    caller stops after showing the table)."""
    found = read_weights(path)
    rows = []
    for layer in net.layers:
        if not layer.blobs:
            continue
        protos = found.get(layer.name)
        if protos is None:
            rows.append((layer.name, "new", "not in the weights file: keeps its filler values"))
            continue
        if len(protos) != len(layer.blobs):
            rows.append((layer.name, "refused", f"{len(protos)} blobs in the file, {len(layer.blobs)} in the net"))
            continue
        problems, arrays, reshaped = [], [], False
        for j, (blob, bp) in enumerate(zip(layer.blobs, protos)):
            if shapes_match(blob.shape, bp):
                arrays.append(proto_to_array(bp, blob.shape))
            elif legacy_reshape and int(np.prod(proto_shape(bp))) == blob.count:
                arrays.append(proto_to_array(bp, proto_shape(bp)).reshape(blob.shape))
                reshaped = True
            else:
                problems.append(f"blob {j}: file {proto_shape(bp)} vs net {blob.shape}")
        if problems:
            rows.append((layer.name, "refused", "; ".join(problems)))
            continue
        for blob, array in zip(layer.blobs, arrays):
            blob.data[...] = net.xp.asarray(array, dtype=blob.data.dtype)
        shapes = ", ".join(format_shape(b.shape) for b in layer.blobs)
        rows.append((layer.name, "copied", shapes + (" (reshaped from the legacy shape)" if reshaped else "")))
    in_net = {layer.name for layer in net.layers}
    rows += [(name, "skipped", "in the weights file, not in the net")
             for name, protos in found.items() if name not in in_net and protos]
    return rows


def weights_table(rows):
    width = max([len(r[0]) for r in rows] + [5])
    lines = [f"{'layer':<{width}}  {'status':<8} detail"]
    lines += [f"{name:<{width}}  {status:<8} {detail}" for name, status, detail in rows]
    return "\n".join(lines)


# -- the trainer -------------------------------------------------------------------------------------
class Trainer:
    def __init__(self, sp, backend="numpy", seed=None, log=None, solver_path=None):
        self.sp, self.log = sp, log or Log()
        self.solver_path = solver_path
        seed = sp.random_seed if seed is None and sp.random_seed >= 0 else seed
        self.seed = int(seed) if seed is not None else int(np.random.SeedSequence().entropy % (2 ** 31))
        self.log.info(f"Random seed: {self.seed}")
        source, state = train_net_source(sp, solver_path)
        self.log.info(f"Creating training net from {source.path}")
        self.net = make_net(source, state, backend, self.seed)
        self.test_nets = []
        for i, (source, state) in enumerate(test_net_sources(sp)):
            self.log.info(f"Creating test net (#{i}) specified by {source.path}")
            net = make_net(source, state, backend, [self.seed, i + 1])
            net.share_with(self.net)
            self.test_nets.append(net)
        if sp.average_loss < 1:
            raise NetspecError(f"average_loss must be at least 1, found {sp.average_loss}",
                               hint="average_loss: 1 shows each iteration's own loss")
        self.solver = Solver(sp, caffe_learnable_params(self.net), self.net.xp, log=self.log.info)
        self.xp = self.net.xp
        self.losses, self.smoothed_loss = [], 0.0
        if sp.snapshot_format == caffe_pb2.SolverParameter.HDF5:
            self.log.warn("snapshot_format HDF5 is not supported: snapshots are written as binary protos")
        self.last_snapshot = None
        self.prefix = self._snapshot_prefix()
        self.train_curve, self.test_curves = [], {}      # for --plot
        self.stop_requested = False
        self._describe_batch()

    # -- set-up notes --------------------------------------------------------------------------------
    def batch_size(self):
        for node in self.net.nodes:
            if not node.bottoms and node.tops:
                shape = self.net.blobs[node.tops[0]].shape
                if shape:
                    return shape[0]
        return 1

    def _describe_batch(self):
        size, iter_size = self.batch_size(), self.sp.iter_size
        self.log.info(f"Effective batch: {size} (batch_size) x {iter_size} (iter_size) = {size * iter_size} "
                      "images per iteration")
        if iter_size > 1:
            bn = [layer.name for layer in self.net.layers
                  if layer.type == "BatchNorm" and not layer.lp.batch_norm_param.use_global_stats]
            if bn:
                self.log.warn(f"iter_size {iter_size} with BatchNorm in TRAIN ({', '.join(bn)}): its statistics "
                              f"see one batch of {size}, not the effective batch of {size * iter_size}")

    # -- the loop ------------------------------------------------------------------------------------
    def solve(self, resume=None):
        sp = self.sp
        self.log.info(f"Solving {self.net.name}")
        self.log.info(f"Learning Rate Policy: {sp.lr_policy}")
        if resume:
            self.log.info(f"Restoring previous solver status from {resume}")
            self.restore(resume)
        start_iter = self.solver.iter
        with _StopOnInterrupt(self):
            self.step(sp.max_iter - self.solver.iter)
        if sp.snapshot_after_train and (not sp.snapshot or self.solver.iter % sp.snapshot != 0):
            self.snapshot()
        if self.stop_requested:
            self.log.info("Optimization stopped early.")
            self.close()
            return None
        if sp.display and self.solver.iter % sp.display == 0:
            self.net.forward()
            self._check_finite(self.net.loss)
            self._smooth(self.net.loss, start_iter)
            self.log.info(f"Iteration {self.solver.iter}, loss = {fmt(self.smoothed_loss)}")
        scores = None
        if sp.test_interval and self.solver.iter % sp.test_interval == 0:
            scores = self.test_all()
        self.log.info("Optimization Done.")
        self.close()
        return scores

    def step(self, iters):
        sp, solver, net = self.sp, self.solver, self.net
        start_iter, stop_iter = solver.iter, solver.iter + iters
        self.losses, self.smoothed_loss = [], 0.0
        images = self.batch_size() * sp.iter_size
        started, started_iter = time.monotonic(), solver.iter
        wall, testing = time.monotonic(), 0.0
        while solver.iter < stop_iter:
            net.clear_param_diffs()
            if sp.test_interval and solver.iter % sp.test_interval == 0 and \
                    (solver.iter > 0 or sp.test_initialization):
                test_started = time.monotonic()
                self.test_all()
                testing += time.monotonic() - test_started
                started, started_iter = time.monotonic(), solver.iter   # speed of training alone
            display = sp.display and solver.iter % sp.display == 0
            loss, outputs = self._forward_backward()
            self._smooth(loss, start_iter)
            if display:
                self.log.info(f"Iteration {solver.iter}, loss = {fmt(self.smoothed_loss)}")
                self._log_outputs("Train", net, outputs)
                self.train_curve.append((solver.iter, self.smoothed_loss))
            rate = solver.rate()
            if display:
                self.log.info(f"Iteration {solver.iter}, lr = {fmt(rate)}")
            solver.apply_update(rate)
            solver.iter += 1
            self._progress(rate, solver.iter - started_iter, time.monotonic() - started, stop_iter, images)
            if sp.snapshot and solver.iter % sp.snapshot == 0:
                self.snapshot()
            if self.stop_requested:
                break
        done, wall = solver.iter - start_iter, time.monotonic() - wall
        if done:
            train_time = max(wall - testing, 1e-9)
            self.log.info(f"Trained {done} iterations in {wall:.1f} s ({testing:.1f} s of it testing): "
                          f"{done * images / train_time:.0f} images/s")

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
        weights = {id(blob): w for blob, w in net.loss_tops}
        index = 0
        for name in net.outputs:
            w = weights.get(id(net.blobs[name]), 0.0)
            for value in np.ravel(outputs[name]):
                extra = f" (* {fmt(w)} = {fmt(w * value)} loss)" if w else ""
                self.log.info(f"    {kind} net output #{index}: {name} = {fmt(value)}{extra}")
                index += 1

    def test_all(self):
        return [self.test(i) for i in range(len(self.test_nets))]

    def test(self, i):
        """Caffe's Solver::Test: mean of each output over test_iter batches; {name: [means]}."""
        net, iters = self.test_nets[i], self.sp.test_iter[i]
        self.log.info(f"Iteration {self.solver.iter}, Testing net (#{i})")
        sums, loss = None, 0.0
        for _ in range(iters):
            outputs = net.forward()
            loss += net.loss
            values = {name: np.asarray(outputs[name], np.float64) for name in net.outputs}
            sums = values if sums is None else {k: sums[k] + v for k, v in values.items()}
        if self.sp.test_compute_loss:
            self.log.info(f"Test loss: {fmt(loss / iters if iters else math.nan)}")   # Caffe's 0/0
        means = {k: v / iters for k, v in (sums or {}).items()}
        if means:                           # none with test_iter 0, as in Caffe
            self._log_outputs("Test", net, means)
        for name, value in means.items():
            if np.size(value) == 1:
                key = name if len(self.test_nets) == 1 else f"#{i} {name}"
                self.test_curves.setdefault(key, []).append((self.solver.iter, float(value)))
        return means

    # -- snapshots --------------------------------------------------------------------------------
    def _snapshot_prefix(self):
        """Caffe's rule for a solver read from a file: no snapshot_prefix is the solver's path
        without its extension; a prefix naming a directory gets the solver file's stem inside it.
        Decided once, before any snapshot makes a directory."""
        prefix = self.sp.snapshot_prefix
        if self.solver_path:
            stem = os.path.splitext(self.solver_path)[0]
            if not self.sp.HasField("snapshot_prefix"):
                prefix = stem
                self.log.info(f"snapshot_prefix was not specified and is set to {prefix}")
            elif os.path.isdir(prefix):
                prefix = os.path.join(prefix, os.path.basename(stem))
                self.log.info(f"snapshot_prefix is a directory and is set to {prefix}")
        return prefix or "snapshot"

    def snapshot_path(self, ext):
        return f"{self.prefix}_iter_{self.solver.iter}{ext}"

    def snapshot(self):
        model = self.snapshot_path(".caffemodel")
        folder = os.path.dirname(model)
        if folder:
            os.makedirs(folder, exist_ok=True)
        self.log.info(f"Snapshotting to binary proto file {model}")
        self.net.save(model, write_diff=self.sp.snapshot_diff)
        state_path = self.snapshot_path(".solverstate")
        self.log.info(f"Snapshotting solver state to binary proto file {state_path}")
        atomic_write(state_path + RNG_SUFFIX, json.dumps(self.rng_state()))
        atomic_write(state_path, self.solver.state(model).SerializeToString())
        self.last_snapshot = model
        return model, state_path

    def _nets(self):
        return [self.net] + self.test_nets

    def rng_state(self):
        """What a resumed run needs beyond Caffe's SolverState: every layer's random-generator
        state and every data layer's position, net by net."""
        nets = []
        for net in self._nets():
            layers = {}
            for layer in net.layers:
                entry = {}
                if hasattr(layer, "data_state"):
                    entry["data"] = layer.data_state()
                if layer.rng is not None:
                    entry["rng"] = layer.rng.bit_generator.state
                if entry:
                    layers[layer.name] = entry
            nets.append(layers)
        return {"seed": self.seed, "nets": nets}

    def restore(self, path):
        state = caffe_pb2.SolverState()
        try:
            with open(path, "rb") as f:
                state.ParseFromString(f.read())
        except OSError as e:
            raise NetspecError(f"cannot read solver state: {e.strerror}", file=path) from None
        except Exception as e:  # protobuf DecodeError
            raise NetspecError(f"not a .solverstate (binary SolverState): {e}", file=path) from None
        if state.learned_net:
            learned = state.learned_net
            if not os.path.exists(learned):
                beside = os.path.join(os.path.dirname(path), os.path.basename(learned))
                learned = beside if os.path.exists(beside) else learned
            self.net.copy_from(learned)
        self.solver.restore(state, path)
        side = path + RNG_SUFFIX
        if os.path.exists(side):
            with open(side) as f:
                self.set_rng_state(json.load(f))
        else:
            self.log.warn(f"no {os.path.basename(side)} beside the solver state: data order and random "
                          "numbers restart from the beginning, as in Caffe")

    def set_rng_state(self, saved):
        if len(saved["nets"]) != len(self._nets()):
            raise NetspecError("the saved random state is for a different number of nets",
                               hint="resume with the solver file that wrote the snapshot")
        for net, layers in zip(self._nets(), saved["nets"]):
            for layer in net.layers:
                entry = layers.get(layer.name, {})
                if "rng" in entry and layer.rng is not None:
                    layer.rng.bit_generator.state = entry["rng"]
                if "data" in entry and hasattr(layer, "set_data_state"):
                    layer.set_data_state(entry["data"])

    def close(self):
        for net in self._nets():
            net.close()


class _StopOnInterrupt:
    """Ctrl-C during training, as Caffe's default sigint_effect "stop": finish the iteration,
    snapshot, and stop. A second Ctrl-C interrupts at once."""

    def __init__(self, trainer):
        self.trainer, self.previous = trainer, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.trainer.stop_requested:
            raise KeyboardInterrupt
        self.trainer.stop_requested = True
        self.trainer.log.warn("Interrupted: stopping after this iteration (Ctrl-C again to stop at once)")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def _duration(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"
