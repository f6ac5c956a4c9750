"""ONNX export: every mapped layer type against netspec's own forward, through onnxruntime,
on several input shapes; refusals name the layer; the CLI writes a model that checks."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from netspec import Net                                   # noqa: E402
from netspec.cli import main                              # noqa: E402
from netspec.errors import NetspecError                   # noqa: E402
from netspec.onnx import layer_tops, to_onnx              # noqa: E402


def make_net(tmp_path, body, shapes, name="t"):
    """A net of Input layers named x0, x1 ... of the given shapes, then `body`."""
    inputs = "".join(
        f'layer {{ name: "x{i}" type: "Input" top: "x{i}" input_param {{ shape {{ '
        + " ".join(f"dim: {d}" for d in s) + " } } }\n" for i, s in enumerate(shapes))
    path = tmp_path / f"{name}.prototxt"
    path.write_text(f'name: "{name}"\n' + inputs + body)
    return path


def run_both(path, seed=0, feeds=None, dynamic_batch=False):
    net = Net(str(path), seed=seed)
    rng = np.random.default_rng(seed)
    for layer in net.layers:                 # weights that are not the fillers' constants
        for j, blob in enumerate(layer.blobs):
            if layer.type == "BatchNorm":
                blob.data[...] = [rng.uniform(0.5, 2, blob.shape), rng.uniform(0.5, 2, blob.shape) * 3,
                                  np.full(blob.shape, 1.7)][j]
            else:
                blob.data[...] = rng.standard_normal(blob.shape)
    if feeds is None:
        feeds = {n: rng.standard_normal(net.blobs[n].shape).astype(np.float32) for n in net.inputs}
    expect = {k: v.copy() for k, v in net.forward(**feeds).items()}
    model = to_onnx(net, dynamic_batch=dynamic_batch)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(net.outputs, sess.run(names, feeds)))
    return expect, got, model


def assert_close(expect, got, rtol=1e-5):
    assert expect.keys() == got.keys()
    for k in expect:
        assert got[k].shape == expect[k].shape, k
        scale = max(1.0, float(np.abs(expect[k]).max()))
        np.testing.assert_allclose(got[k], expect[k], rtol=rtol, atol=rtol * scale, err_msg=k)


def L(type_, params="", bottoms=("x0",), tops=("y",), name="l"):
    b = " ".join(f'bottom: "{x}"' for x in bottoms)
    t = " ".join(f'top: "{x}"' for x in tops)
    return f'layer {{ name: "{name}" type: "{type_}" {b} {t} {params} }}\n'


NCHW = [(2, 3, 7, 9), (1, 3, 8, 8), (3, 3, 5, 6)]


def one(*shapes):
    """Input shape sets for a one-input net."""
    return [[s] for s in shapes]


ONE = one(*NCHW)
CASES = {
    "conv": (L("Convolution", "convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 }"), ONE),
    "conv_group_dilation": (L("Convolution", "convolution_param { num_output: 6 kernel_h: 3 kernel_w: 2 group: 3 "
                                             "dilation: 2 bias_term: false }"), ONE),
    "depthwise": (L("Convolution", "convolution_param { num_output: 3 kernel_size: 3 group: 3 pad: 1 }"), ONE),
    "deconv": (L("Deconvolution", "convolution_param { num_output: 4 kernel_size: 4 stride: 2 pad: 1 }"), ONE),
    "deconv_group": (L("Deconvolution", "convolution_param { num_output: 6 kernel_size: 3 stride: 3 group: 3 }"),
                     ONE),
    "maxpool_ceil": (L("Pooling", "pooling_param { pool: MAX kernel_size: 3 stride: 2 }"), ONE),
    "maxpool_pad_clip": (L("Pooling", "pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }"), ONE),
    "avepool_ceil": (L("Pooling", "pooling_param { pool: AVE kernel_size: 3 stride: 2 }"), ONE),
    "avepool_pad_clip": (L("Pooling", "pooling_param { pool: AVE kernel_h: 3 kernel_w: 2 stride: 2 pad_h: 1 pad_w: 1 }"),
                         ONE),
    "avepool_floor": (L("Pooling", "pooling_param { pool: AVE kernel_size: 2 stride: 2 round_mode: FLOOR }"), ONE),
    "global_ave": (L("Pooling", "pooling_param { pool: AVE global_pooling: true }"), ONE),
    "global_max": (L("Pooling", "pooling_param { pool: MAX global_pooling: true }"), ONE),
    "lrn_across": (L("LRN", "lrn_param { local_size: 5 alpha: 0.5 beta: 0.75 k: 2 }"), one((2, 7, 4, 5), (1, 3, 3, 3))),
    "lrn_within": (L("LRN", "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL }"), ONE),
    "crop": (L("Crop", "crop_param { axis: 2 offset: 1 offset: 2 }", ("x0", "x1")), [[(2, 3, 7, 9), (2, 3, 4, 5)],
                                                                                  [(1, 2, 6, 6), (1, 2, 5, 4)]]),
    "inner_product": (L("InnerProduct", "inner_product_param { num_output: 5 }"), one(*NCHW, (4, 6))),
    "inner_product_axis2_transpose": (L("InnerProduct", "inner_product_param { num_output: 5 axis: 2 transpose: true }"),
                                      ONE),
    "concat": (L("Concat", "concat_param { axis: 1 }", ("x0", "x1")), [[(2, 3, 4, 5), (2, 2, 4, 5)]]),
    "slice": (L("Slice", "slice_param { axis: 1 slice_point: 1 slice_point: 4 }", tops=("a", "b", "c")),
              [[(2, 6, 3, 2)], [(1, 5, 2, 2)]]),
    "slice_equal": (L("Slice", "slice_param { axis: -1 }", tops=("a", "b")), [[(2, 3, 4)], [(1, 2, 6)]]),
    "flatten": (L("Flatten", "flatten_param { axis: 1 end_axis: 2 }"), ONE),
    "reshape": (L("Reshape", "reshape_param { shape { dim: 0 dim: -1 dim: 3 } }"), one((2, 3, 4, 3), (1, 6, 2, 3))),
    "eltwise_sum_coeff": (L("Eltwise", "eltwise_param { operation: SUM coeff: 0.5 coeff: -2 coeff: 1 }",
                            ("x0", "x1", "x2")), [[(2, 3, 4, 5)] * 3]),
    "eltwise_prod": (L("Eltwise", "eltwise_param { operation: PROD }", ("x0", "x1", "x2")), [[(2, 3, 4, 5)] * 3]),
    "eltwise_max": (L("Eltwise", "eltwise_param { operation: MAX }", ("x0", "x1")), [[(2, 3, 4, 5)] * 2]),
    "scale_bias": (L("Scale", "scale_param { bias_term: true }"), ONE),
    "scale_axes": (L("Scale", "scale_param { axis: 1 num_axes: 2 }"), ONE),
    "scale_bottom": (L("Scale", "scale_param { axis: 0 bias_term: true }", ("x0", "x1")), [[(2, 3, 4, 5), (2, 3)]]),
    "bias": (L("Bias", ""), ONE),
    "batchnorm": (L("BatchNorm", "batch_norm_param { eps: 0.001 }"), one(*NCHW, (4, 3))),
    "mvn": (L("MVN", ""), ONE),
    "mvn_across": (L("MVN", "mvn_param { across_channels: true }"), ONE),
    "mvn_mean_only": (L("MVN", "mvn_param { normalize_variance: false }"), ONE),
    "softmax": (L("Softmax", ""), ONE),
    "softmax_axis": (L("Softmax", "softmax_param { axis: 2 }"), ONE),
    "argmax": (L("ArgMax", "argmax_param { top_k: 2 out_max_val: true }"), ONE),
    "argmax_axis": (L("ArgMax", "argmax_param { axis: 1 top_k: 2 }"), ONE),
    "argmax_index": (L("ArgMax", ""), ONE),
    "reduction_sum": (L("Reduction", "reduction_param { operation: SUM axis: 1 coeff: 2 }"), ONE),
    "reduction_asum": (L("Reduction", "reduction_param { operation: ASUM axis: 2 }"), ONE),
    "reduction_sumsq": (L("Reduction", "reduction_param { operation: SUMSQ axis: 1 }"), ONE),
    "reduction_mean_all": (L("Reduction", "reduction_param { operation: MEAN coeff: -1 }"), ONE),
    "tile": (L("Tile", "tile_param { axis: 1 tiles: 3 }"), ONE),
    "relu": (L("ReLU", "", tops=("x0",)), ONE),
    "leaky_relu": (L("ReLU", "relu_param { negative_slope: 0.1 }"), ONE),
    "prelu": (L("PReLU", ""), one(*NCHW, (4, 3))),
    "prelu_shared": (L("PReLU", "prelu_param { channel_shared: true }"), ONE),
    "elu": (L("ELU", "elu_param { alpha: 0.7 }"), ONE),
    "sigmoid": (L("Sigmoid", ""), ONE),
    "tanh": (L("TanH", ""), ONE),
    "absval": (L("AbsVal", ""), ONE),
    "bnll": (L("BNLL", ""), ONE),
    "power": (L("Power", "power_param { power: 2 scale: 0.5 shift: 3 }"), ONE),
    "exp": (L("Exp", "exp_param { base: 2 scale: 0.5 shift: 1 }"), ONE),
    "log": (L("Log", "log_param { base: 10 scale: 2 shift: 20 }"), ONE),
    "threshold": (L("Threshold", "threshold_param { threshold: 0.2 }"), ONE),
    "clip": (L("Clip", "clip_param { min: -0.5 max: 0.7 }"), ONE),
    "swish": (L("Swish", "swish_param { beta: 1.5 }"), ONE),
    "dropout": (L("Dropout", "dropout_param { dropout_ratio: 0.3 }"), ONE),
    "dropout_scaled_in_test": (L("Dropout", "dropout_param { dropout_ratio: 0.3 scale_train: false }"), ONE),
    "split": (L("Split", "", tops=("a", "b")), ONE),
    "silence_and_identity": (L("Silence", "", ("x1",), ()) + L("AbsVal", "", name="m"), [[(2, 3), (2, 2)]]),
    "parameter": (L("Parameter", "parameter_param { shape { dim: 2 dim: 3 } }", (), ("p",))
                  + L("Eltwise", "", ("x0", "p"), name="add"), [[(2, 3)]]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_round_trips_through_onnxruntime(tmp_path, case):
    body, shape_sets = CASES[case]
    for i, shapes in enumerate(shape_sets):
        expect, got, _ = run_both(make_net(tmp_path, body, shapes, name=f"{case}{i}"), seed=i)
        assert_close(expect, got)


def test_argmax_ties_go_to_the_larger_index_as_in_caffe(tmp_path):
    path = make_net(tmp_path, L("ArgMax", "argmax_param { top_k: 2 out_max_val: true }"), [(2, 6)])
    x = np.array([[1, 3, 3, 0, 3, 2], [5, 5, 1, 1, 5, 0]], np.float32)
    expect, got, _ = run_both(path, feeds={"x0": x})
    assert_close(expect, got)
    assert got["y"][0, 0].tolist() == [4, 2]


def test_batchnorm_factor_zero_gives_zero_statistics(tmp_path):
    net = Net(str(make_net(tmp_path, L("BatchNorm", ""), [(2, 3, 2, 2)])))
    net.layers[1].blobs[0].data[...] = 5      # factor stays 0: Caffe's scale is 0, not inf
    model = to_onnx(net)
    mean = [i for i in model.graph.initializer if i.name.endswith("mean")][0]
    assert not onnx.numpy_helper.to_array(mean).any()


def test_dynamic_batch_runs_other_batch_sizes(tmp_path):
    body = (L("Convolution", "convolution_param { num_output: 4 kernel_size: 3 }", name="c", tops=("c",))
            + L("InnerProduct", "inner_product_param { num_output: 3 }", ("c",), name="ip"))
    net = Net(str(make_net(tmp_path, body, [(2, 3, 6, 6)])), seed=1)
    model = to_onnx(net, dynamic_batch=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((5, 3, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(sess.run(None, {"x0": x})[0], net.forward(x0=x)["y"], rtol=1e-5, atol=1e-5)


def test_in_place_tops_are_named_by_layer(tmp_path):
    body = L("Convolution", "convolution_param { num_output: 2 kernel_size: 1 }", name="c", tops=("c",)) + \
        L("ReLU", "", ("c",), ("c",), name="r")
    _, _, model = run_both(make_net(tmp_path, body, [(1, 2, 3, 3)]))
    assert layer_tops(model) == {"c": ["c/c"], "r": ["c"]}


@pytest.mark.parametrize("body,words", [
    (L("Pooling", "pooling_param { pool: STOCHASTIC kernel_size: 2 stride: 2 }"), "STOCHASTIC"),
    (L("Im2col", "convolution_param { kernel_size: 2 }"), "Im2col"),
    (L("Pooling", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }", tops=("y", "mask")), "argmax mask"),
    (L("SoftmaxWithLoss", "", ("x0", "x1")), "labels"),
])
def test_unmappable_layers_are_refused_by_name(tmp_path, body, words):
    net = Net(str(make_net(tmp_path, body, [(2, 3, 4, 4), (2, 1, 4, 4)][:body.count("bottom")])))
    with pytest.raises(NetspecError) as e:
        to_onnx(net)
    assert "layer 'l'" in str(e.value) and words in str(e.value) and ".prototxt:" in str(e.value)


def test_batchnorm_at_train_is_refused(tmp_path):
    path = make_net(tmp_path, L("BatchNorm", ""), [(2, 3, 2, 2)])
    with pytest.raises(NetspecError, match="use_global_stats"):
        to_onnx(Net(str(path), phase="TRAIN"))


def test_cli_convert_writes_a_checked_model(tmp_path, capsys):
    out = tmp_path / "lenet.onnx"
    assert main(["convert", "models/lenet/deploy.prototxt", str(out), "--dynamic-batch", "--opset", "13"]) == 0
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 13
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


def test_cli_convert_bad_opset_and_stray_options(tmp_path, capsys):
    assert main(["convert", "models/lenet/deploy.prototxt", str(tmp_path / "x.onnx"), "--opset", "9"]) == 2
    assert "opset 9" in capsys.readouterr().err
    assert main(["convert", "models/lenet/deploy.prototxt", str(tmp_path / "x.yaml"), "--dynamic-batch"]) == 2
    assert "only to ONNX export" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
