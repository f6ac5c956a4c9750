"""What keeps a run's snapshots its own: the solver's counts checked, the snapshot folder
checked (and locked) before the first iteration, stale temporary files of a killed run
removed, an existing file of another kind never overwritten, and a solver state resumed only
with the weights written beside it (the digest in its side file)."""
import glob
import hashlib
import os
import re

from .. import caffe_pb2
from ..errors import NetspecError
from ..outputs import claim
from ..utils import PROTO_LIMIT, read_regular, regular_file

try:
    import fcntl
except ImportError:         # not on Windows: no lock there
    fcntl = None


def check_counts(sp):
    """Counts Caffe would take silently but that cannot be meant."""
    for field, hint in (("max_iter", "max_iter: 10000 trains 10000 iterations"),
                        ("snapshot", "snapshot: 5000 writes one every 5000 iterations; 0 writes none"),
                        ("display", "display: 100 logs every 100 iterations; 0 logs none"),
                        ("test_interval", "test_interval: 500 tests every 500 iterations"),
                        ("iter_size", "iter_size: 1 takes one batch per iteration")):
        value = getattr(sp, field)
        if value < 0 or (field == "iter_size" and value < 1):
            low = 1 if field == "iter_size" else 0
            raise NetspecError(f"solver field {field} is {value}; it must be {low} or more", hint=hint)


def weights_digest(path):
    regular_file(path, "the weights", PROTO_LIMIT)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class SnapshotLock:
    """The prefix's folder made and proved writable before the first iteration, and held by
    this run alone: a hidden lock file beside the snapshots, removed at the end of the run and
    released by the system when the process ends, even by kill -9."""

    def __init__(self, prefix, log):
        self.prefix, self.log, self._file = prefix, log, None
        folder = os.path.dirname(os.path.abspath(prefix))
        try:
            os.makedirs(folder, exist_ok=True)
            lock = os.path.join(folder, "." + os.path.basename(prefix) + ".lock")
            claim(lock, "a lock file", lambda _: True, "the snapshot lock")      # a planted link is dropped
            self._file = os.fdopen(os.open(lock, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666), "a")
        except OSError as e:
            raise NetspecError(f"cannot write snapshots with snapshot_prefix '{prefix}': {e.strerror}",
                               file=e.filename, hint="set snapshot_prefix to a writable folder") from None
        self._path = lock
        if fcntl is not None:
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if os.stat(lock).st_ino != os.fstat(self._file.fileno()).st_ino:
                    raise OSError("the lock file was removed by the run that held it")
            except OSError:
                self._file.close()
                self._file = None
                raise NetspecError(f"another run is writing snapshots with snapshot_prefix '{prefix}'",
                                   hint="wait for it, or give this run another snapshot_prefix") from None
        self._clean(folder)

    def _clean(self, folder):
        """A killed run leaves its half-written temporary files; no run holds them now."""
        stem = glob.escape(os.path.basename(self.prefix))
        for tmp in glob.glob(os.path.join(glob.escape(folder), f".{stem}_iter_*.tmp")):
            try:
                os.unlink(tmp)
                self.log.info(f"Removed {tmp}, left by an interrupted snapshot")
            except OSError:
                pass

    def close(self):
        if self._file is not None:
            try:
                os.unlink(self._path)   # while still held: a run that opened it finds it gone (above)
            except OSError:
                pass
            self._file.close()      # closing releases the lock
            self._file = None


def claim_snapshot(model, state, h5=False):
    """Refuse to overwrite, at a snapshot's paths, files that are not snapshots (unless --force)."""
    if h5:
        import h5py
        claim(model, "an HDF5 .caffemodel.h5", h5py.is_hdf5, "the snapshot path")
        claim(state, "an HDF5 .solverstate.h5", h5py.is_hdf5, "the snapshot path")
        return
    claim(model, "a .caffemodel", lambda p: _parses(p, caffe_pb2.NetParameter), "the snapshot path")
    claim(state, "a .solverstate", lambda p: _parses(p, caffe_pb2.SolverState), "the snapshot path")


def _parses(path, cls):
    message = cls()
    message.ParseFromString(read_regular(path, "the file", PROTO_LIMIT))
    return message.ByteSize() > 0


def check_pair(state, state_path, learned, side):
    """A solver state resumes only with its own weights: learned_net's iteration is the state's,
    and the weights are the very bytes written beside it (their digest in the side file)."""
    m = re.search(r"_iter_(\d+)\.caffemodel(\.h5)?$", learned)
    if m and int(m.group(1)) != state.iter:
        raise NetspecError(f"the solver state is at iteration {state.iter} but its learned_net '{learned}' "
                           f"is the weights of iteration {m.group(1)}", file=state_path,
                           hint="resume from a .solverstate and .caffemodel written together")
    digest = side.get("weights_sha256") if isinstance(side, dict) else None
    if digest and os.path.isfile(learned) and weights_digest(learned) != digest:
        raise NetspecError(f"'{learned}' is not the weights written with this solver state (their digest "
                           "differs): two runs wrote this snapshot prefix, or the file was replaced",
                           file=state_path, hint="resume from a snapshot set written by one run")


def refuse_weights(path, state):
    """A .caffemodel handed to --snapshot parses as a SolverState of unknown fields; say so."""
    if state.learned_net or len(state.history) or state.iter:
        return
    net = caffe_pb2.NetParameter()
    try:
        net.ParseFromString(read_regular(path, "the file", PROTO_LIMIT))
    except Exception:           # noqa: BLE001 - not weights either: the caller's message stands
        return
    if len(net.layer) or len(net.layers):
        raise NetspecError("this is a .caffemodel (trained weights), not a .solverstate", file=path,
                           hint=f"fine-tune from it with --weights {path}, or resume with --snapshot "
                                "PREFIX_iter_N.solverstate")


SIDE_LIMIT = 64 * 2 ** 20      # a .rng.json holds a few random generators


def read_side(path):
    """The .rng.json beside a solver state, checked for the parts a resume uses."""
    import json
    try:
        side = json.loads(read_regular(path, "the random state", SIDE_LIMIT).decode("utf-8"))
    except (OSError, ValueError) as e:      # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise NetspecError(f"cannot read the random state beside the solver state: {e}", file=path,
                           hint="delete this file to resume without it (data order restarts, as in Caffe)") from None
    nets = side.get("nets") if isinstance(side, dict) else None
    if not isinstance(nets, list) or not all(isinstance(n, dict) for n in nets):
        raise NetspecError("the random state beside the solver state is not one netspec wrote "
                           "(expected {\"seed\": ..., \"nets\": [{layer: state}, ...]})", file=path,
                           hint="delete this file to resume without it (data order restarts, as in Caffe)")
    return side


def apply_side(set_rng_state, nets, side, path):
    try:
        set_rng_state(nets, side)
    except NetspecError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise NetspecError(f"the random state beside the solver state is damaged ({type(e).__name__}: {e})",
                           file=path, hint="delete this file to resume without it (data order restarts, as in Caffe)") from None
