"""LevelDB datasets: the same records read from a LevelDB (written here with plyvel
directly, as a reference writer) and from an LMDB give the same batches, in the same
order, through the Data layer's prefetch; the converters write LevelDB too."""
import numpy as np
import pytest

from netspec import Net
from netspec.data.datum import array_to_datum
from netspec.data.db import open_reader, write_lmdb

plyvel = pytest.importorskip("plyvel")


def records(n=13):
    rng = np.random.default_rng(4)
    # keys out of insertion order: both databases must read them sorted bytewise
    keys = [b"%08d_img%d.png" % (i, i) for i in rng.permutation(n)]
    return [(k, array_to_datum(rng.integers(0, 255, (2, 3, 4)).astype(np.uint8), int(k[:8]) % 5)
             .SerializeToString()) for k in keys]


def reference_leveldb(path, items):
    db = plyvel.DB(str(path), create_if_missing=True)
    for k, v in items:
        db.put(k, v)
    db.close()


NET = """name: "d"
layer {{ name: "d" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
  transform_param {{ scale: 0.5 mirror: true crop_size: 3 }}
  data_param {{ source: "{}" batch_size: 5 {} prefetch: 2 }} }}
layer {{ name: "s" type: "Power" bottom: "data" top: "out" }}
"""


@pytest.mark.parametrize("backend", ["", "backend: LEVELDB"])
def test_leveldb_reads_like_the_same_lmdb(tmp_path, backend):
    items = records()
    reference_leveldb(tmp_path / "ldb", items)
    write_lmdb(str(tmp_path / "lmdb"), items)
    (tmp_path / "a.prototxt").write_text(NET.format(tmp_path / "ldb", backend))
    (tmp_path / "b.prototxt").write_text(NET.format(tmp_path / "lmdb", "backend: LMDB"))
    a, b = Net(str(tmp_path / "a.prototxt"), phase="TRAIN", seed=3), Net(str(tmp_path / "b.prototxt"),
                                                                      phase="TRAIN", seed=3)
    try:
        for _ in range(4):          # 20 records from 13: wraps around
            oa, ob = a.forward(blobs=["label"]), b.forward(blobs=["label"])
            np.testing.assert_array_equal(oa["out"], ob["out"])
            np.testing.assert_array_equal(oa["label"], ob["label"])
    finally:
        a.close()
        b.close()


def test_reader_order_seek_and_wrap(tmp_path):
    items = records(7)
    reference_leveldb(tmp_path / "ldb", items)
    reader = open_reader(str(tmp_path / "ldb"))
    try:
        expect = [v for _, v in sorted(items)]
        assert reader.size == 7 and reader.first_value() == expect[0]
        assert [reader.next_value() for _ in range(9)] == expect + expect[:2]
        reader.seek(12)
        assert reader.next_value() == expect[5]
    finally:
        reader.close()


def test_converters_write_leveldb(tmp_path):
    from tools.convert_imageset import main as convert_imageset
    from PIL import Image
    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((4, 5, 3), 40 * i + (c == "b") * 100, np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    assert convert_imageset(["", str(tmp_path / "imgs"), str(tmp_path / "out_ldb"), "--backend", "leveldb"]) == 0
    assert convert_imageset(["", str(tmp_path / "imgs"), str(tmp_path / "out_lmdb")]) == 0
    ldb, lmdb = open_reader(str(tmp_path / "out_ldb")), open_reader(str(tmp_path / "out_lmdb"))
    try:
        assert type(ldb).__name__ == "LevelDBReader" and ldb.size == lmdb.size == 4
        assert [ldb.next_value() for _ in range(4)] == [lmdb.next_value() for _ in range(4)]
    finally:
        ldb.close()
        lmdb.close()
    assert convert_imageset(["", str(tmp_path / "imgs"), str(tmp_path / "out_ldb"), "--backend", "leveldb"]) == 2


def test_mnist_converter_writes_leveldb(tmp_path):
    import gzip
    import struct
    from tools.convert_mnist_data import main as convert_mnist
    images = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    with gzip.open(tmp_path / "img.gz", "wb") as f:
        f.write(struct.pack(">IIII", 2051, 3, 4, 4) + images.tobytes())
    with gzip.open(tmp_path / "lab.gz", "wb") as f:
        f.write(struct.pack(">II", 2049, 3) + bytes([1, 2, 0]))
    assert convert_mnist([str(tmp_path / "img.gz"), str(tmp_path / "lab.gz"), str(tmp_path / "m"),
                          "--backend", "leveldb"]) == 0
    db = plyvel.DB(str(tmp_path / "m"))
    keys = [k for k, _ in db]
    db.close()
    assert keys == [b"00000000", b"00000001", b"00000002"]
