"""Vision layers: forward against hand-computed cases and naive loops written here, backward
by the numeric gradient checker, shape rules with their explanations, and parameter errors."""
import itertools

import numpy as np
import pytest

from harness import check_layer, make_layer, param_fillers, param_shapes, run
from netspec import caffe_pb2
from netspec.errors import LayerError
from netspec.layers.base import ShapeContext

TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST


def conv_text(type_="Convolution", num_output=4, **fields):
    body = " ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}"
                    for k, vs in fields.items() for v in (vs if isinstance(vs, (list, tuple)) else [vs]))
    return f'name: "c" type: "{type_}" convolution_param {{ num_output: {num_output} {body} }}'


def pool_text(**fields):
    body = " ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in fields.items())
    return f'name: "p" type: "Pooling" pooling_param {{ {body} }}'


def infer(layer, *shapes):
    ctx = ShapeContext(layer.phase)
    return layer.infer([tuple(s) for s in shapes], ctx), ctx


# -- naive references -------------------------------------------------------------------------------
def naive_conv(x, w, b, stride, pad, dilation, group):
    """Direct N-d convolution: a loop over output positions and kernel taps."""
    n, c = x.shape[:2]
    o, k = w.shape[0], w.shape[2:]
    out = [(s + 2 * p - d * (kk - 1) - 1) // st + 1 for s, kk, st, p, d in zip(x.shape[2:], k, stride, pad, dilation)]
    y = np.zeros((n, o) + tuple(out))
    cg, og = c // group, o // group
    for pos in itertools.product(*map(range, out)):
        for tap in itertools.product(*map(range, k)):
            src = [q * st - p + t * d for q, st, p, t, d in zip(pos, stride, pad, tap, dilation)]
            if not all(0 <= s < size for s, size in zip(src, x.shape[2:])):
                continue
            patch = x[(slice(None), slice(None)) + tuple(src)]
            for g in range(group):
                y[(slice(None), slice(g * og, (g + 1) * og)) + pos] += (
                    patch[:, g * cg:(g + 1) * cg] @ w[(slice(g * og, (g + 1) * og), slice(None)) + tap].T)
    return y + (b.reshape((1, -1) + (1,) * len(out)) if b is not None else 0)


def naive_deconv(x, w, b, stride, pad, dilation, group, out):
    """Direct N-d deconvolution: every input scatters its kernel onto the output."""
    n, c = x.shape[:2]
    og = w.shape[1]
    o = og * group
    cg = c // group
    y = np.zeros((n, o) + tuple(out))
    for pos in itertools.product(*map(range, x.shape[2:])):
        for tap in itertools.product(*map(range, w.shape[2:])):
            dst = [q * st - p + t * d for q, st, p, t, d in zip(pos, stride, pad, tap, dilation)]
            if not all(0 <= s < size for s, size in zip(dst, out)):
                continue
            for g in range(group):
                y[(slice(None), slice(g * og, (g + 1) * og)) + tuple(dst)] += (
                    x[(slice(None), slice(g * cg, (g + 1) * cg)) + pos] @ w[(slice(g * cg, (g + 1) * cg), slice(None)) + tap])
    return y + (b.reshape((1, -1) + (1,) * len(out)) if b is not None else 0)


# -- Convolution -----------------------------------------------------------------------------------
CONV_CASES = [
    # (bottom shape, fields, (stride, pad, dilation) per axis)
    ((2, 3, 6, 5), dict(kernel_size=3), ((1, 1), (0, 0), (1, 1))),
    ((2, 4, 7, 6), dict(kernel_size=3, stride=2, pad=1, group=2), ((2, 2), (1, 1), (1, 1))),
    ((1, 2, 7, 8), dict(kernel_h=3, kernel_w=2, stride_h=2, stride_w=1, pad_h=1, pad_w=0, bias_term=False),
     ((2, 1), (1, 0), (1, 1))),
    ((2, 2, 7, 7), dict(kernel_size=3, dilation=2, pad=2), ((1, 1), (2, 2), (2, 2))),
    ((2, 4, 4, 5), dict(kernel_size=1), ((1, 1), (0, 0), (1, 1))),                      # 1x1 fast path
    ((2, 4, 5, 5), dict(kernel_size=1, group=2, stride=2), ((2, 2), (0, 0), (1, 1))),
    ((2, 4, 6, 5), dict(kernel_size=3, pad=1, group=4), ((1, 1), (1, 1), (1, 1))),      # depthwise
    ((2, 2, 9), dict(kernel_size=3, stride=2, pad=1), ((2,), (1,), (1,))),               # 1-d
    ((1, 2, 4, 5, 4), dict(kernel_size=[2, 3, 2], stride=[1, 2, 1], pad=[1, 0, 0]),      # 3-d
     ((1, 2, 1), (1, 0, 0), (1, 1, 1))),
]


@pytest.mark.parametrize("shape,fields,geometry", CONV_CASES)
def test_convolution_matches_naive_loop(shape, fields, geometry, xp):
    layer = make_layer(conv_text(**fields), phase=TEST)
    x = np.random.default_rng(0).standard_normal(shape)
    (y,) = run(layer, [x], xp).y
    w = np.asarray(layer.blobs[0].data if xp is np else layer.blobs[0].data.get())
    b = np.asarray(layer.blobs[1].data if xp is np else layer.blobs[1].data.get()) if len(layer.blobs) > 1 else None
    expected = naive_conv(x, w, b, *geometry, fields.get("group", 1))
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("phase", [TRAIN, TEST])
@pytest.mark.parametrize("shape,fields,geometry", CONV_CASES)
def test_convolution_gradient(shape, fields, geometry, phase, xp):
    x = np.random.default_rng(1).standard_normal(shape)
    check_layer(make_layer(conv_text(num_output=4, **fields), phase=phase), [x], xp=xp)


def test_columns_kept_for_backward_only_with_few_filters(monkeypatch, xp):
    """TRAIN keeps forward's columns where rebuilding them would cost a large share of the
    layer (few filters); otherwise backward rebuilds them. Gradients are the same either way."""
    import netspec.ops.conv as conv_ops
    x = np.random.default_rng(20).standard_normal((2, 3, 6, 6))
    text = conv_text(num_output=4, kernel_size=3, pad=1)
    kept = make_layer(text, phase=TRAIN)
    run(kept, [x])
    assert [c.size for c in kept._state["cols"].values()] == [3 * 9 * 2 * 36]        # C*taps x N*out
    check_layer(make_layer(text, phase=TRAIN), [x], xp=xp)
    monkeypatch.setattr(conv_ops, "KEPT_FILTERS", 3)                 # 4 filters are now "many"
    rebuilt = make_layer(text, phase=TRAIN)
    run(rebuilt, [x])
    assert not rebuilt._state["cols"]
    check_layer(make_layer(text, phase=TRAIN), [x], xp=xp)


@pytest.mark.parametrize("group", [1, 2])
def test_pointwise_convolution_direct_and_through_columns_agree(monkeypatch, group, xp):
    """A 1x1 convolution runs as W @ x[n] on maps of DIRECT_PIXELS or more and through the
    (transposing) columns below that: both give the same top and gradients."""
    import netspec.ops.conv as conv_ops
    x = np.random.default_rng(19).standard_normal((2, 4, 11, 10))          # 110 pixels
    text = conv_text(num_output=6, kernel_size=1, group=group)
    from netspec.ops.windows import Window
    assert conv_ops._direct(np, Window((1, 1), (1, 1), (0, 0), (1, 1)), x.shape)
    (direct,) = run(make_layer(text, phase=TRAIN), [x]).y
    check_layer(make_layer(text, phase=TRAIN), [x], xp=xp)
    monkeypatch.setattr(conv_ops, "DIRECT_PIXELS", 111)
    (columns,) = run(make_layer(text, phase=TRAIN), [x]).y
    np.testing.assert_allclose(columns, direct, rtol=1e-12)
    check_layer(make_layer(text, phase=TRAIN), [x], xp=xp)


@pytest.mark.parametrize("pad,group", [(1, 1), (0, 2)])
def test_convolution_through_winograd(monkeypatch, pad, group, xp):
    """A 3x3 stride-1 convolution through F(2x2, 3x3) (made to run on a small layer) matches
    the naive loop and has the numeric gradient; it keeps no im2col columns."""
    from netspec.ops import winograd
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "MIN_SIZE", 1)
    x = np.random.default_rng(21).standard_normal((2, 4, 5, 6))
    layer = make_layer(conv_text(num_output=4, kernel_size=3, pad=pad, group=group), phase=TRAIN)
    (y,) = run(layer, [x], xp).y
    w = np.asarray(layer.blobs[0].data if xp is np else layer.blobs[0].data.get())
    b = np.asarray(layer.blobs[1].data if xp is np else layer.blobs[1].data.get())
    np.testing.assert_allclose(y, naive_conv(x, w, b, (1, 1), (pad, pad), (1, 1), group), rtol=1e-10, atol=1e-10)
    assert not layer._state["cols"]             # no im2col columns kept that nothing would read
    check_layer(make_layer(conv_text(num_output=4, kernel_size=3, pad=pad, group=group), phase=TRAIN), [x], xp=xp)


@pytest.mark.parametrize("phase", [TRAIN, TEST])
def test_convolution_in_batch_chunks(monkeypatch, phase, xp):
    """Columns larger than the budget are built a few images at a time (and not kept)."""
    import netspec.ops.conv as conv_ops
    x = np.random.default_rng(18).standard_normal((3, 2, 5, 5))
    text = conv_text(num_output=3, kernel_size=3, pad=1, group=1)
    (whole,) = run(make_layer(text, phase=phase), [x]).y
    monkeypatch.setattr(conv_ops, "COLUMN_BYTES", 2 * 9 * 25 * 8)      # one image's columns
    layer = make_layer(text, phase=phase)
    (chunked,) = run(layer, [x]).y
    np.testing.assert_allclose(chunked, whole)
    assert not any(c is not None for c in layer._state.get("cols", {}).values())
    check_layer(make_layer(text, phase=phase), [x], xp=xp)


def test_convolution_shares_weights_across_bottoms(xp):
    layer = make_layer(conv_text(num_output=3, kernel_size=2) + ' bottom: "a" bottom: "b" top: "A" top: "B"')
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((1, 2, 3, 3)), rng.standard_normal((1, 2, 3, 3))
    (ya, yb) = run(layer, [a, b]).y
    w, bias = layer.blobs[0].data, layer.blobs[1].data
    np.testing.assert_allclose(yb, naive_conv(b, w, bias, (1, 1), (0, 0), (1, 1), 1))
    check_layer(make_layer(conv_text(num_output=3, kernel_size=2) + ' bottom: "a" bottom: "b" top: "A" top: "B"'),
                   [a, b], xp=xp)


def test_convolution_on_a_later_channel_axis(xp):
    layer = make_layer(conv_text(num_output=2, kernel_size=2, axis=2))
    x = np.random.default_rng(3).standard_normal((2, 3, 2, 4, 4))
    (y,) = run(layer, [x]).y
    assert y.shape == (2, 3, 2, 3, 3)
    w, b = layer.blobs[0].data, layer.blobs[1].data
    expected = naive_conv(x.reshape(6, 2, 4, 4), w, b, (1, 1), (0, 0), (1, 1), 1).reshape(y.shape)
    np.testing.assert_allclose(y, expected)
    check_layer(make_layer(conv_text(num_output=2, kernel_size=2, axis=2)), [x[:1, :2]], xp=xp)


def test_frozen_weights_are_left_alone():
    layer = make_layer(conv_text(num_output=2, kernel_size=2))
    x = np.random.default_rng(4).standard_normal((1, 2, 3, 3))
    r = run(layer, [x])
    layer.param_propagate_down = [False, True]
    r.backward([1])
    assert not layer.blobs[0].diff.any() and layer.blobs[1].diff.all()


def test_convolution_params_fillers_macs_window():
    layer = make_layer(conv_text(num_output=96, kernel_size=11, stride=4).replace(
        "num_output", 'weight_filler { type: "gaussian" std: 0.01 } num_output'))
    bottoms = [(10, 3, 227, 227)]
    (top,), _ = infer(layer, *bottoms)
    assert top == (10, 96, 55, 55)
    assert param_shapes(layer, bottoms) == [(96, 3, 11, 11), (96,)]
    assert [f.type for f in param_fillers(layer)] == ["gaussian", "constant"]
    assert layer.macs(bottoms, [top]) == 10 * 96 * 55 * 55 * 3 * 11 * 11
    assert layer.window(bottoms) == [(11, 4, 0, 1), (11, 4, 0, 1)]
    grouped = make_layer(conv_text(num_output=256, kernel_size=5, pad=2, group=2, bias_term=False))
    assert param_shapes(grouped, [(1, 96, 27, 27)]) == [(256, 48, 5, 5)]


# -- shape notes and warnings ---------------------------------------------------------------------
def test_alexnet_conv1_at_224_explains_54():
    layer = make_layer(conv_text(num_output=96, kernel_size=11, stride=4))
    (top,), ctx = infer(layer, (1, 3, 224, 224))
    assert top == (1, 96, 54, 54)
    note = "(224 - 11)/4 = 53.25; floor 53, + 1 = 54; stride 4 leaves remainder 1, so 55 needs input 227 or pad 2"
    assert ctx.notes == [note]
    assert ctx.warnings == [note]


def test_exact_division_is_a_note_only():
    layer = make_layer(conv_text(num_output=96, kernel_size=11, stride=4))
    (top,), ctx = infer(layer, (1, 3, 227, 227))
    assert top == (1, 96, 55, 55)
    assert ctx.notes == ["(227 - 11)/4 = 54, + 1 = 55"] and ctx.warnings == []


def test_a_remainder_no_wider_than_the_gaps_is_not_warned():
    layer = make_layer(conv_text(kernel_size=1, stride=2))       # ResNet's projection shortcut
    (top,), ctx = infer(layer, (1, 1, 14, 14))
    assert top == (1, 4, 7, 7) and not ctx.warnings
    assert ctx.notes == ["(14 - 1)/2 = 6.5; floor 6, + 1 = 7; stride 2 leaves remainder 1, so 8 needs input 15 or pad 1"]
    (top,), ctx = infer(make_layer(conv_text(kernel_size=7, stride=2, pad=3)), (1, 3, 224, 224))
    assert top == (1, 4, 112, 112) and not ctx.warnings          # the remainder is padding only


def test_rectangular_geometry_gives_one_note_per_axis():
    layer = make_layer(conv_text(kernel_h=3, kernel_w=1, dilation=2))
    (top,), ctx = infer(layer, (1, 1, 8, 8))
    assert top == (1, 4, 4, 8)
    assert ctx.notes == ["height: kernel 3 dilated by 2 spans 5; (8 - 5)/1 = 3, + 1 = 4",
                         "width: (8 - 1)/1 = 7, + 1 = 8"]


def test_pooling_ceil_rounding_is_warned():
    layer = make_layer(pool_text(pool="MAX", kernel_size=3, stride=2))
    (top,), ctx = infer(layer, (1, 64, 112, 112))
    assert top == (1, 64, 56, 56)
    assert ctx.warnings == ["(112 + 2*0 - 3)/2 + 1 = 55.5 -> ceil -> 56; stride 2 leaves remainder 1; "
                            "floor (other frameworks) gives 55; input 113 gives 56 either way"]
    (top,), ctx = infer(layer, (1, 96, 55, 55))
    assert top == (1, 96, 27, 27) and ctx.notes == ["(55 + 2*0 - 3)/2 + 1 = 27"] and not ctx.warnings


def test_pooling_pad_clip_and_floor_mode_in_words():
    layer = make_layer(pool_text(pool="AVE", kernel_size=2, stride=2, pad=1))
    (top,), ctx = infer(layer, (1, 1, 5, 5))
    assert top == (1, 1, 3, 3)
    assert ctx.notes == ["(5 + 2*1 - 2)/2 + 1 = 3.5 -> ceil -> 4; the last window would start in the padding "
                         "-> 3; stride 2 leaves remainder 1"]
    floor = make_layer(pool_text(pool="MAX", kernel_size=3, stride=2, round_mode="FLOOR"))
    (top,), ctx = infer(floor, (1, 1, 112, 112))
    assert top == (1, 1, 55, 55)
    assert ctx.notes == ["(112 + 2*0 - 3)/2 + 1 = 55.5 -> floor -> 55; stride 2 leaves remainder 1; input 113 gives 56"]


def test_deconvolution_shape_note():
    layer = make_layer(conv_text("Deconvolution", num_output=21, kernel_size=4, stride=2, pad=1))
    (top,), ctx = infer(layer, (1, 21, 13, 13))
    assert top == (1, 21, 26, 26) and ctx.notes == ["2*(13 - 1) + 4 - 2*1 = 26"]


# -- parameter and shape errors -------------------------------------------------------------------
@pytest.mark.parametrize("text,shape,words", [
    (conv_text(num_output=5, kernel_size=3, group=2), (1, 4, 5, 5), "group 2 does not divide the 5 num_output"),
    (conv_text(num_output=4, kernel_size=3, group=3), (1, 4, 5, 5), "group 3 does not divide the 4 input channels"),
    (conv_text(kernel_size=7), (1, 1, 4, 5), "kernel extent 7 is larger than the padded input 4 + 2*0 = 4"),
    (conv_text(kernel_size=3, dilation=4, pad=1), (1, 1, 5, 5), "kernel extent 9 is larger than the padded input 5 + 2*1 = 7"),
    (conv_text(), (1, 1, 5, 5), "kernel size is not set"),
    (conv_text(kernel_size=[3, 3, 3]), (1, 1, 5, 5), "kernel_size is given 3 times for 2 spatial axes"),
    (conv_text(kernel_h=3, kernel_w=3), (1, 1, 5, 5, 5), "kernel_h/kernel_w apply to 2-d convolution only"),
    (conv_text(kernel_size=3, stride=[1, 2, 1]), (1, 1, 5, 5), "stride is given 3 times for 2 spatial axes"),
    (pool_text(pool="MAX", kernel_size=7), (1, 1, 5, 5), "kernel 7 is larger than the padded input 5 + 2*0 = 5"),
    (pool_text(pool="MAX", kernel_size=2), (1, 4, 5), "takes a 4-d"),
    ('name: "s" type: "SPP" spp_param { pyramid_height: 3 }', (1, 1, 3, 3), "pyramid level 2 (4x4 bins)"),
    ('name: "c" type: "Crop" crop_param { axis: 2 offset: 3 }', ((1, 1, 6, 6), (1, 1, 4, 4)), "cannot crop 4 from 6 at offset 3"),
    ('name: "c" type: "Crop" crop_param { axis: 1 offset: 1 offset: 1 }', ((1, 3, 6, 6), (1, 1, 4, 4)),
     "one offset, or one per axis from axis 1 (3 here); found 2"),
])
def test_shape_errors_show_the_arithmetic(text, shape, words):
    layer = make_layer(text)
    shapes = shape if isinstance(shape[0], tuple) else (shape,)
    with pytest.raises(LayerError) as e:
        infer(layer, *shapes)
    assert words in e.value.message


def test_empty_last_pooling_window_warns_and_gives_caffes_values():
    """ceil rounding with kernel < stride: Caffe keeps the empty window (MAX: -FLT_MAX; AVE: a sum
    of nothing over Caffe's unclipped divisor, here -1 or 1, so 0)."""
    for pool, empty in (("MAX", np.finfo(np.float32).min), ("AVE", 0.0)):
        layer = make_layer(pool_text(pool=pool, kernel_size=1, stride=3))
        ctx = ShapeContext()
        assert layer.infer([(1, 1, 8, 8)], ctx) == [(1, 1, 4, 4)]
        assert any("past the input (8)" in w for w in ctx.warnings)
        y = run(layer, [np.arange(64.0).reshape(1, 1, 8, 8)]).y[0][0, 0]
        np.testing.assert_array_equal(y[:3, :3], np.arange(64.0).reshape(8, 8)[::3, ::3])
        np.testing.assert_array_equal(y[3], np.full(4, empty))


@pytest.mark.parametrize("text,words", [
    (conv_text(num_output=0, kernel_size=3), "num_output must be set"),
    (conv_text(kernel_size=3, kernel_h=3, kernel_w=3), "either kernel_size or kernel_h/kernel_w"),
    (conv_text(kernel_h=3), "kernel_h and kernel_w must be set together"),
    (conv_text(kernel_size=3, stride=0), "stride must be positive"),
    (conv_text(kernel_size=3, pad=1, pad_h=1, pad_w=1), "either pad or pad_h/pad_w"),
    (pool_text(pool="MAX"), "kernel size is not set"),
    (pool_text(pool="MAX", kernel_size=3, kernel_h=3, kernel_w=3), "not both"),
    (pool_text(pool="MAX", kernel_size=2, pad=2), "pad 2x2 must be smaller than the kernel 2x2"),
    (pool_text(pool="STOCHASTIC", kernel_size=3, pad=1), "padding is implemented only for MAX and AVE"),
    (pool_text(pool="AVE", global_pooling=True, kernel_size=3), "global_pooling takes the whole map"),
    (pool_text(pool="AVE", global_pooling=True, stride=2), "only pad 0 and stride 1"),
    (pool_text(pool="MAX", kernel_size=3, pad_h=1), "set pad, or both pad_h and pad_w"),
    ('name: "n" type: "LRN" lrn_param { local_size: 4 }', "local_size must be odd (found 4)"),
    ('name: "s" type: "SPP" spp_param { pyramid_height: 0 }', "pyramid_height must be at least 1"),
])
def test_parameter_errors(text, words):
    with pytest.raises(LayerError) as e:
        make_layer(text)
    assert words in e.value.message


def test_second_top_only_for_max_pooling():
    layer = make_layer(pool_text(pool="AVE", kernel_size=2) + ' top: "y" top: "mask"')
    with pytest.raises(LayerError, match="only MAX pooling has a second top"):
        infer(layer, (1, 1, 4, 4))


# -- Pooling: a known 2x4x5 input ------------------------------------------------------------------
KNOWN = np.array([[[1, 5, 2, 0, 3],
                   [4, 2, 8, 1, 6],
                   [0, 7, 3, 9, 2],
                   [6, 1, 5, 4, 8]],
                  [[-1, -5, -2, -7, -3],
                   [-4, -2, -8, -1, -6],
                   [-9, -7, -3, -6, -2],
                   [-6, -1, -5, -4, -8]]], dtype=float)[None]


def test_max_and_ave_pooling_2x2_stride_2_with_ceil_clipped_windows(xp):
    # 4x5 -> 2x3: ceil((5 - 2)/2) + 1 = 3, the last column window holds one column only.
    (y,) = run(make_layer(pool_text(pool="MAX", kernel_size=2, stride=2)), [KNOWN], xp).y
    np.testing.assert_array_equal(y[0], [[[5, 8, 6], [7, 9, 8]],
                                         [[-1, -1, -3], [-1, -3, -2]]])
    # AVE divides by the window clipped to the (unpadded) input: 4, 4 and 2 cells.
    (y,) = run(make_layer(pool_text(pool="AVE", kernel_size=2, stride=2)), [KNOWN], xp).y
    np.testing.assert_allclose(y[0], [[[12 / 4, 11 / 4, 9 / 2], [14 / 4, 21 / 4, 10 / 2]],
                                      [[-12 / 4, -18 / 4, -9 / 2], [-23 / 4, -18 / 4, -10 / 2]]])


def test_max_and_ave_pooling_3x3_stride_2_pad_1(xp):
    # Rows read {0,1}, {1,2,3}, {3}; columns {0,1}, {1,2,3}, {3,4}. Padding never wins a MAX
    # (channel 1 is negative everywhere), and AVE divides by the window clipped to the padded
    # input: 3 rows x 3 columns, except 2 x 3 for the last row of windows.
    (y,) = run(make_layer(pool_text(pool="MAX", kernel_size=3, stride=2, pad=1)), [KNOWN], xp).y
    np.testing.assert_array_equal(y[0], [[[5, 8, 6], [7, 9, 9], [6, 5, 8]],
                                         [[-1, -1, -1], [-1, -1, -1], [-1, -1, -4]]])
    (y,) = run(make_layer(pool_text(pool="AVE", kernel_size=3, stride=2, pad=1)), [KNOWN], xp).y
    np.testing.assert_allclose(y[0], [[[12 / 9, 18 / 9, 10 / 9], [20 / 9, 40 / 9, 30 / 9], [7 / 6, 10 / 6, 12 / 6]],
                                      [[-12 / 9, -25 / 9, -17 / 9], [-29 / 9, -37 / 9, -27 / 9],
                                       [-7 / 6, -10 / 6, -12 / 6]]])


def test_max_pooling_backward_goes_to_the_argmax_and_mask_top():
    layer = make_layer(pool_text(pool="MAX", kernel_size=2, stride=2) + ' top: "y" top: "mask"')
    r = run(layer, [KNOWN])
    y, mask = r.y
    np.testing.assert_array_equal(mask[0, 0], [[1, 7, 9], [11, 13, 19]])     # h*5 + w of each max
    (dx,) = r.backward([np.arange(12.0).reshape(1, 2, 2, 3) + 1, 0])
    expected = np.zeros((4, 5))
    expected.flat[[1, 7, 9, 11, 13, 19]] = [1, 2, 3, 4, 5, 6]
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_global_pooling(xp):
    (y,) = run(make_layer(pool_text(pool="AVE", global_pooling=True)), [KNOWN], xp).y
    np.testing.assert_allclose(y.reshape(2), [KNOWN[0, 0].mean(), KNOWN[0, 1].mean()])
    (y,) = run(make_layer(pool_text(pool="MAX", global_pooling=True)), [KNOWN], xp).y
    np.testing.assert_array_equal(y.reshape(2), [9, -1])
    (top,), ctx = infer(make_layer(pool_text(pool="MAX", global_pooling=True)), (2, 1024, 7, 7))
    assert top == (2, 1024, 1, 1) and ctx.notes == ["global pooling: kernel 7x7 = the whole map -> 1x1"]


POOL_GRAD_CASES = [
    dict(pool="MAX", kernel_size=3, stride=2),                      # ceil: last window clipped
    dict(pool="MAX", kernel_size=3, stride=2, pad=1),
    dict(pool="MAX", kernel_h=2, kernel_w=3, stride_h=1, stride_w=2, pad_h=1, pad_w=0),
    dict(pool="AVE", kernel_size=3, stride=2),
    dict(pool="AVE", kernel_size=3, stride=2, pad=1),
    dict(pool="AVE", kernel_h=3, kernel_w=2, stride_h=2, stride_w=1, pad_h=1, pad_w=1),
    dict(pool="AVE", kernel_size=2, stride=2, round_mode="FLOOR"),
    dict(pool="MAX", global_pooling=True),
    dict(pool="AVE", global_pooling=True),
]


@pytest.mark.parametrize("fields", POOL_GRAD_CASES)
def test_pooling_gradient(fields, xp):
    x = np.random.default_rng(5).permutation(2 * 2 * 5 * 6).reshape(2, 2, 5, 6) / 10    # tie-free
    check_layer(make_layer(pool_text(**fields)), [x], xp=xp)


# -- STOCHASTIC pooling ----------------------------------------------------------------------------
def test_stochastic_pooling_test_phase_is_the_weighted_average():
    x = np.array([[[[1., 3., 0.], [2., 2., 0.]]]])
    (y,) = run(make_layer(pool_text(pool="STOCHASTIC", kernel_size=2, stride=2), phase=TEST), [x]).y
    np.testing.assert_allclose(y[0, 0], [[(1 + 9 + 4 + 4) / 8, 0]])     # sum(x^2)/sum(x); 0 where sum is 0


def test_stochastic_pooling_train_phase_samples_by_value():
    x = np.tile(np.array([1., 3.]), (4000, 1, 1, 1))            # 4000 windows of [1, 3]
    (y,) = run(make_layer(pool_text(pool="STOCHASTIC", kernel_h=1, kernel_w=2), phase=TRAIN), [x]).y
    assert set(np.unique(y)) <= {1.0, 3.0}
    assert abs(np.mean(y == 3) - 0.75) < 0.03


@pytest.mark.parametrize("phase", [TRAIN, TEST])
def test_stochastic_pooling_gradient(phase, xp):
    x = np.random.default_rng(6).random((2, 2, 5, 5)) + 0.1
    check_layer(make_layer(pool_text(pool="STOCHASTIC", kernel_size=3, stride=2), phase=phase), [x], xp=xp)


# -- SPP -------------------------------------------------------------------------------------------
def test_spp_concatenates_the_pyramid_levels():
    x = np.random.default_rng(7).permutation(2 * 3 * 7 * 9).reshape(2, 3, 7, 9).astype(float)
    layer = make_layer('name: "s" type: "SPP" spp_param { pyramid_height: 3 pool: MAX }')
    (top,), ctx = infer(layer, x.shape)
    assert top == (2, 3 * (1 + 4 + 16))
    (y,) = run(layer, [x]).y
    # level 0: the whole map; level 1 (2x2 bins): kernel 4x5, pad 1x1; level 2: kernel 2x3, pad 1x2
    assert np.array_equal(y[:, :3], x.max(axis=(2, 3)))
    level1 = make_layer(pool_text(pool="MAX", kernel_h=4, kernel_w=5, stride_h=4, stride_w=5, pad_h=1, pad_w=1))
    (expected,) = run(level1, [x]).y
    np.testing.assert_array_equal(y[:, 3:15], expected.reshape(2, -1))
    assert "3 levels: 1x1 (kernel 7x9, pad 0x0) + 2x2 (kernel 4x5, pad 1x1) + 4x4 (kernel 2x3, pad 1x2)" in ctx.notes[0]


def test_spp_single_level_is_plain_pooling():
    (top,), _ = infer(make_layer('name: "s" type: "SPP" spp_param { pyramid_height: 1 }'), (2, 5, 6, 6))
    assert top == (2, 5, 1, 1)


@pytest.mark.parametrize("text", ['name: "s" type: "SPP" spp_param { pyramid_height: 3 pool: MAX }',
                                  'name: "s" type: "SPP" spp_param { pyramid_height: 2 pool: AVE }'])
def test_spp_gradient(text, xp):
    x = np.random.default_rng(8).permutation(2 * 2 * 8 * 9).reshape(2, 2, 8, 9) / 10
    check_layer(make_layer(text), [x], xp=xp)


# -- LRN -------------------------------------------------------------------------------------------
def lrn_text(region="ACROSS_CHANNELS", **fields):
    body = " ".join(f"{k}: {v}" for k, v in fields.items())
    return f'name: "n" type: "LRN" lrn_param {{ norm_region: {region} {body} }}'


def test_lrn_across_channels_known_values(xp):
    x = np.array([1., 2., 3.]).reshape(1, 3, 1, 1)
    # alpha/n = 1, k = 1: scales 1 + (1 + 4), 1 + (1 + 4 + 9), 1 + (4 + 9)
    (y,) = run(make_layer(lrn_text(local_size=3, alpha=3, beta=1, k=1)), [x], xp).y
    np.testing.assert_allclose(y.ravel(), [1 / 6, 2 / 15, 3 / 14])
    (y,) = run(make_layer(lrn_text(local_size=3, alpha=3, beta=0.5, k=2)), [x], xp).y
    np.testing.assert_allclose(y.ravel(), [1 / np.sqrt(7), 2 / np.sqrt(16), 3 / np.sqrt(15)])


def test_lrn_within_channel_known_values(xp):
    # 3x3 windows padded by 1 over a 2x2 map each cover all four values: mean of squares over
    # the 9-cell window = 30/9; scale = 1 + 9 * 30/9 = 31, whatever k says.
    x = np.array([[1., 2.], [3., 4.]]).reshape(1, 1, 2, 2)
    (y,) = run(make_layer(lrn_text("WITHIN_CHANNEL", local_size=3, alpha=9, beta=1, k=5)), [x], xp).y
    np.testing.assert_allclose(y, x / 31)


@pytest.mark.parametrize("text,shape", [
    (lrn_text(local_size=5, alpha=0.5, beta=0.75, k=2), (2, 7, 3, 2)),
    (lrn_text(local_size=5, alpha=0.5, beta=0.75, k=1), (1, 3, 2, 3)),       # fewer channels than the window
    (lrn_text(local_size=3, alpha=1.5, beta=0.6, k=1), (2, 4, 2, 2)),
    (lrn_text("WITHIN_CHANNEL", local_size=3, alpha=0.8, beta=0.75), (2, 2, 4, 5)),
    (lrn_text("WITHIN_CHANNEL", local_size=5, alpha=2, beta=0.5), (1, 2, 3, 3)),
])
def test_lrn_gradient(text, shape, xp):
    x = np.random.default_rng(9).standard_normal(shape)
    check_layer(make_layer(text), [x], xp=xp)


def test_lrn_shapes_and_window():
    (top,), ctx = infer(make_layer(lrn_text(local_size=5, alpha=0.0001, beta=0.75)), (1, 96, 55, 55))
    assert top == (1, 96, 55, 55) and ctx.notes == ["y = x * (1 + 0.0001/5 * sum of x^2 over 5 channels)^-0.75"]
    assert make_layer(lrn_text(local_size=5)).window([(1, 96, 55, 55)]) is None
    assert make_layer(lrn_text("WITHIN_CHANNEL", local_size=5)).window([(1, 96, 55, 55)]) == [(5, 1, 2, 1)] * 2


# -- Crop ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fields,expected_slices", [
    ("axis: 2 offset: 1", (slice(None), slice(None), slice(1, 4), slice(1, 5))),
    ("axis: 2 offset: 1 offset: 2", (slice(None), slice(None), slice(1, 4), slice(2, 6))),
    ("axis: 1 offset: 0 offset: 2 offset: 1", (slice(None), slice(0, 2), slice(2, 5), slice(1, 5))),
    ("axis: -2", (slice(None), slice(None), slice(0, 3), slice(0, 4))),
])
def test_crop(fields, expected_slices, xp):
    x = np.random.default_rng(10).standard_normal((2, 3, 5, 6))
    like = np.zeros((2, 2, 3, 4))
    layer = make_layer(f'name: "c" type: "Crop" crop_param {{ {fields} }}')
    (y,) = run(layer, [x, like]).y
    np.testing.assert_array_equal(y, x[expected_slices])
    check_layer(make_layer(f'name: "c" type: "Crop" crop_param {{ {fields} }}'), [x, like], check_bottoms=[0], xp=xp)


def test_crop_note():
    (top,), ctx = infer(make_layer('name: "c" type: "Crop" crop_param { offset: 19 }'), (1, 21, 538, 538), (1, 3, 500, 500))
    assert top == (1, 21, 500, 500)
    assert ctx.notes == ["axis 2: 538 -> 500 at offset 19; axis 3: 538 -> 500 at offset 19"]


# -- Deconvolution ----------------------------------------------------------------------------------
DECONV_CASES = [
    ((2, 3, 4, 3), dict(kernel_size=3, stride=2, pad=1), ((2, 2), (1, 1), (1, 1))),
    ((1, 4, 3, 4), dict(kernel_h=2, kernel_w=3, stride_h=2, stride_w=1, group=2, bias_term=False), ((2, 1), (0, 0), (1, 1))),
    ((2, 2, 3, 3), dict(kernel_size=3, dilation=2), ((1, 1), (0, 0), (2, 2))),
    ((2, 4, 3, 3), dict(kernel_size=1), ((1, 1), (0, 0), (1, 1))),
]


@pytest.mark.parametrize("shape,fields,geometry", DECONV_CASES)
def test_deconvolution_matches_naive_scatter(shape, fields, geometry, xp):
    layer = make_layer(conv_text("Deconvolution", num_output=4, **fields))
    x = np.random.default_rng(11).standard_normal(shape)
    (y,) = run(layer, [x], xp).y
    w = np.asarray(layer.blobs[0].data if xp is np else layer.blobs[0].data.get())
    b = np.asarray(layer.blobs[1].data if xp is np else layer.blobs[1].data.get()) if len(layer.blobs) > 1 else None
    np.testing.assert_allclose(y, naive_deconv(x, w, b, *geometry, fields.get("group", 1), y.shape[2:]), atol=1e-10)


@pytest.mark.parametrize("shape,fields,geometry", DECONV_CASES)
def test_deconvolution_gradient(shape, fields, geometry, xp):
    x = np.random.default_rng(12).standard_normal(shape)
    check_layer(make_layer(conv_text("Deconvolution", num_output=4, **fields)), [x], xp=xp)


def test_deconvolution_weights_are_input_major():
    layer = make_layer(conv_text("Deconvolution", num_output=6, kernel_size=4, stride=2, group=2))
    assert param_shapes(layer, [(1, 8, 5, 5)]) == [(8, 3, 4, 4), (6,)]


# -- Im2col ----------------------------------------------------------------------------------------
def test_im2col_layer_orders_channels_as_convolution_does(xp):
    x = np.random.default_rng(13).standard_normal((2, 3, 5, 4))
    layer = make_layer('name: "i" type: "Im2col" convolution_param { kernel_size: 2 stride: 2 pad: 1 }')
    (y,) = run(layer, [x]).y
    assert y.shape == (2, 12, 3, 3)
    w = np.random.default_rng(14).standard_normal((5, 3, 2, 2))
    # a convolution is the im2col columns times the flattened weights
    conv = np.einsum("ok,nkhw->nohw", w.reshape(5, -1), y)
    np.testing.assert_allclose(conv, naive_conv(x, w, None, (2, 2), (1, 1), (1, 1), 1))
    check_layer(make_layer('name: "i" type: "Im2col" convolution_param { kernel_size: 2 stride: 2 pad: 1 }'), [x], xp=xp)


# -- float32 and every backend --------------------------------------------------------------------
@pytest.mark.parametrize("text,shape", [
    (conv_text(num_output=8, kernel_size=3, stride=2, pad=1, group=2), (2, 4, 9, 9)),
    (conv_text(num_output=6, kernel_size=3, pad=1, group=6), (2, 6, 5, 5)),
    (conv_text(num_output=6, kernel_size=1), (2, 4, 5, 5)),
    (pool_text(pool="MAX", kernel_size=3, stride=2), (2, 3, 9, 9)),
    (pool_text(pool="AVE", kernel_size=3, stride=2, pad=1), (2, 3, 9, 9)),
    (lrn_text(local_size=5, alpha=0.001, beta=0.75), (2, 7, 4, 4)),
    (lrn_text("WITHIN_CHANNEL", local_size=3, alpha=0.5, beta=0.75), (2, 2, 5, 5)),
])
def test_float32_keeps_its_dtype_and_agrees_with_float64(text, shape, xp):
    x = np.random.default_rng(15).standard_normal(shape)
    params = [np.random.default_rng(16).standard_normal(s) for s in param_shapes(make_layer(text), [shape])]
    r32 = run(make_layer(text), [x], xp, params=params, dtype=np.float32)
    (y32,), (y64,) = r32.y, run(make_layer(text), [x], np, params=params).y
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-4)
    (dx,) = r32.backward([1])
    assert dx.dtype == np.float32 and all(d.dtype == np.float32 for d in r32.param_diffs)


@pytest.mark.parametrize("text,shape", [
    (conv_text(num_output=4, kernel_size=3, stride=2, pad=1, group=2), (2, 4, 5, 5)),
    (conv_text(num_output=4, kernel_size=3, pad=1, group=4), (1, 4, 4, 4)),
    (conv_text("Deconvolution", num_output=2, kernel_size=3, stride=2), (1, 2, 3, 3)),
    (pool_text(pool="MAX", kernel_size=3, stride=2, pad=1), (2, 2, 5, 6)),
    (pool_text(pool="AVE", kernel_size=3, stride=2), (2, 2, 5, 6)),
    (lrn_text(local_size=3, alpha=0.5, beta=0.75, k=2), (2, 4, 3, 3)),
])
def test_gradient_on_every_backend(text, shape, xp):
    x = np.random.default_rng(17).permutation(np.prod(shape)).reshape(shape) / 10
    check_layer(make_layer(text), [x], xp=xp)


def test_crop_checks_only_the_axes_from_axis_on():
    """HED's deploy net crops a 1-channel map by the 3-channel data: Caffe's crop_layer.cpp
    compares only the axes from `axis` (2 by default) on."""
    (top,), _ = infer(make_layer('name: "c" type: "Crop"'), (1, 1, 510, 510), (1, 3, 500, 500))
    assert top == (1, 1, 500, 500)
    with pytest.raises(LayerError, match="axis 1: cannot crop 3 from 1"):
        infer(make_layer('name: "c" type: "Crop" crop_param { axis: 1 }'), (1, 1, 510, 510), (1, 3, 500, 500))


def test_lrn_in_place_matches_lrn_out_of_place():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 5, 3, 3))
    text = 'type: "LRN" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 }'
    (apart,) = run(make_layer(text + ' bottom: "x" top: "y"'), [x]).y
    from netspec.ops import lrn as lrn_ops
    y = x.copy()
    out, _ = lrn_ops.lrn_across(np, y, 3, 0.5, 0.75, 2.0, out=y)
    assert out is y
    np.testing.assert_allclose(y, apart)
