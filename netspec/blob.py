"""Blob: a tensor's values (data) and gradient (diff), as in Caffe and pycaffe."""
from math import prod


class Blob:
    __slots__ = ("data", "diff")

    def __init__(self, data, diff=None):
        self.data = data
        self.diff = diff

    @classmethod
    def zeros(cls, xp, shape, dtype="float32"):
        return cls(xp.zeros(shape, dtype=dtype), xp.zeros(shape, dtype=dtype))

    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def count(self):
        return int(self.data.size)

    # Caffe's legacy 4-d accessors: axes past the blob's own count as 1
    @property
    def num(self):
        return self._legacy(0)

    @property
    def channels(self):
        return self._legacy(1)

    @property
    def height(self):
        return self._legacy(2)

    @property
    def width(self):
        return self._legacy(3)

    def _legacy(self, axis):
        shape = self.shape
        if len(shape) > 4:
            raise ValueError(f"a {len(shape)}-d blob has no legacy num/channels/height/width accessors")
        return shape[axis] if axis < len(shape) else 1

    def reshape(self, *shape, **kwargs):
        """Caffe's Blob::Reshape: the same values in the new shape when the count is unchanged,
        else new zeroed memory. The net does not know until it is reshaped itself."""
        if kwargs:
            raise RuntimeError("Blob.reshape takes no kwargs")     # pycaffe's error
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        shape = tuple(int(d) for d in shape)
        if any(d < 0 for d in shape):
            raise ValueError(f"a blob dimension must not be negative, got {shape}")
        if shape == self.shape:
            return
        import numpy
        xp = numpy if isinstance(self.data, numpy.ndarray) else __import__("cupy")
        if prod(shape) == self.count:
            self.data, self.diff = self.data.reshape(shape), self.diff.reshape(shape)
        else:
            self.data, self.diff = xp.zeros(shape, self.data.dtype), xp.zeros(shape, self.data.dtype)

    def __repr__(self):
        return f"Blob(shape={self.shape})"
