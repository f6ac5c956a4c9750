"""The executor: lowering, forward/backward of whole nets, weight sharing, skipping, reshape."""
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from netspec import Net, caffe_pb2
from netspec.backend import gpu_available
from netspec.errors import NetspecError

# A LeNet in miniature: an in-place ReLU, and ip1 read by two losses (an implicit split).
SMALL_LENET = """
name: "small"
force_backward: true
layer { name: "data" type: "Input" top: "data" top: "label" top: "target"
  input_param { shape { dim: 2 dim: 1 dim: 6 dim: 6 } shape { dim: 2 } shape { dim: 2 dim: 4 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "gaussian" std: 0.5 }
                      bias_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1"
  inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 0.5 }
                        bias_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }
layer { name: "l2" type: "EuclideanLoss" bottom: "ip1" bottom: "target" top: "l2" loss_weight: 0.5 }
"""


def write(tmp_path, text, name="net.prototxt"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def small_inputs(rng, n=2):
    return {"data": rng.standard_normal((n, 1, 6, 6)), "label": np.array([1, 3, 0, 2][:n], float),
            "target": rng.standard_normal((n, 4))}


def numeric_gradient(net, feeds, array, eps=1e-6):
    """Central differences of the net's loss with respect to every element of `array` (in place)."""
    grad = np.zeros(array.shape)
    flat, out = array.reshape(-1), grad.reshape(-1)
    for k in range(flat.size):
        x = flat[k]
        flat[k] = x + eps
        net.forward(**feeds)
        plus = net.loss
        flat[k] = x - eps
        net.forward(**feeds)
        minus = net.loss
        flat[k] = x
        out[k] = (plus - minus) / (2 * eps)
    return grad


def assert_gradients_close(analytic, numeric, what):
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), 1.0)
    worst = np.unravel_index(np.argmax(np.abs(analytic - numeric) / scale), analytic.shape)
    assert np.all(np.abs(analytic - numeric) <= 1e-5 * scale), (
        f"{what} {worst}: analytic {analytic[worst]:.8g} vs numeric {numeric[worst]:.8g}")


def test_whole_net_gradient_with_split_and_in_place(tmp_path):
    net = Net(write(tmp_path, SMALL_LENET), phase="TRAIN", seed=3, dtype="float64")
    assert any(n.lp.type == "Split" for n in net.nodes)
    assert net.blobs["conv1"] is net.steps[2].tops[0] is net.steps[2].bottoms[0]   # ReLU in place
    feeds = small_inputs(np.random.default_rng(0))
    net.forward(**feeds)
    net.clear_param_diffs()
    diffs = net.backward()
    assert_gradients_close(diffs["data"], numeric_gradient(net, feeds, feeds["data"]), "d loss / d data")
    for layer_name, blobs in net.params.items():
        for j, blob in enumerate(blobs):
            net.forward(**feeds)
            analytic = np.array(blob.diff)
            assert_gradients_close(analytic, numeric_gradient(net, feeds, blob.data), f"{layer_name} param {j}")


def test_loss_is_weighted_sum_and_outputs_are_unconsumed_tops(tmp_path):
    net = Net(write(tmp_path, SMALL_LENET), phase="TRAIN", seed=1, dtype="float64")
    out = net.forward(**small_inputs(np.random.default_rng(0)))
    assert sorted(out) == ["l2", "loss"]
    assert net.loss == pytest.approx(float(out["loss"]) + 0.5 * float(out["l2"]))


def test_a_loss_layer_without_a_top_counts_but_is_no_output(tmp_path):
    # Caffe makes the loss layer an anonymous top (AutoTopBlobs) and lists it among no outputs
    text = SMALL_LENET.replace('bottom: "label" top: "loss" }', 'bottom: "label" }')
    net = Net(write(tmp_path, text), phase="TRAIN", seed=1, dtype="float64")
    out = net.forward(**small_inputs(np.random.default_rng(0)))
    assert sorted(out) == ["l2"]
    softmax = float(net.blobs["loss (automatic top 0)"].data)
    assert softmax > 0 and net.loss == pytest.approx(softmax + 0.5 * float(out["l2"]))


def test_same_seed_same_weights(tmp_path):
    path = write(tmp_path, SMALL_LENET)
    a, b, c = Net(path, seed=7), Net(path, seed=7), Net(path, seed=8)
    np.testing.assert_array_equal(a.params["conv1"][0].data, b.params["conv1"][0].data)
    assert not np.array_equal(a.params["conv1"][0].data, c.params["conv1"][0].data)


SHARED = """
name: "shared"
layer { name: "data" type: "Input" top: "a" top: "b" top: "t"
  input_param { shape { dim: 3 dim: 4 } shape { dim: 3 dim: %d } shape { dim: 3 dim: 2 } } }
layer { name: "ipa" type: "InnerProduct" bottom: "a" top: "ya" param { name: "w" } param { name: "bias" }
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } } }
layer { name: "ipb" type: "InnerProduct" bottom: "b" top: "yb" param { name: "w" %s } param { name: "bias" }
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } } }
layer { name: "sum" type: "Eltwise" bottom: "ya" bottom: "yb" top: "y" }
layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "loss" }
"""


def test_weight_sharing_shares_one_blob_and_adds_gradients(tmp_path):
    net = Net(write(tmp_path, SHARED % (4, "")), phase="TRAIN", seed=0, dtype="float64")
    assert net.params["ipa"][0] is net.params["ipb"][0]
    assert len(net.learnable_params) == 2            # one slot per shared blob
    rng = np.random.default_rng(1)
    feeds = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal((3, 4)), "t": rng.standard_normal((3, 2))}
    net.forward(**feeds)
    net.clear_param_diffs()
    net.backward()
    w = net.params["ipa"][0]
    analytic = np.array(w.diff)
    assert_gradients_close(analytic, numeric_gradient(net, feeds, w.data), "shared weight")


def test_weight_sharing_checks_shapes_and_multipliers(tmp_path):
    with pytest.raises(NetspecError, match=r"ipb.*'w' is 2x5 here but 2x4 in 'ipa'"):
        Net(write(tmp_path, SHARED % (5, ""), "a.prototxt"))
    with pytest.raises(NetspecError, match="lr_mult 2 here but 3"):
        Net(write(tmp_path, (SHARED % (4, "lr_mult: 2")).replace('param { name: "w" }', 'param { name: "w" lr_mult: 3 }'),
                  "b.prototxt"))


def test_permissive_sharing_needs_only_the_same_count(tmp_path):
    text = """
    layer { name: "data" type: "Input" top: "a" input_param { shape { dim: 2 dim: 6 } } }
    layer { name: "ip" type: "InnerProduct" bottom: "a" top: "y" param { name: "w" }
      inner_product_param { num_output: 2 bias_term: false } }
    layer { name: "ip2" type: "InnerProduct" bottom: "y" top: "z" param { name: "w" share_mode: PERMISSIVE }
      inner_product_param { num_output: 6 bias_term: false } }
    """
    net = Net(write(tmp_path, text))
    assert net.params["ip"][0] is net.params["ip2"][0]


def spy_backward(net):
    calls = []
    for layer in net.layers:
        original = layer.backward

        def record(xp, tops, down, bottoms, _name=layer.name, _original=original):
            calls.append((_name, list(down)))
            return _original(xp, tops, down, bottoms)
        layer.backward = record
    return calls


def test_lr_mult_zero_and_no_loss_skip_backward(tmp_path):
    text = """
    layer { name: "data" type: "Input" top: "x" top: "t" input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 2 } } }
    layer { name: "frozen" type: "InnerProduct" bottom: "x" top: "h" param { lr_mult: 0 } param { lr_mult: 0 }
      inner_product_param { num_output: 4 weight_filler { type: "gaussian" } } }
    layer { name: "ip" type: "InnerProduct" bottom: "h" top: "y" inner_product_param { num_output: 2 } }
    layer { name: "side" type: "InnerProduct" bottom: "x" top: "unused" inner_product_param { num_output: 2 } }
    layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "loss" }
    """
    net = Net(write(tmp_path, text), phase="TRAIN")
    calls = spy_backward(net)
    net.forward(x=np.ones((2, 3)), t=np.zeros((2, 2)))
    before = np.array(net.params["frozen"][0].diff)
    net.backward()
    ran = [name for name, _ in calls]
    assert ran == ["loss", "ip"]                     # frozen learns nothing, side reaches no loss
    assert dict(calls)["ip"] == [False]              # nobody needs d/dh
    np.testing.assert_array_equal(net.params["frozen"][0].diff, before)
    assert [p.layer for p in net.learnable_params if p.lr_mult == 0] == ["frozen", "frozen"]


def test_propagate_down_false_cuts_the_branch(tmp_path):
    text = """
    layer { name: "data" type: "Input" top: "x" top: "t" input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 2 } } }
    layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 2 } }
    layer { name: "relu" type: "ReLU" bottom: "y" top: "r" }
    layer { name: "loss" type: "EuclideanLoss" bottom: "r" bottom: "t" top: "loss" propagate_down: false propagate_down: false }
    """
    net = Net(write(tmp_path, text), phase="TRAIN")
    calls = spy_backward(net)
    net.forward(x=np.ones((2, 3)), t=np.zeros((2, 2)))
    net.backward()
    assert calls == []       # every blob below the loss is cut, so nothing upstream runs


def test_new_input_size_replans(tmp_path):
    text = """
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 8 dim: 8 } } }
    layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
      convolution_param { num_output: 2 kernel_size: 3 stride: 2 weight_filler { type: "gaussian" } } }
    layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
    """
    path = write(tmp_path, text)
    net = Net(path, seed=5)
    assert net.blobs["pool"].shape == (1, 2, 2, 2)
    x = np.random.default_rng(0).standard_normal((3, 1, 13, 11))
    out = net.forward(data=x)["pool"]
    assert out.shape == (3, 2, 3, 3) and net.blobs["conv"].shape == (3, 2, 6, 5)
    fresh = Net(path, seed=5, inputs={"data": (3, 1, 13, 11)})
    np.testing.assert_allclose(out, fresh.forward(data=x)["pool"], rtol=1e-6)


def test_new_image_size_that_changes_weights_is_a_clear_error(tmp_path):
    net = Net(write(tmp_path, SMALL_LENET))
    net.forward(**small_inputs(np.random.default_rng(0), n=1) | {"target": np.zeros((1, 4))})   # batch size: fine
    with pytest.raises(NetspecError, match=r"ip1.*\(4, 18\)"):
        net.forward(data=np.zeros((1, 1, 8, 8)), label=np.zeros(1), target=np.zeros((1, 4)))


def test_unknown_feed_names_the_inputs(tmp_path):
    net = Net(write(tmp_path, SMALL_LENET))
    with pytest.raises(NetspecError, match="'dta' is not an input.*did you mean 'data'"):
        net.forward(dta=np.zeros((2, 1, 6, 6)))


def test_layer_error_at_run_time_names_the_layer(tmp_path):
    net = Net(write(tmp_path, SMALL_LENET), phase="TRAIN")
    feeds = small_inputs(np.random.default_rng(0))
    feeds["label"] = np.array([1.0, 9.0])
    with pytest.raises(NetspecError) as info:
        net.forward(**feeds)
    assert info.value.layer == "loss" and "net.prototxt" in str(info.value)


def test_save_then_reload_gives_identical_outputs(tmp_path):
    path = write(tmp_path, SMALL_LENET)
    net = Net(path, seed=11)
    feeds = small_inputs(np.random.default_rng(2))
    out = net.forward(**feeds)
    weights = tmp_path / "small.caffemodel"
    net.save(weights)
    saved = caffe_pb2.NetParameter.FromString(weights.read_bytes())
    conv = next(lp for lp in saved.layer if lp.name == "conv1")
    assert list(conv.blobs[0].shape.dim) == [2, 1, 3, 3] and not conv.blobs[0].diff
    assert [lp.name for lp in saved.layer] == net.layer_names
    again = Net(path, weights=str(weights), seed=99)
    for name, value in again.forward(**feeds).items():
        np.testing.assert_array_equal(value, out[name])


def legacy_caffemodel(tmp_path, weight, bias, layer_name="ip", legacy_v1=True):
    """A caffemodel as old Caffe wrote it: V1 `layers`, 4-d num/channels/height/width blobs."""
    param = caffe_pb2.NetParameter(name="old")
    layer = param.layers.add(name=layer_name) if legacy_v1 else param.layer.add(name=layer_name)
    for values, dims in ((weight, (1, 1) + weight.shape), (bias, (1, 1, 1) + bias.shape)):
        bp = layer.blobs.add(num=dims[0], channels=dims[1], height=dims[2], width=dims[3])
        bp.data.extend(values.ravel().tolist())
    path = tmp_path / "old.caffemodel"
    path.write_bytes(param.SerializeToString())
    return str(path)


IP_NET = """
layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 4 } }
"""


@pytest.mark.parametrize("legacy_v1", [True, False])
def test_loads_legacy_4d_blobs(tmp_path, legacy_v1):
    rng = np.random.default_rng(0)
    weight, bias = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    net = Net(write(tmp_path, IP_NET), weights=legacy_caffemodel(tmp_path, weight, bias, legacy_v1=legacy_v1))
    np.testing.assert_array_equal(net.params["ip"][0].data, weight)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_allclose(net.forward(x=x)["y"], x @ weight.T + bias, rtol=1e-5)


def test_weight_shape_mismatch_names_layer_and_shapes(tmp_path):
    net = Net(write(tmp_path, IP_NET))
    path = legacy_caffemodel(tmp_path, np.zeros((5, 3)), np.zeros(5))
    with pytest.raises(NetspecError, match=r"'ip'.*\(1, 1, 5, 3\).*\(4, 3\)"):
        net.copy_from(path)


def test_share_with_uses_the_train_nets_blobs(tmp_path):
    path = write(tmp_path, SMALL_LENET)
    train, test = Net(path, phase="TRAIN", seed=1), Net(path, phase="TEST", seed=2)
    test.share_with(train)
    assert test.params["ip1"][1] is train.params["ip1"][1]
    train.params["conv1"][0].data[...] = 0.25
    assert np.all(test.params["conv1"][0].data == 0.25)


def test_first_nonfinite_names_the_layer(tmp_path):
    net = Net(write(tmp_path, SMALL_LENET))
    feeds = small_inputs(np.random.default_rng(0))
    net.forward(**feeds)
    assert net.first_nonfinite() is None
    net.params["conv1"][1].data[0] = np.nan       # conv1's top is rewritten in place by relu1
    with np.errstate(all="ignore"):
        net.forward(**feeds)
        assert net.first_nonfinite() == ("conv1", "conv1")


def test_unknown_backend_is_an_error(tmp_path):
    with pytest.raises(NetspecError, match="unknown backend"):
        Net(write(tmp_path, IP_NET), backend="tpu")


@pytest.mark.skipif(gpu_available(), reason="checks the error raised where no GPU exists")
def test_cupy_without_gpu_is_a_clear_error(tmp_path):
    with pytest.raises(NetspecError, match="cupy"):
        Net(write(tmp_path, IP_NET), backend="cupy")


@pytest.mark.skipif(not gpu_available(), reason="no CuPy/GPU here")
def test_cupy_matches_numpy(tmp_path):
    path = write(tmp_path, SMALL_LENET)
    feeds = small_inputs(np.random.default_rng(0))
    cpu, gpu = Net(path, phase="TRAIN", seed=4), Net(path, phase="TRAIN", seed=4, backend="cupy")
    for name, value in cpu.forward(**feeds).items():
        np.testing.assert_allclose(gpu.forward(**feeds)[name], value, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gpu.backward()["data"], cpu.backward()["data"], rtol=1e-4, atol=1e-5)


def test_net_from_a_netparameter():
    param = text_format.Parse(IP_NET, caffe_pb2.NetParameter())
    net = Net(param)
    assert net.forward(x=np.ones((2, 3)))["y"].shape == (2, 4)


BATCHNORM = """
layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 4 dim: 3 dim: 2 dim: 2 } } }
layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x" %s }
layer { name: "scale" type: "Scale" bottom: "x" top: "x" scale_param { bias_term: true } }
"""


def test_batchnorm_statistics_are_not_learnable(tmp_path):
    net = Net(write(tmp_path, BATCHNORM % ""), phase="TRAIN")
    assert len(net.params["bn"]) == 3
    learnable = {id(p.blob) for p in net.learnable_params}
    assert not learnable & {id(b) for b in net.params["bn"]}
    assert learnable == {id(b) for b in net.params["scale"]}
    with pytest.raises(NetspecError, match="bn.*statistics"):
        Net(write(tmp_path, BATCHNORM % "param { lr_mult: 1 }", "b.prototxt"))


LENET_DEPLOY = Path(__file__).resolve().parent.parent / "models" / "lenet" / "deploy.prototxt"


@pytest.mark.skipif(not LENET_DEPLOY.exists(), reason="the model zoo's LeNet is not generated")
def test_zoo_lenet_saved_by_save_reloads_to_identical_outputs(tmp_path):
    net = Net(str(LENET_DEPLOY), seed=21)
    images = np.random.default_rng(5).uniform(0, 1, (3, 1, 28, 28))
    out = net.forward(data=images)["prob"]
    assert out.shape == (3, 10)
    np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-5)
    net.save(tmp_path / "lenet.caffemodel")
    again = Net(str(LENET_DEPLOY), weights=tmp_path / "lenet.caffemodel", seed=0)
    np.testing.assert_array_equal(again.forward(data=images)["prob"], out)


def test_inputs_get_gradients_only_with_force_backward(tmp_path):
    feeds = small_inputs(np.random.default_rng(0))
    plain = Net(write(tmp_path, SMALL_LENET.replace("force_backward: true", ""), "plain.prototxt"), phase="TRAIN")
    plain.forward(**feeds)
    assert not plain.backward()["data"].any()
    assert [s.propagate_down for s in plain.steps if s.name in ("conv1", "loss")] == [[False], [True, False]]
    forced = Net(write(tmp_path, SMALL_LENET), phase="TRAIN")
    forced.forward(**feeds)
    assert forced.backward()["data"].any()
    assert [s.propagate_down for s in forced.steps if s.name == "loss"] == [[True, False]]   # never the labels


def test_pycaffe_style_partial_runs_extra_blobs_and_output_diffs(tmp_path):
    text = "force_backward: true\n" + IP_NET + 'layer { name: "relu" type: "ReLU" bottom: "y" top: "z" }\n'
    net = Net(write(tmp_path, text), seed=0, dtype="float64")
    x = np.random.default_rng(1).standard_normal((2, 3))
    assert set(net.forward(x=x, end="ip")) == {"y"}
    out = net.forward(x=x, blobs=["y"])
    assert set(out) == {"z", "y"}
    g = np.random.default_rng(2).standard_normal((2, 4))
    w = net.params["ip"][0].data
    dx = net.backward(z=g, diffs=["y"])
    np.testing.assert_allclose(dx["x"], (g * (out["y"] > 0)) @ w)
    np.testing.assert_allclose(dx["y"], g * (out["y"] > 0))
    with pytest.raises(NetspecError, match="no layer 'rel'.*'relu'"):
        net.forward(start="rel")
    with pytest.raises(NetspecError, match="no blob 'zz'"):
        net.backward(zz=g)


def test_same_seed_same_dropout_masks(tmp_path):
    text = """
    layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 4 dim: 50 } } }
    layer { name: "drop" type: "Dropout" bottom: "x" top: "y" dropout_param { dropout_ratio: 0.5 } }
    """
    path = write(tmp_path, text)
    x = np.ones((4, 50))
    runs = [Net(path, phase="TRAIN", seed=s).forward(x=x)["y"].copy() for s in (3, 3, 4)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    assert set(np.unique(runs[0])) == {0.0, 2.0}


THRESHOLD_UNDER_A_LOSS = """
layer { name: "x" type: "Input" top: "x" top: "t" input_param { shape { dim: 2 dim: 3 } shape { dim: 2 dim: 4 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip" inner_product_param { num_output: 4 } }
layer { name: "step" type: "Threshold" bottom: "ip" top: "step" }
layer { name: "loss" type: "EuclideanLoss" bottom: "step" bottom: "t" top: "loss" }
"""


def test_a_layer_without_backward_is_a_clear_error_in_training(tmp_path, capsys):
    from netspec.cli import main
    path = write(tmp_path, THRESHOLD_UNDER_A_LOSS)
    net = Net(path, phase="TRAIN")
    net.forward(x=np.ones((2, 3)), t=np.zeros((2, 4)))
    with pytest.raises(NetspecError) as e:
        net.backward()
    assert (e.value.layer, e.value.line) == ("step", 4)
    assert "Threshold has no backward in Caffe" in e.value.message and "propagate_down: false" in e.value.hint
    assert main(["time", path, "--iterations", "1"]) == 2
    assert "net.prototxt:4: layer 'step' (Threshold)" in capsys.readouterr().err


def test_the_executor_binds_its_own_layers_and_leaves_the_graph_as_checked(tmp_path):
    net = Net(write(tmp_path, SMALL_LENET), phase="TRAIN", seed=1)
    for node, layer in zip(net.graph.nodes, net.layers):
        assert node.layer is not layer
        assert node.layer.blobs == [] and node.layer.rng is None and node.layer.param_propagate_down == []
    assert net.layers[net.layer_names.index("conv1")].blobs


def bn_scale_net(bn_in_place=True, conv=True, scale_lr=1, force_backward=True, relu=True):
    """conv -> BatchNorm -> in-place Scale (with bias) -> in-place ReLU -> InnerProduct -> loss."""
    bn_top = "c" if bn_in_place else "bn"
    x = "c" if conv else "data"
    return (("force_backward: true\n" if force_backward else "") + """
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 3 dim: 2 dim: 5 dim: 5 } shape { dim: 3 } } }
""" + ("""layer { name: "conv" type: "Convolution" bottom: "data" top: "c"
  convolution_param { num_output: 3 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.5 } } }
""" if conv else "") + f"""
layer {{ name: "bn" type: "BatchNorm" bottom: "{x}" top: "{bn_top}" }}
layer {{ name: "sc" type: "Scale" bottom: "{bn_top}" top: "{bn_top}"
  param {{ lr_mult: {scale_lr} }} param {{ lr_mult: {scale_lr} }}
  scale_param {{ bias_term: true filler {{ type: "uniform" min: 0.5 max: 2 }} bias_filler {{ type: "gaussian" std: 0.3 }} }} }}
layer {{ name: "relu" type: "ReLU" bottom: "{bn_top}" top: "{bn_top + ('' if relu else '_r')}" }}
layer {{ name: "ip" type: "InnerProduct" bottom: "{bn_top + ('' if relu else '_r')}" top: "ip"
  inner_product_param {{ num_output: 4 weight_filler {{ type: "gaussian" std: 0.5 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}
""")


def _run_once(net, feeds):
    net.clear_param_diffs()
    out = net.forward(**feeds)
    diffs = net.backward()
    return out, {k: v.copy() for k, v in diffs.items()}, [(b.data.copy(), b.diff.copy()) for blobs in net.params.values() for b in blobs]


@pytest.mark.parametrize("variant", [dict(), dict(bn_in_place=False), dict(conv=False, force_backward=False),
                                     dict(scale_lr=0, force_backward=False), dict(relu=False)])
def test_batchnorm_scale_and_relu_run_as_one_with_the_same_numbers(tmp_path, variant):
    path = write(tmp_path, bn_scale_net(**variant))
    fused, alone = (Net(path, phase="TRAIN", seed=3, dtype="float64") for _ in range(2))
    names = [s.name for s in fused.steps]
    bn, sc, relu = (fused.steps[names.index(name)] for name in ("bn", "sc", "relu"))
    assert bn.group == ([bn, sc, relu] if variant.get("relu", True) else [bn, sc]) and sc.group is bn.group
    assert relu.group is (bn.group if variant.get("relu", True) else None)
    for step in alone.steps:
        step.group = None           # the reference: each layer on its own
    rng = np.random.default_rng(0)
    feeds = {"data": rng.standard_normal((3, 2, 5, 5)) * 2 + 1, "label": np.array([0, 3, 1], float)}
    for _ in range(2):              # twice: the running statistics and the kept buffers carry over
        got, want = _run_once(fused, feeds), _run_once(alone, feeds)
    np.testing.assert_allclose(got[0]["loss"], want[0]["loss"], rtol=1e-12)
    for k in want[1]:
        np.testing.assert_allclose(got[1][k], want[1][k], rtol=1e-9, atol=1e-12)
    for (gd, gg), (wd, wg) in zip(got[2], want[2]):
        np.testing.assert_allclose(gd, wd, rtol=1e-12)          # BatchNorm's statistics too
        np.testing.assert_allclose(gg, wg, rtol=1e-9, atol=1e-12)
    if variant.get("scale_lr") == 0:
        assert not fused.params["sc"][0].diff.any()


def test_batchnorm_scale_and_relu_run_as_one_have_the_numeric_gradient(tmp_path):
    net = Net(write(tmp_path, bn_scale_net()), phase="TRAIN", seed=3, dtype="float64")
    rng = np.random.default_rng(1)
    feeds = {"data": rng.standard_normal((3, 2, 5, 5)), "label": np.array([2, 0, 1], float)}
    net.forward(**feeds)
    net.clear_param_diffs()
    diffs = net.backward()
    assert_gradients_close(diffs["data"], numeric_gradient(net, feeds, feeds["data"]), "d loss / d data")
    for layer_name in ("conv", "sc"):
        for j, blob in enumerate(net.params[layer_name]):
            net.forward(**feeds)
            analytic = np.array(blob.diff)
            assert_gradients_close(analytic, numeric_gradient(net, feeds, blob.data), f"{layer_name} param {j}")


def test_a_run_that_stops_inside_the_group_sees_each_layers_own_top(tmp_path):
    net = Net(write(tmp_path, bn_scale_net(bn_in_place=False)), phase="TRAIN", seed=3, dtype="float64")
    rng = np.random.default_rng(2)
    feeds = {"data": rng.standard_normal((3, 2, 5, 5)) * 3 + 2, "label": np.array([2, 0, 1], float)}
    top = net.forward(end="bn", **feeds)["bn"].copy()
    np.testing.assert_allclose(top.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(top.var(axis=(0, 2, 3)), 1, rtol=1e-3)      # eps 1e-5 under the variance
    gamma, beta = (b.data for b in net.params["sc"])
    scaled = net.forward(end="sc", **feeds)["bn"].copy()
    np.testing.assert_allclose(scaled, top * gamma[:, None, None] + beta[:, None, None], rtol=1e-12)
    np.testing.assert_allclose(net.forward(start="relu", end="relu")["bn"], np.maximum(scaled, 0))
    assert scaled.min() < 0
