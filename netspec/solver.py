"""Solvers: Caffe's update rules, learning-rate policies and solver state.

One update, as Caffe's SGDSolver::ApplyUpdate makes it, over the learnable parameters
(each a Blob with lr_mult and decay_mult):
  1. rate = the lr policy at this iteration;
  2. clip_gradients >= 0: if the global L2 norm of all diffs exceeds it, scale them all down;
  3. per parameter: diff /= iter_size (the diffs were accumulated over iter_size passes);
     diff += weight_decay * decay_mult * (data for L2, sign(data) for L1);
     the rule below turns diff into the step, with local_rate = rate * lr_mult;
  4. data -= diff.

History blobs are kept as Caffe keeps them, so a .solverstate written here reads in Caffe
and the other way round: one set per parameter (momentum, or the sum of squares), and for
AdaDelta and Adam a second set after the first (updates squared / second moment).
"""
import math

import numpy as np

from . import caffe_pb2
from .backend import to_numpy
from .errors import NetspecError
from .utils import did_you_mean
from .io.upgrade import upgrade_solver
from .io.blobs import array_to_proto, proto_to_array, shapes_match

LR_POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")


# -- learning-rate policies -------------------------------------------------------------------
def learning_rate(sp, it, current_step=0):
    """(rate, current_step) at iteration `it`, as Caffe's SGDSolver::GetLearningRate.

    current_step is Caffe's solver state for step and multistep: multistep advances it by at
    most one per call, so it must be called once per iteration, in order."""
    policy, base = sp.lr_policy, sp.base_lr
    if policy == "fixed":
        return base, current_step
    if policy == "step":
        current_step = it // sp.stepsize
        return base * sp.gamma ** current_step, current_step
    if policy == "exp":
        return base * sp.gamma ** it, current_step
    if policy == "inv":
        return base * (1 + sp.gamma * it) ** (-sp.power), current_step
    if policy == "multistep":
        if current_step < len(sp.stepvalue) and it >= sp.stepvalue[current_step]:
            current_step += 1
        return base * sp.gamma ** current_step, current_step
    if policy == "poly":
        return base * (1 - it / sp.max_iter) ** sp.power, current_step
    if policy == "sigmoid":
        return base / (1 + math.exp(-sp.gamma * (it - sp.stepsize))), current_step
    raise NetspecError(f"unknown lr_policy '{policy}'{did_you_mean(policy, LR_POLICIES)}",
                       hint="choose one of: " + ", ".join(LR_POLICIES))


def check_lr_policy(sp):
    """Errors where Caffe would abort (unknown policy, stepsize <= 0 ...); a list of warnings
    for parameters a policy uses but the file leaves at their default."""
    policy = sp.lr_policy
    if not sp.HasField("lr_policy"):
        raise NetspecError("the solver sets no lr_policy", hint="add lr_policy: \"fixed\" (or step, inv, ...)")
    if policy not in LR_POLICIES:
        learning_rate(sp, 0)    # names the nearest policy
    if policy in ("step", "sigmoid") and sp.stepsize <= 0:
        raise NetspecError(f"lr_policy '{policy}' needs stepsize > 0, found {sp.stepsize}",
                           hint="add stepsize: ... to the solver file")
    if policy == "poly" and sp.max_iter <= 0:
        raise NetspecError("lr_policy 'poly' needs max_iter > 0", hint="add max_iter: ... to the solver file")
    if policy in ("step", "exp", "inv", "multistep", "sigmoid") and sp.gamma < 0:
        raise NetspecError(f"lr_policy '{policy}' needs gamma >= 0, found {sp.gamma:g}",
                           hint="gamma is the factor of decay: e.g. gamma: 0.1")
    if policy == "multistep" and list(sp.stepvalue) != sorted(sp.stepvalue):
        raise NetspecError(f"stepvalue must increase, found {list(sp.stepvalue)}")
    uses = {"step": ("gamma",), "exp": ("gamma",), "inv": ("gamma", "power"),
            "multistep": ("gamma", "stepvalue"), "poly": ("power",), "sigmoid": ("gamma",)}.get(policy, ())
    unset = [name for name in uses if not (len(sp.stepvalue) if name == "stepvalue" else sp.HasField(name))]
    return [f"lr_policy '{policy}' uses {name}, which the solver leaves unset (0 or none, as in Caffe)"
            for name in unset]


# -- update rules: diff (the regularized gradient) -> the step, in place ------------------------
class SGD:
    sets = 1        # history blobs per parameter

    def __init__(self, sp):
        self.momentum = sp.momentum

    def update(self, xp, i, diff, history, local_rate, it):
        h = history[i]
        h *= self.momentum
        h += local_rate * diff
        diff[...] = h


class Nesterov(SGD):
    def update(self, xp, i, diff, history, local_rate, it):
        h = history[i]
        previous = h.copy()
        h *= self.momentum
        h += local_rate * diff
        diff[...] = (1 + self.momentum) * h - self.momentum * previous


class AdaGrad(SGD):
    def __init__(self, sp):
        if sp.momentum != 0:
            raise NetspecError(f"AdaGrad takes no momentum (found {sp.momentum:g})", hint="remove momentum")
        self.delta = sp.delta

    def update(self, xp, i, diff, history, local_rate, it):
        history[i] += diff * diff
        diff[...] = local_rate * (diff / (xp.sqrt(history[i]) + self.delta))


class RMSProp(SGD):
    def __init__(self, sp):
        if sp.momentum != 0:
            raise NetspecError(f"RMSProp takes no momentum (found {sp.momentum:g})",
                               hint="remove momentum; rms_decay sets the averaging")
        if not 0 <= sp.rms_decay < 1:
            raise NetspecError(f"rms_decay must lie in [0, 1), found {sp.rms_decay:g}",
                               hint="rms_decay: 0.98 is usual")
        self.decay, self.delta = sp.rms_decay, sp.delta

    def update(self, xp, i, diff, history, local_rate, it):
        h = history[i]
        h *= self.decay
        h += (1 - self.decay) * (diff * diff)
        diff[...] = local_rate * (diff / (xp.sqrt(h) + self.delta))


class AdaDelta(SGD):
    sets = 2

    def __init__(self, sp):
        self.momentum, self.delta = sp.momentum, sp.delta

    def update(self, xp, i, diff, history, local_rate, it):
        n = len(history) // 2
        grads, steps, m = history[i], history[n + i], self.momentum
        grads *= m
        grads += (1 - m) * (diff * diff)
        diff *= xp.sqrt((steps + self.delta) / (grads + self.delta))
        steps *= m
        steps += (1 - m) * (diff * diff)
        diff *= local_rate


class Adam(SGD):
    sets = 2

    def __init__(self, sp):
        self.beta1, self.beta2, self.eps = sp.momentum, sp.momentum2, sp.delta

    def update(self, xp, i, diff, history, local_rate, it):
        n = len(history) // 2
        m, v = history[i], history[n + i]
        t = it + 1
        correction = math.sqrt(1 - self.beta2 ** t) / (1 - self.beta1 ** t)
        m *= self.beta1
        m += (1 - self.beta1) * diff
        v *= self.beta2
        v += (1 - self.beta2) * (diff * diff)
        diff[...] = (local_rate * correction) * m / (xp.sqrt(v) + self.eps)


RULES = {cls.__name__: cls for cls in (SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam)}


def solver_type(sp):
    """The solver's type name (any case); the legacy solver_type enum is upgraded to it first,
    as a solver file is on reading."""
    if sp.HasField("solver_type"):
        upgraded = caffe_pb2.SolverParameter()
        upgraded.CopyFrom(sp)
        upgrade_solver(upgraded)
        sp = upgraded
    by_lower = {name.lower(): name for name in RULES}
    name = by_lower.get(sp.type.lower())
    if name is None:
        raise NetspecError(f"unknown solver type '{sp.type}'{did_you_mean(sp.type, RULES)}",
                           hint="choose one of: " + ", ".join(RULES))
    return name


# -- the solver ----------------------------------------------------------------------------------
class Solver:
    """Applies updates to a list of parameter slots (objects with .blob, .lr_mult, .decay_mult),
    and keeps the iteration count and history that a .solverstate holds."""

    def __init__(self, sp, params, xp=np, log=None):
        self.sp = sp
        self.params = list(params)
        self.xp = xp
        self.type = solver_type(sp)
        self.rule = RULES[self.type](sp)
        if sp.regularization_type not in ("L1", "L2"):
            raise NetspecError(f"unknown regularization_type '{sp.regularization_type}'", hint="use L2 or L1")
        if sp.iter_size < 1:
            raise NetspecError(f"iter_size must be at least 1, found {sp.iter_size}")
        self.log = log or (lambda message: None)
        for warning in check_lr_policy(sp):
            self.log(warning)
        self.iter = 0
        self.current_step = 0
        self.history = [xp.zeros_like(p.blob.data) for _ in range(self.rule.sets) for p in self.params]

    def rate(self):
        rate, step = learning_rate(self.sp, self.iter, self.current_step)
        if self.sp.lr_policy == "multistep" and step != self.current_step:
            self.log(f"MultiStep Status: Iteration {self.iter}, step = {step}")
        self.current_step = step
        return rate

    def apply_update(self, rate=None):
        """Turn the accumulated diffs into one step, and take it (the iteration count is the caller's)."""
        xp, sp = self.xp, self.sp
        rate = self.rate() if rate is None else rate
        self.clip_gradients()
        for i, p in enumerate(self.params):
            diff, data = p.blob.diff, p.blob.data
            if sp.iter_size != 1:
                diff *= 1.0 / sp.iter_size
            decay = sp.weight_decay * p.decay_mult
            if decay:
                diff += decay * (data if sp.regularization_type == "L2" else xp.sign(data))
            self.rule.update(xp, i, diff, self.history, rate * p.lr_mult, self.iter)
        for p in self.params:
            p.blob.data -= p.blob.diff
        return rate

    def clip_gradients(self):
        clip = self.sp.clip_gradients
        if clip < 0:
            return
        norm = math.sqrt(float(sum((p.blob.diff.astype(np.float64) ** 2).sum() for p in self.params)))
        if norm > clip:
            scale = clip / norm
            self.log(f"Gradient clipping: scaling down gradients (L2 norm {norm:g} > {clip:g}) "
                     f"by scale factor {scale:g}")
            for p in self.params:
                p.blob.diff *= scale

    # -- state ---------------------------------------------------------------------------------
    def state(self, learned_net):
        """A SolverState message (Caffe's .solverstate)."""
        state = caffe_pb2.SolverState(iter=self.iter, learned_net=learned_net, current_step=self.current_step)
        for h in self.history:
            array_to_proto(to_numpy(h), bp=state.history.add())
        return state

    def restore(self, state, path="<solverstate>"):
        if len(state.history) != len(self.history):
            raise NetspecError(f"the solver state holds {len(state.history)} history blobs, but a {self.type} "
                               f"solver of this net needs {len(self.history)}", file=path,
                               hint="resume with the same net and solver type that wrote it")
        for i, (h, bp) in enumerate(zip(self.history, state.history)):
            if not shapes_match(h.shape, bp):
                raise NetspecError(f"history blob {i} does not match parameter shape {tuple(h.shape)}", file=path,
                                   hint="resume with the same net that wrote it")
            h[...] = self.xp.asarray(proto_to_array(bp, h.shape), dtype=h.dtype)
        self.iter, self.current_step = state.iter, state.current_step
