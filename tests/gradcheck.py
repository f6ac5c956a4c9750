"""One numeric gradient checker for every layer (after Caffe's GradientChecker).

The layer runs in float64. The scalar checked is sum(top * R) over every top, for fixed
random R, so each top's diff is R. Central differences of that scalar are compared with the
analytic bottom and parameter diffs, with a relative tolerance floored at 1 (an absolute
one near zero). The random state is reset before every forward, so a layer that draws
random numbers (Dropout) draws the same ones each time. `kink` skips elements whose value
lies within `kink_range` of a point where the function has no derivative (ReLU at 0, max ties).
"""
import numpy as np

from netspec import caffe_pb2
from netspec.backend import to_numpy
from netspec.blob import Blob
from netspec.layers import create
from netspec.layers.base import ShapeContext


def make_layer(lp_text, phase=caffe_pb2.TRAIN):
    """A layer from prototxt text of one LayerParameter (without the outer `layer { }`)."""
    from google.protobuf import text_format
    lp = text_format.Parse(lp_text, caffe_pb2.LayerParameter())
    return create(lp, phase)


# The layer API the tests use, in one place: make_layer (the registry), param_shapes and
# param_fillers (a layer's parameter blobs), setup_blobs (infer + blobs); harness.run drives
# forward and backward.
def param_shapes(layer, bottom_shapes):
    """The shapes of a layer's parameter blobs, in Caffe's order, for these bottom shapes."""
    return [tuple(b.shape) for b in layer.param_blobs([tuple(s) for s in bottom_shapes])]


def param_fillers(layer):
    """A FillerParameter per parameter blob (unset in the file: Caffe's constant 0)."""
    return [b.filler for b in layer.param_blobs(None)]


def setup_blobs(layer, bottom_arrays, xp=np, params=None, seed=1701, dtype=np.float64):
    """Bottom and top Blobs for a layer, its parameter blobs filled (randomly unless given)."""
    bottoms = [Blob(xp.asarray(a, dtype=dtype), xp.zeros(np.shape(a), dtype=dtype)) for a in bottom_arrays]
    shapes = [b.shape for b in bottoms]
    tops = [Blob.zeros(xp, s, dtype) for s in layer.infer(shapes, ShapeContext(layer.phase, layer.read_source()))]
    rng = np.random.default_rng(seed)
    pshapes = param_shapes(layer, shapes)
    if params is None:
        params = [rng.standard_normal(s) for s in pshapes]
    layer.blobs = [Blob(xp.asarray(p, dtype=dtype), xp.zeros(np.shape(p), dtype=dtype)) for p in params]
    return bottoms, tops


def run_forward(layer, xp, bottoms, tops, seed):
    layer.rng = np.random.default_rng(seed)
    layer.forward(xp, bottoms, tops)


def check_gradient(layer, bottom_arrays, *, xp=np, params=None, check_bottoms=None,
                   check_params=True, eps=1e-6, tol=1e-4, kink=None, kink_range=-1.0, seed=1701):
    """Assert analytic == numeric gradients; the failure names the blob and element index."""
    bottoms, tops = setup_blobs(layer, bottom_arrays, xp, params, seed)
    if check_bottoms is None:
        check_bottoms = range(len(bottoms))
    check_bottoms = list(check_bottoms)
    propagate = [i in check_bottoms for i in range(len(bottoms))]

    run_forward(layer, xp, bottoms, tops, seed)
    rng = np.random.default_rng(seed + 1)
    weights = [xp.asarray(rng.standard_normal(t.shape)) for t in tops]

    def objective():
        run_forward(layer, xp, bottoms, tops, seed)
        return float(sum(xp.sum(t.data * w) for t, w in zip(tops, weights)))

    objective()
    for t, w in zip(tops, weights):
        t.diff = w.copy()
    for p in layer.blobs:
        p.diff[...] = 0
    layer.backward(xp, tops, propagate, bottoms)

    targets = [(f"bottom[{i}]", bottoms[i]) for i in check_bottoms]
    if check_params:
        targets += [(f"param[{j}]", p) for j, p in enumerate(layer.blobs)]
    analytic = {name: np.array(to_numpy(b.diff), copy=True) for name, b in targets}
    checked = 0
    for name, blob in targets:
        flat = blob.data.reshape(-1)
        grad = analytic[name].reshape(-1)
        for k in range(flat.size):
            x = float(flat[k])
            if kink is not None and abs(x - kink) < kink_range:
                continue
            flat[k] = x + eps
            plus = objective()
            flat[k] = x - eps
            minus = objective()
            flat[k] = x
            numeric = (plus - minus) / (2 * eps)
            scale = max(abs(numeric), abs(grad[k]), 1.0)
            assert abs(grad[k] - numeric) <= tol * scale, (
                f"{layer.type} '{layer.name}': {name} element {np.unravel_index(k, blob.shape)}: "
                f"analytic {grad[k]:.8g} vs numeric {numeric:.8g}")
            checked += 1
    assert checked > 0, "the gradient check compared nothing"
    return checked
