"""Dataset conversions, as Caffe's tools do them: IDX to LMDB or LevelDB (convert_mnist_data),
image list or folder to LMDB or LevelDB (convert_imageset), either to mean image
(compute_image_mean)."""
import os

import numpy as np

from .. import caffe_pb2
from ..errors import NetspecError
from ..utils import LIST_LIMIT, read_regular
from .datum import IMAGE_FILE_LIMIT, array_to_datum, datum_to_array, encode_image, parse_datum, read_image
from .db import open_reader, write_db
from .idx import read_mnist


def mnist_to_lmdb(images_path, labels_path, out_path, backend="lmdb"):
    """IDX images + labels -> LMDB (or LevelDB) of raw 1xHxW Datums keyed "%08d" (Caffe's key format)."""
    images, labels = read_mnist(images_path, labels_path)

    def items():
        for i, (image, label) in enumerate(zip(images, labels)):
            yield b"%08d" % i, array_to_datum(image[None], label).SerializeToString()
    return write_db(out_path, items(), backend)


def read_list(list_path, root=""):
    """A convert_imageset list ("path label" per line) or, for a folder, one class per sorted
    sub-folder: [(relative path, label)]."""
    if os.path.isdir(list_path):
        classes = sorted(d for d in os.listdir(list_path) if os.path.isdir(os.path.join(list_path, d)))
        if not classes:
            raise NetspecError(f"folder '{list_path}' has no class sub-folders",
                               hint="arrange images as FOLDER/<class>/<image>, or pass a list file")
        return [(os.path.join(c, f), label) for label, c in enumerate(classes)
                for f in sorted(os.listdir(os.path.join(list_path, c)))]
    try:
        lines = [line.strip() for line in read_regular(list_path, "the list file", LIST_LIMIT, text=True).splitlines()
                 if line.strip()]
    except OSError as e:
        raise NetspecError(f"cannot read list file '{list_path}': {e.strerror}") from None
    out = []
    for n, line in enumerate(lines, 1):
        path, _, label = line.rpartition(" ")
        if not path or not label.lstrip("-").isdigit():
            raise NetspecError(f"{list_path}:{n}: expected 'path label', found '{line}'")
        out.append((path, int(label)))
    return out


def imageset_to_lmdb(root, entries, out_path, height=0, width=0, gray=False, encoded=False,
                     encode_type="", shuffle=False, seed=0, log=print, backend="lmdb",
                     check_size=False):
    """Images -> LMDB of Datums keyed "%08d_<path>", as convert_imageset: raw BGR pixels, or
    encoded (the file's own bytes when no resize or re-encoding is needed). check_size: every
    image must have the first one's channels x height x width (an error, nothing written)."""
    entries = list(entries)
    if check_size and encoded:
        raise NetspecError("check_size compares raw pixel sizes and cannot check encoded images",
                           hint="leave out --encoded, or --check_size (Caffe aborts on this pair)")
    first = []
    if shuffle:
        entries = [entries[i] for i in np.random.default_rng(seed).permutation(len(entries))]

    def items():
        for i, (path, label) in enumerate(entries):
            full = os.path.join(root, path)
            as_is = encoded and not (height or width) and _keeps_format(path, encode_type)
            try:
                if as_is:
                    data = read_regular(full, "the image", IMAGE_FILE_LIMIT)
                else:
                    pixels = read_image(full, height, width, not gray)
            except OSError as e:
                raise NetspecError(f"cannot read image '{full}': {e.strerror or e}") from None
            if as_is:
                datum = caffe_pb2.Datum(data=data, label=label, encoded=True)
            elif encoded:
                kind = (encode_type or os.path.splitext(path)[1][1:] or "png").upper().replace("JPG", "JPEG")
                datum = caffe_pb2.Datum(data=encode_image(pixels, kind), label=label, encoded=True)
            else:
                datum = array_to_datum(pixels, label)
                if check_size:
                    if not first:
                        first.append((path, pixels.shape))
                    if pixels.shape != first[0][1]:
                        raise NetspecError(f"image {i + 1} ('{path}') is {_dims(pixels.shape)} but the first "
                                           f"('{first[0][0]}') is {_dims(first[0][1])}",
                                           hint="resize them all (--resize_height/--resize_width), or leave out "
                                                "--check_size")
            if (i + 1) % 1000 == 0:
                log(f"Processed {i + 1} files.")
            yield (b"%08d_" % i) + path.encode(), datum.SerializeToString()
    count = write_db(out_path, items(), backend)
    log(f"Processed {count} files.")
    return count


def _dims(shape):
    return " x ".join(str(d) for d in shape) + " (channels x height x width)"


def _keeps_format(path, encode_type):
    ext = os.path.splitext(path)[1][1:].lower()
    return not encode_type or encode_type.lower() == ext or {encode_type.lower(), ext} == {"jpg", "jpeg"}


def compute_mean(db_path):
    """The mean image (float32 C x H x W) over every Datum in an LMDB or a LevelDB."""
    reader = open_reader(db_path)
    total, count = None, 0
    try:
        for _ in range(reader.size):
            item = datum_to_array(parse_datum(reader.next_value()))
            if total is None:
                total = np.zeros(item.shape, np.float64)
            elif item.shape != total.shape:
                raise NetspecError(f"record {count} has shape {item.shape}, earlier ones {total.shape}",
                                   hint="a mean needs images of one size (resize when converting)")
            total += item
            count += 1
    finally:
        reader.close()
    return (total / count).astype(np.float32)
