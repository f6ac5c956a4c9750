"""Every reader of a file named by a user or a net takes regular files only, of a bounded size:
a FIFO must not hang it, /dev/zero must not read without end, a folder or a huge file is a
clear error."""
import os
import threading

import pytest

from netspec import caffe_pb2 as pb
from netspec import compare, curves
from netspec import io as nio
from netspec.commands import classify
from netspec.data import convert, datum, idx, images
from netspec.errors import NetspecError
from netspec.training import guard

READERS = {
    "net file": lambda p: nio.read_message(p, pb.NetParameter),
    "hdf5 weights": lambda p: nio.read_weights(p),
    "blob dump (.npz)": lambda p: compare.dump_values(p),
    "blob dump (.h5)": lambda p: compare.dump_values(p),
    "onnx model": lambda p: compare.onnx_values(p, {}, []),
    "training log": curves.read_log,
    "classify mean (.npy)": classify.read_mean,
    "classify input (.npy)": lambda p: classify.read_inputs(p, "jpg"),
    "classify labels": classify.read_labels,
    "IDX file": lambda p: idx.read_idx(p, idx.IMAGE_MAGIC),
    "image list": convert.read_list,
    "image (pycaffe)": images.load_image,
    "image (datum)": datum.read_image,
    "random state beside a solver state": guard.read_side,
    "weights digest": guard.weights_digest,
}
SUFFIX = {"hdf5 weights": ".caffemodel.h5", "blob dump (.npz)": ".npz", "blob dump (.h5)": ".h5",
          "onnx model": ".onnx", "classify mean (.npy)": ".npy", "classify input (.npy)": ".npy",
          "net file": ".prototxt"}

LAZY = {"hdf5 weights", "blob dump (.h5)", "blob dump (.npz)"}


def _special(tmp_path, kind, reader):
    """A path of the given kind whose name carries the reader's suffix."""
    path = str(tmp_path / ("input" + SUFFIX.get(reader, "")))
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        os.mkdir(path)
    elif kind == "huge":            # sparse: 3 GiB of nothing, over every bound but the HDF5 ones
        with open(path, "wb") as f:
            f.truncate(3 * 2 ** 30)
    else:
        os.symlink("/dev/zero", path)
    return path


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "folder", "huge"])
@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_reader_refuses_what_is_not_a_regular_file_at_once(tmp_path, reader, kind):
    if reader == "onnx model":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    path = _special(tmp_path, kind, reader)
    outcome = {}

    def read():
        try:
            READERS[reader](path)
        except NetspecError as e:
            outcome["error"] = str(e)
        except IsADirectoryError as e:    # as open() says it, for the caller to word
            outcome["error"] = f"{e.filename}: a folder"
        except BaseException as e:        # noqa: BLE001 - reported below
            outcome["other"] = e

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(20)
    if worker.is_alive():           # unblock the reader stuck on the FIFO, then fail
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"{reader} hung on a {kind}")
    assert "other" not in outcome, outcome.get("other")
    assert "error" in outcome, f"{reader} read a {kind} without complaint"
    words = {"fifo": ["a FIFO"], "dev-zero": ["a device"], "folder": ["folder", "directory"],
             "huge": ["over the"]}[kind]
    if kind == "huge" and reader in LAZY:
        words = [""]            # read in place, never whole: bounded by 2 TiB, refused for what it holds
    assert any(w in outcome["error"] for w in words), outcome["error"]
