"""tools/: IDX -> LMDB, images -> LMDB, LMDB -> mean image; tiny inputs made in tmp_path."""
import gzip
import importlib.util
import os

import numpy as np
import pytest

from netspec import caffe_pb2
from netspec.data.datum import datum_to_array, parse_datum
from netspec.data.db import open_lmdb
from netspec.data.transform import read_mean_file

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools")


def tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(TOOLS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def idx_bytes(array):
    """IDX written by hand: magic (0, 0, 8 = ubyte, ndim), big-endian dims, then the bytes."""
    head = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return head + array.astype(np.uint8).tobytes()


def records(path):
    with open_lmdb(str(path)).begin() as txn:
        return [(k, parse_datum(v)) for k, v in txn.cursor()]


@pytest.mark.parametrize("gz", [False, True])
def test_convert_mnist_data(tmp_path, gz):
    pixels = np.random.default_rng(0).integers(0, 256, (3, 4, 5), dtype=np.uint8)
    labels = np.array([7, 0, 9], np.uint8)
    write = (lambda p, b: p.write_bytes(gzip.compress(b))) if gz else (lambda p, b: p.write_bytes(b))
    write(tmp_path / "images", idx_bytes(pixels))
    write(tmp_path / "labels", idx_bytes(labels))
    assert tool("convert_mnist_data")([str(tmp_path / "images"), str(tmp_path / "labels"), str(tmp_path / "db")]) == 0
    got = records(tmp_path / "db")
    assert [k for k, _ in got] == [b"00000000", b"00000001", b"00000002"]
    for (_, datum), image, label in zip(got, pixels, labels):
        assert (datum.channels, datum.height, datum.width, datum.label) == (1, 4, 5, label)
        assert datum.data == image.tobytes() and not datum.encoded


def test_convert_mnist_data_rejects_swapped_files(tmp_path, capsys):
    (tmp_path / "images").write_bytes(idx_bytes(np.zeros((2, 2, 2), np.uint8)))
    (tmp_path / "labels").write_bytes(idx_bytes(np.zeros(2, np.uint8)))
    assert tool("convert_mnist_data")([str(tmp_path / "labels"), str(tmp_path / "images"), str(tmp_path / "db")]) == 2
    assert "not an IDX images file" in capsys.readouterr().err
    assert not (tmp_path / "db").exists()


def make_images(tmp_path):
    from PIL import Image
    rgb = np.random.default_rng(1).integers(0, 256, (4, 6, 8, 3), dtype=np.uint8)
    for i, c in enumerate(["cat", "cat", "dog", "dog"]):
        (tmp_path / "photos" / c).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb[i]).save(tmp_path / "photos" / c / f"{i}.png")
    (tmp_path / "list.txt").write_text("cat/0.png 0\ncat/1.png 0\ndog/2.png 1\ndog/3.png 1\n")
    return rgb


def test_convert_imageset_raw_from_list(tmp_path):
    rgb = make_images(tmp_path)
    assert tool("convert_imageset")([str(tmp_path / "photos") + "/", str(tmp_path / "list.txt"), str(tmp_path / "db")]) == 0
    got = records(tmp_path / "db")
    assert [k for k, _ in got] == [b"00000000_cat/0.png", b"00000001_cat/1.png", b"00000002_dog/2.png", b"00000003_dog/3.png"]
    for (_, datum), image in zip(got, rgb):
        np.testing.assert_array_equal(datum_to_array(datum), image[:, :, ::-1].transpose(2, 0, 1))   # BGR, CHW
    assert [d.label for _, d in got] == [0, 0, 1, 1]


def test_convert_imageset_folder_resize_gray_encoded_shuffle(tmp_path):
    make_images(tmp_path)
    args = [".", str(tmp_path / "photos"), str(tmp_path / "db"), "--resize_height", "3", "--resize_width", "4",
            "--gray", "--encoded", "--shuffle"]
    assert tool("convert_imageset")(args) == 0
    got = records(tmp_path / "db")
    assert len(got) == 4 and all(d.encoded for _, d in got)
    assert datum_to_array(got[0][1]).shape == (1, 3, 4)
    assert sorted((k.split(b"_", 1)[1], d.label) for k, d in got) == \
        [(b"cat/0.png", 0), (b"cat/1.png", 0), (b"dog/2.png", 1), (b"dog/3.png", 1)]


def test_compute_image_mean(tmp_path, capsys):
    pixels = np.random.default_rng(0).integers(0, 256, (3, 4, 5), dtype=np.uint8)
    (tmp_path / "images").write_bytes(idx_bytes(pixels))
    (tmp_path / "labels").write_bytes(idx_bytes(np.zeros(3, np.uint8)))
    tool("convert_mnist_data")([str(tmp_path / "images"), str(tmp_path / "labels"), str(tmp_path / "db")])
    assert tool("compute_image_mean")([str(tmp_path / "db"), str(tmp_path / "mean.binaryproto")]) == 0
    mean = read_mean_file(tmp_path / "mean.binaryproto")
    np.testing.assert_allclose(mean, pixels.mean(axis=0)[None], rtol=1e-6)
    blob = caffe_pb2.BlobProto.FromString((tmp_path / "mean.binaryproto").read_bytes())
    assert (blob.num, blob.channels, blob.height, blob.width) == (1, 1, 4, 5)      # Caffe's legacy dims
    assert f"mean_value channel [0]: {pixels.mean():g}"[:30] in capsys.readouterr().out
