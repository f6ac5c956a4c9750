"""Datum records and images, in Caffe's conventions.

Pixels are stored channel-major (C, H, W), colour images in BGR order (OpenCV's order, which
Caffe's tools and models assume). Encoded Datums hold the image file's bytes unchanged.
"""
import io

import numpy as np

from .. import caffe_pb2
from ..errors import NetspecError


def decode_image(data, color=None):
    """Image file bytes -> uint8 array (C, H, W); colour in BGR order.

    color None keeps the file's own kind (grey stays 1 channel, as OpenCV's
    IMREAD_ANYCOLOR); True forces 3 channels, False forces 1."""
    from PIL import Image
    with Image.open(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data) as img:
        if color is None:
            color = img.mode not in ("L", "1", "I", "I;16", "F")
        img = img.convert("RGB" if color else "L")
        return image_to_chw(np.asarray(img))


def read_image(path, height=0, width=0, color=True):
    """An image file -> uint8 (C, H, W), resized (bilinear) when height and width are set,
    as Caffe's ReadImageToCVMat does."""
    from PIL import Image
    with Image.open(path) as img:
        img = img.convert("RGB" if color else "L")
        if height > 0 and width > 0:
            img = img.resize((width, height), Image.BILINEAR)
        return image_to_chw(np.asarray(img))


def image_to_chw(pixels):
    """(H, W) grey or (H, W, 3) RGB -> (C, H, W) with colour in BGR order."""
    if pixels.ndim == 2:
        return pixels[None]
    return np.ascontiguousarray(pixels[:, :, ::-1].transpose(2, 0, 1))


def encode_image(chw, fmt="PNG"):
    """uint8 (C, H, W) BGR -> image file bytes."""
    from PIL import Image
    hwc = chw[0] if chw.shape[0] == 1 else chw[::-1].transpose(1, 2, 0)
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(hwc)).save(out, format=fmt)
    return out.getvalue()


def array_to_datum(pixels, label=None):
    """uint8 (C, H, W) -> a raw Datum; float arrays go to float_data."""
    c, h, w = pixels.shape
    datum = caffe_pb2.Datum(channels=c, height=h, width=w)
    if pixels.dtype == np.uint8:
        datum.data = pixels.tobytes()
    else:
        datum.float_data.extend(np.asarray(pixels, np.float32).ravel().tolist())
    if label is not None:
        datum.label = int(label)
    return datum


def datum_to_array(datum, force_color=False, force_gray=False):
    """A Datum -> (C, H, W) array: uint8 for pixels (raw or encoded), float32 for float_data."""
    if datum.encoded:
        color = True if force_color else (False if force_gray else None)
        try:
            return decode_image(datum.data, color)
        except OSError as e:  # Pillow cannot identify or decode the bytes
            raise NetspecError(f"an encoded Datum does not decode as an image ({e})") from None
    shape = (datum.channels, datum.height, datum.width)
    if datum.data:
        return np.frombuffer(datum.data, np.uint8).reshape(shape)
    return np.asarray(datum.float_data, np.float32).reshape(shape)


def parse_datum(value):
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)
    except Exception as e:  # protobuf's DecodeError
        raise NetspecError(f"a record is not a Datum ({e})",
                           hint="the database must hold Caffe Datum records (tools/convert_imageset.py writes them)") from None
    return datum
