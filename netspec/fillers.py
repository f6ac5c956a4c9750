"""Caffe's fillers: initial values for parameter blobs.

Values are drawn on the host from a seeded numpy Generator (so one seed gives one set of
weights, whatever the backend) and then moved to `xp`. Fan-in and fan-out follow Caffe's
legacy-shape arithmetic: fan_in = count / shape[0], fan_out = count / shape[1] (a missing
axis counts as 1).
"""
import math

import numpy as np

from . import caffe_pb2
from .errors import LayerError
from .utils import did_you_mean

FillerParameter = caffe_pb2.FillerParameter


def fill(xp, rng, shape, filler_param, dtype="float32"):
    """An array of `shape` filled as `filler_param` says, on the backend `xp`."""
    shape = tuple(int(d) for d in shape)
    param = filler_param if filler_param is not None else FillerParameter()
    kind = param.type or "constant"
    try:
        make = FILLERS[kind]
    except KeyError:
        raise LayerError(f"unknown filler type '{kind}'{did_you_mean(kind, FILLERS)}",
                         hint="known fillers: " + ", ".join(sorted(FILLERS))) from None
    if kind != "gaussian" and param.sparse != -1:
        raise LayerError(f"filler '{kind}' does not support sparse (got sparse: {param.sparse})",
                         hint="sparse is for the gaussian filler only; remove it")
    if int(np.prod(shape)) == 0 and kind != "constant":
        raise LayerError(f"cannot fill an empty blob of shape {shape} with the '{kind}' filler")
    values = make(rng, shape, param)
    # a C-contiguous, writeable array (bilinear's values are a broadcast view), as CuPy makes
    return xp.asarray(np.ascontiguousarray(values, dtype=dtype).reshape(shape))


def fans(shape):
    """Caffe's (fan_in, fan_out) of a parameter blob."""
    count = int(np.prod(shape))
    num = shape[0] if len(shape) > 0 else 1
    channels = shape[1] if len(shape) > 1 else 1
    return count // num, count // channels


def _variance_n(shape, param):
    fan_in, fan_out = fans(shape)
    norm = param.variance_norm
    if norm == FillerParameter.FAN_OUT:
        return fan_out
    if norm == FillerParameter.AVERAGE:
        return (fan_in + fan_out) / 2.0
    return fan_in


def _constant(rng, shape, p):
    return np.full(shape, p.value)


def _uniform(rng, shape, p):
    return rng.uniform(p.min, p.max, size=shape)


def _gaussian(rng, shape, p):
    values = rng.normal(p.mean, p.std, size=shape)
    if p.sparse < -1:
        raise LayerError(f"gaussian filler: sparse must be -1 (dense) or >= 0, got {p.sparse}")
    if p.sparse >= 0:
        # 'sparse' is the expected number of non-zero inputs per output (shape[0] outputs).
        num_outputs = shape[0] if shape else 1
        keep = rng.random(size=shape) < p.sparse / num_outputs
        values = values * keep
    return values


def _positive_unitball(rng, shape, p):
    values = rng.uniform(0.0, 1.0, size=shape)
    num = shape[0] if shape else 1
    rows = values.reshape(num, -1)
    return rows / rows.sum(axis=1, keepdims=True)


def _xavier(rng, shape, p):
    scale = math.sqrt(3.0 / _variance_n(shape, p))
    return rng.uniform(-scale, scale, size=shape)


def _msra(rng, shape, p):
    return rng.normal(0.0, math.sqrt(2.0 / _variance_n(shape, p)), size=shape)


def _bilinear(rng, shape, p):
    if len(shape) != 4:
        raise LayerError(f"bilinear filler needs a 4-d blob, got shape {shape}")
    if shape[2] != shape[3]:
        raise LayerError(f"bilinear filler needs a square kernel, got {shape[2]}x{shape[3]}")
    width = shape[3]
    f = math.ceil(width / 2.0)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    ramp = 1 - np.abs(np.arange(width) / f - c)
    return np.broadcast_to(np.outer(ramp, ramp), shape)


FILLERS = {
    "constant": _constant,
    "uniform": _uniform,
    "gaussian": _gaussian,
    "positive_unitball": _positive_unitball,
    "xavier": _xavier,
    "msra": _msra,
    "bilinear": _bilinear,
}
