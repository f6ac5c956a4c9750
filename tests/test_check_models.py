"""The chapter's figures, exactly, and nets in the style of well-known public Caffe models,
checked against the shapes Caffe itself logs for them."""
import os

import pytest

import netspec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")
NETS = os.path.join(ROOT, "tests", "nets")


def model(name, file="deploy.prototxt"):
    return os.path.join(MODELS, name, file)


def shapes(report, *blobs):
    """{blob: shape without the batch axis} after each blob's last writer."""
    return {b: report.shape(b)[1:] for b in blobs}


def fc_share(report, names):
    return sum(report.layer(n).param_count for n in names) / report.totals["params"]


def assert_clean(report):
    assert report.ok, "\n".join(map(str, report.errors))


# -- LeNet ------------------------------------------------------------------------------------------

def test_lenet():
    r = netspec.check(model("lenet"))
    assert_clean(r)
    assert shapes(r, "conv1", "pool1", "conv2", "pool2", "ip1", "ip2") == {
        "conv1": (20, 24, 24), "pool1": (20, 12, 12), "conv2": (50, 8, 8), "pool2": (50, 4, 4),
        "ip1": (500,), "ip2": (10,)}
    assert r.totals["params"] == 20 * 25 + 20 + 50 * 20 * 25 + 50 + 500 * 800 + 500 + 10 * 500 + 10 == 431080


def test_lenet_train_test_takes_the_data_shape_from_input(tmp_path):
    r = netspec.check(model("lenet", "lenet_train_test.prototxt"), phase="TRAIN", inputs={"data": (64, 1, 28, 28)})
    assert_clean(r)
    assert r.shape("label") == (64,) and r.shape("loss") == ()
    assert [name for name, _ in r.excluded] == ["mnist", "accuracy"]


# -- AlexNet: as the paper draws it (224) and as Caffe ships it (227) ------------------------------------

def test_alexnet_at_224_explains_conv1():
    r = netspec.check(model("alexnet-paper"))
    assert r.shape("conv1")[1:] == (96, 54, 54)
    notes = " ".join(r.layer("conv1").notes)
    assert "(224 - 11)/4 = 53.25; floor 53, + 1 = 54" in notes and "55 needs input 227 or pad 2" in notes
    assert "227" in notes and "pad 2" in notes          # what would give the paper's 55
    assert any(w.layer == "conv1" for w in r.warnings)  # the stride does not divide evenly


def test_alexnet_at_227_as_caffe_ships_it():
    r = netspec.check(model("alexnet"))
    assert_clean(r)
    assert shapes(r, "conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5",
                  "fc6", "fc7", "fc8") == {
        "conv1": (96, 55, 55), "pool1": (96, 27, 27), "conv2": (256, 27, 27), "pool2": (256, 13, 13),
        "conv3": (384, 13, 13), "conv4": (384, 13, 13), "conv5": (256, 13, 13), "pool5": (256, 6, 6),
        "fc6": (4096,), "fc7": (4096,), "fc8": (1000,)}
    assert r.totals["params"] == 60965224                  # about 61M
    assert round(100 * fc_share(r, ("fc6", "fc7", "fc8")), 1) == 96.2
    by_type = {g["type"]: g for g in r.to_dict()["by_type"]}
    assert by_type["InnerProduct"]["params_percent"] == 96.2
    assert r.layer("conv1").receptive_fields["conv1"].size == (11, 11)
    assert r.layer("pool5").receptive_fields["pool5"].stride == (32, 32)


def test_alexnet_without_groups_holds_94_percent_in_its_fc_layers(tmp_path):
    """The one-tower AlexNet (no group: 2), the figure books quote: 62.4M, 94% in fc6-fc8."""
    text = open(model("alexnet")).read().replace("group: 2", "")
    path = tmp_path / "alexnet_one_tower.prototxt"
    path.write_text(text)
    r = netspec.check(str(path))
    assert r.totals["params"] == 62378344
    assert round(100 * fc_share(r, ("fc6", "fc7", "fc8")), 1) == 94.0


# -- GoogLeNet ---------------------------------------------------------------------------------------

def test_googlenet_deploy():
    r = netspec.check(model("googlenet"))
    assert_clean(r)
    assert shapes(r, "conv1/7x7_s2", "conv2/3x3", "inception_3b/output", "pool3/3x3_s2", "inception_4a/output",
                  "inception_4e/output", "pool4/3x3_s2", "inception_5b/output", "pool5/7x7_s1") == {
        "conv1/7x7_s2": (64, 112, 112), "conv2/3x3": (192, 56, 56), "inception_3b/output": (480, 28, 28),
        "pool3/3x3_s2": (480, 14, 14), "inception_4a/output": (512, 14, 14),
        "inception_4e/output": (832, 14, 14), "pool4/3x3_s2": (832, 7, 7),
        "inception_5b/output": (1024, 7, 7), "pool5/7x7_s1": (1024, 1, 1)}
    assert r.totals["params"] < 7_000_000


def test_googlenet_train_val_auxiliary_heads():
    r = netspec.check(model("googlenet", "train_val.prototxt"), phase="TRAIN", inputs={"data": (32, 3, 224, 224)})
    assert_clean(r)
    assert shapes(r, "loss1/ave_pool", "loss1/conv", "loss2/ave_pool", "loss2/conv") == {
        "loss1/ave_pool": (512, 4, 4), "loss1/conv": (128, 4, 4),
        "loss2/ave_pool": (528, 4, 4), "loss2/conv": (128, 4, 4)}
    weights = {n: r.layer(n).node.loss_weights[0] for n in ("loss1/loss", "loss2/loss", "loss3/loss")}
    assert weights == pytest.approx({"loss1/loss": 0.3, "loss2/loss": 0.3, "loss3/loss": 1.0})


# -- ResNet-50 -----------------------------------------------------------------------------------------

def test_resnet50():
    r = netspec.check(model("resnet-50"))
    assert_clean(r)
    assert r.shape("pool1")[1:] == (64, 56, 56)
    assert r.shape("res5c")[1:] == (2048, 7, 7) and r.shape("fc1000")[1:] == (1000,)
    assert 25.5e6 < r.totals["params"] < 25.7e6            # about 25.6M
    assert 3.8e9 < r.totals["macs"] < 4.0e9                # about 3.9G multiply-accumulates at 224
    f = r.layer("res5c").receptive_fields["res5c"]       # the published theoretical figure
    assert (f.size, f.stride) == ((483, 483), (32, 32))


# -- nets in the style of public Caffe models ----------------------------------------------------------------

def test_squeezenet_v11_pools_round_up():
    r = netspec.check(os.path.join(NETS, "squeezenet_v1.1.prototxt"))
    assert_clean(r)
    assert shapes(r, "conv1", "pool1", "fire2/concat", "fire3/concat", "pool3", "fire5/concat", "pool5",
                  "fire7/concat", "fire9/concat", "conv10", "pool10") == {
        "conv1": (64, 113, 113), "pool1": (64, 56, 56), "fire2/concat": (128, 56, 56),
        "fire3/concat": (128, 56, 56), "pool3": (128, 28, 28), "fire5/concat": (256, 28, 28),
        "pool5": (256, 14, 14), "fire7/concat": (384, 14, 14), "fire9/concat": (512, 14, 14),
        "conv10": (1000, 14, 14), "pool10": (1000, 1, 1)}
    assert r.totals["params"] == 1235496
    # ceil rounding differs from floor at pool3 (27.5) and pool5: a warning for ports that floor
    assert {w.layer for w in r.warnings} >= {"pool3", "pool5"}


def mobilenet_params():
    """An independent count: conv weights (no bias) + BatchNorm (mean, var, factor) + Scale (gamma, beta)."""
    total, ch = 3 * 3 * 3 * 32 + 32 * 4 + 1, 32
    for out, _ in [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]:
        total += 3 * 3 * ch + ch * 4 + 1          # depthwise 3x3, one filter per channel
        total += ch * out + out * 4 + 1           # pointwise 1x1
        ch = out
    return total + 1024 * 1000 + 1000


def test_mobilenet_v1_depthwise_group_convolutions():
    r = netspec.check(os.path.join(NETS, "mobilenet_v1.prototxt"))
    assert_clean(r)
    assert shapes(r, "conv1", "conv2_1/dw", "conv2_1/sep", "conv2_2/dw", "conv2_2/sep", "conv3_2/sep",
                  "conv4_2/sep", "conv5_6/dw", "conv5_6/sep", "conv6/sep", "pool6", "fc7") == {
        "conv1": (32, 112, 112), "conv2_1/dw": (32, 112, 112), "conv2_1/sep": (64, 112, 112),
        "conv2_2/dw": (64, 56, 56), "conv2_2/sep": (128, 56, 56), "conv3_2/sep": (256, 28, 28),
        "conv4_2/sep": (512, 14, 14), "conv5_6/dw": (512, 7, 7), "conv5_6/sep": (1024, 7, 7),
        "conv6/sep": (1024, 7, 7), "pool6": (1024, 1, 1), "fc7": (1000, 1, 1)}
    assert r.layer("conv2_2/dw").param_shapes == [(64, 1, 3, 3)]
    assert r.totals["params"] == mobilenet_params()


def test_densenet_concat_growth():
    r = netspec.check(os.path.join(NETS, "densenet_small.prototxt"), phase="TRAIN")
    assert_clean(r)
    grown = [r.shape(f"b{b}_l{i}/concat")[1:] for b in (1, 2) for i in (1, 2, 3)]
    assert grown == [(28, 32, 32), (40, 32, 32), (52, 32, 32), (64, 16, 16), (76, 16, 16), (88, 16, 16)]
    assert r.shape("global_pool")[1:] == (88, 1, 1) and r.shape("loss") == ()
    assert r.layer("b1_l1/concat").notes == ["concat along axis 1: 16 + 12 = 28"]


def test_vgg16_in_the_legacy_v1_format():
    r = netspec.check(os.path.join(NETS, "vgg16_v1.prototxt"))
    assert_clean(r)
    assert shapes(r, "conv1_2", "pool1", "conv2_2", "pool2", "conv3_3", "pool3", "conv4_3", "pool4",
                  "conv5_3", "pool5", "fc6", "fc7", "fc8") == {
        "conv1_2": (64, 224, 224), "pool1": (64, 112, 112), "conv2_2": (128, 112, 112),
        "pool2": (128, 56, 56), "conv3_3": (256, 56, 56), "pool3": (256, 28, 28),
        "conv4_3": (512, 28, 28), "pool4": (512, 14, 14), "conv5_3": (512, 14, 14),
        "pool5": (512, 7, 7), "fc6": (4096,), "fc7": (4096,), "fc8": (1000,)}
    assert r.shape("data") == (10, 3, 224, 224)
    assert r.totals["params"] == 138357544
    assert r.layer("conv1_1").node.line == 8
    assert any("legacy V1" in n for n in r.notices)


@pytest.mark.parametrize("name", ["vgg16", "caffenet", "nin", "resnet-18", "inception-bn"])
def test_other_zoo_deploy_nets_check_clean(name):
    assert_clean(netspec.check(model(name)))


def test_fcn32s_deconvolution_and_crop_come_back_to_the_input_size():
    r = netspec.check(os.path.join(NETS, "fcn32s.prototxt"))
    assert_clean(r)
    assert shapes(r, "conv1_1", "pool1", "pool2", "pool3", "pool4", "pool5", "fc6", "score_fr", "upscore", "score") == {
        "conv1_1": (64, 698, 698), "pool1": (64, 349, 349), "pool2": (128, 175, 175), "pool3": (256, 88, 88),
        "pool4": (512, 44, 44), "pool5": (512, 22, 22), "fc6": (4096, 16, 16), "score_fr": (21, 16, 16),
        "upscore": (21, 544, 544), "score": (21, 500, 500)}
    assert r.layer("upscore").param_shapes == [(21, 21, 64, 64)]
    assert r.layer("fc6").receptive_fields["fc6"].size == (404, 404)
