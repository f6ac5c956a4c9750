"""The NetSpec DSL: naming, parameter routing, enums, errors, text, and the zoo's block helpers (models/blocks.py)."""
import pytest

import netspec
import importlib.util
from pathlib import Path

from netspec import NetSpec, caffe_pb2, layers as L, params as P
from netspec.errors import NetspecError
from netspec.io import parse_net_text
from netspec.report import check

_spec = importlib.util.spec_from_file_location("zoo_blocks", Path(__file__).parents[1] / "models" / "blocks.py")
blocks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(blocks)

# Caffe's examples/mnist/lenet.prototxt, less the fillers, with an Input layer.
LENET = """
name: "LeNet"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 64 dim: 1 dim: 28 dim: 28 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        param { lr_mult: 1 } param { lr_mult: 2 }
        convolution_param { num_output: 20 kernel_size: 5 stride: 1 } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        param { lr_mult: 1 } param { lr_mult: 2 }
        convolution_param { num_output: 50 kernel_size: 5 stride: 1 } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
        param { lr_mult: 1 } param { lr_mult: 2 } inner_product_param { num_output: 500 } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        param { lr_mult: 1 } param { lr_mult: 2 } inner_product_param { num_output: 10 } }
layer { name: "prob" type: "Softmax" bottom: "ip2" top: "prob" }
"""


def lenet_spec():
    lr = [dict(lr_mult=1), dict(lr_mult=2)]
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[64, 1, 28, 28]))
    n.conv1 = L.Convolution(n.data, num_output=20, kernel_size=5, stride=1, param=lr)
    n.pool1 = L.Pooling(n.conv1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.conv2 = L.Convolution(n.pool1, num_output=50, kernel_size=5, stride=1, param=lr)
    n.pool2 = L.Pooling(n.conv2, pool="MAX", kernel_size=2, stride=2)
    n.ip1 = L.InnerProduct(n.pool2, num_output=500, param=lr)
    n.relu1 = L.ReLU(n.ip1, in_place=True)
    n.ip2 = L.InnerProduct(n.relu1, num_output=10, param=lr)
    n.prob = L.Softmax(n.ip2)
    return n


def test_lenet_matches_caffes_text():
    assert lenet_spec().to_proto("LeNet") == parse_net_text(LENET).param


def test_text_round_trips():
    net = lenet_spec().to_proto()
    assert parse_net_text(str(net)).param == net


def test_the_package_exports_the_dsl():
    from netspec import layers
    assert netspec.NetSpec is NetSpec and netspec.params is P
    assert layers.Convolution.__name__ == "Convolution"


def test_names_come_from_attributes_and_in_place_keeps_the_bottom():
    net = lenet_spec().to_proto()
    relu = net.layer[6]
    assert (relu.name, list(relu.bottom), list(relu.top)) == ("relu1", ["ip1"], ["ip1"])
    assert list(net.layer[7].bottom) == ["ip1"]          # the in-place top is the blob ip1


def test_unassigned_tops_get_type_numbered_names():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    n.out = L.ReLU(L.Convolution(L.Convolution(n.data, num_output=2, kernel_size=1),
                                 num_output=2, kernel_size=1))
    names = [(lp.name, list(lp.top)) for lp in n.to_proto().layer]
    assert names == [("data", ["data"]), ("Convolution1", ["Convolution1"]),
                     ("Convolution2", ["Convolution2"]), ("out", ["out"])]


def test_keywords_go_to_the_types_own_message_then_to_the_layer():
    n = NetSpec()
    n.data, n.label = L.Data(source="train_lmdb", batch_size=64, backend="LMDB", ntop=2,
                             include=dict(phase=caffe_pb2.TRAIN),
                             transform_param=dict(scale=0.00390625, mean_value=[104, 117]))
    n.ip = L.InnerProduct(n.data, num_output=10, weight_filler=dict(type="xavier"),
                          param=[dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)])
    n.loss = L.SoftmaxWithLoss(n.ip, n.label, ignore_label=-1, normalization="BATCH_SIZE",
                               axis=1, loss_weight=2, propagate_down=[True, False])
    data, ip, loss = n.to_proto().layer
    assert list(data.top) == ["data", "label"]
    assert data.data_param.backend == caffe_pb2.DataParameter.LMDB
    assert data.data_param.batch_size == 64 and data.include[0].phase == caffe_pb2.TRAIN
    assert list(data.transform_param.mean_value) == [104, 117]
    assert ip.inner_product_param.weight_filler.type == "xavier"
    assert [(p.lr_mult, p.decay_mult) for p in ip.param] == [(1, 1), (2, 0)]
    assert loss.loss_param.ignore_label == -1 and loss.softmax_param.axis == 1
    assert loss.loss_param.normalization == caffe_pb2.LossParameter.BATCH_SIZE
    assert list(loss.loss_weight) == [2] and list(loss.propagate_down) == [True, False]


def test_repeated_fields_take_a_scalar_or_a_list():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    n.a = L.Convolution(n.data, num_output=4, kernel_size=3)
    n.b = L.Convolution(n.data, num_output=4, kernel_size=[3, 1], pad=[1, 0])
    _, a, b = n.to_proto().layer
    assert list(a.convolution_param.kernel_size) == [3]
    assert list(b.convolution_param.kernel_size) == [3, 1] and list(b.convolution_param.pad) == [1, 0]


def test_enums_by_value_by_name_and_through_params():
    assert P.Pooling.MAX == caffe_pb2.PoolingParameter.MAX
    assert P.Eltwise.SUM == caffe_pb2.EltwiseParameter.SUM and P.TEST == caffe_pb2.TEST
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 4, 4]))
    n.p = L.Pooling(n.data, pool="AVE", kernel_size=2, include=dict(phase="TEST"))
    layer = n.to_proto().layer[1]
    assert layer.pooling_param.pool == caffe_pb2.PoolingParameter.AVE
    assert layer.include[0].phase == caffe_pb2.TEST


def test_unknown_parameter_fails_at_the_call_with_the_closest_names():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 4, 4]))
    with pytest.raises(NetspecError, match="unknown parameter 'kernal_size'.*'kernel_size'"):
        L.Convolution(n.data, kernal_size=3, num_output=1)
    with pytest.raises(NetspecError, match="no field 'tpye'.*'type'"):
        L.Convolution(n.data, kernel_size=3, num_output=1, weight_filler=dict(tpye="xavier"))
    with pytest.raises(NetspecError, match="'MAXIMUM' is not a PoolMethod.*'MAX'"):
        L.Pooling(n.data, pool="MAXIMUM", kernel_size=2)
    with pytest.raises(NetspecError, match="7 is not a PoolMethod"):
        L.Pooling(n.data, pool=7, kernel_size=2)
    with pytest.raises(NetspecError, match="num_output: cannot take 'ten'"):
        L.InnerProduct(n.data, num_output="ten")


def test_unknown_type_and_message_names_suggest_the_closest():
    with pytest.raises(NetspecError, match="unknown layer type 'Convolutoin'.*'Convolution'"):
        L.Convolutoin
    with pytest.raises(NetspecError, match="no parameter message 'Poolling'.*'Pooling'"):
        P.Poolling
    n = NetSpec()
    n.conv1 = L.Input(shape=dict(dim=[1]))
    with pytest.raises(NetspecError, match="no blob 'conv2'.*'conv1'"):
        n.conv2


def test_bottoms_must_be_blobs_of_the_spec():
    with pytest.raises(NetspecError, match="bottom 0 is 'data', not a blob"):
        L.ReLU("data")


def test_several_tops_go_unpacked_or_named():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 4, 2, 2]))
    with pytest.raises(NetspecError, match="unpack them"):
        n.halves = L.Slice(n.data, ntop=2)
    n.a, n.b = L.Slice(n.data, ntop=2, axis=1)
    n.both = L.Slice(n.data, top=["c", "d"], slice_point=[1])
    n.sum = L.Eltwise(n.a, n.b)
    layers = n.to_proto().layer
    assert [list(lp.top) for lp in layers] == [["data"], ["a", "b"], ["c", "d"], ["sum"]]
    assert layers[2].name == "both"
    with pytest.raises(NetspecError, match="ntop=3 but top names"):
        L.Slice(n.data, ntop=3, top=["x", "y"])


def test_a_layer_without_tops_is_assigned_as_it_is():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 4]))
    n.silence = L.Silence(n.data, ntop=0)
    layers = n.to_proto().layer
    assert (layers[1].name, list(layers[1].bottom), list(layers[1].top)) == ("silence", ["data"], [])


def test_layers_of_two_phases_may_write_the_same_blobs():
    n = NetSpec()
    n.data, n.label = L.Data(name="mnist", top=["data", "label"], source="train",
                             include=dict(phase="TRAIN"))
    n.test_data = L.Data(name="mnist", top=["data", "label"], source="test",
                         include=dict(phase="TEST"))
    n.loss = L.SoftmaxWithLoss(n.data, n.label)
    train, test, loss = n.to_proto().layer
    assert train.name == test.name == "mnist" and list(test.top) == ["data", "label"]
    assert list(loss.bottom) == ["data", "label"]


# -- block helpers ---------------------------------------------------------------------------

def spec_with_input(shape):
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=list(shape)))
    return n


def layer_names(n):
    return [lp.name for lp in n.to_proto().layer]


def test_inception_module_follows_bvlc_googlenet():
    n = spec_with_input((1, 192, 28, 28))
    out = blocks.inception(n, n.data, "inception_3a", 64, 96, 128, 16, 32, 32)
    names = layer_names(n)[1:]
    suffixes = ["1x1", "relu_1x1", "3x3_reduce", "relu_3x3_reduce", "3x3", "relu_3x3",
                "5x5_reduce", "relu_5x5_reduce", "5x5", "relu_5x5", "pool", "pool_proj",
                "relu_pool_proj", "output"]
    assert names == [f"inception_3a/{s}" for s in suffixes]
    concat = n.to_proto().layer[-1]
    assert list(concat.bottom) == ["inception_3a/1x1", "inception_3a/3x3", "inception_3a/5x5",
                                   "inception_3a/pool_proj"]
    layers = {lp.name: lp for lp in n.to_proto().layer}
    assert layers["inception_3a/5x5"].convolution_param.pad == [2]
    assert layers["inception_3a/pool"].pooling_param.stride == 1
    assert out is n["inception_3a/output"]


def test_bottleneck_follows_kaiminghe_names_and_projects_on_request():
    n = spec_with_input((1, 256, 56, 56))
    blocks.bottleneck(n, n.data, "3a", 128, stride=2, project=True)
    names = layer_names(n)[1:]
    assert names[:3] == ["res3a_branch1", "bn3a_branch1", "scale3a_branch1"]
    assert names[3:7] == ["res3a_branch2a", "bn3a_branch2a", "scale3a_branch2a",
                          "res3a_branch2a_relu"]
    assert names[-2:] == ["res3a", "res3a_relu"]
    layers = {lp.name: lp for lp in n.to_proto().layer}
    assert list(layers["res3a"].bottom) == ["res3a_branch1", "res3a_branch2c"]
    assert layers["res3a_branch2a"].convolution_param.stride == [2]
    assert layers["res3a_branch2c"].convolution_param.num_output == 512
    assert not layers["res3a_branch2a"].convolution_param.bias_term
    assert "res3a_branch2c_relu" not in layers        # no ReLU before the sum
    identity = spec_with_input((1, 256, 56, 56))
    blocks.bottleneck(identity, identity.data, "2b", 64)
    assert list({lp.name: lp for lp in identity.to_proto().layer}["res2b"].bottom) == \
        ["data", "res2b_branch2c"]


def test_basic_block_and_preact_unit_layouts():
    n = spec_with_input((1, 64, 56, 56))
    blocks.basic_block(n, n.data, "2a", 64)
    convs = [lp for lp in n.to_proto().layer if lp.type == "Convolution"]
    assert [c.name for c in convs] == ["res2a_branch2a", "res2a_branch2b"]
    assert all(c.convolution_param.kernel_size == [3] for c in convs)

    p = spec_with_input((1, 256, 56, 56))
    blocks.preact_unit(p, p.data, "3a", 128, stride=2, project=True)
    layers = p.to_proto().layer
    assert [lp.type for lp in layers[1:4]] == ["BatchNorm", "Scale", "ReLU"]   # activation first
    by_name = {lp.name: lp for lp in layers}
    assert list(by_name["res3a_branch1"].bottom) == ["res3a_preact"]
    assert by_name["res3a_branch2b"].convolution_param.stride == [2]
    assert layers[-1].type == "Eltwise"                                        # nothing after the sum


def test_helpers_reject_unknown_parameters_too():
    n = spec_with_input((1, 3, 8, 8))
    with pytest.raises(NetspecError, match="did you mean 'weight_filler'"):
        blocks.conv_bn(n, n.data, "c", 8, 3, weight_filer=dict(type="msra"))


def test_block_outputs_have_the_papers_shapes():
    """A NetSpec goes straight to netspec.check: the helpers' outputs, shape by shape."""
    n = spec_with_input((1, 192, 28, 28))
    blocks.inception(n, n.data, "inception_3a", 64, 96, 128, 16, 32, 32)    # 64+128+32+32
    blocks.bottleneck(n, n["inception_3a/output"], "3a", 128, stride=2, project=True)
    blocks.bottleneck(n, n.res3a, "3b", 128)
    blocks.basic_block(n, n.res3b, "4a", 256, stride=2, project=True)
    blocks.preact_unit(n, n.res4a, "5a", 512, stride=2, project=True)
    blocks.inception_bn(n, n.res5a, "inception_x", 0, 128, 160, 64, 96, "max", 0, stride=2)
    report = check(n)
    assert report.ok, [str(e) for e in report.errors]
    assert report.shape("inception_3a/output") == (1, 256, 28, 28)
    assert report.shape("res3a") == (1, 512, 14, 14) and report.shape("res3b") == (1, 512, 14, 14)
    assert report.shape("res4a") == (1, 256, 7, 7)
    assert report.shape("res5a") == (1, 2048, 4, 4)
    assert report.shape("inception_x/output") == (1, 160 + 96 + 2048, 2, 2)
