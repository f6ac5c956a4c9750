"""The layer harness catches each kind of bug it is there for: each case registers a layer
with one Caffe rule broken and expects the harness to name it."""
import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

from harness import check_layer, run
from netspec import NetSpec
from netspec import layers as L
from netspec.layers import LAYERS

InnerProduct, ReLU = LAYERS["InnerProduct"], LAYERS["ReLU"]


class OverwritesParamDiffs(InnerProduct):
    def backward(self, xp, tops, propagate_down, bottoms):
        for p in self.blobs:
            p.diff[...] = 0             # '=' where Caffe says '+='
        super().backward(xp, tops, propagate_down, bottoms)


class WritesFrozenWeights(InnerProduct):
    def backward(self, xp, tops, propagate_down, bottoms):
        self.param_propagate_down = []  # forgets lr_mult 0
        super().backward(xp, tops, propagate_down, bottoms)


class ChangesItsBottom(ReLU):
    def forward(self, xp, bottoms, tops):
        super().forward(xp, bottoms, tops)
        bottoms[0].data[...] = tops[0].data


class AccumulatesBottomDiff(ReLU):
    def backward(self, xp, tops, propagate_down, bottoms):
        bottoms[0].diff += tops[0].diff * (tops[0].data > 0)


class IgnoresPropagateDown(InnerProduct):
    def backward(self, xp, tops, propagate_down, bottoms):
        super().backward(xp, tops, [True] * len(bottoms), bottoms)


class AssumesContiguous(ReLU):
    """Reads its bottom as a raw C-order buffer, as a kernel handed a pointer would."""
    def forward(self, xp, bottoms, tops):
        x = bottoms[0].data
        raw = as_strided(x, x.shape, np.zeros(x.shape, x.dtype).strides)
        xp.maximum(raw, 0, out=tops[0].data)


class WrongGradient(ReLU):
    def backward(self, xp, tops, propagate_down, bottoms):
        super().backward(xp, tops, propagate_down, bottoms)
        bottoms[0].diff *= 1.01


CASES = [
    (OverwritesParamDiffs, "InnerProduct", "does not accumulate over two backwards"),
    (WritesFrozenWeights, "InnerProduct", r"param\[0\] frozen \(lr_mult 0\), yet its diff was written"),
    (ChangesItsBottom, "ReLU", r"changed bottom\[0\]'s data"),
    (AccumulatesBottomDiff, "ReLU", r"left part of bottom\[0\].diff unwritten"),
    (IgnoresPropagateDown, "InnerProduct", r"propagate_down False, yet bottom\[0\].diff written"),
    (AssumesContiguous, "ReLU", "top 0 differs for non-contiguous inputs"),
    (WrongGradient, "ReLU", r"bottom\[0\] element .* analytic .* vs numeric"),
]


@pytest.mark.parametrize("cls,base,message", CASES, ids=[c[0].__name__ for c in CASES])
def test_the_harness_names_the_broken_rule(cls, base, message, monkeypatch):
    monkeypatch.setitem(LAYERS, cls.__name__, cls)
    monkeypatch.setattr(cls, "type", cls.__name__)
    text = f"name: 'l' type: '{cls.__name__}'"
    if base == "InnerProduct":
        text += " inner_product_param { num_output: 3 }"
    x = np.random.default_rng(0).permutation(np.arange(1.0, 13.0) - 6.5).reshape(3, 4) / 4
    with pytest.raises(AssertionError, match=message):
        check_layer(text, [x])
    check_layer(f"name: 'l' type: '{base}'" + text[len(f"name: 'l' type: '{cls.__name__}'"):], [x])


def test_the_expected_function_is_compared():
    x = np.array([[-1.0, 2.0]])
    check_layer("type: 'ReLU'", [x], expected=lambda x: np.maximum(x, 0))
    with pytest.raises(AssertionError, match=r"top\[0\] against the expected function"):
        check_layer("type: 'ReLU'", [x], expected=lambda x: x)


def test_run_in_place_shares_the_blob():
    r = run("type: 'ReLU'", [np.array([[-1.0, 2.0]])], in_place=True)
    assert r.tops[0] is r.bottoms[0]
    np.testing.assert_array_equal(r.backward([np.array([[3.0, 4.0]])])[0], [[0.0, 4.0]])


def test_a_case_may_be_written_in_the_dsl():
    n = NetSpec()
    n.x = L.Input(shape=dict(dim=[2, 3]))
    x = np.random.default_rng(1).standard_normal((2, 3))
    assert check_layer(L.InnerProduct(n.x, num_output=4), [x]) == 2 * 3 + 4 * 3 + 4
    (y,) = run(L.InnerProduct(n.x, num_output=4, bias_term=False), [x], params=[np.eye(4, 3)]).y
    np.testing.assert_allclose(y, np.c_[x, np.zeros(2)])
