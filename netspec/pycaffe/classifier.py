"""caffe.Classifier: a TEST net with a Transformer, predicting class probabilities of images."""
import numpy as np

from ..data import images
from . import io
from .pycaffe import TEST, Net


def input_transformer(net, mean, input_scale, raw_scale, channel_swap):
    """The Transformer that Classifier and Detector set up for the net's first input."""
    in_ = net.inputs[0]
    transformer = io.Transformer({in_: net.blobs[in_].data.shape})
    transformer.set_transpose(in_, (2, 0, 1))
    for setter, value in ((transformer.set_mean, mean), (transformer.set_input_scale, input_scale),
                          (transformer.set_raw_scale, raw_scale), (transformer.set_channel_swap, channel_swap)):
        if value is not None:
            setter(in_, value)
    return transformer


class Classifier(Net):
    """Classifier(model_file, pretrained_file, image_dims=None, mean=None, input_scale=None,
    raw_scale=None, channel_swap=None): images are resized to image_dims (default: the input's
    size), then cropped to the input (the centre, or ten crops averaged with oversample)."""

    def __init__(self, model_file, pretrained_file, image_dims=None, mean=None, input_scale=None,
                 raw_scale=None, channel_swap=None):
        Net.__init__(self, model_file, pretrained_file, TEST)
        in_ = self.inputs[0]
        self.transformer = input_transformer(self, mean, input_scale, raw_scale, channel_swap)
        self.crop_dims = np.array(self.blobs[in_].data.shape[2:])
        self.image_dims = np.array(self.crop_dims if image_dims is None else image_dims)

    def predict(self, inputs, oversample=True):
        """N x C class probabilities for a list of H x W x K images (ten crops averaged, or the centre)."""
        in_ = self.inputs[0]
        return images.predict(lambda batch: self.forward_all(**{in_: batch})[self.outputs[0]], inputs,
                              self.transformer, in_, self.image_dims, self.crop_dims, oversample)
