"""Caffe's scripted tools: extract_features, classify (python/classify.py), convert_imageset --check_size."""
import importlib.util
import os

import numpy as np
import pytest

from netspec import Net
from netspec.cli import main
from netspec.data.datum import parse_datum
from netspec.data.db import open_lmdb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NET = """name: "feat"
layer { name: "data" type: "DummyData" top: "data"
  dummy_data_param { shape { dim: 3 dim: 2 dim: 4 dim: 4 } data_filler { type: "constant" value: 0.5 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "gaussian" } } }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
  inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
"""


@pytest.fixture
def feat(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    Net(str(tmp_path / "net.prototxt"), seed=2).save(str(tmp_path / "w.caffemodel"))
    return tmp_path


def test_extract_features_to_lmdb_and_hdf5(feat, capsys):
    p = lambda name: str(feat / name)   # noqa: E731
    assert main(["extract_features", p("w.caffemodel"), p("net.prototxt"), "ip,conv", f"{p('ip_db')},{p('conv_db')}",
                 "2", "lmdb"]) == 0
    out = capsys.readouterr().out
    assert "Extracted features of 6 query images for feature blob ip" in out
    with open_lmdb(p("ip_db")).begin() as txn:
        items = [(k, parse_datum(v)) for k, v in txn.cursor()]
    assert [k for k, _ in items] == [b"%010d" % i for i in range(6)]
    d = items[0][1]
    assert (d.channels, d.height, d.width, len(d.float_data)) == (5, 1, 1, 5)
    with open_lmdb(p("conv_db")).begin() as txn:
        d = parse_datum(txn.get(b"0000000004"))
    assert (d.channels, d.height, d.width) == (2, 2, 2)
    assert main(["extract_features", p("w.caffemodel"), p("net.prototxt"), "ip", p("ip.h5"), "2", "hdf5"]) == 0
    import h5py
    with h5py.File(p("ip.h5")) as f:
        h5 = np.asarray(f["ip"])
    assert h5.shape == (6, 5)
    expected = Net(p("net.prototxt"), weights=p("w.caffemodel")).forward()["ip"]
    np.testing.assert_allclose(h5[4], expected[1], rtol=1e-5)                  # item 4 = batch 1, item 1
    np.testing.assert_allclose(np.asarray(items[4][1].float_data), expected[1], rtol=1e-5)
    # bad input: named, exit 2, nothing written
    assert main(["extract_features", p("w.caffemodel"), p("net.prototxt"), "nope", p("x_db"), "1", "lmdb"]) == 2
    assert "no blob 'nope'" in capsys.readouterr().err and not os.path.exists(p("x_db"))
    assert main(["extract_features", p("w.caffemodel"), p("net.prototxt"), "ip", p("ip_db"), "1", "lmdb"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_classify_images_with_labels_and_a_mean(tmp_path, capsys):
    from PIL import Image
    from netspec.pycaffe import Classifier
    deploy = os.path.join(ROOT, "models", "lenet", "deploy.prototxt")
    Net(deploy, seed=1).save(str(tmp_path / "w.caffemodel"))
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.fromarray((rng.random((30, 30)) * 255).astype(np.uint8)).convert("RGB").save(tmp_path / "imgs" / f"{i}.png")
    gray = np.stack([np.asarray(Image.open(tmp_path / "imgs" / f"{i}.png").convert("L"))[:, :, None] / 255.0
                     for i in range(3)]).astype(np.float32)
    np.save(tmp_path / "gray.npy", gray)
    np.save(tmp_path / "mean.npy", np.full((1, 28, 28), 0.5, np.float32))
    (tmp_path / "synset.txt").write_text("".join(f"class{i}\n" for i in range(10)))
    args = ["classify", str(tmp_path / "gray.npy"), str(tmp_path / "out.npy"), "--model_def", deploy,
            "--pretrained_model", str(tmp_path / "w.caffemodel"), "--images_dim", "32,32", "--channel_swap", "",
            "--mean_file", str(tmp_path / "mean.npy"), "--raw_scale", "1", "--labels", str(tmp_path / "synset.txt"),
            "--top-k", "3"]
    assert main(args) == 0
    out = capsys.readouterr().out
    scores = np.load(tmp_path / "out.npy")
    assert scores.shape == (3, 10)
    best = [f"class{k}" for k in np.argsort(-scores[0])[:3]]
    assert f"gray.npy[0]: {best[0]} (" in out and best[2] in out.splitlines()[1]
    # the same as pycaffe's Classifier with the same settings
    clf = Classifier(deploy, str(tmp_path / "w.caffemodel"), image_dims=(32, 32), mean=np.full((1, 28, 28), 0.5),
                     raw_scale=1)
    np.testing.assert_allclose(clf.predict(list(gray)), scores, rtol=1e-5)
    assert main(args[:2] + args[2:] + ["--center_only"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), clf.predict(list(gray), oversample=False), rtol=1e-5)
    # a folder of colour images into a 1-channel net: said, exit 2
    capsys.readouterr()
    assert main(["classify", str(tmp_path / "imgs"), str(tmp_path / "o2.npy"), "--model_def", deploy, "--pretrained_model",
                 str(tmp_path / "w.caffemodel"), "--ext", "png", "--channel_swap", ""]) == 2
    assert "the images have [3] channels; the net's input 'data' takes 1" in capsys.readouterr().err


def test_convert_imageset_check_size(tmp_path, capsys):
    from PIL import Image
    spec = importlib.util.spec_from_file_location("ci", os.path.join(ROOT, "tools", "convert_imageset.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "p").mkdir()
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "p" / "a.png")
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "p" / "b.png")
    Image.fromarray(np.zeros((6, 5, 3), np.uint8)).save(tmp_path / "p" / "c.png")
    (tmp_path / "same.txt").write_text("a.png 0\nb.png 1\n")
    (tmp_path / "mixed.txt").write_text("a.png 0\nb.png 1\nc.png 1\n")
    root = str(tmp_path / "p") + "/"
    assert module.main([root, str(tmp_path / "same.txt"), str(tmp_path / "db1"), "--check_size"]) == 0
    assert module.main([root, str(tmp_path / "mixed.txt"), str(tmp_path / "db2"), "--check_size"]) == 2
    err = capsys.readouterr().err
    assert "image 3 ('c.png') is 3 x 6 x 5" in err and "the first ('a.png') is 3 x 4 x 5" in err
    assert not os.path.exists(tmp_path / "db2")
    assert module.main([root, str(tmp_path / "mixed.txt"), str(tmp_path / "db3")]) == 0      # unchecked: written
