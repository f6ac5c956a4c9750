"""Unknown dimensions (None, `?`) through the shape pass, as ONNX shape inference has them, and
data layers shaped from the net's parameters when their source is missing."""
import glob
import json

import pytest

import netspec
from netspec.graph import build_graph
from netspec.io import parse_net_text
from netspec.shapes import infer_shapes

MISSING = "no/such/place"


def run(text, phase="TEST"):
    return infer_shapes(build_graph(parse_net_text(text, "net.prototxt"), phase=phase))


def data(transform="", param=f'data_param {{ source: "{MISSING}" batch_size: 10 }}', kind="Data"):
    return (f'layer {{ name: "data" type: "{kind}" top: "data" top: "label" '
            f'transform_param {{ {transform} }} {param} }}\n')


def layer(name, kind, bottoms, params="", tops=None):
    b = " ".join(f'bottom: "{x}"' for x in bottoms.split())
    t = " ".join(f'top: "{x}"' for x in (tops or name).split())
    return f'layer {{ name: "{name}" type: "{kind}" {b} {t} {params} }}\n'


def conv(name, bottom, n, k, s=1, p=0):
    return layer(name, "Convolution", bottom,
                 f"convolution_param {{ num_output: {n} kernel_size: {k} stride: {s} pad: {p} }}")


def test_alexnet_conv1_of_an_unknown_batch():
    r = run(data("crop_size: 227 mean_value: 104 mean_value: 117 mean_value: 123") + conv("conv1", "data", 96, 11, 4))
    assert r.blob_shapes["data"] == (10, 3, 227, 227)
    r = run(data("crop_size: 227 force_color: true").replace("batch_size: 10", "batch_size: 10")
            + conv("conv1", "data", 96, 11, 4))
    assert r.blob_shapes["conv1"] == (10, 96, 55, 55)


def test_an_unknown_channel_count_still_gives_spatial_sizes_and_the_rest_passes_through():
    net = (data("crop_size: 227") + conv("conv1", "data", 96, 11, 4) + layer("relu1", "ReLU", "conv1", tops="conv1")
           + layer("pool1", "Pooling", "conv1", "pooling_param { pool: MAX kernel_size: 3 stride: 2 }")
           + layer("norm1", "LRN", "pool1", "lrn_param { local_size: 5 }")
           + layer("bn", "BatchNorm", "norm1") + layer("sc", "Scale", "bn", "scale_param { bias_term: true }")
           + layer("fc", "InnerProduct", "sc", "inner_product_param { num_output: 10 }")
           + layer("prob", "Softmax", "fc") + layer("loss", "SoftmaxWithLoss", "fc label"))
    r = run(net)
    assert r.ok, r.errors
    conv1 = r.layer("conv1")
    assert r.blob_shapes["data"] == (10, None, 227, 227)
    assert conv1.top_shapes == [(10, 96, 55, 55)] and conv1.param_shapes == [(96, None, 11, 11), (96,)]
    assert conv1.param_count is None and not conv1.counted        # the weight count waits for C
    assert r.blob_shapes["pool1"] == (10, 96, 27, 27) and r.blob_shapes["fc"] == (10, 10)
    assert r.layer("fc").param_shapes == [(10, 96 * 27 * 27), (10,)] and r.layer("fc").param_count == 10 * 96 * 729 + 10
    assert r.blob_shapes["loss"] == ()
    assert "params" in r.stats["lower_bound"] and "macs" in r.stats["lower_bound"]
    # a lower bound: conv1 (weights of unknown shape) is left out; Scale's two blobs and
    # BatchNorm's three (statistics, counted as Caffe's blobs are) are in
    assert r.stats["params"] == r.layer("fc").param_count + 2 * 96 + (2 * 96 + 1)
    assert any("wait for the run" in n for n in conv1.notes)


def test_unknown_spatial_sizes_propagate_and_global_pooling_makes_them_known():
    r = run(data("force_gray: true") + conv("c", "data", 8, 3, 2, 1)
            + layer("g", "Pooling", "c", "pooling_param { pool: AVE global_pooling: true }")
            + layer("f", "Flatten", "g") + layer("r", "Reshape", "c", "reshape_param { shape { dim: 0 dim: -1 } }"))
    assert r.ok, r.errors
    assert r.blob_shapes["c"] == (10, 8, None, None) and r.blob_shapes["g"] == (10, 8, 1, 1)
    assert r.blob_shapes["f"] == (10, 8) and r.blob_shapes["r"] == (10, None)


def test_concat_and_eltwise_check_what_is_known_and_pass_the_rest():
    two = data("crop_size: 32") + conv("a", "data", 4, 3, 1, 1) + conv("b", "data", 6, 3, 1, 1)
    r = run(two + layer("cat", "Concat", "a b") + layer("cat_c", "Concat", "data a", "concat_param { axis: 1 }"))
    assert r.blob_shapes["cat"] == (10, 10, 32, 32)          # along channels: 4 + 6
    assert r.blob_shapes["cat_c"] == (10, None, 32, 32)      # ? + 4 is unknown
    r = run(two + conv("b2", "data", 4, 3, 1, 0) + layer("sum", "Eltwise", "a b2"))
    assert not r.ok and "axis 2" in r.errors[0].message        # the known sizes still disagree: 32 vs 30
    r = run(two + layer("sum", "Eltwise", "a b"))
    assert not r.ok and "axis 1" in r.errors[0].message


def test_image_data_and_hdf5_without_their_files():
    r = run(data("", f'image_data_param {{ source: "{MISSING}" batch_size: 2 new_height: 40 new_width: 30 }}',
                 "ImageData"))
    assert r.blob_shapes["data"] == (2, 3, 40, 30) and r.blob_shapes["label"] == (2,)
    assert "image_data_param.source 'no/such/place' does not exist" in r.warnings[0].message
    r = run(f'layer {{ name: "h" type: "HDF5Data" top: "x" hdf5_data_param {{ source: "{MISSING}" batch_size: 2 }} }}\n'
            + layer("fc", "InnerProduct", "x", "inner_product_param { num_output: 3 }"))
    assert r.ok and r.layer("h").top_shapes == [None]
    assert "not even the number of axes" in r.layer("fc").notes[0]


def test_strict_makes_the_missing_source_an_error_and_the_executor_still_needs_it(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(data("crop_size: 8 force_color: true") + conv("c", "data", 2, 3))
    report = netspec.check(str(path), strict=True)
    assert not report.ok and "does not exist" in report.errors[0].message
    assert netspec.check(str(path)).ok
    with pytest.raises(netspec.NetspecError, match="does not exist"):
        netspec.Net(str(path))


def test_json_shows_unknowns_as_null_and_counts_as_lower_bounds(tmp_path, capsys):
    from netspec.cli import main
    path = tmp_path / "net.prototxt"
    path.write_text(data() + conv("c", "data", 2, 3))
    assert main(["check", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    c = next(l for l in doc["layers"] if l["name"] == "c")
    assert c["tops"]["c"] == [10, 2, None, None] and c["macs"] is None and c["params"]["count"] is None
    assert c["params"]["shapes"] == [[2, None, 3, 3], [2]]
    assert doc["totals"]["lower_bound"] == ["params", "macs", "memory"] and doc["totals"]["params"] == 0
    assert main(["check", str(path)]) == 0
    assert ">= 0 params" in capsys.readouterr().out


@pytest.mark.parametrize("path", sorted(glob.glob("models/*/train_val.prototxt")))
@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_the_zoo_train_val_nets_check_clean_without_data(path, phase):
    report = netspec.check(path, phase=phase)
    assert report.ok, [str(e) for e in report.errors]
    assert any(w.layer == "data" and "does not exist" in w.message for w in report.warnings)
    assert all(s is not None and None not in s for s in report.inputs.values())    # the zoo says every size
    assert not report.totals["lower_bound"]


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_lenet_without_mnist_checks_clean_with_its_sizes_unknown(phase):
    report = netspec.check("models/lenet/lenet_train_test.prototxt", phase=phase)
    assert report.ok, [str(e) for e in report.errors]
    assert report.shape("data")[1:] == (None, None, None) and report.shape("ip2")[1:] == (10,)
    assert report.layer("conv2").param_shapes == [(50, 20, 5, 5), (50,)]
