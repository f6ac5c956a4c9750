"""Common layers: shape rules and their errors, forward against NumPy references written
here, numeric gradients, in-place runs, BatchNorm's statistics."""
import numpy as np
import pytest

from harness import check_layer, make_layer, param_fillers, param_shapes, run
from netspec import caffe_pb2
from netspec.blob import Blob
from netspec.errors import LayerError
from netspec.layers.base import ShapeContext

TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def infer(text, *shapes, phase=TEST):
    ctx = ShapeContext(phase)
    return make_layer(text, phase).infer(list(shapes), ctx), ctx.notes


def tie_free(shape, seed=0, gap=0.05):
    """Distinct values, at least `gap` apart and away from zero (no max ties, no |x| kink)."""
    n = int(np.prod(shape))
    values = (np.arange(n) - n / 2 + 0.5) * gap * 2
    return np.random.default_rng(seed).permutation(values).reshape(shape)


# --- InnerProduct ------------------------------------------------------------------------------
@pytest.mark.parametrize("axis,transpose,bias",
                         [(1, False, True), (2, False, True), (1, True, False), (-1, True, True)])
def test_inner_product_forward(axis, transpose, bias, xp):
    text = (f"type: 'InnerProduct' inner_product_param {{ num_output: 4 axis: {axis} "
            f"transpose: {str(transpose).lower()} bias_term: {str(bias).lower()} }}")
    layer = make_layer(text)
    x = randn(2, 3, 5)
    a = axis % 3
    k = int(np.prod(x.shape[a:]))
    w = randn(*((k, 4) if transpose else (4, k)), seed=1)
    params = [w] + ([randn(4, seed=2)] if bias else [])
    assert param_shapes(layer, [x.shape]) == [p.shape for p in params]
    (y,) = run(layer, [x], xp, params).y
    rows = x.reshape(int(np.prod(x.shape[:a])), k)
    expected = np.array([[sum(r[i] * (w[i, j] if transpose else w[j, i]) for i in range(k)) for j in range(4)]
                         for r in rows])
    if bias:
        expected += params[1]
    np.testing.assert_allclose(y, expected.reshape(x.shape[:a] + (4,)), rtol=1e-12)
    assert layer.macs([x.shape], [y.shape]) == rows.shape[0] * k * 4


@pytest.mark.parametrize("text,shape", [
    ("inner_product_param { num_output: 3 }", (2, 3, 2, 2)),
    ("inner_product_param { num_output: 2 axis: 2 transpose: true }", (2, 3, 4)),
    ("inner_product_param { num_output: 3 bias_term: false }", (3, 5)),
])
def test_inner_product_gradient(text, shape, xp):
    check_layer(make_layer("type: 'InnerProduct' " + text), [randn(*shape)], xp=xp)


def test_inner_product_shape_note_and_errors():
    (top,), notes = infer("type: 'InnerProduct' inner_product_param { num_output: 4096 }", (10, 256, 6, 6))
    assert top == (10, 4096)
    assert "256 * 6 * 6 = 9216" in notes[0]
    assert param_shapes(make_layer("type: 'InnerProduct' inner_product_param { num_output: 4096 }"),
        [(10, 256, 6, 6)]) == [(4096, 9216), (4096,)]
    with pytest.raises(LayerError, match="num_output"):
        make_layer("type: 'InnerProduct'")
    with pytest.raises(LayerError, match="out of range"):
        infer("type: 'InnerProduct' inner_product_param { num_output: 2 axis: 3 }", (2, 3))


# --- Concat / Slice / Split ---------------------------------------------------------------------
@pytest.mark.parametrize("param,axis", [("", 1), ("concat_param { axis: -1 }", 2),
                                        ("concat_param { concat_dim: 0 }", 0)])
def test_concat_forward_and_gradient(param, axis, xp):
    shapes = [[2, 3, 4] for _ in range(3)]
    for i, s in enumerate(shapes):
        s[axis] = i + 1
    arrays = [randn(*s, seed=i) for i, s in enumerate(shapes)]
    layer = make_layer("type: 'Concat' bottom: 'a' bottom: 'b' bottom: 'c' " + param)
    (y,) = run(layer, arrays, xp).y
    np.testing.assert_array_equal(y, np.concatenate(arrays, axis=axis))
    check_layer(layer, arrays, xp=xp)


def test_concat_shape_note_and_mismatch_error():
    (top,), notes = infer("type: 'Concat'", (1, 64, 28, 28), (1, 128, 28, 28), (1, 32, 28, 28))
    assert top == (1, 224, 28, 28) and notes == ["concat along axis 1: 64 + 128 + 32 = 224"]
    with pytest.raises(LayerError) as e:
        infer("type: 'Concat' bottom: 'conv' bottom: 'pool'", (1, 64, 14, 14), (1, 32, 13, 14))
    assert "axis 2: bottom 'pool' has 13, bottom 'conv' has 14 (off by -1)" in e.value.message
    assert "axis 3" not in e.value.message and e.value.hint
    with pytest.raises(LayerError, match="3-d"):
        infer("type: 'Concat'", (1, 2, 3, 3), (1, 2, 3))
    with pytest.raises(LayerError, match="both axis and the legacy concat_dim"):
        make_layer("type: 'Concat' concat_param { axis: 1 concat_dim: 1 }")
    with pytest.raises(LayerError, match="concat_dim 4 is out of range"):
        infer("type: 'Concat' concat_param { concat_dim: 4 }", (1, 2, 3, 3), (1, 2, 3, 3))


@pytest.mark.parametrize("param,ntops,sizes,axis", [
    ("slice_param { slice_point: 1 slice_point: 4 }", 3, [1, 3, 2], 1),
    ("slice_param { axis: -1 }", 2, [2, 2], 2),
    ("slice_param { slice_dim: 0 slice_point: 2 }", 2, [2, 1], 0),
])
def test_slice_forward_and_gradient(param, ntops, sizes, axis, xp):
    x = randn(3, 6, 4)
    text = "type: 'Slice' " + " ".join(f"top: 't{i}'" for i in range(ntops)) + " " + param
    layer = make_layer(text)
    tops = run(layer, [x], xp).y
    assert [t.shape[axis] for t in tops] == sizes
    np.testing.assert_array_equal(np.concatenate(tops, axis=axis), x)
    check_layer(layer, [x], xp=xp)


def test_slice_shape_errors():
    (a, b), notes = infer("type: 'Slice' top: 'a' top: 'b' slice_param { slice_point: 3 }", (2, 10))
    assert (a, b) == ((2, 3), (2, 7)) and "pieces of 3, 7" in notes[0]
    with pytest.raises(LayerError, match="2 slice_point.* 3 pieces, but the layer has 2"):
        infer("type: 'Slice' top: 'a' top: 'b' slice_param { slice_point: 1 slice_point: 2 }", (2, 10))
    with pytest.raises(LayerError, match="increase strictly"):
        infer("type: 'Slice' top: 'a' top: 'b' top: 'c' slice_param { slice_point: 5 slice_point: 5 }", (2, 10))
    with pytest.raises(LayerError, match="not below the size of axis 1"):
        infer("type: 'Slice' top: 'a' top: 'b' slice_param { slice_point: 10 }", (2, 10))
    with pytest.raises(LayerError, match=r"3 tops do not divide axis 1 \(10\) evenly: 10 = 3 \* 3 \+ 1"):
        infer("type: 'Slice' top: 'a' top: 'b' top: 'c'", (2, 10))


def test_split_copies_and_sums_gradients(xp):
    layer = make_layer("type: 'Split' top: 'a' top: 'b' top: 'c'")
    x = randn(2, 3)
    assert layer.infer([x.shape], ShapeContext()) == [(2, 3)] * 3
    for t in run(layer, [x], xp).y:
        np.testing.assert_array_equal(t, x)
    (dx,) = run(layer, [x], xp).backward([1, 2, 3])
    np.testing.assert_array_equal(dx, 6.0)
    check_layer(layer, [x], xp=xp)


# --- Flatten / Reshape ---------------------------------------------------------------------------
@pytest.mark.parametrize("param,top,note", [
    ("", (2, 60), "flatten axes 1..3: 3 * 4 * 5 = 60"),
    ("flatten_param { axis: 2 }", (2, 3, 20), "4 * 5 = 20"),
    ("flatten_param { axis: 0 end_axis: 1 }", (6, 4, 5), "2 * 3 = 6"),
    ("flatten_param { axis: 1 end_axis: -2 }", (2, 12, 5), "3 * 4 = 12"),
])
def test_flatten_shapes(param, top, note):
    (got,), notes = infer("type: 'Flatten' " + param, (2, 3, 4, 5))
    assert got == top and note in notes[0]


def test_flatten_axis_order_error():
    with pytest.raises(LayerError, match="comes before"):
        infer("type: 'Flatten' flatten_param { axis: 3 end_axis: 1 }", (2, 3, 4, 5))


@pytest.mark.parametrize("param,top", [
    ("shape { dim: 0 dim: -1 }", (2, 60)),
    ("shape { dim: 0 dim: 0 dim: -1 dim: 5 }", (2, 3, 4, 5)),
    ("shape { dim: -1 dim: 4 dim: 5 }", (6, 4, 5)),
    ("shape { dim: 1 } axis: 1 num_axes: 0", (2, 1, 3, 4, 5)),            # insert an axis
    ("shape { dim: 1 } axis: -1 num_axes: 0", (2, 3, 4, 5, 1)),           # ... at the end
    ("shape { dim: 2 dim: -1 } axis: 2", (2, 3, 2, 10)),
    ("shape { dim: -1 } axis: 1 num_axes: 2", (2, 12, 5)),
    ("shape { dim: 0 dim: 10 dim: 2 } axis: 1", (2, 3, 10, 2)),
])
def test_reshape_shapes(param, top):
    (got,), _ = infer("type: 'Reshape' reshape_param { " + param + " }", (2, 3, 4, 5))
    assert got == top


def test_reshape_note_data_and_gradient(xp):
    text = "type: 'Reshape' reshape_param { shape { dim: 0 dim: -1 dim: 2 } }"
    (_,), notes = infer(text, (2, 3, 4))
    assert notes == ["reshape: 0 copies axis 0 (2); -1 = 24 / 4 = 6"]
    x = randn(2, 3, 4)
    layer = make_layer(text)
    (y,) = run(layer, [x], xp).y
    np.testing.assert_array_equal(y, x.reshape(2, 6, 2))
    check_layer(layer, [x], xp=xp)
    check_layer(make_layer("type: 'Flatten'"), [x], xp=xp)


@pytest.mark.parametrize("param,message", [
    ("shape { dim: -1 dim: -1 }", "more than one -1"),
    ("shape { dim: 7 dim: -1 }", "not divisible by the product of the other dimensions \\(7\\)"),
    ("shape { dim: 5 dim: 5 }", "holds 25 values but the bottom 2x3x4 holds 24"),
    ("shape { dim: 0 dim: 0 dim: 0 dim: 0 }", "no axis 3 to copy"),
    ("shape { dim: -2 dim: -1 }", "dimensions are positive"),
    ("shape { dim: 1 } axis: 5", "axis 5 is out of range"),
    ("shape { dim: 1 } axis: 2 num_axes: 2", "runs past"),
])
def test_reshape_errors(param, message):
    with pytest.raises(LayerError, match=message):
        infer("type: 'Reshape' reshape_param { " + param + " }", (2, 3, 4))


# --- Eltwise ----------------------------------------------------------------------------------
def test_eltwise_forward(xp):
    a, b, c = randn(2, 3, 4, seed=1), randn(2, 3, 4, seed=2), randn(2, 3, 4, seed=3)
    (s,) = run(make_layer("type: 'Eltwise' eltwise_param { coeff: 1 coeff: -0.5 coeff: 2 }"), [a, b, c], xp).y
    np.testing.assert_allclose(s, a - 0.5 * b + 2 * c)
    (p,) = run(make_layer("type: 'Eltwise' eltwise_param { operation: PROD }"), [a, b, c], xp).y
    np.testing.assert_allclose(p, a * b * c)
    (m,) = run(make_layer("type: 'Eltwise' eltwise_param { operation: MAX }"), [a, b, c], xp).y
    np.testing.assert_array_equal(m, np.maximum(np.maximum(a, b), c))


def test_eltwise_max_ties_follow_caffe():
    """Bottom 1 wins a tie with bottom 0; a later bottom must be strictly greater."""
    layer = make_layer("type: 'Eltwise' eltwise_param { operation: MAX }")
    a, b, c = (np.array([[1.0, 2.0, 0.0]]), np.array([[1.0, 1.0, 3.0]]), np.array([[1.0, 2.0, 3.0]]))
    r = run(layer, [a, b, c])
    da, db, dc = r.backward([1])
    np.testing.assert_array_equal(r.y[0], [[1, 2, 3]])
    np.testing.assert_array_equal(da, [[0, 1, 0]])
    np.testing.assert_array_equal(db, [[1, 0, 1]])
    np.testing.assert_array_equal(dc, [[0, 0, 0]])


@pytest.mark.parametrize("param", ["", "eltwise_param { coeff: 0.5 coeff: -2 coeff: 3 }",
                                   "eltwise_param { operation: PROD }",
                                   "eltwise_param { operation: PROD stable_prod_grad: false }",
                                   "eltwise_param { operation: MAX }"])
def test_eltwise_gradient(param, xp):
    arrays = list(tie_free((3, 2, 3, 2)))
    check_layer(make_layer("type: 'Eltwise' " + param), arrays, xp=xp)


def test_eltwise_errors():
    with pytest.raises(LayerError) as e:
        infer("type: 'Eltwise' bottom: 'x' bottom: 'shortcut'", (1, 256, 56, 56), (1, 256, 28, 28))
    assert "axis 2: bottom 'shortcut' has 28, bottom 'x' has 56 (off by -28)" in e.value.message
    assert "axis 3:" in e.value.message
    with pytest.raises(LayerError, match="2 coeff value.* for 3 bottoms"):
        infer("type: 'Eltwise' eltwise_param { coeff: 1 coeff: 2 }", (2,), (2,), (2,))
    with pytest.raises(LayerError, match="only for operation SUM"):
        make_layer("type: 'Eltwise' eltwise_param { operation: PROD coeff: 1 coeff: 1 }")


@pytest.mark.parametrize("op", ["SUM", "PROD", "MAX"])
def test_eltwise_in_place_equals_out_of_place(op):
    arrays = list(tie_free((3, 3, 4)))
    dy = randn(3, 4, seed=7)
    results = []
    for in_place in (False, True):
        layer = make_layer(f"type: 'Eltwise' eltwise_param {{ operation: {op} }}")
        bottoms = [Blob(a.copy(), np.zeros_like(a)) for a in arrays]
        top = bottoms[2] if in_place else Blob(np.zeros_like(dy), np.zeros_like(dy))
        layer.forward(np, bottoms, [top])
        y = top.data.copy()
        top.diff[...] = dy
        layer.backward(np, [top], [True] * 3, bottoms)
        results.append([y] + [b.diff.copy() for b in bottoms])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-13)


# --- Scale / Bias -----------------------------------------------------------------------------
def expand(a, axis, ndim=3):
    """An operand lined up with a bottom from `axis` on (an independent take on broadcasting)."""
    return a.reshape((1,) * axis + a.shape + (1,) * (ndim - axis - a.ndim))


@pytest.mark.parametrize("param,operand,axis", [
    ("", (3,), 1),
    ("scale_param { axis: 1 num_axes: 2 }", (3, 4), 1),
    ("scale_param { axis: 0 num_axes: -1 }", (2, 3, 4), 0),
    ("scale_param { num_axes: 0 }", (), 0),
    ("scale_param { axis: -1 }", (4,), 2),
])
@pytest.mark.parametrize("bias", [False, True])
def test_scale_learned(param, operand, axis, bias, xp):
    text = "type: 'Scale' " + (param or "scale_param { }")
    if bias:
        text = text[:-1] + " bias_term: true }"
    layer = make_layer(text)
    x = randn(2, 3, 4)
    shapes = param_shapes(layer, [x.shape])
    assert shapes == [operand] * (2 if bias else 1)
    params = [randn(*operand, seed=1).reshape(operand), randn(*operand, seed=2).reshape(operand)][:len(shapes)]
    (y,) = run(layer, [x], xp, params).y
    expected = x * expand(params[0], axis) + (expand(params[1], axis) if bias else 0)
    np.testing.assert_allclose(y, expected)
    check_layer(layer, [x], xp=xp, params=params)


def test_scale_fillers():
    fillers = param_fillers(make_layer("type: 'Scale' scale_param { bias_term: true }"))
    assert [(f.type, f.value) for f in fillers] == [("constant", 1.0), ("constant", 0.0)]
    filler = param_fillers(make_layer("type: 'Scale' scale_param { filler { type: 'gaussian' std: 0.1 } }"))[0]
    assert filler.type == "gaussian"
    assert param_fillers(make_layer("type: 'Scale' bottom: 'x' bottom: 's' scale_param { bias_term: true }")) \
        == [caffe_pb2.FillerParameter()]


@pytest.mark.parametrize("scale_shape,axis", [((2, 3), 0), ((3,), 1), ((3, 4), -2), ((), 1)])
def test_scale_second_bottom(scale_shape, axis, xp):
    text = f"type: 'Scale' bottom: 'x' bottom: 's' scale_param {{ axis: {axis} bias_term: true }}"
    layer = make_layer(text)
    x = randn(2, 3, 4)
    s = randn(*scale_shape, seed=3).reshape(scale_shape)
    assert param_shapes(layer, [x.shape, s.shape]) == [scale_shape]
    bias = randn(*scale_shape, seed=4).reshape(scale_shape)
    (y,) = run(layer, [x, s], xp, [bias]).y
    a = axis % 3 if scale_shape else 0
    np.testing.assert_allclose(y, x * expand(s, a) + expand(bias, a))
    check_layer(layer, [x, s], xp=xp, params=[bias])


def test_scale_mismatch_error():
    with pytest.raises(LayerError, match="does not match bottom 'x' \\(2x3x4\\) from axis 1 on"):
        infer("type: 'Scale' bottom: 'x' bottom: 's'", (2, 3, 4), (4,))
    with pytest.raises(LayerError, match="runs past"):
        infer("type: 'Scale' scale_param { axis: 2 num_axes: 2 }", (2, 3, 4))


@pytest.mark.parametrize("text", ["type: 'Scale' scale_param { bias_term: true }", "type: 'Bias'"])
def test_scale_bias_in_place_equals_out_of_place(text):
    x, dy = randn(2, 3, 4), randn(2, 3, 4, seed=5)
    params = [randn(3, seed=1), randn(3, seed=2)][:2 if "Scale" in text else 1]
    results = []
    for in_place in (False, True):
        layer = make_layer(text)
        layer.blobs = [Blob(p.copy(), np.zeros_like(p)) for p in params]
        bottom = Blob(x.copy(), np.zeros_like(x))
        top = bottom if in_place else Blob(np.zeros_like(x), np.zeros_like(x))
        layer.forward(np, [bottom], [top])
        y = top.data.copy()
        top.diff[...] = dy
        layer.backward(np, [top], [True], [bottom])
        results.append([y, bottom.diff.copy()] + [p.diff.copy() for p in layer.blobs])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-13)


@pytest.mark.parametrize("param,operand,axis", [("", (3,), 1), ("bias_param { axis: 0 num_axes: 2 }", (2, 3), 0),
                                                ("bias_param { num_axes: 0 }", (), 0)])
def test_bias(param, operand, axis, xp):
    layer = make_layer("type: 'Bias' " + param)
    x = randn(2, 3, 4)
    assert param_shapes(layer, [x.shape]) == [operand]
    assert param_fillers(layer)[0].type == "constant"
    b = randn(*operand, seed=1).reshape(operand)
    (y,) = run(layer, [x], xp, [b]).y
    np.testing.assert_allclose(y, x + expand(b, axis))
    check_layer(layer, [x], xp=xp, params=[b])
    two = make_layer("type: 'Bias' bottom: 'x' bottom: 'b'")
    assert param_shapes(two, [x.shape, (3,)]) == []
    check_layer(two, [x, randn(3, seed=2)], xp=xp)


# --- BatchNorm ----------------------------------------------------------------------------------
def test_batchnorm_train_normalises_and_updates_statistics():
    layer = make_layer("type: 'BatchNorm' batch_norm_param { moving_average_fraction: 0.5 eps: 0 }", TRAIN)
    assert not layer.use_global_stats and layer.learnable == (False, False, False)
    x1, x2 = randn(4, 2, 3, 3, seed=1) * 3 + 1, randn(4, 2, 3, 3, seed=2) - 2
    params = [np.zeros(2), np.zeros(2), np.zeros(1)]
    first = run(layer, [x1], np, params)
    y = first.y[0]
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-12)
    run(layer, [x2], np, first.params)             # the statistics the first batch left
    m = 4 * 3 * 3
    per_channel = [x.transpose(1, 0, 2, 3).reshape(2, -1) for x in (x1, x2)]
    mean = [c.mean(axis=1) for c in per_channel]
    var = [c.var(axis=1) * m / (m - 1) for c in per_channel]
    mean_blob, var_blob, factor_blob = (b.data for b in layer.blobs)
    np.testing.assert_allclose(factor_blob, [0.5 * 1 + 1])
    np.testing.assert_allclose(mean_blob, 0.5 * mean[0] + mean[1])
    np.testing.assert_allclose(var_blob, 0.5 * var[0] + var[1])


def test_batchnorm_test_uses_stored_statistics(xp):
    layer = make_layer("type: 'BatchNorm'", TEST)
    assert layer.use_global_stats
    x = randn(2, 3, 2, 2)
    mean, var, factor = np.array([1.0, -2.0, 0.5]), np.array([4.0, 0.25, 1.0]), np.array([2.0])
    (y,) = run(layer, [x], xp, [mean, var, factor]).y
    eps = float(np.float32(1e-5))
    expected = (x - (mean / 2)[:, None, None]) / np.sqrt(var / 2 + eps)[:, None, None]
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    (y0,) = run(layer, [x], xp, [mean, var, np.zeros(1)]).y    # factor 0: statistics read as 0
    np.testing.assert_allclose(y0, x / np.sqrt(eps), rtol=1e-12)


def test_batchnorm_use_global_stats_overrides_phase_and_lr_mult_check():
    assert make_layer("type: 'BatchNorm' batch_norm_param { use_global_stats: true }", TRAIN).use_global_stats
    assert not make_layer("type: 'BatchNorm' batch_norm_param { use_global_stats: false }", TEST).use_global_stats
    make_layer("type: 'BatchNorm' param { lr_mult: 0 } param { lr_mult: 0 } param { lr_mult: 0 }")
    with pytest.raises(LayerError, match="statistics"):
        make_layer("type: 'BatchNorm' param { lr_mult: 1 }")
    layer = make_layer("type: 'BatchNorm'")
    assert param_shapes(layer, [(5, 7, 3, 3)]) == [(7,), (7,), (1,)]
    assert param_shapes(layer, [(5,)]) == [(1,), (1,), (1,)]
    assert all(f.type == "constant" and f.value == 0 for f in param_fillers(layer))


@pytest.mark.parametrize("shape", [(4, 3, 2, 2), (5, 2)], ids=str)
@pytest.mark.parametrize("phase", [TRAIN, TEST])
def test_batchnorm_gradient(shape, phase, xp):
    c = shape[1]
    params = [np.linspace(-1, 1, c), np.linspace(0.5, 2, c), np.array([1.5])]
    check_layer(make_layer("type: 'BatchNorm'", phase), [randn(*shape)], xp=xp, params=params,
                   check_params=False)


def test_batchnorm_in_place_survives_a_later_in_place_layer():
    """BatchNorm -> Scale, both in place: BatchNorm's backward must not read the clobbered top."""
    x, dy = randn(4, 3, 2, 2), randn(4, 3, 2, 2, seed=3)
    results = []
    for in_place in (False, True):
        bn, scale = make_layer("type: 'BatchNorm'", TRAIN), make_layer("type: 'Scale'")
        bn.blobs = [Blob(np.zeros(s), np.zeros(s)) for s in [(3,), (3,), (1,)]]
        scale.blobs = [Blob(np.array([2.0, -1.0, 0.5]), np.zeros(3))]
        a = Blob(x.copy(), np.zeros_like(x))
        b = a if in_place else Blob(np.zeros_like(x), np.zeros_like(x))
        c = a if in_place else Blob(np.zeros_like(x), np.zeros_like(x))
        bn.forward(np, [a], [b])
        scale.forward(np, [b], [c])
        y = c.data.copy()
        c.diff[...] = dy
        scale.backward(np, [c], [True], [b])
        bn.backward(np, [b], [True], [a])
        results.append((y, a.diff.copy(), scale.blobs[0].diff.copy()))
    for u, v in zip(*results):
        np.testing.assert_allclose(u, v, rtol=1e-12)


# --- MVN / Softmax ------------------------------------------------------------------------------
@pytest.mark.parametrize("param", ["", "mvn_param { across_channels: true }",
                                   "mvn_param { normalize_variance: false }"])
def test_mvn(param, xp):
    layer = make_layer("type: 'MVN' " + param)
    x = randn(2, 3, 2, 3) * 2 + 1
    (y,) = run(layer, [x], xp).y
    axes = (1, 2, 3) if "across" in param else (2, 3)
    centered = x - x.mean(axis=axes, keepdims=True)
    if "false" not in param:
        centered /= np.sqrt((centered ** 2).mean(axis=axes, keepdims=True)) + layer.lp.mvn_param.eps
    np.testing.assert_allclose(y, centered, rtol=1e-10)
    check_layer(layer, [x], xp=xp)


@pytest.mark.parametrize("axis", [1, 0, -1])
def test_softmax(axis, xp):
    layer = make_layer(f"type: 'Softmax' softmax_param {{ axis: {axis} }}")
    x = randn(3, 4, 2) * 3
    (y,) = run(layer, [x], xp).y
    e = np.exp(x)
    np.testing.assert_allclose(y, e / e.sum(axis=axis, keepdims=True), rtol=1e-12)
    check_layer(layer, [x], xp=xp)


def test_softmax_large_inputs_and_in_place():
    layer = make_layer("type: 'Softmax'")
    x = np.array([[1000.0, 1000.0], [-1000.0, 0.0]])
    blob = Blob(x.copy(), np.zeros_like(x))
    layer.forward(np, [blob], [blob])
    np.testing.assert_allclose(blob.data, [[0.5, 0.5], [0.0, 1.0]])


# --- ArgMax ------------------------------------------------------------------------------------
def argmax_reference(rows, k):
    """Caffe's order: descending value, ties to the larger index."""
    return [sorted(range(len(r)), key=lambda j: (-r[j], -j))[:k] for r in rows]


@pytest.mark.parametrize("k,out_max_val", [(1, False), (3, False), (2, True)])
def test_argmax_per_item(k, out_max_val):
    x = np.array([[[[1.0, 5.0], [5.0, 2.0]]], [[[0.0, -1.0], [3.0, 3.0]]]])     # (2, 1, 2, 2) with ties
    layer = make_layer(f"type: 'ArgMax' argmax_param {{ top_k: {k} out_max_val: {str(out_max_val).lower()} }}")
    (y,) = run(layer, [x]).y
    assert y.shape == (2, 2 if out_max_val else 1, k, 1)
    rows = x.reshape(2, -1)
    idx = argmax_reference(rows, k)
    np.testing.assert_array_equal(y[:, 0, :, 0], idx)
    if out_max_val:
        np.testing.assert_array_equal(y[:, 1, :, 0], [r[i] for r, i in zip(rows, idx)])


@pytest.mark.parametrize("out_max_val", [False, True])
def test_argmax_along_axis(out_max_val, xp):
    x = np.round(randn(2, 5, 3), 0)            # rounding makes ties
    layer = make_layer(f"type: 'ArgMax' argmax_param {{ axis: 1 top_k: 2 out_max_val: {str(out_max_val).lower()} }}")
    (y,) = run(layer, [x], xp).y
    assert y.shape == (2, 2, 3)
    for n in range(2):
        for w in range(3):
            col = x[n, :, w]
            idx = argmax_reference([col], 2)[0]
            np.testing.assert_array_equal(y[n, :, w], col[idx] if out_max_val else idx)


def test_argmax_shapes_and_errors():
    assert infer("type: 'ArgMax'", (10, 1000))[0] == [(10, 1, 1)]
    assert infer("type: 'ArgMax' argmax_param { top_k: 5 out_max_val: true }", (10, 1000))[0] == [(10, 2, 5)]
    with pytest.raises(LayerError, match="top_k 6 is more than the size of axis 1"):
        infer("type: 'ArgMax' argmax_param { axis: 1 top_k: 6 }", (2, 5))
    with pytest.raises(LayerError, match="top_k 11 is more than the 10 values"):
        infer("type: 'ArgMax' argmax_param { top_k: 11 }", (2, 10))


# --- Reduction / Tile ---------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["SUM", "ASUM", "SUMSQ", "MEAN"])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_reduction(op, axis, xp):
    layer = make_layer(f"type: 'Reduction' reduction_param {{ operation: {op} axis: {axis} coeff: -1.5 }}")
    x = tie_free((2, 3, 4))
    (y,) = run(layer, [x], xp).y
    a = axis % 3
    assert y.shape == x.shape[:a]
    rows = x.reshape(int(np.prod(x.shape[:a])), -1)
    per_row = {"SUM": rows.sum(1), "ASUM": np.abs(rows).sum(1), "SUMSQ": (rows ** 2).sum(1),
               "MEAN": rows.mean(1)}[op]
    np.testing.assert_allclose(y.reshape(-1), -1.5 * per_row, rtol=1e-12)
    check_layer(layer, [x], xp=xp)


@pytest.mark.parametrize("axis,tiles", [(1, 3), (0, 2), (-1, 2)])
def test_tile(axis, tiles, xp):
    layer = make_layer(f"type: 'Tile' tile_param {{ axis: {axis} tiles: {tiles} }}")
    x = randn(2, 3, 2)
    (y,) = run(layer, [x], xp).y
    reps = [1, 1, 1]
    reps[axis % 3] = tiles
    np.testing.assert_array_equal(y, np.tile(x, reps))
    check_layer(layer, [x], xp=xp)
    with pytest.raises(LayerError, match="tiles"):
        make_layer("type: 'Tile'")


# --- Embed / Silence / Filter / BatchReindex / Parameter -----------------------------------------
def test_embed(xp):
    layer = make_layer("type: 'Embed' embed_param { input_dim: 5 num_output: 3 }")
    idx = np.array([[0.0, 4.0, 2.0], [2.0, 2.0, 1.0]])
    assert layer.infer([idx.shape], ShapeContext()) == [(2, 3, 3)]
    assert param_shapes(layer, [idx.shape]) == [(5, 3), (3,)]
    w, b = randn(5, 3), randn(3, seed=1)
    (y,) = run(layer, [idx], xp, [w, b]).y
    np.testing.assert_allclose(y, w[idx.astype(int)] + b)
    check_layer(layer, [idx], xp=xp, check_bottoms=[])      # weight rows, repeated index 2 included
    with pytest.raises(LayerError, match="Embed index 5 is not an integer in \\[0, 5\\)"):
        run(layer, [np.array([5.0])], xp, [w, b]).y
    with pytest.raises(LayerError, match="1.5 is not an integer"):
        run(layer, [np.array([1.5])], xp, [w, b]).y
    with pytest.raises(LayerError, match="input_dim"):
        make_layer("type: 'Embed' embed_param { num_output: 3 }")


def test_silence(xp):
    layer = make_layer("type: 'Silence' bottom: 'a' bottom: 'b'")
    assert layer.infer([(2, 3), (4,)], ShapeContext()) == []
    bottoms = [Blob(np.ones(3), np.ones(3)), Blob(np.ones(2), np.ones(2))]
    layer.forward(np, bottoms, [])
    layer.backward(np, [], [True, False], bottoms)
    np.testing.assert_array_equal(bottoms[0].diff, 0)
    np.testing.assert_array_equal(bottoms[1].diff, 1)
    check_layer(layer, [randn(2, 3), randn(4, seed=1)], xp=xp)


def test_filter(xp):
    layer = make_layer("type: 'Filter' bottom: 'a' bottom: 'b' bottom: 'sel' top: 'fa' top: 'fb'")
    a, b = randn(4, 3), randn(4, 2, 2, seed=1)
    sel = np.array([[1.0], [0.0], [1.0], [0.5]])
    (ta, tb), notes = infer("type: 'Filter' top: 'x' top: 'y'", a.shape, b.shape, sel.shape)
    assert (ta, tb) == ((4, 3), (4, 2, 2)) and "at most 4" in notes[0]
    ya, yb = run(layer, [a, b, sel], xp).y
    np.testing.assert_array_equal(ya, a[[0, 2, 3]])
    np.testing.assert_array_equal(yb, b[[0, 2, 3]])
    check_layer(layer, [a, b, sel], xp=xp, check_bottoms=[0, 1])
    with pytest.raises(LayerError, match="singleton"):
        infer("type: 'Filter'", (4, 3), (4, 2))
    with pytest.raises(LayerError, match="as many items as the selector"):
        infer("type: 'Filter'", (3, 3), (4, 1))
    with pytest.raises(LayerError, match="needs 1 top"):
        infer("type: 'Filter' top: 'x' top: 'y'", (4, 3), (4,))


def test_batch_reindex(xp):
    layer = make_layer("type: 'BatchReindex'")
    x, index = randn(3, 2, 2), np.array([2.0, 0.0, 2.0, 1.0, 2.0])
    assert layer.infer([x.shape, index.shape], ShapeContext()) == [(5, 2, 2)]
    (y,) = run(layer, [x, index], xp).y
    np.testing.assert_array_equal(y, x[[2, 0, 2, 1, 2]])
    check_layer(layer, [x, index], xp=xp, check_bottoms=[0])    # index 2 repeated: gradients add
    with pytest.raises(LayerError, match="index 3 is not an integer in \\[0, 3\\)"):
        run(layer, [x, np.array([3.0])], xp).y
    with pytest.raises(LayerError, match="must be 1-d"):
        layer.infer([x.shape, (5, 1)], ShapeContext())


def test_parameter(xp):
    layer = make_layer("type: 'Parameter' parameter_param { shape { dim: 2 dim: 3 } }")
    assert layer.infer([], ShapeContext()) == [(2, 3)]
    assert param_shapes(layer, []) == [(2, 3)]
    w = randn(2, 3)
    (y,) = run(layer, [], xp, [w]).y
    np.testing.assert_array_equal(y, w)
    check_layer(layer, [], xp=xp)


def test_dtype_is_kept_in_float32():
    cases = [("type: 'InnerProduct' inner_product_param { num_output: 2 }", [randn(2, 3)]),
             ("type: 'Scale' scale_param { bias_term: true }", [randn(2, 3)]),
             ("type: 'BatchNorm'", [randn(4, 3)]),
             ("type: 'Softmax'", [randn(2, 3)]),
             ("type: 'MVN'", [randn(2, 3, 2)]),
             ("type: 'Reduction' reduction_param { operation: MEAN }", [randn(2, 3)]),
             ("type: 'Eltwise' eltwise_param { coeff: 0.5 coeff: 2 }", [randn(2, 3), randn(2, 3)])]
    for text, arrays in cases:
        layer = make_layer(text, TRAIN)
        params = [np.abs(randn(*s)) + 0.5 for s in param_shapes(layer, [a.shape for a in arrays])]
        r = run(layer, arrays, np, params, dtype=np.float32)
        r.backward([1] * len(r.tops))
        bottoms, tops = r.bottoms, r.tops
        assert all(t.data.dtype == np.float32 for t in tops), text
        assert all(b.diff.dtype == np.float32 for b in bottoms), text
        assert all(p.data.dtype == np.float32 for p in layer.blobs), text


def test_parameter_diffs_accumulate_and_respect_param_propagate_down():
    layer = make_layer("type: 'InnerProduct' inner_product_param { num_output: 2 }")
    x, dy = randn(3, 4), randn(3, 2, seed=1)
    r = run(layer, [x])
    r.backward([dy])
    r.backward([dy])
    np.testing.assert_allclose(layer.blobs[0].diff, 2 * dy.T @ x)
    np.testing.assert_allclose(layer.blobs[1].diff, 2 * dy.sum(axis=0))
    layer.param_propagate_down = [False, True]      # a frozen weight (lr_mult 0) gets no work
    r.backward([dy])
    np.testing.assert_allclose(layer.blobs[0].diff, 2 * dy.T @ x)
    np.testing.assert_allclose(layer.blobs[1].diff, 3 * dy.sum(axis=0))
