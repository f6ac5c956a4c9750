"""Images in and out of a net's input layout, as pycaffe's caffe.io does it (and `netspec
classify` uses): load_image gives H x W x K float32 RGB in [0, 1]; a Preprocessor turns such an
image into the K x H x W input of a named net input (resize, transpose, channel swap, raw scale,
mean, input scale, in that order) and back; oversample gives the ten crops of Caffe's classifier.
Images are read with Pillow and resized bilinearly on pixel centres (OpenCV's rule; pycaffe uses
scikit-image's resize, whose values may differ slightly).
"""
import numpy as np

from ..utils import regular_file
from . import datum as _datum


def load_image(filename, color=True):
    """An image file as H x W x 3 (color) or H x W x 1 float32 in [0, 1], RGB."""
    regular_file(filename, "the image", _datum.IMAGE_FILE_LIMIT)
    with _datum._open_image(filename, filename) as img:
        if color:
            pixels = np.asarray(img.convert("RGB"))
        else:
            pixels = np.asarray(img.convert("L"))[:, :, None]
    return (pixels / 255.0).astype(np.float32)


def resize_image(im, new_dims, interp_order=1):
    """H x W x K -> new_dims[0] x new_dims[1] x K: bilinear (interp_order 1, on pixel centres, as
    OpenCV and Caffe's own resizing) or nearest (interp_order 0)."""
    im = np.asarray(im, dtype=np.float32)
    height, width = (int(d) for d in new_dims)
    if interp_order not in (0, 1):
        raise ValueError(f"interp_order {interp_order} is not supported here: 0 (nearest) or 1 (bilinear)")
    if im.shape[:2] == (height, width):
        return im.copy()
    squeeze = im.ndim == 2
    chw = (im[None] if squeeze else im.transpose(2, 0, 1))
    if interp_order == 0:
        rows = np.minimum((np.arange(height) + 0.5) * im.shape[0] / height, im.shape[0] - 1).astype(int)
        cols = np.minimum((np.arange(width) + 0.5) * im.shape[1] / width, im.shape[1] - 1).astype(int)
        out = chw[:, rows][:, :, cols]
    else:
        out = _datum.resize_linear_float(chw, height, width)
    return (out[0] if squeeze else out.transpose(1, 2, 0)).astype(np.float32)


def oversample(images, crop_dims):
    """Ten crops of each H x W x K image: the four corners and the centre, then their mirrors."""
    im_shape = np.array(images[0].shape)
    crop_dims = np.array(crop_dims, dtype=int)
    center = im_shape[:2] / 2.0
    corners = [(i, j) for i in (0, im_shape[0] - crop_dims[0]) for j in (0, im_shape[1] - crop_dims[1])]
    boxes = [(i, j, i + crop_dims[0], j + crop_dims[1]) for i, j in corners]
    boxes.append(tuple(np.concatenate([center - crop_dims / 2.0, center + crop_dims / 2.0]).astype(int)))
    crops = np.empty((10 * len(images), crop_dims[0], crop_dims[1], im_shape[-1]), np.float32)
    ix = 0
    for im in images:
        for y0, x0, y1, x1 in boxes:
            crops[ix] = im[y0:y1, x0:x1, :]
            ix += 1
        crops[ix:ix + 5] = crops[ix - 5:ix, :, ::-1, :]      # the mirrors
        ix += 5
    return crops


class Preprocessor:
    """Preprocessing for the inputs of a net: Preprocessor({'data': net.blobs['data'].data.shape}) (pycaffe's Transformer)."""

    def __init__(self, inputs):
        self.inputs = inputs
        self.transpose, self.channel_swap, self.raw_scale, self.mean, self.input_scale = {}, {}, {}, {}, {}

    def __check_input(self, in_):
        if in_ not in self.inputs:
            raise ValueError(f"{in_} is not one of the net inputs: {list(self.inputs)}")

    def preprocess(self, in_, data):
        """H x W x K image -> K x H x W input: resize, transpose, channel swap, raw scale, mean, input scale."""
        self.__check_input(in_)
        caffe_in = np.asarray(data).astype(np.float32, copy=False)
        in_dims = tuple(self.inputs[in_][2:])
        if caffe_in.shape[:2] != in_dims:
            caffe_in = resize_image(caffe_in, in_dims)
        if self.transpose.get(in_) is not None:
            caffe_in = caffe_in.transpose(self.transpose[in_])
        if self.channel_swap.get(in_) is not None:
            caffe_in = caffe_in[list(self.channel_swap[in_]), :, :]
        if self.raw_scale.get(in_) is not None:
            caffe_in = caffe_in * self.raw_scale[in_]
        if self.mean.get(in_) is not None:
            caffe_in = caffe_in - self.mean[in_]
        if self.input_scale.get(in_) is not None:
            caffe_in = caffe_in * self.input_scale[in_]
        return caffe_in

    def deprocess(self, in_, data):
        """The inverse of preprocess (but the resize)."""
        self.__check_input(in_)
        decaf_in = np.array(data, dtype=np.float32).squeeze()
        if self.input_scale.get(in_) is not None:
            decaf_in /= self.input_scale[in_]
        if self.mean.get(in_) is not None:
            decaf_in += self.mean[in_]
        if self.raw_scale.get(in_) is not None:
            decaf_in /= self.raw_scale[in_]
        if self.channel_swap.get(in_) is not None:
            decaf_in = decaf_in[np.argsort(self.channel_swap[in_]), :, :]
        if self.transpose.get(in_) is not None:
            decaf_in = decaf_in.transpose(np.argsort(self.transpose[in_]))
        return decaf_in

    def set_transpose(self, in_, order):
        """The order of the image's axes in the input, e.g. (2, 0, 1) for H x W x K -> K x H x W."""
        self.__check_input(in_)
        if len(order) != len(self.inputs[in_]) - 1:
            raise ValueError("Transpose order needs to have the same number of dimensions as the input: "
                            f"{len(order)} given, the input has {len(self.inputs[in_]) - 1} after the batch")
        self.transpose[in_] = order

    def set_channel_swap(self, in_, order):
        """The order of channels in the input, e.g. (2, 1, 0) for RGB -> BGR."""
        self.__check_input(in_)
        if len(order) != self.inputs[in_][1]:
            raise ValueError("Channel swap needs to have the same number of dimensions as the input channels: "
                            f"{len(order)} given, the input has {self.inputs[in_][1]} channels")
        self.channel_swap[in_] = order

    def set_raw_scale(self, in_, scale):
        """A factor applied after the channel swap, before the mean (255 for [0, 1] images into [0, 255])."""
        self.__check_input(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_, mean):
        """A mean to subtract: per channel (K,) or elementwise K x H x W (resized to the input's H x W)."""
        self.__check_input(in_)
        mean = np.asarray(mean)
        channels = self.inputs[in_][1]
        if mean.ndim == 1:
            if mean.shape[0] != channels:
                raise ValueError(f"Mean channels incompatible with input: {mean.shape[0]} values for "
                                 f"{channels} channels")
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            if mean.ndim == 2:
                mean = mean[np.newaxis]
            if mean.ndim != 3:
                raise ValueError(f"Mean shape invalid: {mean.shape} (give (K,) or K x H x W)")
            if mean.shape[0] != channels:
                raise ValueError(f"Mean shape incompatible with input shape: {mean.shape} for input "
                                 f"{tuple(self.inputs[in_][1:])}")
            in_hw = tuple(self.inputs[in_][2:])
            if mean.shape[1:] != in_hw:
                mean = resize_image(mean.transpose(1, 2, 0), in_hw).transpose(2, 0, 1)
        self.mean[in_] = mean

    def set_input_scale(self, in_, scale):
        """A factor applied last, after the mean."""
        self.__check_input(in_)
        self.input_scale[in_] = scale


def center_crop(images, crop_dims):
    """The centre crop_dims window of each image of an N x H x W x K array."""
    h, w = images.shape[1:3]
    ch, cw = (int(d) for d in crop_dims)
    y0, x0 = int(h / 2.0 - ch / 2.0), int(w / 2.0 - cw / 2.0)
    return images[:, y0:y0 + ch, x0:x0 + cw, :]


def predict(forward, images, preprocessor, input_name, image_dims, crop_dims, ten_crops=True):
    """Caffe's classifier: each H x W x K image resized to image_dims, cut into the ten crops
    (ten_crops: oversample) or the centre crop, preprocessed; forward(K x H x W batch) -> scores, averaged
    over the ten crops. N x classes."""
    image_dims = tuple(int(d) for d in image_dims)
    resized = np.stack([resize_image(im, image_dims) for im in images])
    crops = oversample(resized, crop_dims) if ten_crops else center_crop(resized, crop_dims)
    batch = np.stack([preprocessor.preprocess(input_name, crop) for crop in crops])
    scores = np.asarray(forward(batch))
    scores = scores.reshape(len(scores), -1)
    return scores.reshape(len(images), 10, -1).mean(axis=1) if ten_crops else scores
