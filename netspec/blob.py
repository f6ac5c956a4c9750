"""Blob: a tensor's values (data) and gradient (diff), as in Caffe and pycaffe."""


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

    def __repr__(self):
        return f"Blob(shape={self.shape})"
