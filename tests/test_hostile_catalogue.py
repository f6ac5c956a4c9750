"""A catalogue of user mistakes, one row each: the command, its input, the exit status and the
words the message must hold. None may end in a traceback (exit 3 says it did)."""
import os

import numpy as np
import pytest

from netspec import caffe_pb2 as pb
from netspec.cli import main

INPUT = 'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }\n'
NET = INPUT + 'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 3 } }\n'
TRAIN = ('layer { name: "d" type: "DummyData" top: "data" top: "label" dummy_data_param { '
         'shape { dim: 2 dim: 3 } shape { dim: 2 } } }\n'
         'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 3 } }\n'
         'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }\n')


def _weights():
    n = pb.NetParameter(name="w")
    layer = n.layer.add(name="ip", type="InnerProduct")
    blob = layer.blobs.add()
    blob.shape.dim.extend([3, 48])
    blob.data.extend(np.zeros(144, np.float32))
    return n.SerializeToString()


def _bad_utf8_model():
    n = pb.NetParameter(name="x")
    n.layer.add(name="aa", type="ReLU")
    return n.SerializeToString().replace(b"aa", b"\xff\xfe")


def _mean(dims):
    blob = pb.BlobProto()
    blob.shape.dim.extend(dims)
    return blob.SerializeToString()


def _image_net(extra="", source="list.txt", transform=""):
    return (f'layer {{ name: "d" type: "ImageData" top: "d" top: "l" {transform} '
            f'image_data_param {{ source: "{source}" batch_size: 1 {extra} }} }}\n')


# (name, argv with {d} for the folder, files {name: text or bytes}, exit status, words)
CATALOGUE = [
    ("relu without a bottom", ["check", "{d}/n.prototxt"],
     {"n.prototxt": 'layer { name: "r" type: "ReLU" top: "r" }\n'}, 1, ["takes 1 bottom, got 0"]),
    ("loss without its label", ["check", "{d}/n.prototxt"],
     {"n.prototxt": INPUT + 'layer { name: "l" type: "SoftmaxWithLoss" bottom: "data" top: "l" }\n'},
     1, ["takes 2 bottoms, got 1"]),
    ("time on a miscounted layer", ["time", "{d}/n.prototxt", "-n", "1"],
     {"n.prototxt": INPUT + 'layer { name: "l" type: "SoftmaxWithLoss" bottom: "data" top: "l" }\n'},
     2, ["takes 2 bottoms, got 1"]),
    ("group dividing neither count", ["check", "{d}/n.prototxt"],
     {"n.prototxt": 'layer { name: "d" type: "Input" top: "d" input_param { shape { dim: 1 dim: 1000000000 '
                    'dim: 1 dim: 1 } } }\nlayer { name: "c" type: "Convolution" bottom: "d" top: "c" '
                    'convolution_param { num_output: 1000000000 kernel_size: 1 group: 3 } }\n'},
     1, ["group 3 does not divide", "e.g. 2 or 4"]),
    ("mean_file is /dev/zero", ["check", "{d}/n.prototxt"],
     {"n.prototxt": _image_net(transform='transform_param { mean_file: "/dev/zero" }', source="{d}/list.txt"),
      "list.txt": "{d}/a.png 0\n"}, 1,
     ["/dev/zero", "not a regular file"]),
    ("source is a FIFO", ["check", "{d}/n.prototxt"], {"n.prototxt": _image_net(source="{d}/fifo"),
                                                       "fifo": None}, 1, ["FIFO", "not a regular file"]),
    ("resize to 100000x100000", ["check", "{d}/n.prototxt"],
     {"n.prototxt": _image_net("new_height: 100000 new_width: 100000", "{d}/list.txt"),
      "list.txt": "{d}/a.png 0\n"}, 1, ["100000x100000", "GiB of memory"]),
    ("caffemodel with a non-UTF-8 name", ["check", "{d}/w.caffemodel"],
     {"w.caffemodel": _bad_utf8_model()}, 2, ["not UTF-8 text", "layer[0]"]),
    ("convert it to JSON", ["convert", "{d}/w.caffemodel", "{d}/w.json"],
     {"w.caffemodel": _bad_utf8_model()}, 2, ["not UTF-8 text"]),
    ("JSON with a lone surrogate", ["check", "{d}/n.json"], {"n.json": '{"name": "\\ud800"}'}, 2,
     ["lone surrogate", "n.json:1"]),
    ("mean blob of dims -1 -1", ["check", "{d}/n.prototxt"],
     {"n.prototxt": _image_net(transform='transform_param { mean_file: "{d}/m.binaryproto" }',
                               source="{d}/list.txt"), "list.txt": "{d}/a.png 0\n",
      "m.binaryproto": _mean([-1, -1])}, 1, ["dimension below 0"]),
    ("mean blob of dims 2^32 2^32", ["check", "{d}/n.prototxt"],
     {"n.prototxt": _image_net(transform='transform_param { mean_file: "{d}/m.binaryproto" }',
                               source="{d}/list.txt"), "list.txt": "{d}/a.png 0\n",
      "m.binaryproto": _mean([2 ** 32, 2 ** 32])}, 1, ["18446744073709551616"]),
    ("max_iter below 0", ["train", "--solver", "{d}/s.prototxt"],
     {"s.prototxt": 'net: "{d}/t.prototxt" base_lr: 0.1 max_iter: -5 lr_policy: "fixed"', "t.prototxt": TRAIN},
     2, ["max_iter is -5"]),
    ("snapshot below 0", ["train", "--solver", "{d}/s.prototxt"],
     {"s.prototxt": 'net: "{d}/t.prototxt" base_lr: 0.1 max_iter: 1 snapshot: -1 lr_policy: "fixed"',
      "t.prototxt": TRAIN}, 2, ["snapshot is -1"]),
    ("a caffemodel upgraded as a solver", ["upgrade", "{d}/w.caffemodel", "{d}/o.prototxt", "--kind", "solver"],
     {"w.caffemodel": _weights()}, 2, ["found a net", "--kind solver"]),
    ("a caffemodel given to --snapshot", ["train", "--solver", "{d}/s.prototxt", "--snapshot", "{d}/w.caffemodel"],
     {"s.prototxt": 'net: "{d}/t.prototxt" base_lr: 0.1 max_iter: 1 lr_policy: "fixed"', "t.prototxt": TRAIN,
      "w.caffemodel": _weights()}, 2, ["is a .caffemodel", "--weights"]),
    ("--snapshot is a FIFO", ["train", "--solver", "{d}/s.prototxt", "--snapshot", "{d}/fifo"],
     {"s.prototxt": 'net: "{d}/t.prototxt" base_lr: 0.1 max_iter: 1 lr_policy: "fixed"', "t.prototxt": TRAIN,
      "fifo": None}, 2, ["FIFO", "not a regular file"]),
    ("--weights .h5 is a FIFO", ["test", "--model", "{d}/t.prototxt", "--weights", "{d}/w.caffemodel.h5"],
     {"t.prototxt": TRAIN, "w.caffemodel.h5": None}, 2, ["FIFO", "not a regular file"]),
    ("--plot in a missing folder", ["train", "--solver", "{d}/s.prototxt", "--plot", "{d}/no/such/p.png"],
     {"s.prototxt": 'net: "{d}/t.prototxt" base_lr: 0.1 max_iter: 1 lr_policy: "fixed"', "t.prototxt": TRAIN},
     2, ["--plot", "does not exist"]),
    ("snapshot_prefix under a file", ["train", "--solver", "{d}/s.prototxt"],
     {"s.prototxt": 'net: "{d}/t.prototxt" base_lr: 0.1 max_iter: 1000000 snapshot: 1000000 '
                    'snapshot_prefix: "{d}/t.prototxt/snap" lr_policy: "fixed"', "t.prototxt": TRAIN},
     2, ["snapshot_prefix", "writable folder"]),
]


@pytest.mark.parametrize("name,argv,files,code,words", CATALOGUE, ids=[row[0] for row in CATALOGUE])
def test_mistake(tmp_path, capsys, name, argv, files, code, words):
    from PIL import Image
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    for fname, content in files.items():
        if content is None:
            os.mkfifo(tmp_path / fname)
        elif isinstance(content, bytes):
            (tmp_path / fname).write_bytes(content)
        else:
            (tmp_path / fname).write_text(content.replace("{d}", str(tmp_path)))
    status = main([a.replace("{d}", str(tmp_path)) for a in argv])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert status == code, text
    for word in words:
        assert word in text, text
    assert "Traceback" not in text and "bug in netspec" not in text
