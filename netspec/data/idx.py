"""IDX files (MNIST, Fashion-MNIST), gzip-compressed or not."""
import gzip

import numpy as np

from ..errors import NetspecError
from ..utils import PROTO_LIMIT, regular_file

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049


def _open(path):
    regular_file(path, "the IDX file", PROTO_LIMIT)
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def read_idx(path, magic):
    """An IDX file -> uint8 array: (N, rows, cols) for images (magic 2051), (N,) for labels (2049)."""
    try:
        with _open(path) as f:
            data = f.read()
    except OSError as e:
        raise NetspecError(f"cannot read IDX file '{path}': {e.strerror or e}") from None
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found != magic:
        kind = "images" if magic == IMAGE_MAGIC else "labels"
        raise NetspecError(f"'{path}' is not an IDX {kind} file (magic number {found}, expected {magic})",
                           hint="pass the *-images-idx3-ubyte file as images and *-labels-idx1-ubyte as labels")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise NetspecError(f"IDX file '{path}' is truncated: {body.size} bytes for shape {tuple(dims)}")
    return body.reshape(dims)


def read_mnist(images_path, labels_path):
    images, labels = read_idx(images_path, IMAGE_MAGIC), read_idx(labels_path, LABEL_MAGIC)
    if len(images) != len(labels):
        raise NetspecError(f"{len(images)} images but {len(labels)} labels",
                           hint="pass the images and labels of the same set (train or t10k)")
    return images, labels

