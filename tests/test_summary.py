"""The summary table: --depth by block, trainable parameters, parameter memory, --columns, JSON."""
import json
from math import prod

import pytest

import netspec
from netspec.cli import main

FROZEN = """name: "frozen"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        param { lr_mult: 0 } param { lr_mult: 1 } convolution_param { num_output: 5 kernel_size: 3 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 2 } }
"""


def test_batchnorm_statistics_and_frozen_blobs_are_not_trainable(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(FROZEN)
    t = netspec.check(str(path)).totals
    weights, bias, stats, fc = 5 * 3 * 3 * 3, 5, 5 + 5 + 1, 5 * 2 * 2 * 2 + 2
    assert t["params"] == weights + bias + stats + fc
    assert t["trainable_params"] == bias + fc
    assert t["non_trainable_params"] == weights + stats
    assert t["param_memory"] == 4 * t["params"]


def test_resnet50_non_trainable_is_exactly_its_batchnorm_statistics():
    report = netspec.check("models/resnet-50/deploy.prototxt")
    stats = sum(prod(s) for r in report.layers if r.type == "BatchNorm" for s in r.param_shapes)
    assert report.totals["non_trainable_params"] == stats
    assert report.totals["trainable_params"] == report.totals["params"] - stats


def test_depth_folds_blocks(capsys):
    assert main(["check", "models/googlenet/deploy.prototxt", "--depth", "1"]) == 0
    one = capsys.readouterr().out
    assert main(["check", "models/googlenet/deploy.prototxt", "--depth", "2"]) == 0
    two = capsys.readouterr().out
    block = next(line for line in one.splitlines() if line.startswith("inception_3a "))
    assert "block of 14" in block and "1x256x28x28" in block and "163.7K" in block
    assert "inception_3a/1x1" not in one
    assert "  inception_3a/1x1 " in two and "\ninception_3a " in two
    assert "trainable 6,998,552, non-trainable 0; parameters take 27.99 MB" in one


def test_columns_pick_and_order(capsys):
    assert main(["check", "models/lenet/deploy.prototxt", "--columns", "params,name,param_memory,trainable"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["params", "layer", "param", "memory", "trainable"]
    ip1 = next(line for line in lines if " ip1 " in line)
    assert ip1.split() == ["400.5K", "ip1", "1.5", "MiB", "400.5K"]
    with pytest.raises(SystemExit) as e:
        main(["check", "models/lenet/deploy.prototxt", "--columns", "name,flops"])
    assert e.value.code == 2
    assert "flops" in capsys.readouterr().err


def test_json_carries_trainable_counts_and_blocks():
    d = json.loads(netspec.check("models/resnet-50/deploy.prototxt").to_json())
    assert {"trainable_params", "non_trainable_params", "param_memory"} <= set(d["totals"])
    bn = next(layer for layer in d["layers"] if layer["type"] == "BatchNorm")
    assert bn["params"]["trainable"] == 0 and bn["params"]["count"] > 0
    res2a = next(b for b in d["blocks"] if b["name"] == "res2a")
    assert "res2a_branch1" in res2a["layers"] and res2a["output"] == {"res2a": [1, 256, 56, 56]}
    assert sum(b["params"] for b in d["blocks"]) == d["totals"]["params"]
