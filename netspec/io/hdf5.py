"""Caffe's HDF5 weights (.caffemodel.h5) and solver states (.solverstate.h5).

Laid out as Caffe's Net::ToHDF5 and SGDSolver::SnapshotSolverStateToHDF5 write them, so
each side reads the other's:

  .caffemodel.h5   group data/<layer name> for every layer, holding a float dataset named
                   by the blob index ("0", "1" ...) with the blob's shape, written only by
                   the layer that owns a shared parameter; with diffs, the same under diff/.
  .solverstate.h5  iter and current_step (int datasets of one element), learned_net (a
                   null-terminated string), history/<i> (float datasets, one per history blob).

Readers give the same messages the binary readers do (BlobProtos, a SolverState), so
everything downstream (loading by layer name, resuming) is shared with the binary forms.
"""
import os
import tempfile

import numpy as np

from .. import caffe_pb2
from ..errors import NetspecError
from ..utils import PROTO_LIMIT, file_mode, regular_file

SUFFIX = ".h5"


def is_hdf5(path):
    return str(path).lower().endswith(SUFFIX)


def write_file(path, fill):
    """Write an HDF5 file through a temporary file beside it and a rename (`fill` fills the
    open h5py.File): never half-written, a link at `path` replaced, a replaced file's mode kept."""
    import h5py
    path = os.path.abspath(os.fspath(path))     # a link at path is replaced, never written through
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, file_mode(path))
        with h5py.File(tmp, "w") as f:
            fill(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _open(path, what):
    import h5py
    try:
        regular_file(path, f"the {what} file", PROTO_LIMIT * 1024)
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise NetspecError(f"{what} file does not exist", file=str(path), hint="check the path") from None
    except OSError as e:
        raise NetspecError(f"not an HDF5 file: {e}", file=str(path),
                           hint=f"a {what} file ending in .h5 must be HDF5 (as Caffe writes with "
                                "snapshot_format: HDF5)") from None


def _float_dataset(group, name, array):
    group.create_dataset(name, data=np.asarray(array, dtype=np.float32))


def write_net(path, layers, write_diff=False):
    """layers: [(layer name, [(data, diff, owned), ...])] in the net's order."""
    def fill(f):
        data = f.create_group("data")
        diff = f.create_group("diff") if write_diff else None
        for name, blobs in layers:
            g = data.create_group(name)
            d = diff.create_group(name) if write_diff else None
            for j, (values, grads, owned) in enumerate(blobs):
                if owned:
                    _float_dataset(g, str(j), values)
                if write_diff:          # Caffe writes diffs whether or not the layer owns the blob
                    _float_dataset(d, str(j), grads)
    write_file(path, fill)


def read_weights(path):
    """{layer name: [BlobProto, ...]} from a .caffemodel.h5 (data/<layer>/<j>). A layer whose
    group is empty (all its parameters shared with another layer) is left out, as Caffe
    skips a shared parameter the file does not hold."""
    from .blobs import array_to_proto
    import h5py
    found = {}
    with _open(path, "weights") as f:
        if "data" not in f or not isinstance(f["data"], h5py.Group):
            raise NetspecError("this HDF5 file has no 'data' group: not a Caffe .caffemodel.h5", file=str(path),
                               hint="give weights written by Caffe or netspec with snapshot_format: HDF5")
        for name, group in f["data"].items():
            keys = sorted(group.keys(), key=lambda k: int(k) if k.isdigit() else -1)
            if not keys:
                continue
            if [k for k in keys] != [str(j) for j in range(len(keys))]:
                raise NetspecError(f"layer '{name}': blob datasets {keys} are not numbered 0, 1, ...",
                                   file=str(path))
            found[name] = [array_to_proto(np.asarray(group[k][()])) for k in keys]
    return found


def _save_int(f, name, value):
    f.create_dataset(name, data=np.array([value], dtype=np.int32))


def _save_string(f, name, text):
    """A scalar, null-terminated C string, as HDF5's H5LTmake_dataset_string writes it."""
    import h5py
    raw = text.encode()
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(len(raw) + 1)
    tid.set_strpad(h5py.h5t.STR_NULLTERM)
    space = h5py.h5s.create(h5py.h5s.SCALAR)
    dset = h5py.h5d.create(f.id, name.encode(), tid, space)
    dset.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array(raw + b"\0", dtype=f"S{len(raw) + 1}"))


def write_state(path, state):
    """A SolverState message as a .solverstate.h5."""
    from .blobs import proto_to_array

    def fill(f):
        _save_int(f, "iter", state.iter)
        _save_string(f, "learned_net", state.learned_net)
        _save_int(f, "current_step", state.current_step)
        history = f.create_group("history")
        for i, bp in enumerate(state.history):
            _float_dataset(history, str(i), proto_to_array(bp))
    write_file(path, fill)


def _load_int(f, name, path):
    if name not in f:
        raise NetspecError(f"the solver state has no '{name}' dataset", file=str(path),
                           hint="give a .solverstate.h5 written by Caffe or netspec")
    return int(np.asarray(f[name][()]).reshape(-1)[0])


def read_state(path):
    """A .solverstate.h5 as a SolverState message."""
    from .blobs import array_to_proto
    state = caffe_pb2.SolverState()
    with _open(path, "solver state") as f:
        state.iter = _load_int(f, "iter", path)
        if "learned_net" in f:
            value = f["learned_net"][()]
            state.learned_net = (value.decode() if isinstance(value, bytes) else str(value)).rstrip("\0")
        state.current_step = _load_int(f, "current_step", path) if "current_step" in f else 0
        history = f.get("history")
        if history is None:
            raise NetspecError("the solver state has no 'history' group", file=str(path))
        count = len(history.keys())
        for i in range(count):
            if str(i) not in history:
                raise NetspecError(f"history datasets are not numbered 0..{count - 1}", file=str(path))
            array_to_proto(np.asarray(history[str(i)][()]), bp=state.history.add())
    return state
