"""Where the NumPy backend must hand out arrays as CuPy's does: CuPy's asarray always makes a
fresh, writeable, C-contiguous device array, so code written against one backend may update
what it is given in place."""
import numpy as np
import pytest

from netspec import caffe_pb2
from netspec.fillers import FILLERS, fill


@pytest.mark.parametrize("kind", sorted(FILLERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_filled_parameters_can_be_updated_in_place(kind, dtype, xp):
    a = fill(xp, np.random.default_rng(0), (2, 1, 4, 4), caffe_pb2.FillerParameter(type=kind), dtype)
    assert a.dtype == np.dtype(dtype) and a.flags.c_contiguous
    before = a.copy()
    a -= 1                      # what the solver does to a parameter (fails where read-only)
    assert float(abs(before - 1 - a).max()) == 0
