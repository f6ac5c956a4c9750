"""The shared layer test harness (after Chainer's FunctionTestCase).

`run()` is the one way a test drives a layer: a forward on fresh blobs, then, when asked,
a backward. `check_layer()` takes a layer case (the layer, its bottom arrays, optionally
its parameter arrays and an expected-output function) and checks, on the backend `xp`:

  * forward against `expected(*bottoms, *params)` when given;
  * forward and backward leave the bottoms' data as they were;
  * backward OVERWRITES a propagated bottom's diff (a NaN put there first must be gone) and
    leaves an unpropagated one alone (propagate_down False: the NaN stays), while the
    parameter diffs come out the same either way;
  * parameter diffs ACCUMULATE: after two backwards they are twice one backward's, and a
    frozen blob (param_propagate_down False) keeps a zero diff;
  * strided (non-contiguous) bottoms, parameters and top diffs give the same results;
  * float32 in gives float32 out (tops and diffs), close to float64;
  * the numeric gradient check of tests/gradcheck.py, in float64.

Every run builds the layer afresh from its LayerParameter (layers keep state between
forwards: recurrent states, dropout masks), with the same random state.
"""
import numpy as np

# param_fillers and param_shapes are imported by the tests from here, with the rest of the layer API
from gradcheck import check_gradient, make_layer, param_fillers, param_shapes, setup_blobs  # noqa: F401
from netspec import caffe_pb2
from netspec.backend import to_numpy
from netspec.layers import create
from netspec.layers.base import Layer


def _copy(a):
    return np.array(to_numpy(a), copy=True)


class Run:
    """One forward of a layer on fresh blobs; backward() runs its backward on the same blobs."""

    def __init__(self, layer, bottoms, tops, xp):
        self.layer, self.bottoms, self.tops, self.xp = layer, bottoms, tops, xp

    @property
    def y(self):
        """The tops' data, as NumPy copies."""
        return [_copy(t.data) for t in self.tops]

    def backward(self, top_diffs=None, propagate=None, seed=1):
        """Seed each top's diff (an array or a scalar; None: standard normal draws, kept in
        self.top_diffs), run backward (propagate: per bottom, default all), return the
        bottoms' diffs as NumPy copies."""
        xp = self.xp
        if top_diffs is None:
            rng = np.random.default_rng(seed)
            top_diffs = [rng.standard_normal(t.shape) for t in self.tops]
        self.top_diffs = top_diffs
        for t, d in zip(self.tops, top_diffs):
            if np.ndim(d) == 0:
                t.diff[...] = d
            else:
                t.diff = xp.asarray(d, dtype=t.data.dtype)   # kept as given (strided views stay so)
        if propagate is None:
            propagate = [True] * len(self.bottoms)
        self.layer.backward(xp, self.tops, list(propagate), self.bottoms)
        return [_copy(b.diff) for b in self.bottoms]

    @property
    def params(self):
        """The parameter blobs' data, as NumPy copies."""
        return [_copy(p.data) for p in self.layer.blobs]

    @property
    def param_diffs(self):
        return [_copy(p.diff) for p in self.layer.blobs]


def _layer(layer):
    """A fresh layer from prototxt text, a LayerParameter or a DSL layer call (TRAIN phase),
    or from an existing layer (its LayerParameter and phase)."""
    if isinstance(layer, str):
        return make_layer(layer)
    if isinstance(layer, Layer):
        return create(layer.lp, layer.phase)
    lp = getattr(getattr(layer, "fn", layer), "lp", layer)     # a DSL call's Top or Function
    return create(lp, caffe_pb2.TRAIN)


def run(layer, arrays, xp=np, params=None, dtype=np.float64, seed=0, in_place=False):
    """Forward `layer` (a layer, a LayerParameter or its text) on fresh blobs of `arrays`;
    parameter blobs from `params` (random normal draws when None); layer.rng seeded.
    in_place: the tops are the bottoms' blobs, as with `top: "x"` on `bottom: "x"`."""
    if not hasattr(layer, "forward"):
        layer = _layer(layer)
    bottoms, tops = setup_blobs(layer, arrays, xp, params=params, dtype=dtype)
    if in_place:
        tops = bottoms
    layer.rng = np.random.default_rng(seed)
    layer.forward(xp, bottoms, tops)
    return Run(layer, bottoms, tops, xp)


# -- the full check ----------------------------------------------------------------------------------
def _strided(xp, a):
    """The same values as a non-contiguous view: every other element along the last axis
    longer than 1 (an array with no such axis is returned as it is)."""
    a = xp.asarray(a)
    axes = [k for k, n in enumerate(a.shape) if n > 1]
    if not axes:
        return a
    k = axes[-1]
    wide = xp.zeros(a.shape[:k] + (2 * a.shape[k],) + a.shape[k + 1:], dtype=a.dtype)
    every_other = (slice(None),) * k + (slice(None, None, 2),)
    wide[every_other] = a
    view = wide[every_other]
    assert not view.flags.c_contiguous
    return view


def _case(layer, xp, inputs, params, dy, propagate, frozen=None, strided=False, seed=0):
    """Forward, backward with NaN-filled bottom diffs; everything as NumPy copies."""
    fresh = _layer(layer)
    if frozen is not None:
        fresh.param_propagate_down = [j != frozen for j in range(len(params))]
    layout = (lambda a: _strided(xp, a)) if strided else xp.array   # fresh copies either way
    arrays, blobs = [layout(a) for a in inputs], [layout(p) for p in params]
    r = run(fresh, arrays, xp, params=blobs, seed=seed)
    y = r.y
    for b in r.bottoms:
        b.diff[...] = np.nan
    dxs = r.backward([_strided(xp, d) if strided else xp.array(d) for d in dy], propagate)
    return r, y, dxs, r.param_diffs


def _same(a, b, what, rtol=1e-10, atol=1e-12):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=what)


def check_layer(layer, bottom_arrays, *, xp=np, params=None, check_bottoms=None, expected=None,
                check_params=True, eps=1e-6, tol=1e-4, kink=None, kink_range=-1.0, seed=1701):
    """Every check above for one layer case; `check_bottoms`: the bottoms that take a gradient
    (default all; labels, indices and selectors do not). Returns the gradient elements checked."""
    proto = _layer(layer)
    name = f"{proto.type} '{proto.name}'"
    inputs = [np.asarray(a, dtype=np.float64) for a in bottom_arrays]
    grad = list(range(len(inputs)) if check_bottoms is None else check_bottoms)
    propagate = [i in grad for i in range(len(inputs))]
    setup_blobs(proto, inputs, params=params, seed=seed)
    params = [_copy(p.data) for p in proto.blobs]       # the values every run starts from
    rng = np.random.default_rng(seed + 1)     # top shapes after a forward (Filter's depend on values)
    probe = run(_layer(layer), [a.copy() for a in inputs], params=params)
    dy = [rng.standard_normal(t.shape) for t in probe.tops]

    r, y, dx, dp = _case(layer, xp, inputs, params, dy, propagate)
    if expected is not None:
        want = expected(*inputs, *params)
        want = list(want) if isinstance(want, (list, tuple)) else [want]
        assert len(want) == len(y), f"{name}: {len(y)} tops, {len(want)} expected"
        for i, (a, b) in enumerate(zip(y, want)):
            _same(a, b, f"{name}: top[{i}] against the expected function")
    for i, (b, a) in enumerate(zip(r.bottoms, inputs)):
        assert np.array_equal(to_numpy(b.data), a, equal_nan=True), \
            f"{name}: forward or backward changed bottom[{i}]'s data"
    for i, d in enumerate(dx):
        if propagate[i]:
            assert not np.isnan(d).any(), f"{name}: backward left part of bottom[{i}].diff unwritten"
        else:
            assert np.isnan(d).all(), f"{name}: backward wrote bottom[{i}].diff without propagate_down"

    # a second backward: bottom diffs overwritten again, parameter diffs accumulated
    again = r.backward([xp.array(d) for d in dy], propagate)
    for i in grad:
        _same(again[i], dx[i], f"{name}: bottom[{i}].diff after a second backward")
    for j, (twice, once) in enumerate(zip(r.param_diffs, dp)):
        _same(twice, 2 * once, f"{name}: param[{j}].diff does not accumulate over two backwards")

    # propagate_down False for one bottom at a time; a frozen parameter blob at a time
    for i in grad:
        off = [p and k != i for k, p in enumerate(propagate)]
        _, _, dxi, dpi = _case(layer, xp, inputs, params, dy, off)
        assert np.isnan(dxi[i]).all(), f"{name}: propagate_down False, yet bottom[{i}].diff written"
        for k in grad:
            if k != i:
                _same(dxi[k], dx[k], f"{name}: bottom[{k}].diff changes with bottom[{i}] not propagated")
        for j, (a, b) in enumerate(zip(dpi, dp)):
            _same(a, b, f"{name}: param[{j}].diff changes with bottom[{i}] not propagated")
    for j in range(len(params)):
        _, _, dxj, dpj = _case(layer, xp, inputs, params, dy, propagate, frozen=j)
        assert not np.any(dpj[j]), f"{name}: param[{j}] frozen (lr_mult 0), yet its diff was written"
        for k in grad:
            _same(dxj[k], dx[k], f"{name}: bottom[{k}].diff changes with param[{j}] frozen")

    # non-contiguous inputs: the same values, the same results
    _, ys, dxs, dps = _case(layer, xp, inputs, params, dy, propagate, strided=True)
    for what, a, b in ([("top", ys, y), ("param diff", dps, dp)]
                       + [("bottom diff", [dxs[i] for i in grad], [dx[i] for i in grad])]):
        for k, (u, v) in enumerate(zip(a, b)):
            _same(u, v, f"{name}: {what} {k} differs for non-contiguous inputs")

    # float32 in, float32 out, close to float64
    r32 = run(_layer(layer), inputs, xp, params=params, dtype=np.float32)
    dx32 = r32.backward(dy, propagate)
    for what, a, b in [("top", r32.y, y), ("param diff", r32.param_diffs, dp),
                       ("bottom diff", [dx32[i] for i in grad], [dx[i] for i in grad])]:
        for k, (u, v) in enumerate(zip(a, b)):
            assert u.dtype == np.float32, f"{name}: {what} {k} is {u.dtype} for float32 inputs"
            scale = float(np.abs(v).max()) if v.size else 0.0
            _same(u, v, f"{name}: {what} {k} in float32 far from float64", rtol=1e-3, atol=1e-4 * scale + 1e-6)

    return check_gradient(_layer(layer), [a.copy() for a in inputs], xp=xp, params=params,
                          check_bottoms=grad, check_params=check_params, eps=eps, tol=tol,
                          kink=kink, kink_range=kink_range, seed=seed)
