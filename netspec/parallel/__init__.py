"""Data-parallel training, as Caffe's multi-GPU training does it, on the engines users run:
MPI (mpi4py) between processes and hosts, NCCL (cupy.cuda.nccl) between GPUs.

  mpi.py       the process group: rank, size, local rank; agreement at set-up, digests, waits
               that end instead of hanging; the CPU gradient exchange (one flat buffer per step)
  nccl.py      the GPU gradient exchange, overlapped with backward layer by layer
  sync.py      what the trainer calls: share the records, broadcast the weights, reduce
  launcher.py  `netspec train -gpu 0,1` starting one rank per device under mpirun
"""
from .mpi import launched_by_mpi, world

__all__ = ["launched_by_mpi", "world"]
