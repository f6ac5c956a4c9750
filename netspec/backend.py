"""The array module switch: the same op code runs on NumPy (CPU) and CuPy (NVIDIA GPU).

CuPy is imported only when asked for, so every CPU path works where it is absent.
"""
import numpy

from .errors import NetspecError

BACKENDS = ("numpy", "cupy")


def get_xp(name="numpy"):
    """The array module for a backend name; a clear error where CuPy or a GPU is missing."""
    if name in (None, "numpy", "cpu", "CPU"):
        return numpy
    if name in ("cupy", "gpu", "GPU"):
        try:
            import cupy
        except ImportError as e:
            raise NetspecError(f"backend 'cupy' asked for, but CuPy cannot be imported ({e})",
                               hint="install the GPU extra: pip install 'netspec[gpu]', or use --backend numpy") from None
        try:
            if cupy.cuda.runtime.getDeviceCount() < 1:
                raise RuntimeError("no CUDA device")
        except Exception as e:  # CuPy raises its own CUDA errors here
            raise NetspecError(f"backend 'cupy' asked for, but no usable NVIDIA GPU was found ({e})",
                               hint="run on a machine with a GPU, or use --backend numpy") from None
        return cupy
    raise NetspecError(f"unknown backend '{name}'", hint="choose one of: " + ", ".join(BACKENDS))


def gpu_available():
    """True when CuPy imports and sees a GPU (tests use this to skip)."""
    try:
        get_xp("cupy")
        return True
    except NetspecError:
        return False


def to_numpy(a):
    """A NumPy copy (or view) of an array from either backend."""
    return a.get() if hasattr(a, "get") and not isinstance(a, numpy.ndarray) else numpy.asarray(a)
