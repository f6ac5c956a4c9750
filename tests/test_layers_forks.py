"""Fork layer types (SSD, R-CNN, SegNet, PSPNet, YOLO and MobileNet ports): shape rules as the
forks compute them, forward against PyTorch or hand-computed cases, backward by the numeric
gradient checker."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradcheck import check_gradient, make_layer, setup_blobs
from netspec import caffe_pb2
from netspec.errors import LayerError
from netspec.layers import LAYERS
from netspec.layers.base import ShapeContext

TEST = caffe_pb2.TEST
FORK_TYPES = ["Normalize", "Permute", "PriorBox", "DetectionOutput", "MultiBoxLoss", "AnnotatedData",
              "DetectionEvaluate", "BN", "ROIPooling", "PSROIPooling", "SmoothL1Loss", "Upsample", "Interp",
              "ReLU6", "DepthwiseConvolution", "ConvolutionDepthwise", "ShuffleChannel", "Axpy", "Reorg",
              "Yolov3DetectionOutput", "DenseImageData"]


def infer(text, *shapes, phase=caffe_pb2.TRAIN):
    layer = make_layer(text, phase)
    ctx = ShapeContext(layer.phase)
    return layer.infer([tuple(s) for s in shapes], ctx), ctx


def forward(layer, arrays, params=None):
    bottoms, tops = setup_blobs(layer, arrays, params=params)
    layer.forward(np, bottoms, tops)
    return [t.data for t in tops]


def test_every_fork_type_names_its_fork():
    for name in FORK_TYPES:
        assert getattr(LAYERS[name], "fork", ""), name


def rng(seed=0):
    return np.random.default_rng(seed)


# -- SSD -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fields", ["across_spatial: false channel_shared: false", "across_spatial: true"])
def test_normalize(fields):
    x = rng().standard_normal((2, 3, 2, 3))
    layer = make_layer(f'name: "n" type: "Normalize" norm_param {{ {fields} }}')
    scale = rng(1).uniform(1, 2, layer.param_blobs([x.shape])[0].shape)
    (y,) = forward(layer, [x], [scale])
    axes = (1,) if "false" in fields else (1, 2, 3)
    s = scale.reshape(1, -1, 1, 1) if scale.size > 1 else scale
    np.testing.assert_allclose(y, s * x / np.sqrt((x * x).sum(axis=axes, keepdims=True) + 1e-10))
    check_gradient(make_layer(f'name: "n" type: "Normalize" norm_param {{ {fields} }}'), [x], params=[scale])


def test_permute_shape_forward_backward():
    (top,), _ = infer('name: "p" type: "Permute" permute_param { order: 0 order: 2 order: 3 order: 1 }', (2, 12, 19, 19))
    assert top == (2, 19, 19, 12)
    x = rng().standard_normal((2, 3, 4, 5))
    layer = make_layer('name: "p" type: "Permute" permute_param { order: 0 order: 2 order: 3 order: 1 }')
    np.testing.assert_array_equal(forward(layer, [x])[0], x.transpose(0, 2, 3, 1))
    check_gradient(layer, [x])


PRIOR = ('name: "pb" type: "PriorBox" prior_box_param { min_size: 60 max_size: 111 aspect_ratio: 2 aspect_ratio: 3 '
         'flip: true clip: false variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 offset: 0.5 }')


def test_prior_box_counts_as_ssd_does():
    # MobileNet-SSD conv13: 10x10 features, ratios 1, 2, 1/2, 3, 1/3 and one max_size: 6 priors
    (top,), _ = infer(PRIOR, (1, 1024, 10, 10), (1, 3, 300, 300))
    assert top == (1, 2, 10 * 10 * 6 * 4)


def test_prior_box_values_by_hand():
    layer = make_layer(PRIOR)
    (y,) = forward(layer, [np.zeros((1, 1, 1, 1)), np.zeros((1, 3, 300, 300))])
    boxes = y[0, 0].reshape(-1, 4)
    side = np.sqrt(60 * 111)
    expected = [[120 / 300, 120 / 300, 180 / 300, 180 / 300],
                [(150 - side / 2) / 300, (150 - side / 2) / 300, (150 + side / 2) / 300, (150 + side / 2) / 300]]
    w, h = 60 * np.sqrt(2), 60 / np.sqrt(2)
    expected.append([(150 - w / 2) / 300, (150 - h / 2) / 300, (150 + w / 2) / 300, (150 + h / 2) / 300])
    np.testing.assert_allclose(boxes[:3], expected)
    np.testing.assert_allclose(y[0, 1].reshape(-1, 4), [[0.1, 0.1, 0.2, 0.2]] * 6)


def test_detection_output_checks_counts_and_leaves_the_count_unknown():
    text = 'name: "d" type: "DetectionOutput" detection_output_param { num_classes: 21 }'
    (top,), _ = infer(text, (1, 1917 * 4), (1, 1917 * 21), (1, 2, 1917 * 4))
    assert top == (1, 1, None, 7)
    with pytest.raises(LayerError, match="conf has 1917 values per item; 1917 priors x 21 classes"):
        infer(text, (1, 1917 * 4), (1, 1917), (1, 2, 1917 * 4))


def test_annotated_data_shapes_from_resize_param():
    text = ('name: "data" type: "AnnotatedData" top: "data" top: "label" data_param { batch_size: 32 } '
            'transform_param { mean_value: 104 mean_value: 117 mean_value: 123 resize_param { height: 300 width: 300 } }')
    tops, _ = infer(text)
    assert tops == [(32, 3, 300, 300), (1, 1, None, 8)]


# -- R-CNN -----------------------------------------------------------------------------------------
def test_roi_pooling_by_hand_and_gradient():
    x = np.arange(2 * 1 * 4 * 4, dtype=float).reshape(2, 1, 4, 4) + rng().uniform(0, 0.1, (2, 1, 4, 4))
    rois = np.array([[1, 0, 0, 3, 3], [0, 2, 0, 3, 1]], dtype=float)
    layer = make_layer('name: "r" type: "ROIPooling" roi_pooling_param { pooled_h: 2 pooled_w: 2 spatial_scale: 1 }')
    (top,), _ = infer('name: "r" type: "ROIPooling" roi_pooling_param { pooled_h: 2 pooled_w: 2 }', x.shape, rois.shape)
    assert top == (2, 1, 2, 2)
    (y,) = forward(layer, [x, rois])
    np.testing.assert_allclose(y[0, 0], [[x[1, 0, :2, :2].max(), x[1, 0, :2, 2:].max()],
                                         [x[1, 0, 2:, :2].max(), x[1, 0, 2:, 2:].max()]])
    np.testing.assert_allclose(y[1, 0], [[x[0, 0, 0, 2], x[0, 0, 0, 3]], [x[0, 0, 1, 2], x[0, 0, 1, 3]]])
    check_gradient(make_layer('name: "r" type: "ROIPooling" roi_pooling_param { pooled_h: 2 pooled_w: 2 }'),
                   [x, rois], check_bottoms=[0])


def test_psroi_pooling_averages_its_position_channel():
    x = rng().standard_normal((1, 2 * 4, 4, 4))
    rois = np.array([[0, 0, 0, 3, 3]], dtype=float)
    text = 'name: "p" type: "PSROIPooling" psroi_pooling_param { spatial_scale: 1 output_dim: 2 group_size: 2 }'
    (y,) = forward(make_layer(text), [x, rois])
    assert y.shape == (1, 2, 2, 2)
    assert np.isclose(y[0, 1, 0, 1], x[0, (1 * 2 + 0) * 2 + 1, :2, 2:].mean())
    check_gradient(make_layer(text), [x, rois], check_bottoms=[0])
    with pytest.raises(LayerError, match="output_dim 2 x group_size 2"):
        infer(text, (1, 6, 4, 4), (1, 5))


def test_smooth_l1_loss_against_torch():
    a, b = rng().standard_normal((4, 8)), rng(1).standard_normal((4, 8))
    text = 'name: "l" type: "SmoothL1Loss" smooth_l1_loss_param { sigma: 1 }'
    (y,) = forward(make_layer(text), [a, b])
    ref = F.smooth_l1_loss(torch.tensor(a), torch.tensor(b), reduction="sum").item() / 4
    assert np.isclose(float(y), ref)
    w_in, w_out = rng(2).uniform(0, 1, (4, 8)), rng(3).uniform(0, 1, (4, 8))
    check_gradient(make_layer('name: "l" type: "SmoothL1Loss" smooth_l1_loss_param { sigma: 3 }'),
                   [a, b, w_in, w_out], check_bottoms=[0, 1], kink=0.0, kink_range=0.0)


# -- SegNet, YOLO, PSPNet ----------------------------------------------------------------------------
def test_segnet_upsample_is_torch_max_unpool():
    x = torch.tensor(rng().standard_normal((1, 2, 6, 6)))
    pooled, mask = F.max_pool2d(x, 2, 2, return_indices=True)
    text = 'name: "u" type: "Upsample" bottom: "p" bottom: "m" upsample_param { scale: 2 }'
    (y,) = forward(make_layer(text), [pooled.numpy(), mask.numpy().astype(float)])
    np.testing.assert_allclose(y, F.max_unpool2d(pooled, mask, 2, 2).numpy())
    check_gradient(make_layer(text), [pooled.numpy(), mask.numpy().astype(float)], check_bottoms=[0])
    (top,), _ = infer('name: "u" type: "Upsample" bottom: "p" bottom: "m" upsample_param { upsample_h: 45 upsample_w: 60 }',
                      (1, 64, 23, 30), (1, 64, 23, 30))
    assert top == (1, 64, 45, 60)


def test_yolo_upsample_is_nearest():
    x = rng().standard_normal((1, 2, 3, 3))
    text = 'name: "u" type: "Upsample" bottom: "x" upsample_param { scale: 2 }'
    (y,) = forward(make_layer(text), [x])
    np.testing.assert_allclose(y, F.interpolate(torch.tensor(x), scale_factor=2, mode="nearest").numpy())
    check_gradient(make_layer(text), [x])


@pytest.mark.parametrize("fields,size", [("zoom_factor: 8", (57, 57)), ("height: 5 width: 7", (5, 7)),
                                         ("shrink_factor: 2", (4, 4))])
def test_interp_is_bilinear_with_corners_aligned(fields, size):
    x = rng().standard_normal((1, 2, 8, 8))
    text = f'name: "i" type: "Interp" interp_param {{ {fields} }}'
    (y,) = forward(make_layer(text), [x])
    assert y.shape[2:] == size
    ref = F.interpolate(torch.tensor(x), size=size, mode="bilinear", align_corners=True).numpy()
    np.testing.assert_allclose(y, ref, atol=1e-12)
    if size[0] < 20:
        check_gradient(make_layer(text), [x])


def test_bn_segnet_learn_and_inference():
    x = rng().standard_normal((3, 2, 2, 2))
    learn = make_layer('name: "b" type: "BN" bn_param { bn_mode: LEARN }')
    assert [b.shape for b in learn.param_blobs([x.shape])] == [(1, 2, 1, 1)] * 2
    check_gradient(learn, [x])
    infer_layer = make_layer('name: "b" type: "BN" bn_param { bn_mode: INFERENCE }')
    params = [rng(1).standard_normal((1, 2, 1, 1)), rng(2).standard_normal((1, 2, 1, 1))]
    (y,) = forward(infer_layer, [x], params)
    np.testing.assert_allclose(y, params[0] * x + params[1])


def test_bn_pspnet_frozen_uses_running_statistics():
    x = rng().standard_normal((2, 2, 2, 2))
    layer = make_layer('name: "b" type: "BN" bn_param { frozen: true eps: 1e-5 }')
    assert len(layer.param_blobs([x.shape])) == 4
    params = [np.full((1, 2, 1, 1), 2.0), np.full((1, 2, 1, 1), 1.0), np.full((1, 2, 1, 1), 0.5), np.full((1, 2, 1, 1), 4.0)]
    (y,) = forward(layer, [x], params)
    np.testing.assert_allclose(y, 2 * (x - 0.5) / np.sqrt(4 + 1e-5) + 1)


# -- MobileNet, ShuffleNet, SENet, YOLO ----------------------------------------------------------------
def test_relu6():
    x = np.array([[-1.0, 0.5, 5.5, 7.0]])
    layer = make_layer('name: "r" type: "ReLU6"')
    np.testing.assert_array_equal(forward(layer, [x])[0], [[0, 0.5, 5.5, 6]])
    check_gradient(make_layer('name: "r" type: "ReLU6"'), [x])


def test_convolution_depthwise_is_grouped_by_channel():
    (top,), _ = infer('name: "c" type: "ConvolutionDepthwise" convolution_param { num_output: 32 kernel_size: 3 pad: 1 stride: 2 }',
                      (1, 32, 150, 150))
    assert top == (1, 32, 75, 75)
    layer = make_layer('name: "c" type: "ConvolutionDepthwise" convolution_param { num_output: 32 kernel_size: 3 }')
    assert layer.param_blobs([(1, 32, 8, 8)])[0].shape == (32, 1, 3, 3)
    with pytest.raises(LayerError, match="num_output 32 must equal the input's 16 channels"):
        infer('name: "c" type: "ConvolutionDepthwise" convolution_param { num_output: 32 kernel_size: 3 }', (1, 16, 8, 8))
    x, w = rng().standard_normal((1, 3, 5, 5)), rng(1).standard_normal((3, 1, 3, 3))
    (y,) = forward(make_layer('name: "c" type: "ConvolutionDepthwise" convolution_param { num_output: 3 kernel_size: 3 bias_term: false }'),
                   [x], [w])
    np.testing.assert_allclose(y, F.conv2d(torch.tensor(x), torch.tensor(w), groups=3).numpy())


def test_shuffle_channel_is_torch_channel_shuffle():
    x = rng().standard_normal((1, 6, 2, 2))
    text = 'name: "s" type: "ShuffleChannel" shuffle_channel_param { group: 3 }'
    (y,) = forward(make_layer(text), [x])
    np.testing.assert_array_equal(y, F.channel_shuffle(torch.tensor(x), 3).numpy())
    check_gradient(make_layer(text), [x])


def test_axpy():
    a, x, y = rng().standard_normal((2, 3, 1, 1)), rng(1).standard_normal((2, 3, 2, 2)), rng(2).standard_normal((2, 3, 2, 2))
    (out,) = forward(make_layer('name: "a" type: "Axpy"'), [a, x, y])
    np.testing.assert_allclose(out, a * x + y)
    check_gradient(make_layer('name: "a" type: "Axpy"'), [a, x, y])


def darknet_reorg(x, stride):
    """darknet's reorg_cpu(forward=0) as the Caffe ports call it, one loop per index."""
    n, c, h, w = x.shape
    out, flat = np.zeros(x.size), x.reshape(-1)
    out_c = c // (stride * stride)
    for b in range(n):
        for k in range(c):
            for j in range(h):
                for i in range(w):
                    in_index = i + w * (j + h * (k + c * b))
                    c2, offset = k % out_c, k // out_c
                    w2, h2 = i * stride + offset % stride, j * stride + offset // stride
                    out[in_index] = flat[w2 + w * stride * (h2 + h * stride * (c2 + out_c * b))]
    return out.reshape(n, c * stride * stride, h // stride, w // stride)


def test_reorg_moves_elements_as_darknet():
    x = rng().standard_normal((1, 8, 4, 4))
    text = 'name: "r" type: "Reorg" reorg_param { stride: 2 }'
    (y,) = forward(make_layer(text), [x])
    np.testing.assert_array_equal(y, darknet_reorg(x, 2))
    check_gradient(make_layer(text), [x])


def test_yolov3_detection_output_checks_head_channels():
    text = 'name: "d" type: "Yolov3DetectionOutput" yolov3_detection_output_param { num_classes: 80 num_box: 3 }'
    (top,), _ = infer(text, (1, 255, 13, 13), (1, 255, 26, 26))
    assert top == (1, 1, None, 7)
    with pytest.raises(LayerError, match="num_box 3 x \\(num_classes 80 \\+ 5\\) = 255"):
        infer(text, (1, 75, 13, 13))


# -- fields of the forks in BVLC's types ---------------------------------------------------------------
def test_dropout_scale_train_false_scales_in_test_instead():
    x = rng().standard_normal((2, 3))
    text = 'name: "d" type: "Dropout" dropout_param { dropout_ratio: 0.25 scale_train: false }'
    (y,) = forward(make_layer(text, TEST), [x])
    np.testing.assert_allclose(y, x * 0.75)           # caffe-fast-rcnn: TEST multiplies by 1 - ratio
    layer = make_layer(text, caffe_pb2.TRAIN)
    layer.rng = rng(3)
    (y,) = forward(layer, [x])
    assert set(np.round(np.unique(y / x), 12)) <= {0.0, 1.0}    # TRAIN only masks


def test_dropout_sample_weights_test_drops_out_in_test():
    layer = make_layer('name: "d" type: "Dropout" dropout_param { sample_weights_test: true }', TEST)
    layer.rng = rng(4)
    x = np.ones((4, 50))
    (y,) = forward(layer, [x])
    assert set(np.unique(y)) == {0.0, 2.0}            # Bayesian SegNet: masked and scaled as in TRAIN


def test_dense_image_data_shapes_from_the_first_pair_or_the_net(tmp_path):
    from PIL import Image
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(tmp_path / "a_label.png")
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'a.png'} {tmp_path / 'a_label.png'}\n")
    layer = make_layer(f'name: "data" type: "DenseImageData" top: "data" top: "label" '
                       f'dense_image_data_param {{ source: "{tmp_path / "list.txt"}" batch_size: 2 }}', TEST)
    assert layer.infer([], ShapeContext(source=layer.read_source()))[0] == (2, 3, 6, 8)
    missing = make_layer('name: "data" type: "DenseImageData" top: "data" top: "label" '
                         'dense_image_data_param { source: "no/list.txt" batch_size: 4 new_height: 360 new_width: 480 }')
    with pytest.raises(LayerError, match="does not exist"):
        missing.read_source()
    assert missing.infer([], ShapeContext()) == [(4, 3, 360, 480), (4, 1, 360, 480)]


# -- types of forks that netspec does not implement ------------------------------------------------
def test_a_type_of_a_known_fork_names_it_and_is_none_that_netspec_implements():
    import os
    from netspec.layers.forks_known import ELSEWHERE
    from netspec.layers.registry import layer_class
    assert not set(ELSEWHERE) & set(LAYERS)
    with pytest.raises(LayerError) as e:
        layer_class("CenterLoss")
    assert e.value.message == ("unknown layer type 'CenterLoss': a type of ydwen/caffe-face (center loss for "
                               "face recognition), which netspec does not implement")
    with pytest.raises(LayerError, match="did you mean 'Normalize'"):
        layer_class("Normalise")                # no fork's: the nearest known names, as before
    doc = open(os.path.join(os.path.dirname(__file__), os.pardir, "docs", "forks.md")).read()
    for name, fork in ELSEWHERE.items():
        assert f"| {name} | {fork} |" in doc, name
