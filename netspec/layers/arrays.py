"""Small array and shape helpers the layer modules share."""
import math

import numpy as np

from ..errors import LayerError


def count(shape, start=0, end=None):
    return math.prod(shape[start:end])


def scatter_add(xp, target, index, values):
    """target[index] += values, with repeated indices adding up."""
    if xp is np:
        np.add.at(target, index, values)
    else:
        import cupyx
        cupyx.scatter_add(target, index, values)


def as_indices(values, limit, what):
    """Float-coded indices (as Caffe stores them) -> int array; each must be an integer in [0, limit)."""
    idx = values.astype(np.int64)
    bad = (idx != values) | (idx < 0) | (idx >= limit)
    if bool(bad.any()):         # one device sync per call
        raise LayerError(f"{what} {float(values[bad].reshape(-1)[0]):g} is not an integer in [0, {limit})")
    return idx
