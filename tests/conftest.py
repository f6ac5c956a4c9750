import numpy as np
import pytest

from netspec.backend import gpu_available


def _backends():
    yield pytest.param("numpy", id="numpy")
    yield pytest.param("cupy", id="cupy",
                       marks=pytest.mark.skipif(not gpu_available(), reason="no CuPy/GPU here"))


@pytest.fixture(params=list(_backends()))
def xp(request):
    """Each test that takes `xp` runs on NumPy, and on CuPy where a GPU is present."""
    if request.param == "numpy":
        return np
    import cupy
    return cupy
