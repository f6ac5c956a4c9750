"""Constructs met in published Caffe files (model zoo, examples, forks), each in a small net."""
import numpy as np
import pytest
from google.protobuf import text_format

from netspec import caffe_pb2
from netspec.errors import LayerError, NetspecError
from netspec.io import parse_net
from netspec.layers import create
from netspec.layers.base import ShapeContext

FORK_LAYER = '''input: "data"
input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer {
  name: "conv4_3_norm"
  type: "Normalize"
  bottom: "data"
  top: "conv4_3_norm"
  norm_param { across_spatial: false }
}
'''


@pytest.mark.parametrize("fmt, text", [
    ("text", FORK_LAYER),
    ("yaml", "layer:\n  - name: conv4_3_norm\n    type: Normalize\n"
             "    norm_param: {across_spatial: false}\n"),
    ("json", '{"layer": [{"name": "conv4_3_norm", "type": "Normalize", '
             '"norm_param": {"across_spatial": false}}]}'),
])
def test_param_of_a_fork_layer_type_reads_in_every_format(fmt, text):
    net = parse_net(text, fmt, "ssd.prototxt").param
    assert net.layer[-1].norm_param.across_spatial is False


def test_fork_field_nested_in_transform_param_reads():
    # SSD's AnnotatedData adds resize_param to transform_param
    text = ('layer { name: "data" type: "AnnotatedData" top: "data"\n'
            '  transform_param { mirror: true resize_param { height: 300 } } }\n')
    assert parse_net(text, "text", "train.prototxt").param.layer[0].transform_param.resize_param.height == 300


UNKNOWN_PARAM = """input: "data"
input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "odd" type: "Frobnicate" bottom: "data" top: "odd"
  frobnicate_param { level: 3 inner { a: 1 } } }
layer { name: "after" type: "ReLU" bottom: "odd" top: "after" }
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" pooling_param { kernel_size: 2 stride: 2 } }
"""


UNKNOWN_PARAM_YAML = """input: [data]
input_shape: [{dim: [1, 3, 8, 8]}]
layer:
  - {name: odd, type: Frobnicate, bottom: [data], top: [odd],
     frobnicate_param: {level: 3, inner: {a: 1}}}
  - {name: after, type: ReLU, bottom: [odd], top: [after]}
  - {name: pool, type: Pooling, bottom: [data], top: [pool], pooling_param: {kernel_size: 2, stride: 2}}
"""

UNKNOWN_PARAM_JSON = """{"input": ["data"], "input_shape": [{"dim": [1, 3, 8, 8]}],
 "layer": [
  {"name": "odd", "type": "Frobnicate", "bottom": ["data"], "top": ["odd"],
   "frobnicate_param": {"level": 3, "inner": {"a": 1}}},
  {"name": "after", "type": "ReLU", "bottom": ["odd"], "top": ["after"]},
  {"name": "pool", "type": "Pooling", "bottom": ["data"], "top": ["pool"],
   "pooling_param": {"kernel_size": 2, "stride": 2}}]}
"""


@pytest.mark.parametrize("fmt, text, line", [("text", UNKNOWN_PARAM, 4), ("yaml", UNKNOWN_PARAM_YAML, 5),
                                             ("json", UNKNOWN_PARAM_JSON, 4)])
def test_an_unknown_param_block_is_an_error_on_its_layer_only(fmt, text, line):
    from netspec.graph import build_graph
    from netspec.shapes import infer_shapes
    source = parse_net(text, fmt, "fork." + fmt)
    set_aside = [(w.layer, w.field_name, w.line) for w in source.warnings if hasattr(w, "field_name")]
    assert set_aside == [("odd", "frobnicate_param", line)]
    result = infer_shapes(build_graph(source))
    errors = [(e.layer, e.message) for e in result.errors]
    assert ("odd", "unknown layer type 'Frobnicate' (did you mean 'Concat' or 'Filter'?)") in errors
    assert any(layer == "odd" and "'frobnicate_param' is in no schema" in m for layer, m in errors)
    assert {e.layer for e in result.errors} == {"odd"}
    assert result.layer("pool").top_shapes == [(1, 3, 4, 4)]       # independent layers still checked
    assert result.layer("after").top_shapes == [None]


@pytest.mark.parametrize("fmt, text", [
    ("text", 'layer { name: "c" type: "Convolution" convolution_parm { } }'),
    ("yaml", "layer:\n  - {name: c, type: Convolution, convolution_parm: {}}\n"),
    ("json", '{"layer": [{"name": "c", "type": "Convolution", "convolution_parm": {}}]}'),
])
def test_misspelt_param_of_a_known_type_is_still_a_field_error(fmt, text):
    with pytest.raises(NetspecError) as e:
        parse_net(text, fmt, "a")
    assert "found unknown field 'convolution_parm'" in str(e.value)
    assert "did you mean 'convolution_param'" in str(e.value)


@pytest.mark.parametrize("fmt, text", [
    ("text", 'layer { name: "rbm" type: "RBMInnerProduct" rbm_inner_product_param { forward_is_update: true } }'),
    ("yaml", "layer:\n  - {name: rbm, type: RBMInnerProduct, rbm_inner_product_param: {forward_is_update: true}}\n"),
])
def test_a_block_named_after_its_own_unknown_type_is_set_aside_though_close_to_a_known_name(fmt, text):
    # rbm_inner_product_param is near inner_product_param, but RBMInnerProduct names it as its own
    source = parse_net(text, fmt, "rbm." + fmt)
    assert [w.field_name for w in source.warnings if hasattr(w, "field_name")] == ["rbm_inner_product_param"]


def test_a_filler_type_is_not_taken_for_a_layer_type():
    with pytest.raises(NetspecError) as e:
        parse_net("layer:\n  - name: c\n    type: Convolution\n    convolution_param:\n"
                  "      weight_filler: {type: xavier, sdt: 0.1}\n", "yaml", "a.yaml")
    assert "found unknown field 'sdt' in FillerParameter" in str(e.value)
    assert "did you mean 'std'?" in str(e.value)


def test_legacy_transform_note_names_train_and_test_twins_once():
    # V1 data layers of one name, one per phase, with scale in data_param (as old examples)
    twin = ('layers {{ name: "pair_data" type: DATA top: "d" top: "sim" '
            'data_param {{ source: "db" scale: 0.5 batch_size: 2 }} include: {{ phase: {} }} }}\n')
    source = parse_net(twin.format("TRAIN") + twin.format("TEST"), "text", "siamese.prototxt")
    moved = [w for w in source.warnings if "transformation fields" in w]
    assert len(moved) == 1 and moved[0].count("'pair_data'") == 1
    assert [layer.transform_param.scale for layer in source.param.layer] == [0.5, 0.5]


@pytest.mark.parametrize("mean", [None, b"not a blob"])
def test_a_bad_mean_file_is_named(tmp_path, mean):
    # as models/finetune_flickr_style: ImageData with a mean_file that is missing or broken
    from PIL import Image
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "0.png")
    (tmp_path / "list.txt").write_text(f"{tmp_path / '0.png'} 0\n")
    mean_file = tmp_path / "imagenet_mean.binaryproto"
    if mean is not None:
        mean_file.write_bytes(mean)
    lp = text_format.Parse(f'name: "data" type: "ImageData" top: "data" top: "label" '
                           f'transform_param {{ mean_file: "{mean_file}" }} '
                           f'image_data_param {{ source: "{tmp_path / "list.txt"}" batch_size: 1 }}',
                           caffe_pb2.LayerParameter())
    with pytest.raises(LayerError) as e:
        layer = create(lp, caffe_pb2.TEST)
        layer.infer([], ShapeContext(source=layer.read_source()))
    if mean is None:    # missing: a MissingSource, which the shape pass turns into a warning
        assert e.value.message == f"transform_param.mean_file '{mean_file}' does not exist"
    else:
        assert e.value.message.startswith(f"{mean_file}: ")


def test_v1_window_data_keeps_its_crop_size_through_the_upgrade():
    # as examples/finetune_pascal_detection: the upgrade moves crop_size to transform_param
    from netspec.graph import build_graph
    from netspec.shapes import infer_shapes
    text = ('layers { name: "data" type: WINDOW_DATA top: "data" top: "label" window_data_param { '
            'source: "windows.txt" batch_size: 4 crop_size: 9 mirror: true context_pad: 16 } }')
    source = parse_net(text, "text", "pascal_finetune_train.prototxt")
    assert source.param.layer[0].transform_param.crop_size == 9
    result = infer_shapes(build_graph(source))
    assert result.blob_shapes["data"] == (4, 3, 9, 9) and result.blob_shapes["label"] == (4,)
