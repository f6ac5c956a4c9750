"""The model zoo: the committed files are what models/generate.py writes, every net checks
clean in both phases, and `netspec check` agrees with the papers' figures within 1%."""
import functools
import importlib.util
import os
from pathlib import Path

import pytest

from netspec import caffe_pb2
from netspec.io import dump, read_net, read_solver
from netspec.report import check

MODELS = Path(__file__).resolve().parent.parent / "models"
_spec = importlib.util.spec_from_file_location("zoo_generate", MODELS / "generate.py")
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)

NETS = list(generate.ZOO)


def net_files(name):
    return sorted(p.name for p in (MODELS / name).iterdir() if p.suffix == ".prototxt")


@functools.cache
def deploy(name):
    """The check report of a net's deploy file at one image per batch, as the table uses."""
    return generate.deploy_report(MODELS, name)


def blob_shape(report, blob):
    shape = None
    for layer in report["layers"]:
        shape = layer["tops"].get(blob, shape)
    return tuple(shape)


def train_val(name):
    return MODELS / name / ("lenet_train_test.prototxt" if name == "lenet" else "train_val.prototxt")


# -- the files are the script's ----------------------------------------------------------------

def test_committed_files_are_what_the_script_writes(tmp_path):
    generate.write_zoo(tmp_path)
    assert sorted(p.name for p in MODELS.iterdir() if p.is_dir() and p.name != "__pycache__") \
        == sorted(NETS)
    for name in NETS:
        assert net_files(name) == sorted(os.listdir(tmp_path / name)), name
        for file_name in net_files(name):
            fresh = (tmp_path / name / file_name).read_text()
            assert (MODELS / name / file_name).read_text() == fresh, \
                f"models/{name}/{file_name} is stale: run python models/generate.py"


def test_the_zoo_is_what_netspec_convert_writes():
    """One text writer: the zoo's files are netspec.io's text of what they hold, as Caffe prints it."""
    for name in NETS:
        for file_name in net_files(name):
            path = MODELS / name / file_name
            message = (read_solver(path) if "solver" in file_name else read_net(path).param)
            assert generate.HEADER + dump(message, "text") == path.read_text(), f"{name}/{file_name}"


def test_numbers_print_as_cpp_protobuf_prints_them():
    lp = caffe_pb2.LayerParameter(loss_weight=[1, 0.1, 1e-5, 0.1234567, 1e6, 16777217, -0.0, float("inf")])
    assert dump(lp, "text").split("\n")[:-1] == [f"loss_weight: {v}" for v in (
        "1", "0.1", "1e-05", "0.123456702", "1e+06", "16777216", "-0", "inf")]
    blob = caffe_pb2.BlobProto(double_data=[0.1, 1 / 3])
    assert dump(blob, "text") == "double_data: 0.1\ndouble_data: 0.33333333333333331\n"


def test_readme_table_is_up_to_date():
    fresh = generate.table(MODELS, report_of=lambda root, name: deploy(name))
    assert (MODELS / "README.md").read_text() == fresh, \
        "models/README.md is stale: run python models/generate.py --table"


def test_the_script_names_the_closest_net_for_a_typo(tmp_path, capsys):
    with pytest.raises(SystemExit):
        generate.main(["--out", str(tmp_path), "resnet-51"])
    assert "did you mean 'resnet-50'" in capsys.readouterr().err
    assert generate.main(["--out", str(tmp_path), "lenet"]) == 0
    assert sorted(os.listdir(tmp_path / "lenet")) == net_files("lenet")


def test_lenet_and_its_solver_are_caffes_example():
    net = read_net(MODELS / "lenet" / "lenet_train_test.prototxt").param
    train, test = net.layer[0], net.layer[1]
    assert (train.data_param.source, train.data_param.batch_size) == ("data/fashion-mnist/train_lmdb", 64)
    assert (test.data_param.source, test.data_param.batch_size) == ("data/fashion-mnist/test_lmdb", 100)
    assert train.transform_param.scale == 0.00390625
    solver = generate.lenet_files()["lenet_solver.prototxt"]
    assert solver.net == "models/lenet/lenet_train_test.prototxt"
    assert (solver.lr_policy, solver.gamma, solver.power) == ("inv", pytest.approx(1e-4), 0.75)
    assert list(solver.test_iter) == [100] and solver.max_iter == 10000


# -- every net checks clean ----------------------------------------------------------------------

def data_inputs(path):
    """Shapes for the Data layers' tops, which would otherwise be read from the LMDB."""
    layer = read_net(path).param.layer[0]
    t, d = layer.transform_param, layer.data_param
    side = t.crop_size or 28
    channels = 1 if side == 28 else 3
    return {"data": (d.batch_size, channels, side, side), "label": (d.batch_size,)}


@pytest.mark.parametrize("name", NETS)
def test_every_net_checks_clean_in_both_phases(name):
    assert deploy(name)["ok"], deploy(name)["errors"]
    path = train_val(name)
    for phase in ("TRAIN", "TEST"):
        report = check(str(path), inputs=data_inputs(path), phase=phase)
        assert report.ok, f"{path.name} in {phase}: " + "\n".join(map(str, report.errors))
        losses = [r for r in report.layers if r.type == "SoftmaxWithLoss"]
        assert losses and all(r.top_shapes[0] == () for r in losses)
        accuracy = [r for r in report.layers if r.type == "Accuracy"]
        assert bool(accuracy) == (phase == "TEST")


def test_googlenet_weighs_its_auxiliary_heads():
    path = train_val("googlenet")
    report = check(str(path), inputs=data_inputs(path), phase="TRAIN")
    weights = {r.name: r.node.loss_weights[0] for r in report.layers if r.type == "SoftmaxWithLoss"}
    assert weights == {"loss1/loss": pytest.approx(0.3), "loss2/loss": pytest.approx(0.3),
                       "loss3/loss": 1}
    assert "loss1/classifier" not in {layer["name"] for layer in deploy("googlenet")["layers"]}


# -- the papers' figures ---------------------------------------------------------------------------

# Learnable parameters as published: AlexNet (bvlc_alexnet, the paper's "60 million"),
# VGG16 (Simonyan & Zisserman, 138M), GoogLeNet (about 7M without the auxiliary heads),
# ResNets (He et al.; the counts of their released models, BN as Scale's 2 per channel).
PARAMS = {"alexnet-paper": 60.97e6, "alexnet": 60.97e6, "caffenet": 60.97e6,
          "vgg16": 138.36e6, "googlenet": 7.0e6,
          "resnet-18": 11.69e6, "resnet-34": 21.80e6, "resnet-50": 25.56e6,
          "resnet-101": 44.55e6, "resnet-152": 60.19e6, "lenet": 431.08e3}

# Multiply-accumulates of convolutions and fully connected layers for one 224x224 image:
# ResNets as Hu et al. (SENet, table 2) give them for KaimingHe's models (stride in the first
# 1x1; He et al. round them to 3.8G, 7.6G, 11.3G), VGG16 15.47G, GoogLeNet 1.58G (the paper's
# "1.5 billion multiply-adds").
MACS = {"resnet-50": 3.86e9, "resnet-101": 7.58e9, "resnet-152": 11.30e9,
        "vgg16": 15.47e9, "googlenet": 1.58e9}


def weighted_macs(report):
    return sum(layer["macs"] for layer in report["layers"]
               if layer["type"] in ("Convolution", "InnerProduct"))


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameters_match_the_papers(name):
    report = deploy(name)
    running_stats = sum(layer["params"]["count"] for layer in report["layers"]
                        if layer["type"] == "BatchNorm")
    assert report["totals"]["params"] - running_stats == pytest.approx(PARAMS[name], rel=0.01)


@pytest.mark.parametrize("name", sorted(MACS))
def test_multiply_accumulates_match_the_papers(name):
    assert weighted_macs(deploy(name)) == pytest.approx(MACS[name], rel=0.01)
    assert deploy(name)["totals"]["macs"] >= weighted_macs(deploy(name))


# Output shapes (C, H, W) at the points the papers' figures and tables mark.
SHAPES = {
    "lenet": {"conv1": (20, 24, 24), "pool1": (20, 12, 12), "conv2": (50, 8, 8),
              "pool2": (50, 4, 4), "ip2": (10,)},
    "alexnet-paper": {"conv1": (96, 54, 54), "pool1": (96, 27, 27), "conv2": (256, 27, 27),
                      "conv3": (384, 13, 13), "pool5": (256, 6, 6), "fc8": (1000,)},
    "alexnet": {"conv1": (96, 55, 55), "norm1": (96, 55, 55), "pool1": (96, 27, 27),
                "pool2": (256, 13, 13), "pool5": (256, 6, 6), "fc6": (4096,)},
    "caffenet": {"conv1": (96, 55, 55), "pool1": (96, 27, 27), "norm1": (96, 27, 27)},
    "googlenet": {"conv1/7x7_s2": (64, 112, 112), "pool1/3x3_s2": (64, 56, 56),
                  "conv2/3x3": (192, 56, 56), "pool2/3x3_s2": (192, 28, 28),
                  "inception_3a/output": (256, 28, 28), "inception_3b/output": (480, 28, 28),
                  "pool3/3x3_s2": (480, 14, 14), "inception_4a/output": (512, 14, 14),
                  "inception_4d/output": (528, 14, 14), "inception_4e/output": (832, 14, 14),
                  "pool4/3x3_s2": (832, 7, 7), "inception_5b/output": (1024, 7, 7),
                  "pool5/7x7_s1": (1024, 1, 1)},
    # Ioffe & Szegedy's figure 5 prints 576 after 4c and 4d and 1024 after 4e, but its own
    # columns add up to 608 and 1056; these are the sums.
    "inception-bn": {"inception_3a/output": (256, 28, 28), "inception_3b/output": (320, 28, 28),
                     "inception_3c/output": (576, 14, 14), "inception_4a/output": (576, 14, 14),
                     "inception_4c/output": (608, 14, 14), "inception_4e/output": (1056, 7, 7),
                     "inception_5b/output": (1024, 7, 7)},
    "nin": {"pool0": (96, 27, 27), "pool2": (256, 13, 13), "pool3": (384, 6, 6),
            "cccp8-1024": (1000, 6, 6), "pool4": (1000, 1, 1)},
    "vgg16": {"conv1_2": (64, 224, 224), "pool1": (64, 112, 112), "pool4": (512, 14, 14),
              "pool5": (512, 7, 7), "fc7": (4096,)},
    "resnet-18": {"conv1": (64, 112, 112), "pool1": (64, 56, 56), "res2b": (64, 56, 56),
                  "res3b": (128, 28, 28), "res4b": (256, 14, 14), "res5b": (512, 7, 7)},
    "resnet-50": {"conv1": (64, 112, 112), "pool1": (64, 56, 56), "res2c": (256, 56, 56),
                  "res3d": (512, 28, 28), "res4f": (1024, 14, 14), "res5c": (2048, 7, 7),
                  "pool5": (2048, 1, 1)},
    "resnet-152": {"res3b7": (512, 28, 28), "res4b35": (1024, 14, 14), "res5c": (2048, 7, 7)},
    "resnet-preact-152": {"res2c": (256, 56, 56), "res4b35": (1024, 14, 14),
                          "res5_post": (2048, 7, 7)},
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shapes_at_the_papers_marks(name):
    report = deploy(name)
    for blob, shape in SHAPES[name].items():
        assert blob_shape(report, blob) == (1,) + shape, f"{name}: {blob}"


def test_alexnet_as_the_paper_explains_its_54():
    """224 through 11x11 at stride 4: (224 - 11) / 4 = 53.25, floored, + 1 = 54, not 55."""
    conv1 = check(str(MODELS / "alexnet-paper" / "deploy.prototxt")).layer("conv1")
    assert conv1.top_shapes[0][2:] == (54, 54)
    words = " ".join(conv1.notes + [str(w) for w in conv1.warnings])
    assert "remainder" in words and "227" in words and "55" in words, words
    assert conv1.warnings, "an inexact stride should be flagged"
    assert not deploy("alexnet")["warnings"]          # at 227 every stride divides exactly


def test_depth_counts_the_weighted_layers_of_the_longest_path():
    depths = {name: generate.weighted_depth(deploy(name))
              for name in ("lenet", "alexnet", "vgg16", "googlenet", "resnet-18", "resnet-50",
                           "resnet-152")}
    assert depths == {"lenet": 4, "alexnet": 8, "vgg16": 16, "googlenet": 22, "resnet-18": 18,
                      "resnet-50": 50, "resnet-152": 152}
