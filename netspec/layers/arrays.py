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


# -- unknown dimensions ----------------------------------------------------------------------
# A shape entry may be None: a dimension known only when the net runs (a data layer whose source
# is missing). Rules pass through what they can, as ONNX shape inference does.

def known(*dims):
    return all(d is not None for d in dims)


def count_or_none(shape, start=0, end=None):
    """The product of shape[start:end], None when an entry there is unknown."""
    part = shape[start:end]
    return math.prod(part) if known(*part) else None


def unknown_axes(shape):
    return [a for a, d in enumerate(shape) if d is None]
