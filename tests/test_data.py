"""Data layers, the transformer and the prefetcher, on tiny files made in tmp_path."""
import threading
import time

import numpy as np
import pytest
from google.protobuf import text_format

from netspec import caffe_pb2
from netspec.blob import Blob
from netspec.data.datum import array_to_datum, datum_to_array, encode_image, parse_datum
from netspec.data.db import LMDBReader, write_lmdb
from netspec.data.prefetch import Prefetcher
from netspec.data.transform import Transformer, write_mean_file
from netspec.errors import LayerError, NetspecError
from netspec.layers import create
from netspec.layers.base import ShapeContext

TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST


def make(text, phase=TEST, seed=0):
    lp = text_format.Parse(text, caffe_pb2.LayerParameter())
    layer = create(lp, phase)
    layer.rng = np.random.default_rng(seed)
    return layer


def run_forward(layer, tops=2):
    shapes = layer.infer([], ShapeContext(layer.phase, layer.read_source()))
    blobs = [Blob.zeros(np, s) for s in shapes]
    layer.forward(np, [], blobs)
    return [b.data.copy() for b in blobs]


def images(n, c=1, h=4, w=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, c, h, w), dtype=np.uint8)


@pytest.fixture
def db(tmp_path):
    """An LMDB of 10 raw 1x4x5 Datums, keys %08d, label = index."""
    pixels = images(10)
    path = str(tmp_path / "db")
    write_lmdb(path, ((b"%08d" % i, array_to_datum(p, i).SerializeToString()) for i, p in enumerate(pixels)))
    return path, pixels


# -- Datum ---------------------------------------------------------------------------------------------
def test_datum_raw_float_and_encoded_round_trip():
    pixels = images(1, c=3)[0]
    assert np.array_equal(datum_to_array(parse_datum(array_to_datum(pixels, 3).SerializeToString())), pixels)
    floats = np.arange(6, dtype=np.float32).reshape(1, 2, 3) / 7
    np.testing.assert_array_equal(datum_to_array(array_to_datum(floats)), floats)
    encoded = caffe_pb2.Datum(data=encode_image(pixels), encoded=True, label=1)
    assert np.array_equal(datum_to_array(encoded), pixels)            # PNG is lossless; BGR order kept
    assert datum_to_array(encoded, force_gray=True).shape == (1, 4, 5)


# -- LMDB ---------------------------------------------------------------------------------------------
def test_lmdb_reads_in_key_order_and_wraps(tmp_path):
    path = str(tmp_path / "db")
    write_lmdb(path, [(b"b", b"2"), (b"a", b"1"), (b"c", b"3")])
    reader = LMDBReader(path)
    assert [reader.next_value() for _ in range(5)] == [b"1", b"2", b"3", b"1", b"2"]
    reader.seek(4)
    assert reader.next_value() == b"2"
    reader.close()


def test_write_lmdb_refuses_to_overwrite(db):
    with pytest.raises(NetspecError, match="already exists"):
        write_lmdb(db[0], [])


# -- the transformer -------------------------------------------------------------------------------
def naive_transform(batch, tp, phase, rng, mean=None):
    """Caffe's per-pixel loop, item by item, drawing the same numbers in the same order."""
    n, c, h, w = batch.shape
    crop = tp.crop_size
    flips = rng.integers(0, 2, n).astype(bool) if tp.mirror else np.zeros(n, bool)
    if crop and phase == TRAIN:
        tops, lefts = rng.integers(0, h - crop + 1, n), rng.integers(0, w - crop + 1, n)
    else:
        tops, lefts = np.full(n, (h - crop) // 2), np.full(n, (w - crop) // 2)
    oh, ow = (crop, crop) if crop else (h, w)
    if not crop:
        tops, lefts = np.zeros(n, int), np.zeros(n, int)
    out = np.zeros((n, c, oh, ow), np.float32)
    for i in range(n):
        for ch in range(c):
            for y in range(oh):
                for x in range(ow):
                    sy, sx = tops[i] + y, lefts[i] + x
                    value = np.float32(batch[i, ch, sy, sx])
                    if mean is not None:
                        value = value - mean[ch, sy, sx]
                    elif len(tp.mean_value):
                        value = value - np.float32(tp.mean_value[ch if len(tp.mean_value) > 1 else 0])
                    out[i, ch, y, ow - 1 - x if flips[i] else x] = value * np.float32(tp.scale)
    return out


@pytest.mark.parametrize("text,phase", [
    ("scale: 0.5", TRAIN),
    ("mean_value: 10 mean_value: 20 mean_value: 30 scale: 0.1", TEST),
    ("crop_size: 3", TEST),
    ("crop_size: 3 mirror: true", TRAIN),
    ("crop_size: 2 mirror: true mean_value: 100", TEST),
    ("mirror: true", TRAIN),
])
def test_transform_matches_caffes_loop(text, phase):
    tp = text_format.Parse(text, caffe_pb2.TransformationParameter())
    batch = images(6, c=3, h=5, w=6, seed=3)
    got = Transformer(tp, phase)(batch, np.random.default_rng(7))
    want = naive_transform(batch, tp, phase, np.random.default_rng(7))
    np.testing.assert_array_equal(got, want)


def test_transform_mean_file(tmp_path):
    batch = images(3, c=2, h=4, w=4, seed=1)
    mean = np.random.default_rng(2).uniform(0, 255, (2, 4, 4)).astype(np.float32)
    write_mean_file(tmp_path / "mean.binaryproto", mean)
    tp = caffe_pb2.TransformationParameter(mean_file=str(tmp_path / "mean.binaryproto"), crop_size=2, scale=0.5)
    got = Transformer(tp, TEST)(batch, np.random.default_rng(0))
    np.testing.assert_allclose(got, naive_transform(batch, tp, TEST, np.random.default_rng(0), mean), rtol=1e-6)
    with pytest.raises(NetspecError, match="mean_file has shape"):
        Transformer(tp, TEST)(images(1, c=2, h=5, w=5), np.random.default_rng(0))


def test_center_crop_by_hand():
    batch = np.arange(16, dtype=np.uint8).reshape(1, 1, 4, 4)
    out = Transformer(caffe_pb2.TransformationParameter(crop_size=2), TEST)(batch, np.random.default_rng(0))
    np.testing.assert_array_equal(out[0, 0], [[5, 6], [9, 10]])


# -- Data --------------------------------------------------------------------------------------------
DATA = 'name: "d" type: "Data" top: "data" top: "label" data_param {{ source: "{}" batch_size: 4 backend: LMDB }} ' \
       'transform_param {{ scale: 0.5 }}'


def test_data_layer_shapes_come_from_the_first_datum(db):
    layer = make(DATA.format(db[0]))
    assert layer.infer([], ShapeContext(source=layer.read_source())) == [(4, 1, 4, 5), (4,)]
    single = make(DATA.format(db[0]).replace(' top: "label"', ""))
    assert single.infer([], ShapeContext(source=single.read_source())) == [(4, 1, 4, 5)]


def test_data_layer_reads_in_order_and_wraps(db):
    path, pixels = db
    layer = make(DATA.format(path))
    seen = [run_forward(layer) for _ in range(3)]
    layer.close()
    from netspec.data import db as databases
    assert not databases._handles._open                      # the reading thread closed its database
    order = np.arange(12) % 10
    np.testing.assert_array_equal(np.concatenate([s[0] for s in seen]), pixels[order] * np.float32(0.5))
    np.testing.assert_array_equal(np.concatenate([s[1] for s in seen]), order)


def test_data_layer_resumes_at_the_same_batch(db):
    path, _ = db
    text = DATA.format(path).replace("scale: 0.5", "crop_size: 3 mirror: true")
    first = make(text, TRAIN, seed=5)
    batches = [run_forward(first) for _ in range(4)]
    first.close()
    again = make(text, TRAIN, seed=99)            # another generator: the saved state decides
    probe = make(text, TRAIN, seed=5)
    run_forward(probe)
    run_forward(probe)
    again.set_data_state(probe.data_state())
    probe.close()
    for want in batches[2:]:
        got = run_forward(again)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    again.close()


def test_data_layer_missing_source_names_the_path(tmp_path):
    layer = make(DATA.format(tmp_path / "nowhere"))
    with pytest.raises(LayerError, match="nowhere"):
        layer.infer([], ShapeContext(source=layer.read_source()))


def test_data_layer_rand_skip_starts_within_range(db):
    path, _ = db
    layer = make(DATA.format(path).replace("batch_size: 4", "batch_size: 1 rand_skip: 5"))
    label = run_forward(layer)[1][0]
    layer.close()
    assert 0 <= label < 5


def test_data_layer_encoded_records(tmp_path):
    pixels = images(3, c=3, seed=4)
    path = str(tmp_path / "enc")
    write_lmdb(path, ((b"%08d" % i, caffe_pb2.Datum(data=encode_image(p), encoded=True, label=i).SerializeToString())
                      for i, p in enumerate(pixels)))
    layer = make(DATA.format(path).replace("batch_size: 4", "batch_size: 3").replace("scale: 0.5", "scale: 1"))
    assert layer.infer([], ShapeContext(source=layer.read_source()))[0] == (3, 3, 4, 5)
    data, labels = run_forward(layer)
    layer.close()
    np.testing.assert_array_equal(data, pixels)
    np.testing.assert_array_equal(labels, [0, 1, 2])


# -- ImageData ----------------------------------------------------------------------------------------
def write_images(tmp_path, n=5):
    from PIL import Image
    folder = tmp_path / "imgs"
    folder.mkdir()
    rgb = np.random.default_rng(0).integers(0, 256, (n, 6, 8, 3), dtype=np.uint8)
    lines = []
    for i in range(n):
        Image.fromarray(rgb[i]).save(folder / f"{i}.png")
        lines.append(f"{i}.png {i % 3}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    return folder, rgb


IMAGE = ('name: "img" type: "ImageData" top: "data" top: "label" image_data_param {{ source: "{}" '
         'root_folder: "{}/" batch_size: 2 {} }}')


def test_image_data_reads_bgr_in_list_order(tmp_path):
    folder, rgb = write_images(tmp_path)
    layer = make(IMAGE.format(tmp_path / "list.txt", folder, ""))
    assert layer.infer([], ShapeContext(source=layer.read_source())) == [(2, 3, 6, 8), (2,)]
    data, labels = run_forward(layer)
    data2, _ = run_forward(layer)
    layer.close()
    np.testing.assert_array_equal(data, rgb[:2, :, :, ::-1].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(data2, rgb[2:4, :, :, ::-1].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(labels, [0, 1])


def test_image_data_resize_gray_and_shuffle(tmp_path):
    folder, _ = write_images(tmp_path)
    layer = make(IMAGE.format(tmp_path / "list.txt", folder, "new_height: 3 new_width: 4 is_color: false shuffle: true"))
    assert layer.infer([], ShapeContext(source=layer.read_source())) == [(2, 1, 3, 4), (2,)]
    labels = np.concatenate([run_forward(layer)[1] for _ in range(5)])     # two passes over 5 images
    layer.close()
    assert sorted(labels[:5]) == sorted([0, 1, 2, 0, 1])


def test_image_data_missing_list_file(tmp_path):
    layer = make(IMAGE.format(tmp_path / "missing.txt", tmp_path, ""))
    with pytest.raises(LayerError, match="missing.txt"):
        layer.infer([], ShapeContext(source=layer.read_source()))


# -- HDF5 -------------------------------------------------------------------------------------------
def write_h5(tmp_path):
    import h5py
    paths, rows = [], []
    for f, n in enumerate((3, 2)):
        path = tmp_path / f"part{f}.h5"
        data = np.arange(n * 4, dtype=np.float32).reshape(n, 2, 2) + 100 * f
        with h5py.File(path, "w") as h5:
            h5["data"] = data
            h5["label"] = np.arange(n, dtype=np.float32) + 10 * f
        paths.append(str(path))
        rows.append(data)
    (tmp_path / "h5.txt").write_text("\n".join(paths) + "\n")
    return np.concatenate(rows)


H5 = 'name: "h" type: "HDF5Data" top: "data" top: "label" hdf5_data_param {{ source: "{}" batch_size: 2 {} }}'


def test_hdf5_data_reads_files_in_turn_and_wraps(tmp_path):
    rows = write_h5(tmp_path)
    layer = make(H5.format(tmp_path / "h5.txt", ""))
    assert layer.infer([], ShapeContext(source=layer.read_source())) == [(2, 2, 2), (2,)]
    got = [run_forward(layer) for _ in range(3)]
    layer.close()
    np.testing.assert_array_equal(np.concatenate([g[0] for g in got]), rows[[0, 1, 2, 3, 4, 0]])
    np.testing.assert_array_equal(np.concatenate([g[1] for g in got]), [0, 1, 2, 10, 11, 0])


def test_hdf5_data_shuffle_visits_every_row_once_per_pass(tmp_path):
    write_h5(tmp_path)
    layer = make(H5.format(tmp_path / "h5.txt", "shuffle: true").replace("batch_size: 2", "batch_size: 5"))
    labels = run_forward(layer)[1]
    layer.close()
    assert sorted(labels) == [0, 1, 2, 10, 11]


def test_hdf5_data_missing_dataset(tmp_path):
    write_h5(tmp_path)
    layer = make(H5.format(tmp_path / "h5.txt", "").replace('top: "label"', 'top: "target"'))
    with pytest.raises(LayerError, match="no dataset 'target'"):
        layer.infer([], ShapeContext(source=layer.read_source()))


def test_hdf5_output_appends_batches(tmp_path):
    import h5py
    out = tmp_path / "out.h5"
    layer = make(f'name: "o" type: "HDF5Output" bottom: "data" bottom: "label" hdf5_output_param {{ file_name: "{out}" }}')
    for k in range(2):
        layer.forward(np, [Blob(np.full((2, 3), k, np.float32)), Blob(np.array([k, k], np.float32))], [])
    layer._file.close()
    with h5py.File(out, "r") as h5:
        assert h5["data"].shape == (4, 3) and list(h5["label"][:]) == [0, 0, 1, 1]


# -- in-memory and synthetic -------------------------------------------------------------------
def test_memory_data_batches_and_wraps():
    layer = make('name: "m" type: "MemoryData" top: "data" top: "label" '
                 'memory_data_param { batch_size: 2 channels: 1 height: 2 width: 2 }')
    data = np.arange(16, dtype=np.float32).reshape(4, 1, 2, 2)
    layer.set_input_arrays(data, [0, 1, 2, 3])
    outs = [run_forward(layer) for _ in range(3)]
    np.testing.assert_array_equal(outs[2][0], data[:2])
    np.testing.assert_array_equal(outs[1][1], [2, 3])
    with pytest.raises(NetspecError, match="multiple of the batch size"):
        layer.set_input_arrays(data[:3], [0, 1, 2])


def test_input_shapes():
    layer = make('name: "i" type: "Input" top: "a" top: "b" input_param { shape { dim: 2 dim: 3 } }')
    assert layer.infer([], ShapeContext(source=layer.read_source())) == [(2, 3), (2, 3)]
    with pytest.raises(LayerError, match="2 shapes for 3 tops"):
        make('name: "i" type: "Input" top: "a" top: "b" top: "c" '
             'input_param { shape { dim: 1 } shape { dim: 2 } }')


def test_dummy_data_legacy_shape_and_constant_filler():
    layer = make('name: "x" type: "DummyData" top: "a" top: "b" dummy_data_param { num: 2 channels: 3 '
                 'height: 1 width: 1 data_filler { type: "constant" value: 7 } }')
    assert layer.infer([], ShapeContext(source=layer.read_source())) == [(2, 3, 1, 1), (2, 3, 1, 1)]
    a, b = run_forward(layer)
    assert (a == 7).all() and (b == 7).all()


def test_window_data_is_shape_only():
    layer = make('name: "w" type: "WindowData" top: "data" top: "label" '
                 'window_data_param { source: "w.txt" batch_size: 8 crop_size: 11 }')
    assert layer.infer([], ShapeContext(source=layer.read_source())) == [(8, 3, 11, 11), (8,)]
    with pytest.raises(NetspecError, match="not run"):
        run_forward(layer)


# -- prefetch ----------------------------------------------------------------------------------
def test_prefetcher_keeps_order_and_stops():
    started = threading.active_count()
    p = Prefetcher(lambda k: k * k, start=3, depth=2)
    assert [p.next() for _ in range(4)] == [9, 16, 25, 36]
    p.stop()
    time.sleep(0.05)
    assert not p.thread.is_alive() and threading.active_count() <= started


def test_prefetcher_passes_errors_to_the_consumer():
    def produce(k):
        if k == 1:
            raise NetspecError("broken record")
        return k
    p = Prefetcher(produce)
    assert p.next() == 0
    with pytest.raises(NetspecError, match="broken record"):
        p.next()


def test_input_and_memory_data_inside_a_net():
    from netspec.net import Net
    from netspec.io import parse_net_text
    text = '''name: "n"
layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "mem" type: "MemoryData" top: "m" top: "label" memory_data_param { batch_size: 2 channels: 3 height: 1 width: 1 } }
layer { name: "flat" type: "Flatten" bottom: "m" top: "mflat" }
layer { name: "sum" type: "Eltwise" bottom: "x" bottom: "mflat" top: "sum" }
'''
    net = Net(parse_net_text(text).param)
    net.layer("mem").set_input_arrays(np.arange(12, dtype=np.float32).reshape(4, 3, 1, 1), [0, 1, 2, 3])
    x = np.ones((2, 3), np.float32)
    out = net.forward(x=x)
    np.testing.assert_array_equal(out["sum"], x + np.arange(6).reshape(2, 3))
    out = net.forward(x=x)
    np.testing.assert_array_equal(out["sum"], x + np.arange(6, 12).reshape(2, 3))
    np.testing.assert_array_equal(out["label"], [2, 3])


def test_data_layer_reads_an_lmdb_without_backend_and_names_a_broken_leveldb(db, tmp_path):
    path, _ = db
    lmdb_default = make(DATA.format(path).replace(" backend: LMDB", ""))       # backend defaults to LEVELDB
    assert lmdb_default.infer([], ShapeContext(source=lmdb_default.read_source()))[0] == (4, 1, 4, 5)
    (tmp_path / "leveldb").mkdir()
    (tmp_path / "leveldb" / "CURRENT").write_text("MANIFEST-000001\n")      # no manifest: broken
    layer = make(DATA.format(tmp_path / "leveldb").replace(" backend: LMDB", ""))
    with pytest.raises(LayerError, match="as a LevelDB"):
        layer.infer([], ShapeContext(source=layer.read_source()))


def test_a_record_that_is_not_a_datum_is_a_clear_error(tmp_path):
    path = str(tmp_path / "bad")
    write_lmdb(path, [(b"00000000", array_to_datum(images(1)[0], 0).SerializeToString()), (b"00000001", b"\xff\xff")])
    layer = make(DATA.format(path).replace("batch_size: 4", "batch_size: 1"))
    run_forward(layer)
    with pytest.raises(NetspecError, match="layer 'd' \\(Data\\): a record is not a Datum"):
        run_forward(layer)
    layer.close()


def test_dummy_data_refills_random_fillers_every_forward():
    layer = make('name: "x" type: "DummyData" top: "a" dummy_data_param { shape { dim: 3 dim: 4 } '
                 'data_filler { type: "gaussian" std: 2 } }')
    (first,), (second,) = run_forward(layer), run_forward(layer)
    assert first.shape == (3, 4) and not np.array_equal(first, second) and first.std() > 0.5
