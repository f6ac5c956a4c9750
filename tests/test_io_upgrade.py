"""Legacy nets and solvers upgrade as Caffe's upgrade_proto.cpp does, with warnings."""
import pytest

from netspec import caffe_pb2 as pb
from netspec.cli import main
from netspec.errors import NetspecError
from netspec.io import parse_net, parse_net_text, read_caffemodel, read_net, read_solver, write_message

from io_nets import DATA


def test_v1_vgg_with_input_dim():
    source = read_net(DATA / "vgg_v1_deploy.prototxt")
    net = source.param
    assert len(net.layers) == 0 and len(net.input) == 0 and len(net.input_dim) == 0
    assert [l.type for l in net.layer] == ["Input", "Convolution", "ReLU", "Convolution", "ReLU",
                                           "Pooling", "InnerProduct", "ReLU", "Dropout",
                                           "InnerProduct", "Softmax"]
    data = net.layer[0]
    assert data.name == "input" and list(data.top) == ["data"]
    assert list(data.input_param.shape[0].dim) == [10, 3, 224, 224]
    conv = net.layer[1]
    assert [(p.lr_mult, p.decay_mult) for p in conv.param] == [(1, 1), (2, 0)]
    assert list(conv.convolution_param.pad) == [1] and conv.convolution_param.num_output == 64
    assert net.layer[5].pooling_param.pool == pb.PoolingParameter.MAX
    assert net.layer[8].dropout_param.dropout_ratio == pytest.approx(0.5)
    assert source.lines[0] == 3 and source.lines[1] == 8
    joined = "\n".join(source.warnings)
    assert "10 legacy V1 layer(s)" in joined and "Input layer 'input'" in joined


def test_v0_with_padding_layer():
    source = read_net(DATA / "v0_padding.prototxt")
    net = source.param
    names = [l.name for l in net.layer]
    assert names == ["input", "conv1", "relu1", "pool1", "norm1", "fc", "prob"]   # pad1 folded
    conv = net.layer[1]
    assert conv.type == "Convolution" and list(conv.bottom) == ["data"]
    assert list(conv.convolution_param.pad) == [2]
    assert list(conv.convolution_param.kernel_size) == [5]
    assert conv.convolution_param.weight_filler.std == pytest.approx(0.01)
    assert [(p.lr_mult, p.decay_mult) for p in conv.param] == [(1, 1), (2, 0)]
    pool = net.layer[3]
    assert pool.type == "Pooling" and pool.pooling_param.kernel_size == 3
    assert pool.pooling_param.stride == 2
    lrn = net.layer[4]
    assert lrn.type == "LRN" and lrn.lrn_param.alpha == pytest.approx(1e-4)
    assert net.layer[5].inner_product_param.num_output == 10
    assert any("padding layer 'pad1' (pad 2) folded into 'conv1'" in w for w in source.warnings)
    assert source.lines[1] == 17


def test_v0_padding_feeding_a_relu_is_an_error():
    text = ('input: "d" input_dim: 1 input_dim: 1 input_dim: 4 input_dim: 4\n'
            'layers { layer { name: "p" type: "padding" pad: 1 } bottom: "d" top: "p" }\n'
            'layers { layer { name: "r" type: "relu" } bottom: "p" top: "r" }\n')
    with pytest.raises(NetspecError, match="feeding a 'relu' layer") as e:
        parse_net_text(text, "v0.prototxt")
    assert e.value.line == 3


def test_mixed_layer_and_layers_kept_in_source_order():
    text = ('layer { name: "a" type: "Input" top: "x" input_param { shape { dim: 1 } } }\n'
            'layers { name: "b" type: RELU bottom: "x" top: "x" }\n'
            'layer { name: "c" type: "Sigmoid" bottom: "x" top: "y" }\n'
            'layers { name: "d" type: SOFTMAX_LOSS bottom: "y" bottom: "x" top: "l" }\n')
    source = parse_net_text(text, "mixed.prototxt")
    assert [(l.name, l.type) for l in source.param.layer] == [
        ("a", "Input"), ("b", "ReLU"), ("c", "Sigmoid"), ("d", "SoftmaxWithLoss")]
    assert source.lines == [1, 2, 3, 4]
    assert len(source.warnings) == 2
    assert source.warnings[0].startswith("mixed.prototxt:2: layer 'b'")
    assert "layers { type: SOFTMAX_LOSS }" in source.warnings[1]


@pytest.mark.parametrize("value, mode", [("true", "CEIL"), ("false", "FLOOR"), ("1", "CEIL")])
def test_ceil_mode_dialect(value, mode):
    text = ('name: "n"\nlayer {\n  name: "pool1"\n  type: "Pooling"\n'
            f'  pooling_param {{ pool: MAX kernel_size: 3 stride: 2 ceil_mode: {value} }}\n}}\n')
    source = parse_net_text(text, "fork.prototxt")
    pooling = source.param.layer[0].pooling_param
    assert pooling.round_mode == pb.PoolingParameter.RoundMode.Value(mode)
    assert pooling.kernel_size == 3 and pooling.stride == 2
    assert source.warnings == [f"fork.prototxt:5: layer 'pool1': Pooling 'ceil_mode: {value}' is a "
                               f"fork dialect that BVLC Caffe's schema rejects; read as "
                               f"'round_mode: {mode}'"]


def test_ceil_mode_in_yaml_and_conflicts():
    yaml_text = "layer:\n- name: p\n  type: Pooling\n  pooling_param: {kernel_size: 2, ceil_mode: false}\n"
    source = parse_net(yaml_text, "yaml", "fork.yaml")
    assert source.param.layer[0].pooling_param.round_mode == pb.PoolingParameter.FLOOR
    assert source.warnings[0].startswith("fork.yaml:4: layer 'p':")
    with pytest.raises(NetspecError, match="both ceil_mode and round_mode"):
        parse_net_text('layer { pooling_param { ceil_mode: true round_mode: FLOOR } }')
    with pytest.raises(NetspecError, match="expected true or false"):
        parse_net_text('layer { pooling_param { ceil_mode: maybe } }')


def test_legacy_transform_fields_move_to_transform_param():
    text = ('layers { name: "d" type: DATA top: "data" top: "label"\n'
            '  data_param { source: "db" batch_size: 4 scale: 0.5 mean_file: "m.binaryproto" '
            'crop_size: 3 mirror: true } }\n')
    source = parse_net_text(text)
    layer = source.param.layer[0]
    assert layer.type == "Data"
    assert layer.transform_param.scale == 0.5 and layer.transform_param.mean_file == "m.binaryproto"
    assert layer.transform_param.crop_size == 3 and layer.transform_param.mirror
    assert not layer.data_param.HasField("scale") and layer.data_param.batch_size == 4
    assert any("transform_param" in w for w in source.warnings)


def test_batch_norm_param_specs_zeroed():
    text = ('layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x"\n'
            '  param { lr_mult: 0 } param { lr_mult: 0 } param { lr_mult: 1 } }\n'
            'layer { name: "bn2" type: "BatchNorm" bottom: "x" top: "x" }\n')
    source = parse_net_text(text)
    specs = source.param.layer[0].param
    assert [(s.lr_mult, s.decay_mult) for s in specs] == [(0, 0)] * 3
    assert len(source.param.layer[1].param) == 0
    assert len(source.warnings) == 1 and "'bn'" in source.warnings[0]


def test_input_shape_upgrade_and_bad_input_dim():
    source = parse_net_text('input: "a" input_shape { dim: 2 dim: 5 }\ninput: "b" input_shape { dim: 3 }\n')
    layer = source.param.layer[0]
    assert list(layer.top) == ["a", "b"]
    assert [list(s.dim) for s in layer.input_param.shape] == [[2, 5], [3]]
    with pytest.raises(NetspecError, match="found 3 input_dim values for 1 input") as e:
        parse_net_text('\ninput: "a" input_dim: 1 input_dim: 2 input_dim: 3', "in.prototxt")
    assert e.value.line == 2


def test_solver_type_upgrade():
    warnings = []
    solver = read_solver(DATA / "lenet_solver.prototxt", warnings=warnings)
    assert solver.type == "Nesterov" and not solver.HasField("solver_type")
    assert solver.base_lr == pytest.approx(0.01) and list(solver.test_iter) == [100]
    assert warnings == [f"{DATA / 'lenet_solver.prototxt'}: legacy 'solver_type: NESTEROV' "
                        "upgraded to 'type: \"Nesterov\"'"]


def test_solver_with_both_types_and_inline_v1_net(tmp_path):
    path = tmp_path / "s.prototxt"
    path.write_text('type: "SGD"\nsolver_type: ADAM\n')
    with pytest.raises(NetspecError, match="both solver_type"):
        read_solver(path)
    path.write_text('net_param { layers { name: "r" type: RELU } }\nbase_lr: 0.1\n')
    solver = read_solver(path)
    assert solver.net_param.layer[0].type == "ReLU" and len(solver.net_param.layers) == 0


def test_v1_caffemodel_with_blobs(tmp_path):
    legacy = pb.NetParameter(name="old")
    v1 = legacy.layers.add(name="fc", type=pb.V1LayerParameter.INNER_PRODUCT, bottom=["x"], top=["y"])
    v1.blobs.add(data=[1.0, 2.0]).shape.dim.extend([1, 2])
    v1.blobs_lr.extend([1, 2])
    v1.param.extend(["shared_w"])
    write_message(legacy, tmp_path / "old.caffemodel")
    net = read_caffemodel(tmp_path / "old.caffemodel")
    assert net.layer[0].type == "InnerProduct" and list(net.layer[0].blobs[0].data) == [1, 2]
    assert net.layer[0].param[0].name == "shared_w" and net.layer[0].param[1].lr_mult == 2


def test_upgrade_command(tmp_path, capsys):
    out = tmp_path / "vgg.prototxt"
    assert main(["upgrade", str(DATA / "vgg_v1_deploy.prototxt"), str(out)]) == 0
    captured = capsys.readouterr()
    assert "upgraded" in captured.out and "warning:" in captured.err
    again = read_net(out)
    assert again.warnings == [] and again.param == read_net(DATA / "vgg_v1_deploy.prototxt").param
    assert "layers {" not in out.read_text() and 'type: "Convolution"' in out.read_text()
    solver_out = tmp_path / "solver.yaml"
    assert main(["upgrade", str(DATA / "lenet_solver.prototxt"), str(solver_out)]) == 0
    assert "type: Nesterov" in solver_out.read_text()
    assert main(["upgrade", "--kind", "net", str(out), str(out)]) == 0
    assert "already current" in capsys.readouterr().out
