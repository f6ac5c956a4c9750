"""Datum records and images, in Caffe's conventions.

Pixels are stored channel-major (C, H, W), colour images in BGR order (OpenCV's order, which
Caffe's tools and models assume). Encoded Datums hold the image file's bytes unchanged.
"""
import io

import numpy as np

from .. import caffe_pb2
from ..errors import NetspecError
from ..utils import regular_file, size_text


def decode_image(data, color=None):
    """Image file bytes -> uint8 array (C, H, W); colour in BGR order.

    color None keeps the file's own kind (grey stays 1 channel, as OpenCV's
    IMREAD_ANYCOLOR); True forces 3 channels, False forces 1."""
    from PIL import Image
    with _open_image(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data, "an encoded Datum") as img:
        if color is None:
            color = img.mode not in ("L", "1", "I", "I;16", "F")
        img = img.convert("RGB" if color else "L")
        return image_to_chw(np.asarray(img))


def read_image(path, height=0, width=0, color=True):
    """An image file -> uint8 (C, H, W), resized when height and width are set, as Caffe's
    ReadImageToCVMat does (OpenCV's bilinear resize, see resize_linear)."""
    if height > 0 and width > 0:
        _bound_pixels(height, width, 3 if color else 1, f"new_height x new_width {height}x{width}",
                      "lower image_data_param new_height and new_width")
    regular_file(path, "the image", IMAGE_FILE_LIMIT)
    with _open_image(path, path) as img:
        pixels = image_to_chw(np.asarray(img.convert("RGB" if color else "L")))
    return resize_linear(pixels, height, width) if height > 0 and width > 0 else pixels


IMAGE_FILE_LIMIT = 256 * 2 ** 20
MAX_PIXELS = 2 ** 26        # 64 M pixels: 8192 x 8192, past any net's input


def _bound_pixels(height, width, channels, what, fix):
    if height * width > MAX_PIXELS:
        need = height * width * channels * 4       # the float32 copy a batch makes of it
        raise NetspecError(f"{what} is {height * width:,} pixels, over netspec's bound of {MAX_PIXELS:,}: "
                           f"it would need {size_text(need)} of memory per image", hint=fix)


def _open_image(source, name):
    """Pillow's image with its size read from the header and bounded before any pixel is decoded."""
    from PIL import Image
    try:
        img = Image.open(source)
    except Image.DecompressionBombError as e:
        raise NetspecError(f"image {name}: {e}", hint="resize the image before use") from None
    except Image.UnidentifiedImageError:
        raise NetspecError(f"image {name}: not an image file Pillow can read",
                           hint="use PNG, JPEG or another format Pillow reads") from None
    width, height = img.size
    if width < 1 or height < 1:
        img.close()
        raise NetspecError(f"image {name}: its header says {width}x{height} pixels")
    try:
        _bound_pixels(height, width, 3, f"image {name} ({width}x{height})", "resize the image before use")
    except NetspecError:
        img.close()
        raise
    return img


def _linear_taps(size, new_size):
    """OpenCV's INTER_LINEAR sampling along one axis: output pixel centres mapped back to
    the source ((d + 0.5) * size / new_size - 0.5), clamped to the edge pixels. Returns the
    two source indices and the weight of the second."""
    pos = (np.arange(new_size) + 0.5) * (size / new_size) - 0.5
    first = np.floor(pos).astype(np.int64)
    weight = pos - first
    outside = (first < 0) | (first >= size - 1)
    weight[outside] = 0
    first = np.clip(first, 0, size - 1)
    return first, np.minimum(first + 1, size - 1), weight.astype(np.float32)


def resize_linear(chw, height, width):
    """uint8 (C, H, W) -> (C, height, width) by OpenCV's cv::resize INTER_LINEAR rule, which
    Caffe uses: each output pixel blends the 2 x 2 source pixels around its centre, with no
    smoothing when shrinking (Pillow's BILINEAR widens its filter then, and gives other
    values). Rounded to nearest; OpenCV's fixed-point weights may differ from it by 1."""
    out = resize_linear_float(chw.astype(np.float32), height, width)
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def resize_linear_float(chw, height, width):
    """float (C, H, W) -> (C, height, width), by the same rule, unrounded."""
    top, bottom, wy = _linear_taps(chw.shape[1], height)
    left, right, wx = _linear_taps(chw.shape[2], width)
    rows = chw[:, top] * (1 - wy)[:, None] + chw[:, bottom] * wy[:, None]
    return rows[:, :, left] * (1 - wx) + rows[:, :, right] * wx


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
        if force_color and force_gray:
            raise NetspecError("transform_param sets both force_color and force_gray",
                               hint="keep one of them (or neither, to decode images as they are)")
        color = True if force_color else (False if force_gray else None)
        try:
            return decode_image(datum.data, color)
        except OSError as e:  # Pillow cannot identify or decode the bytes
            raise NetspecError(f"an encoded Datum does not decode as an image ({e})") from None
    shape = (datum.channels, datum.height, datum.width)
    values = np.frombuffer(datum.data, np.uint8) if datum.data else np.asarray(datum.float_data, np.float32)
    if values.size != np.prod(shape) or not all(shape):
        kind = "bytes of data" if datum.data else "float_data values"
        raise NetspecError(f"a Datum of {datum.channels} x {datum.height} x {datum.width} holds "
                           f"{values.size} {kind}, not {int(np.prod(shape))}",
                           hint="channels, height and width must describe the stored pixels")
    return values.reshape(shape)


def parse_datum(value):
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)
    except Exception as e:  # protobuf's DecodeError
        raise NetspecError(f"a record is not a Datum ({e})",
                           hint="the database must hold Caffe Datum records (tools/convert_imageset.py writes them)") from None
    return datum
