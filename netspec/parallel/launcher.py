"""`netspec train -gpu 0,1` (or `-gpu all`): one rank per listed device, as Caffe's flag does.

Started without an MPI launcher, netspec starts itself under mpirun, one rank per device; under
a launcher (`mpirun -n 2 netspec train -gpu 0,1 ...`) each rank takes the device its local rank
(its place among the ranks on its host) picks from the list, or, without -gpu, device
local_rank modulo the host's device count.
"""
import os
import shutil
import subprocess
import sys

from ..errors import NetspecError


def gpu_list(text):
    """[device ids] from '0,1,3' or 'all'."""
    if text.strip().lower() == "all":
        return list(range(device_count()))
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise NetspecError(f"-gpu takes device ids separated by commas, or 'all'; found '{text}'",
                           hint="e.g. -gpu 0,1") from None
    if not ids or any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise NetspecError(f"-gpu lists each device once, ids from 0; found '{text}'", hint="e.g. -gpu 0,1")
    return ids


def device_count():
    from ..backend import get_xp
    return get_xp("cupy").cuda.runtime.getDeviceCount()


def device_for(local_rank, gpus=None):
    """The device of the rank with this local rank."""
    if gpus:
        if local_rank >= len(gpus):
            raise NetspecError(f"{local_rank + 1} ranks on this host, but -gpu lists {len(gpus)} devices",
                               hint="start as many ranks per host as -gpu lists devices")
        return gpus[local_rank]
    return local_rank % device_count()


def use_device(index):
    from ..backend import get_xp
    get_xp("cupy").cuda.Device(index).use()


def mpirun_command(ranks, argv):
    """The command starting `netspec <argv>` as `ranks` MPI processes."""
    mpirun = shutil.which("mpirun") or shutil.which("mpiexec")
    if mpirun is None:
        raise NetspecError("-gpu with several devices starts one process per device through mpirun, "
                           "which is not on the PATH", hint="apt-get install openmpi-bin libopenmpi-dev; "
                           "pip install 'netspec[mpi]'")
    extra = []
    if hasattr(os, "geteuid") and os.geteuid() == 0 and _open_mpi(mpirun):
        extra.append("--allow-run-as-root")        # Open MPI refuses root without it
    return [mpirun, "-n", str(ranks)] + extra + [sys.executable, "-m", "netspec.cli"] + list(argv)


def relaunch(ranks, argv):
    """Run this same command as `ranks` MPI processes; their exit status."""
    return subprocess.call(mpirun_command(ranks, argv))


def _open_mpi(mpirun):
    try:
        out = subprocess.run([mpirun, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "Open MPI" in out or "OpenRTE" in out
