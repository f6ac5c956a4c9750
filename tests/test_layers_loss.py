"""Loss layers and Accuracy: hand-worked forwards, numeric gradients, label and shape errors."""
import math

import numpy as np
import pytest

from netspec import caffe_pb2
from netspec.errors import LayerError
from netspec.layers.base import ShapeContext
from harness import check_layer, make_layer, run

LN2 = math.log(2)


def infer(layer, shapes):
    return layer.infer(shapes, ShapeContext())


def softmax_loss(extra="", tops=1):
    top = 'top: "loss"' + (' top: "prob"' if tops > 1 else "")
    return make_layer(f'name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" {top} {extra}')


# -- SoftmaxWithLoss ---------------------------------------------------------------------------

# Rows: softmax([0, 0]) = [1/2, 1/2], label 0 -> ln 2;  softmax([ln 3, 0]) = [3/4, 1/4],
# label 1 -> ln 4;  the third row is ignored (label 255).  Total 3 ln 2 over 2 valid labels.
HAND_X = np.array([[0.0, 0.0], [math.log(3), 0.0], [5.0, -1.0]])
HAND_Y = np.array([0, 1, 255])


@pytest.mark.parametrize("param, expected", [
    ("", 3 * LN2 / 2),                                   # VALID is the default
    ("normalization: VALID", 3 * LN2 / 2),
    ("normalization: FULL", 3 * LN2 / 3),                # outer * inner = 3, ignored included
    ("normalization: BATCH_SIZE", 3 * LN2 / 3),
    ("normalization: NONE", 3 * LN2),
    ("normalize: true", 3 * LN2 / 2),                    # legacy bool: true is VALID
    ("normalize: false", 3 * LN2 / 3),                   # ... false is BATCH_SIZE
    ("normalize: false normalization: NONE", 3 * LN2),   # normalization wins when both are set
])
def test_softmax_loss_with_ignore_label_by_hand(param, expected, xp):
    layer = softmax_loss(f"loss_param {{ ignore_label: 255 {param} }}")
    assert float(run(layer, [HAND_X, HAND_Y], xp).y[0]) == pytest.approx(expected, rel=1e-12)


def test_softmax_loss_gradient_by_hand_scales_with_the_seeded_loss_weight(xp):
    layer = softmax_loss("loss_param { ignore_label: 255 }")
    dx, _ = run(layer, [HAND_X, HAND_Y], xp).backward([2.5], [True, False])
    # (p - onehot) / valid_count, zero on the ignored row, times the loss weight 2.5
    expected = 2.5 * np.array([[-0.25, 0.25], [0.375, -0.375], [0, 0]])
    np.testing.assert_allclose(dx, expected, atol=1e-12)


def test_softmax_loss_class_weighting_of_segnet_by_hand(xp):
    # caffe-segnet: each valid term times class_weighting[label], still divided by the 2 valid labels
    layer = softmax_loss("loss_param { ignore_label: 255 weight_by_label_freqs: true "
                         "class_weighting: 2 class_weighting: 0.5 }")
    r = run(layer, [HAND_X, HAND_Y], xp)
    assert float(r.y[0]) == pytest.approx((2 * LN2 + 0.5 * 2 * LN2) / 2, rel=1e-12)
    dx, _ = r.backward([1.0], [True, False])
    np.testing.assert_allclose(dx, np.array([[-0.25 * 2, 0.25 * 2], [0.375 * 0.5, -0.375 * 0.5], [0, 0]]), atol=1e-12)
    check_layer(layer, [HAND_X, np.array([0, 1, 1])], check_bottoms=[0])


def test_softmax_loss_class_weighting_needs_a_weight_per_class():
    layer = softmax_loss("loss_param { weight_by_label_freqs: true class_weighting: 1 }")
    with pytest.raises(LayerError, match="one class_weighting per class: 1 given for 2 classes"):
        infer(layer, [(3, 2), (3,)])


def test_softmax_loss_all_ignored_is_zero_not_nan():
    layer = softmax_loss("loss_param { ignore_label: 7 }")
    r = run(layer, [HAND_X, np.array([7, 7, 7])])
    assert float(r.y[0]) == 0.0
    assert np.all(r.backward([1.0], [True, False])[0] == 0)


def test_softmax_loss_second_top_is_the_probabilities():
    layer = softmax_loss(tops=2)
    _, prob = run(layer, [HAND_X, np.array([0, 1, 0])]).y
    assert prob.shape == HAND_X.shape
    np.testing.assert_allclose(prob[:2], [[0.5, 0.5], [0.75, 0.25]])


def test_softmax_loss_clamps_probability_at_flt_min():
    layer = softmax_loss()
    loss = float(run(layer, [np.array([[0.0, -1000.0]]), np.array([1])]).y[0])
    assert loss == pytest.approx(-math.log(np.finfo(np.float32).tiny))


def test_softmax_loss_keeps_float32():
    layer = softmax_loss()
    r = run(layer, [HAND_X, np.array([0, 1, 0])], dtype=np.float32)
    assert r.y[0].dtype == np.float32 and r.y[0].shape == ()
    assert r.backward([1.0], [True, False])[0].dtype == np.float32


@pytest.mark.parametrize("param", ["", "normalization: FULL", "normalization: BATCH_SIZE",
                                   "normalization: NONE", "normalize: false"])
@pytest.mark.parametrize("shape, axis, label_shape", [
    ((4, 3), 1, (4,)), ((2, 3, 2, 2), 1, (2, 1, 2, 2)), ((2, 2, 3), -1, (2, 2)),
    ((3, 3, 2), 0, (3, 2)),     # axis 0: one outer item, 6 inner labels; first dims still agree
])
def test_softmax_loss_gradient(shape, axis, label_shape, param, xp):
    rng = np.random.default_rng(3)
    classes = shape[axis]
    labels = rng.integers(0, classes, label_shape).astype(float)
    labels.reshape(-1)[::3] = -1                       # some ignored
    layer = softmax_loss(f"softmax_param {{ axis: {axis} }} "
                         f"loss_param {{ ignore_label: -1 {param} }}", tops=2)
    check_layer(layer, [rng.standard_normal(shape), labels], xp=xp, check_bottoms=[0])


def test_softmax_loss_gradient_without_ignore_label(xp):
    rng = np.random.default_rng(4)
    layer = softmax_loss()
    check_layer(layer, [rng.standard_normal((5, 4)), rng.integers(0, 4, 5)], check_bottoms=[0], xp=xp)


def test_softmax_loss_shape_rules():
    layer = softmax_loss(tops=2)
    assert infer(layer, [(8, 10), (8,)]) == [(), (8, 10)]
    assert infer(softmax_loss(), [(2, 5, 3, 3), (2, 1, 3, 3)]) == [()]
    with pytest.raises(LayerError, match="need 2\\*9 = 18 labels.*holds 2"):
        infer(softmax_loss(), [(2, 5, 3, 3), (2,)])
    with pytest.raises(LayerError, match="same first dimension.*8 vs 4"):
        infer(softmax_loss(), [(8, 10), (4, 2)])
    with pytest.raises(LayerError, match="axis 4 is out of range"):
        infer(softmax_loss("softmax_param { axis: 4 }"), [(8, 10), (8,)])


# -- labels out of range -----------------------------------------------------------------------

LABEL_CASES = [
    ('type: "SoftmaxWithLoss"', (2, 3), 3),
    ('type: "SoftmaxWithLoss" loss_param { ignore_label: 5 }', (2, 3), -1),
    ('type: "InfogainLoss" bottom: "H"', (2, 3), 4),
    ('type: "HingeLoss"', (2, 3), 3),
    ('type: "MultinomialLogisticLoss"', (2, 3), 7),
    ('type: "Accuracy"', (2, 3), -2),
    ('type: "Accuracy" top: "per_class"', (2, 3), 3),
]


@pytest.mark.parametrize("spec, shape, bad", LABEL_CASES)
def test_label_out_of_range_names_value_and_range(spec, shape, bad, xp):
    layer = make_layer(f'name: "l" {spec} bottom: "x" bottom: "y" top: "t"'.replace(
        'bottom: "H" bottom: "x" bottom: "y"', 'bottom: "x" bottom: "y" bottom: "H"'))
    arrays = [np.full(shape, 0.25), np.array([0, bad])]
    if "Infogain" in spec:
        arrays.append(np.eye(3))
    with pytest.raises(LayerError) as err:
        run(layer, arrays, xp)
    assert f"label {bad} " in err.value.message and "[0, 3)" in err.value.message


def test_label_nan_is_an_error_not_a_nan_loss():
    with pytest.raises(LayerError, match="label nan"):
        run(softmax_loss("loss_param { ignore_label: -1 }"), [HAND_X, np.array([0, np.nan, 1])])


def test_labels_truncate_toward_zero_as_caffe_casts_them():
    # 1.7 is class 1 and -0.5 is class 0, as static_cast<int> makes them
    a = float(run(softmax_loss(), [HAND_X, np.array([0.0, 1.7, -0.5])]).y[0])
    b = float(run(softmax_loss(), [HAND_X, np.array([0, 1, 0])]).y[0])
    assert a == b


# -- EuclideanLoss -----------------------------------------------------------------------------

def euclidean():
    return make_layer('name: "e" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "l"')


def test_euclidean_by_hand(xp):
    a, b = np.array([[1.0, 2.0], [3.0, 4.0]]), np.ones((2, 2))
    assert float(run(euclidean(), [a, b], xp).y[0]) == pytest.approx((0 + 1 + 4 + 9) / 2 / 2)


@pytest.mark.parametrize("shapes", [[(3, 4), (3, 4)], [(2, 3, 2), (2, 6)], [(4, 1), (4,)]])
def test_euclidean_gradient_both_bottoms(shapes, xp):
    rng = np.random.default_rng(5)
    check_layer(euclidean(), [rng.standard_normal(s) for s in shapes], xp=xp)


def test_euclidean_shape_rules():
    assert infer(euclidean(), [(2, 3, 2), (2, 6)]) == [()]
    with pytest.raises(LayerError, match="6 values per item.*5"):
        infer(euclidean(), [(2, 6), (2, 5)])


# -- SigmoidCrossEntropyLoss --------------------------------------------------------------------

def sigmoid_ce(extra=""):
    return make_layer(f'name: "s" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" top: "l" {extra}')


def naive_sigmoid_ce(x, t):
    p = 1 / (1 + np.exp(-x))
    return -(t * np.log(p) + (1 - t) * np.log(1 - p))


def test_sigmoid_cross_entropy_matches_naive_formula_batch_size_by_default(xp):
    rng = np.random.default_rng(6)
    x, t = rng.standard_normal((3, 4)) * 3, rng.random((3, 4))
    assert float(run(sigmoid_ce(), [x, t], xp).y[0]) == pytest.approx(naive_sigmoid_ce(x, t).sum() / 3)


def test_sigmoid_cross_entropy_is_stable_for_large_inputs():
    loss = float(run(sigmoid_ce(), [np.array([[100.0, -100.0, 0.0]]), np.array([[0.0, 1.0, 1.0]])]).y[0])
    assert loss == pytest.approx(200 + LN2)


@pytest.mark.parametrize("param, divisor", [
    ("", 2),                       # BATCH_SIZE unless set
    ("normalization: VALID", 4),   # 6 targets, 2 ignored
    ("normalization: FULL", 6),
    ("normalization: NONE", 1),
    ("normalize: true", 4),
])
def test_sigmoid_cross_entropy_ignore_label_and_normalization(param, divisor):
    x = np.array([[0.5, -1.0, 2.0], [0.0, 1.5, -0.5]])
    t = np.array([[1.0, -1.0, 0.0], [1.0, 0.0, -1.0]])
    valid = t != -1
    expected = naive_sigmoid_ce(x, np.where(valid, t, 0))[valid].sum() / divisor
    layer = sigmoid_ce(f"loss_param {{ ignore_label: -1 {param} }}")
    assert float(run(layer, [x, t]).y[0]) == pytest.approx(expected)


@pytest.mark.parametrize("param", ["", "normalization: VALID", "normalization: FULL", "normalization: NONE"])
def test_sigmoid_cross_entropy_gradient(param, xp):
    rng = np.random.default_rng(7)
    t = rng.random((3, 2, 2))
    t[0, 0] = -1
    layer = sigmoid_ce(f"loss_param {{ ignore_label: -1 {param} }}")
    check_layer(layer, [rng.standard_normal((3, 2, 2)), t], xp=xp, check_bottoms=[0])
    check_layer(sigmoid_ce(), [rng.standard_normal((4, 5)), rng.random(20).reshape(4, 5)],
                   xp=xp, check_bottoms=[0])


def test_sigmoid_cross_entropy_shape_rules():
    assert infer(sigmoid_ce(), [(4, 5), (4, 5, 1)]) == [()]
    with pytest.raises(LayerError, match="same count"):
        infer(sigmoid_ce(), [(4, 5), (4, 4)])


# -- HingeLoss ---------------------------------------------------------------------------------

def hinge(norm="L1"):
    return make_layer(f'name: "h" type: "HingeLoss" bottom: "x" bottom: "y" top: "l" '
                      f'hinge_loss_param {{ norm: {norm} }}')


def test_hinge_by_hand(xp):
    # label 0: max(0, 1 - 1) = 0; class 1: max(0, 1 - 2) = 0; class 2: max(0, 1 + 0.5) = 1.5
    x, y = np.array([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]]), np.array([0, 2])
    # second item: every hinge is 1 -> L1 3, L2 3
    assert float(run(hinge("L1"), [x, y], xp).y[0]) == pytest.approx((1.5 + 3) / 2)
    assert float(run(hinge("L2"), [x, y], xp).y[0]) == pytest.approx((2.25 + 3) / 2)


@pytest.mark.parametrize("norm", ["L1", "L2"])
@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 2)])
def test_hinge_gradient(norm, shape, xp):
    rng = np.random.default_rng(8)
    x = rng.standard_normal(shape) * 2
    labels = rng.integers(0, math.prod(shape[1:]), shape[0])
    check_layer(hinge(norm), [x, labels], xp=xp, check_bottoms=[0])


def test_hinge_shape_rules():
    assert infer(hinge(), [(4, 3), (4, 1)]) == [()]
    with pytest.raises(LayerError, match="one label per item"):
        infer(hinge(), [(4, 3), (4, 2)])


# -- MultinomialLogisticLoss -------------------------------------------------------------------

def multinomial():
    return make_layer('name: "m" type: "MultinomialLogisticLoss" bottom: "p" bottom: "y" top: "l"')


def test_multinomial_logistic_by_hand_with_threshold(xp):
    p, y = np.array([[0.25, 0.75], [0.5, 0.5]]), np.array([1, 0])
    assert float(run(multinomial(), [p, y], xp).y[0]) == pytest.approx(-(math.log(0.75) + math.log(0.5)) / 2)
    p0 = np.array([[0.0, 1.0]])
    assert float(run(multinomial(), [p0, np.array([0])], xp).y[0]) == pytest.approx(-math.log(1e-20))


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 1, 2)])
def test_multinomial_logistic_gradient(shape, xp):
    rng = np.random.default_rng(9)
    p = rng.random(shape) + 0.2
    check_layer(multinomial(), [p, rng.integers(0, math.prod(shape[1:]), (shape[0], 1))],
                   xp=xp, check_bottoms=[0])


def test_multinomial_logistic_shape_rules():
    assert infer(multinomial(), [(4, 3), (4, 1, 1, 1)]) == [()]
    with pytest.raises(LayerError, match="one label per item"):
        infer(multinomial(), [(4, 3), (4, 3)])


# -- InfogainLoss ------------------------------------------------------------------------------

def infogain(extra="", source=None, tops=1):
    bottoms = 'bottom: "x" bottom: "y"' + ('' if source else ' bottom: "H"')
    src = f'infogain_loss_param {{ source: "{source}" }}' if source else ""
    top = 'top: "l"' + (' top: "prob"' if tops > 1 else "")
    return make_layer(f'name: "i" type: "InfogainLoss" {bottoms} {top} {src} {extra}')


def naive_infogain(x, y, h, ignore=None):
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    total, count = 0.0, 0
    for i, label in enumerate(y):
        if label == ignore:
            continue
        total -= sum(h[int(label), k] * math.log(p[i, k]) for k in range(x.shape[1]))
        count += 1
    return total / max(count, 1)


def test_infogain_with_identity_is_softmax_loss(xp):
    y = np.array([0, 1, 255])
    expected = float(run(softmax_loss("loss_param { ignore_label: 255 }"), [HAND_X, y]).y[0])
    layer = infogain("loss_param { ignore_label: 255 }")
    assert float(run(layer, [HAND_X, y, np.eye(2)], xp).y[0]) == pytest.approx(expected)


def test_infogain_matches_naive_loop_with_matrix_from_binaryproto(tmp_path, xp):
    rng = np.random.default_rng(10)
    h = rng.random((3, 3))
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([1, 1, 3, 3])
    blob.data.extend(h.reshape(-1).tolist())
    path = tmp_path / "H.binaryproto"
    path.write_bytes(blob.SerializeToString())
    x, y = rng.standard_normal((4, 3)), np.array([0, 2, 1, 9])
    layer = infogain("loss_param { ignore_label: 9 }", source=str(path))
    h32 = np.asarray(blob.data, dtype=np.float64).reshape(3, 3)
    assert float(run(layer, [x, y]).y[0]) == pytest.approx(naive_infogain(x, y, h32, ignore=9))
    check_layer(layer, [x, y], check_bottoms=[0], xp=xp)


@pytest.mark.parametrize("param", ["", "normalization: FULL", "normalization: BATCH_SIZE",
                                   "normalization: NONE"])
@pytest.mark.parametrize("shape, axis", [((4, 3), 1), ((2, 3, 2), 1), ((2, 2, 3), 2)])
def test_infogain_gradient(shape, axis, param, xp):
    rng = np.random.default_rng(11)
    classes = shape[axis]
    labels = rng.integers(0, classes, shape[:axis] + shape[axis + 1:]).astype(float)
    labels.reshape(-1)[0] = -1
    layer = infogain(f"infogain_loss_param {{ axis: {axis} }} "
                     f"loss_param {{ ignore_label: -1 {param} }}", tops=2)
    h = rng.random((classes, classes))
    check_layer(layer, [rng.standard_normal(shape), labels, h], xp=xp, check_bottoms=[0])


def test_infogain_errors(tmp_path):
    with pytest.raises(LayerError, match="infogain matrix H is missing"):
        make_layer('name: "i" type: "InfogainLoss" bottom: "x" bottom: "y" top: "l"')
    with pytest.raises(LayerError, match="cannot read the infogain matrix"):
        infogain(source=str(tmp_path / "absent.binaryproto"))
    with pytest.raises(LayerError, match="deprecated"):
        infogain("loss_param { normalize: true }")
    with pytest.raises(LayerError, match="must be 3x3 for 3 classes.*holds 4"):
        infer(infogain(), [(5, 3), (5,), (2, 2)])
    assert infer(infogain(tops=2), [(5, 3), (5,), (3, 3)]) == [(), (5, 3)]


# -- ContrastiveLoss ---------------------------------------------------------------------------

def contrastive(extra=""):
    return make_layer(f'name: "c" type: "ContrastiveLoss" bottom: "a" bottom: "b" bottom: "y" '
                      f'top: "l" {extra}')


@pytest.mark.parametrize("param, similar, expected", [
    ("margin: 10", 1, 25 / 2),                         # d^2 / 2
    ("margin: 10", 0, (10 - 5) ** 2 / 2),              # max(margin - d, 0)^2 / 2
    ("margin: 4", 0, 0.0),
    ("margin: 30 legacy_version: true", 0, (30 - 25) / 2),   # max(margin - d^2, 0) / 2
])
def test_contrastive_by_hand(param, similar, expected, xp):
    a, b = np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])      # distance 5
    layer = contrastive(f"contrastive_loss_param {{ {param} }}")
    assert float(run(layer, [a, b, np.array([[similar]])], xp).y[0]) == pytest.approx(expected)


@pytest.mark.parametrize("param", ["margin: 2", "margin: 4 legacy_version: true"])
def test_contrastive_gradient(param, xp):
    rng = np.random.default_rng(12)
    a, b = rng.standard_normal((6, 3)), rng.standard_normal((6, 3, 1, 1))
    y = np.array([1, 0, 0, 1, 0, 0]).reshape(6, 1, 1, 1)
    # Caffe divides by (d + 1e-4) in the dissimilar gradient: near, not at, the derivative
    check_layer(contrastive(f"contrastive_loss_param {{ {param} }}"), [a, b, y], xp=xp,
                   check_bottoms=[0, 1], tol=1e-3)


def test_contrastive_shape_rules():
    assert infer(contrastive(), [(6, 3), (6, 3, 1, 1), (6, 1, 1, 1)]) == [()]
    with pytest.raises(LayerError, match="same C"):
        infer(contrastive(), [(6, 3), (6, 4), (6,)])
    with pytest.raises(LayerError, match="one value per pair"):
        infer(contrastive(), [(6, 3), (6, 3), (6, 2)])


# -- Accuracy ----------------------------------------------------------------------------------

def accuracy(extra="", tops=1):
    top = 'top: "acc"' + (' top: "per_class"' if tops > 1 else "")
    return make_layer(f'name: "a" type: "Accuracy" bottom: "x" bottom: "y" {top} {extra}')


@pytest.mark.parametrize("top_k, labels, expected", [
    # scores [1, 1, 0]: Caffe counts every other class scoring >= the true one as ahead of it
    (1, [0], 0.0), (1, [1], 0.0), (2, [0], 1.0), (2, [1], 1.0), (2, [2], 0.0), (3, [2], 1.0),
])
def test_accuracy_ties_count_against_the_true_class(top_k, labels, expected, xp):
    layer = accuracy(f"accuracy_param {{ top_k: {top_k} }}")
    assert float(run(layer, [np.array([[1.0, 1.0, 0.0]]), np.array(labels)], xp).y[0]) == expected


def test_accuracy_three_way_tie():
    x = np.full((3, 3), 2.0)
    layer = accuracy("accuracy_param { top_k: 2 }", tops=2)
    top, per_class = run(layer, [x, np.array([0, 1, 2])]).y
    assert float(top) == 0.0          # each true class has two others tied with it
    np.testing.assert_array_equal(per_class, [0, 0, 0])


def test_accuracy_per_class_with_ignore_label_and_axis(xp):
    # N=2, C=3, 2 positions: scores along axis 1
    x = np.array([[[0.9, 0.1], [0.05, 0.8], [0.05, 0.1]],
                  [[0.2, 0.3], [0.7, 0.3], [0.1, 0.4]]])
    y = np.array([[0, 1], [0, -1]])        # hits: (0,0) yes, (0,1) yes, (1,0) no; (1,1) ignored
    layer = accuracy("accuracy_param { ignore_label: -1 }", tops=2)
    top, per_class = run(layer, [x, y], xp).y
    assert float(top) == pytest.approx(2 / 3)
    np.testing.assert_allclose(per_class, [0.5, 1.0, 0.0])
    layer = accuracy("accuracy_param { axis: 1 top_k: 2 }")
    assert float(run(layer, [x, np.array([[0, 1], [2, 2]])], xp).y[0]) == pytest.approx(3 / 4)


def test_accuracy_shape_rules_and_no_gradient():
    assert infer(accuracy(tops=2), [(8, 10), (8,)]) == [(), (10,)]
    assert infer(accuracy("accuracy_param { axis: 2 }"), [(2, 3, 5), (2, 3)]) == [()]
    with pytest.raises(LayerError, match="top_k 11 exceeds the 10 classes"):
        infer(accuracy("accuracy_param { top_k: 11 }"), [(8, 10), (8,)])
    with pytest.raises(LayerError, match=r"need 8\*1 = 8 labels.*holds 4"):
        infer(accuracy(), [(8, 10), (4,)])
    layer = accuracy()
    assert not layer.loss
    r = run(layer, [np.ones((2, 3)), np.array([0, 1])])
    r.bottoms[0].diff[...] = 7
    assert np.all(r.backward([0.0], [True, False])[0] == 0)


def test_loss_layers_declare_themselves():
    assert softmax_loss().loss and euclidean().loss and contrastive().loss and hinge().loss
    assert softmax_loss().tops == (1, 2) and contrastive().bottoms == (3, 3)


def test_accuracy_with_every_label_ignored_is_zero():
    # Caffe's CPU path divides 0 by 0 here; its GPU path, and we, report 0
    layer = accuracy("accuracy_param { ignore_label: 4 }", tops=2)
    top, per_class = run(layer, [np.ones((2, 3)), np.array([4, 4])]).y
    assert float(top) == 0 and np.all(per_class == 0)
