"""Python layers for the tests, written against pycaffe's caffe.Layer as a user would."""
import json

import caffe
import numpy as np


class ScaleLayer(caffe.Layer):
    """top = w * bottom, with one learnable blob w of the bottom's channel count."""

    def setup(self, bottom, top):
        params = json.loads(self.param_str or "{}")
        self.blobs.add_blob(bottom[0].channels)
        self.blobs[0].data[...] = params.get("init", 1.0)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data * self.blobs[0].data[None, :, None, None]

    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[...] += (top[0].diff * bottom[0].data).sum(axis=(0, 2, 3))
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff * self.blobs[0].data[None, :, None, None]


class ConstantData(caffe.Layer):
    """A data layer: param_str '{"shape": [...], "value": v}'; the value is negated in TEST."""

    def setup(self, bottom, top):
        if bottom:
            raise Exception("ConstantData takes no bottoms")
        params = json.loads(self.param_str)
        self.shape, self.value = params["shape"], params["value"]
        if self.phase == caffe.TEST:
            self.value = -self.value

    def reshape(self, bottom, top):
        top[0].reshape(*self.shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.value


def helper_that_fails(x):
    return x / 0


class FailingForward(caffe.Layer):
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        helper_that_fails(1)


class SignalAt(caffe.Layer):
    """A data layer that sends its own process a signal on its forward number `at`:
    param_str '{"signal": "SIGHUP", "at": 3}'."""

    def setup(self, bottom, top):
        params = json.loads(self.param_str)
        self.signal, self.at, self.calls = params["signal"], params["at"], 0

    def reshape(self, bottom, top):
        top[0].reshape(4, 3)

    def forward(self, bottom, top):
        import os
        import signal
        self.calls += 1
        top[0].data[...] = 1.0
        if self.calls == self.at:
            os.kill(os.getpid(), getattr(signal, self.signal))
