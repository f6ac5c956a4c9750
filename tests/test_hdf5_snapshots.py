"""HDF5 weights and solver states, laid out as Caffe's Net::ToHDF5 and
SGDSolver::SnapshotSolverStateToHDF5 write them; training resumes from them."""
import h5py
import numpy as np
import pytest

from netspec import Net
from netspec.cli import main
from netspec.errors import NetspecError
from tests.test_train import data, weights, write_files  # noqa: F401  (the fixture)


def test_hdf5_snapshot_has_caffes_layout_and_resumes(data):  # noqa: F811
    extra = "snapshot_format: HDF5\nsnapshot_diff: true"
    whole = write_files(data, "whole", extra=extra)
    assert main(["train", "--solver", whole, "--seed", "7"]) == 0
    snap = data / "whole" / "snap_iter_10"
    with h5py.File(f"{snap}.caffemodel.h5", "r") as f:
        assert set(f) == {"data", "diff"}
        assert set(f["data"]) == {"d", "ip1", "relu", "drop", "ip2", "loss"}     # every layer of the TRAIN net
        assert list(f["data/ip1"]) == ["0", "1"] and f["data/ip1/0"].shape == (12, 9)
        assert f["data/ip1/0"].dtype == np.float32 and f["data/ip1/1"].shape == (12,)
        assert list(f["data/relu"]) == [] and f["diff/ip2/0"].shape == (3, 12)
    with h5py.File(f"{snap}.solverstate.h5", "r") as f:
        assert set(f) == {"iter", "learned_net", "current_step", "history"}
        assert f["iter"].shape == (1,) and f["iter"].dtype == np.int32 and f["iter"][0] == 10
        assert f["current_step"][0] == 0
        tid = f["learned_net"].id.get_type()
        assert f["learned_net"].shape == () and tid.get_strpad() == h5py.h5t.STR_NULLTERM
        assert f["learned_net"][()].decode().endswith("snap_iter_10.caffemodel.h5")
        assert list(f["history"]) == ["0", "1", "2", "3"] and f["history/0"].shape == (12, 9)
    assert not (data / "whole" / "snap_iter_10.caffemodel").exists()
    # the HDF5 weights load by layer name like a .caffemodel, and resuming repeats the run exactly
    final = weights(data / "whole" / "snap_iter_20.caffemodel.h5")
    (data / "whole" / "snap_iter_20.caffemodel.h5").unlink()
    assert main(["train", "--solver", whole, "--snapshot", f"{snap}.solverstate.h5"]) == 0
    resumed = weights(data / "whole" / "snap_iter_20.caffemodel.h5")
    for name in final:
        for a, b in zip(final[name], resumed[name]):
            assert np.array_equal(a, b), name


def test_net_save_hdf5_round_trips_and_shared_weights_are_written_once(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text("""name: "s"
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 4 } } }
layer { name: "a" type: "InnerProduct" bottom: "x" top: "a" param { name: "w" } param { name: "b" }
        inner_product_param { num_output: 4 weight_filler { type: "xavier" } bias_filler { type: "gaussian" } } }
layer { name: "b" type: "InnerProduct" bottom: "a" top: "y" param { name: "w" } param { name: "b" }
        inner_product_param { num_output: 4 } }
""")
    net = Net(str(path), seed=1)
    net.save_hdf5(str(tmp_path / "w.caffemodel.h5"))
    with h5py.File(tmp_path / "w.caffemodel.h5", "r") as f:
        assert list(f["data/a"]) == ["0", "1"] and list(f["data/b"]) == []     # b's blobs are a's
        assert "diff" not in f
    other = Net(str(path), seed=2)
    other.load_hdf5(str(tmp_path / "w.caffemodel.h5"))
    x = np.random.default_rng(0).standard_normal((2, 4))
    np.testing.assert_array_equal(other.forward(x=x)["y"], net.forward(x=x)["y"])


def test_bad_hdf5_files_are_clear_errors(tmp_path):
    net = Net("models/lenet/deploy.prototxt")
    (tmp_path / "junk.caffemodel.h5").write_bytes(b"not hdf5")
    with pytest.raises(NetspecError, match="not an HDF5 file"):
        net.copy_from(str(tmp_path / "junk.caffemodel.h5"))
    with h5py.File(tmp_path / "other.caffemodel.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(NetspecError, match="no 'data' group"):
        net.copy_from(str(tmp_path / "other.caffemodel.h5"))
