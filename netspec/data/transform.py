"""TransformationParameter, as Caffe's data_transformer.cpp applies it to a batch.

Per item: subtract the mean (mean_file at full size, indexed at the uncropped position, or
one mean_value per channel), crop (random offsets in TRAIN, the centre in TEST), mirror
(a coin flip per item, in either phase, exactly as Caffe: set mirror only where wanted),
then multiply by scale. Done for the whole batch at once.
"""
import numpy as np

from .. import caffe_pb2
from ..errors import NetspecError
from ..utils import atomic_write


def read_mean_file(path):
    """A mean .binaryproto (BlobProto) -> float32 array (C, H, W)."""
    from ..io import read_blobproto
    from ..io.blobs import proto_to_array
    mean = proto_to_array(read_blobproto(str(path))).astype(np.float32)
    if mean.ndim == 4 and mean.shape[0] == 1:
        mean = mean[0]
    if mean.ndim != 3:
        raise NetspecError(f"mean_file '{path}' holds a blob of shape {mean.shape}, expected 1 x C x H x W",
                           hint="compute it with tools/compute_image_mean.py")
    return mean


def write_mean_file(path, mean):
    """float (C, H, W) -> a .binaryproto with Caffe's legacy 1xCxHxW dims, written atomically."""
    c, h, w = mean.shape
    blob = caffe_pb2.BlobProto(num=1, channels=c, height=h, width=w)
    blob.data.extend(np.asarray(mean, np.float32).ravel().tolist())
    atomic_write(path, blob.SerializeToString())


class Transformer:
    def __init__(self, tp, phase):
        self.phase = phase
        self.scale = tp.scale
        self.crop = tp.crop_size
        self.mirror = tp.mirror
        self.force_color, self.force_gray = tp.force_color, tp.force_gray
        if tp.HasField("mean_file") and len(tp.mean_value):
            raise NetspecError("transform_param sets both mean_file and mean_value",
                               hint="keep one of them")
        self.mean = read_mean_file(tp.mean_file) if tp.HasField("mean_file") else None
        self.mean_values = np.asarray(tp.mean_value, np.float32) if len(tp.mean_value) else None

    def shape(self, item_shape):
        """(C, H, W) of one stored item -> (C, H', W') after cropping (InferBlobShape)."""
        c, h, w = item_shape
        if self.crop:
            if h < self.crop or w < self.crop:
                raise NetspecError(f"crop_size {self.crop} is larger than the {h}x{w} images",
                                   hint=f"use a crop_size of at most {min(h, w)}")
            return (c, self.crop, self.crop)
        return (c, h, w)

    def __call__(self, batch, rng):
        """uint8 or float (N, C, H, W) -> float32 (N, C, H', W'). rng draws the batch's mirror
        coins, then its crop offsets (the rows, then the columns)."""
        x = batch.astype(np.float32)
        n, c, h, w = x.shape
        if self.mean is not None:
            if self.mean.shape != (c, h, w):
                raise NetspecError(f"mean_file has shape {self.mean.shape}, but the data is {(c, h, w)}",
                                   hint="compute the mean over the same data (tools/compute_image_mean.py)")
            x -= self.mean
        elif self.mean_values is not None:
            mv = self.mean_values
            if mv.size not in (1, c):
                raise NetspecError(f"{mv.size} mean_value entries for {c} channels",
                                   hint=f"give one mean_value, or {c} (one per channel)")
            x -= mv.reshape(-1, 1, 1) if mv.size == c else mv[0]
        flips = rng.integers(0, 2, n).astype(bool) if self.mirror else np.zeros(n, bool)
        if self.crop:
            size = self.crop
            if self.phase == caffe_pb2.TRAIN:
                top = rng.integers(0, h - size + 1, n)
                left = rng.integers(0, w - size + 1, n)
            else:
                top = np.full(n, (h - size) // 2)
                left = np.full(n, (w - size) // 2)
            x = self._gather(x, top, left, size, size, flips)
        elif flips.any():
            x[flips] = x[flips, :, :, ::-1]
        if self.scale != 1:
            x *= np.float32(self.scale)
        return x

    @staticmethod
    def _gather(x, top, left, height, width, flips):
        """Per-item windows (and horizontal flips) in one fancy-indexing gather."""
        cols = np.arange(width)
        cols = np.where(flips[:, None], width - 1 - cols, cols) + left[:, None]     # (N, W')
        rows = top[:, None] + np.arange(height)                                       # (N, H')
        n = np.arange(len(x))[:, None, None, None]
        ch = np.arange(x.shape[1])[None, :, None, None]
        return x[n, ch, rows[:, None, :, None], cols[:, None, None, :]]
