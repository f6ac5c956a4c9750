"""The MPI process group of a data-parallel run (mpi4py, imported only when a launcher started us).

Waits on collectives poll with a deadline (NETSPEC_MPI_TIMEOUT seconds, default 1800): a rank
that hangs ends the job with a message instead of a silent wait. A rank that dies is reported
by the launcher itself (mpirun names the rank and ends the job).
"""
import hashlib
import os
import sys
import time

import numpy as np

from ..errors import NetspecError

# Variables the common launchers set in every process they start (Open MPI, PMIx, MPICH/Hydra, Slurm).
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS")
DEFAULT_TIMEOUT = 1800.0


def launched_by_mpi():
    """The world size a launcher announces (0 when none started this process)."""
    for var in _SIZE_VARS:
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 0


def world():
    """The Group of all ranks, or None for a process that no MPI launcher started (or a
    launch of one rank): then training runs as one process and mpi4py is never imported."""
    if launched_by_mpi() <= 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise NetspecError(f"started by an MPI launcher ({launched_by_mpi()} ranks), but mpi4py cannot "
                           f"be imported ({e})", hint="pip install 'netspec[mpi]' (and MPI itself: "
                           "apt-get install openmpi-bin libopenmpi-dev)") from None
    group = Group(MPI.COMM_WORLD, MPI)
    return group if group.size > 1 else None


class Group:
    """rank, size, local_rank (the rank among those on this host) of an MPI communicator."""

    def __init__(self, comm, MPI, timeout=None):
        self.comm, self.MPI = comm, MPI
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.local_rank = comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank).Get_rank()
        self.timeout = float(os.environ.get("NETSPEC_MPI_TIMEOUT", DEFAULT_TIMEOUT)) if timeout is None else timeout

    @property
    def root(self):
        return self.rank == 0

    # -- agreement -------------------------------------------------------------------------
    def agree(self, fn, what):
        """Run fn() on every rank; if it fails anywhere, every rank raises one NetspecError naming
        the ranks that failed and why (so no rank is left waiting for the others)."""
        error, result = None, None
        try:
            result = fn()
        except NetspecError as e:
            error = str(e)
        except (OSError, MemoryError) as e:
            error = f"{type(e).__name__}: {e}"
        errors = self.allgather(error, what)
        failed = [(rank, message) for rank, message in enumerate(errors) if message is not None]
        if failed:
            raise RankError(_by_message(failed, self.size), ranks=[r for r, _ in failed])
        return result

    def check_same(self, what, digest, hint):
        """Refuse to go on unless every rank has the same digest of `what`."""
        digests = self.allgather(digest, f"comparing the {what}")
        odd = [rank for rank, d in enumerate(digests) if d != digests[0]]
        if odd:
            ranks = ", ".join(str(r) for r in odd)
            raise RankError(f"rank(s) {ranks} have another {what} than rank 0 "
                            f"({digests[odd[0]][:12]} against {digests[0][:12]})", ranks=odd, hint=hint)

    # -- collectives that end -----------------------------------------------------------------
    def allgather(self, value, what):
        self._wait(self.comm.Ibarrier(), what)      # everyone is there: the pickled exchange is quick
        return self.comm.allgather(value)

    def bcast(self, value, what):
        self._wait(self.comm.Ibarrier(), what)
        return self.comm.bcast(value, root=0)

    def Bcast(self, buffer, what):
        """Rank 0's buffer (a NumPy array) into every rank's, in place."""
        self._wait(self.comm.Ibcast(buffer, root=0), what)

    def Allreduce_sum(self, buffer, what):
        """The sum over ranks of a NumPy array, in place."""
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM), what)

    def _wait(self, request, what):
        deadline = time.monotonic() + self.timeout
        pause = 1e-5
        while not request.Test():
            if time.monotonic() > deadline:
                self.abort(f"rank {self.rank} waited {self.timeout:g} s for the other ranks while {what}: "
                           "one of them hangs or is gone (NETSPEC_MPI_TIMEOUT sets the wait)")
            time.sleep(pause)
            pause = min(pause * 2, 5e-4)    # short waits stay short; long ones leave the core to others

    def abort(self, message, code=2):
        """End every rank of the job now, saying why on stderr."""
        print(f"netspec train: error: {message}", file=sys.stderr, flush=True)
        self.comm.Abort(code)


class RankError(NetspecError):
    """A failure every rank knows about (agreed at set-up): rank 0 reports it, the others exit quietly."""

    def __init__(self, message, ranks=(), hint=None):
        super().__init__(message, hint=hint)
        self.ranks = list(ranks)


def _by_message(failed, size):
    """'rank 1: msg' lines, ranks with the same message named together (a message of every
    rank is said once, as it is)."""
    groups = {}
    for rank, message in failed:
        groups.setdefault(message, []).append(rank)
    if len(groups) == 1 and len(failed) == size:
        return failed[0][1]
    parts = [f"rank{'s' if len(r) > 1 else ''} {', '.join(map(str, r))}: {m}" for m, r in groups.items()]
    return parts[0] if len(parts) == 1 else "\n" + "\n".join(parts)


def digest(*parts):
    """sha256 of byte strings and arrays (as their float32 host bytes), in order."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, (bytes, bytearray)):
            h.update(part)
        else:
            h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()


class FlatReducer:
    """The CPU gradient exchange: every learnable diff packed into one float32 buffer, one
    Allreduce per step, scaled by 1/N (Caffe's NCCL callback: sum, then scal by 1/solver_count).
    The last element carries each rank's stop request (Ctrl-C on any rank stops all of them)."""

    def __init__(self, group, params):
        self.group, self.params = group, list(params)
        sizes = [p.blob.diff.size for p in self.params]
        self.ends = np.cumsum([0] + sizes)
        self.buffer = np.zeros(int(self.ends[-1]) + 1, np.float32)

    def broadcast_data(self):
        """Rank 0's parameter values onto every rank."""
        self._pack("data")
        self.group.Bcast(self.buffer, "broadcasting the weights of rank 0")
        self._unpack("data")

    def reduce(self, stop=False):
        self._pack("diff")
        self.buffer[-1] = 1.0 if stop else 0.0
        self.group.Allreduce_sum(self.buffer, "summing the gradients")
        stop = bool(self.buffer[-1] > 0)
        self.buffer *= np.float32(1.0 / self.group.size)
        self._unpack("diff")
        return stop

    def _pack(self, field):
        for p, a, b in zip(self.params, self.ends[:-1], self.ends[1:]):
            self.buffer[a:b] = getattr(p.blob, field).reshape(-1)

    def _unpack(self, field):
        for p, a, b in zip(self.params, self.ends[:-1], self.ends[1:]):
            getattr(p.blob, field)[...] = self.buffer[a:b].reshape(getattr(p.blob, field).shape)

    def close(self):
        pass
