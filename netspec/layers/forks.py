"""Layer types of smaller Caffe forks that public nets use: SegNet's BN, Upsample and DenseImageData, the YOLO
ports' Upsample, Reorg and Yolov3DetectionOutput, PSPNet's Interp, the MobileNet ports'
ReLU6 and depthwise convolutions, ShuffleNet's ShuffleChannel and SENet's Axpy.
Each class names its fork (`fork`); the shape rules follow those forks' sources.
"""
import math
import os

import numpy as np

from .. import caffe_pb2
from ..utils import format_shape
from .base import Layer, MissingSource, ParamBlob
from .convolution import Convolution
from .neuron import Neuron
from .registry import layer

SEGNET = "alexgkendall/caffe-segnet (SegNet)"
PSPNET = "hszhao/PSPNet"
YOLO = "YOLOv2/v3 Caffe ports (eric612/MobileNet-YOLO, ChenYingpeng/caffe-yolov3)"
MOBILENET = "MobileNet Caffe ports (yonghenglh6/DepthwiseConvolution, eric612/MobileNet-YOLO)"


def _need_4d(layer_obj, shape, what="bottom"):
    if len(shape) != 4:
        layer_obj.fail(f"{layer_obj.type} takes a 4-d (num, channels, height, width) {what}; found {shape}")


# -- BN ------------------------------------------------------------------------------------------------
@layer("BN")
class BN(Layer):
    """The older fused BatchNorm + Scale. SegNet's form: blobs scale and shift (1, C, 1, 1);
    bn_mode LEARN normalises by the batch's statistics (var_eps 1e-9), INFERENCE computes
    scale * x + shift (the statistics folded into them beforehand). PSPNet's form (slope_filler,
    momentum, frozen ...) adds the running mean and variance as blobs 3 and 4."""
    fork = SEGNET + "; " + PSPNET
    learnable = None
    takes_unknown = True

    def setup(self):
        p = self.param = self.lp.bn_param
        self.pspnet = any(p.HasField(f) for f in ("slope_filler", "bias_filler", "momentum", "eps", "frozen"))
        if self.pspnet:
            self.learnable = [True, True, False, False]

    def infer(self, bottoms, ctx):
        _need_4d(self, tuple(bottoms[0]))
        ctx.note("per-channel scale and shift" + ("" if self._inference() else " of the batch-normalised input"))
        return [tuple(bottoms[0])]

    def _inference(self):
        p = self.param
        if self.pspnet:
            return p.frozen or self.phase == caffe_pb2.TEST
        return p.bn_mode == p.INFERENCE

    def param_blobs(self, bottoms):
        p = self.param
        shape = bottoms and (1, bottoms[0][1], 1, 1)
        one, zero = caffe_pb2.FillerParameter(type="constant", value=1), caffe_pb2.FillerParameter(type="constant")
        if self.pspnet:
            fillers = [p.slope_filler if p.HasField("slope_filler") else one,
                       p.bias_filler if p.HasField("bias_filler") else zero, zero, one]
        else:
            fillers = [p.scale_filler if p.HasField("scale_filler") else one,
                       p.shift_filler if p.HasField("shift_filler") else zero]
        return [ParamBlob(shape, f) for f in fillers]

    def macs(self, bottoms, tops):
        return 2 * math.prod(tops[0])

    def forward(self, xp, bottoms, tops):
        x = bottoms[0].data
        scale, shift = self.blobs[0].data, self.blobs[1].data
        self._x = x.copy()
        if self._inference() and not self.pspnet:
            tops[0].data[...] = scale * x + shift
            return
        eps = self.param.eps if self.pspnet else 1e-9
        if self._inference():
            mean, var = self.blobs[2].data, self.blobs[3].data
        else:
            mean = x.mean(axis=(0, 2, 3), keepdims=True)
            var = ((x - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
        self._inv = 1.0 / xp.sqrt(var + eps)
        self._xhat = (x - mean) * self._inv
        tops[0].data[...] = scale * self._xhat + shift

    def backward(self, xp, tops, propagate_down, bottoms):
        dy, scale = tops[0].diff, self.blobs[0].data
        axes = (0, 2, 3)
        plain = self._inference() and not self.pspnet
        xhat = self._x if plain else self._xhat
        if self.param_wanted(0):
            self.blobs[0].diff += (dy * xhat).sum(axis=axes, keepdims=True)
        if self.param_wanted(1):
            self.blobs[1].diff += dy.sum(axis=axes, keepdims=True)
        if not propagate_down[0]:
            return
        if plain:
            bottoms[0].diff[...] = dy * scale
        elif self._inference():
            bottoms[0].diff[...] = dy * scale * self._inv
        else:
            g = dy * scale
            bottoms[0].diff[...] = self._inv * (g - g.mean(axis=axes, keepdims=True)
                                                - xhat * (g * xhat).mean(axis=axes, keepdims=True))


# -- Upsample ------------------------------------------------------------------------------------------
@layer("DenseImageData")
class DenseImageData(Layer):
    """SegNet's data layer: a list file of "image label-image" pairs; data (batch, C, H, W) and
    the label image (batch, 1, H, W), H x W of the first image (or new_height x new_width), or of
    the crop (crop_height x crop_width)."""
    fork = SEGNET
    bottoms = (0, 0)
    tops = (1, 2)
    param_fields = ("dense_image_data_param", "transform_param")

    def setup(self):
        p = self.param = self.lp.dense_image_data_param
        if p.batch_size < 1:
            self.fail("dense_image_data_param needs a batch_size of at least 1")
        if (p.new_height > 0) != (p.new_width > 0):
            self.fail("dense_image_data_param sets only one of new_height and new_width; the fork needs both or neither")

    def read_source(self):
        """The first image's (C, H, W); a missing list file is a MissingSource."""
        from ..data.datum import read_image
        p = self.param
        if not os.path.isfile(p.source):
            raise MissingSource(f"dense_image_data_param.source '{p.source}' does not exist",
                                "write the list file of 'image label-image' pairs, or fix the path")
        with open(p.source) as f:
            first = f.read(1 << 16).split()
        if len(first) < 2:
            self.fail(f"{p.source}: expected 'image label-image' pairs, found {' '.join(first) or 'nothing'}")
        return read_image(p.root_folder + first[0], p.new_height, p.new_width, p.is_color).shape

    def infer(self, bottoms, ctx):
        p, n = self.param, self.param.batch_size
        if ctx.source is not None:
            c, h, w = ctx.source
        else:
            c = 3 if p.is_color else 1
            h, w = (p.new_height, p.new_width) if p.new_height else (None, None)
            ctx.note(f"{n} items (batch_size), " + (f"{h}x{w} from new_height/new_width" if h else "size unknown"))
        if p.crop_height and p.crop_width:      # the fork's later random crop of image and label alike
            h, w = p.crop_height, p.crop_width
            ctx.note(f"cropped to {h}x{w} (crop_height, crop_width)")
        return [(n, c, h, w), (n, 1, h, w)][:len(self.lp.top)]


@layer("Upsample")
class Upsample(Layer):
    """Two meanings, told apart by the bottoms. With two (SegNet): max-unpooling, each value of
    bottom 0 put where bottom 1 (the pooling mask) says, in an output of upsample_h x upsample_w
    or H*scale - pad_out. With one (the YOLOv3 ports): nearest-neighbour, H*scale x W*scale."""
    fork = SEGNET + "; " + YOLO
    bottoms = (1, 2)
    takes_unknown = True

    def setup(self):
        p = self.param = self.lp.upsample_param
        self.unpool = len(self.lp.bottom) == 2
        if self.unpool:
            given = (p.HasField("upsample_h") and p.HasField("upsample_w"),
                     not p.HasField("scale") and p.HasField("scale_h") and p.HasField("scale_w"),
                     not p.HasField("scale_h") and not p.HasField("scale_w"))
            if not any(given):
                self.fail("upsample_param: give upsample_h and upsample_w, or scale, or scale_h and scale_w")
            self.scale = (p.scale_h, p.scale_w) if p.HasField("scale_h") else (p.scale, p.scale)
            if (p.pad_out_h or p.pad_out_w) and self.scale != (2, 2):
                self.fail("pad_out_h/pad_out_w work with scale 2 only (SegNet's rule)")
        else:
            s = p.scale if p.HasField("scale") else 1      # the YOLO ports' default
            self.scale = (s, s)
        if min(self.scale) < 1:
            self.fail(f"scale {self.scale[0]} must be at least 1")

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def _out(self, shape):
        p = self.param
        if self.unpool and p.HasField("upsample_h"):
            return p.upsample_h, p.upsample_w
        pads = (int(p.pad_out_h), int(p.pad_out_w)) if self.unpool else (0, 0)
        return tuple(None if d is None else d * s - pad for d, s, pad in zip(shape[2:], self.scale, pads))

    def infer(self, bottoms, ctx):
        x = tuple(bottoms[0])
        _need_4d(self, x)
        if self.unpool and not self.same_shape(tuple(bottoms[1]), x):
            self.fail(f"the mask {tuple(bottoms[1])} must have the shape of bottom 0, {x}",
                      "give the mask top of the Pooling layer that this one undoes")
        h, w = self._out(x)
        ctx.note((f"max-unpooling by the mask of {self.bottom_name(1)} into {format_shape((h, w))}" if self.unpool else
                  f"nearest-neighbour x{self.scale[0]}: {format_shape(x[2:])} -> {format_shape((h, w))}"))
        return [x[:2] + (h, w)]

    def forward(self, xp, bottoms, tops):
        x = bottoms[0].data
        if not self.unpool:
            tops[0].data[...] = x.repeat(self.scale[0], axis=2).repeat(self.scale[1], axis=3)
            return
        n, c = x.shape[:2]
        out = tops[0].data.reshape(n, c, -1)
        out[...] = 0
        self._index = bottoms[1].data.reshape(n, c, -1).astype(np.int64)
        np.put_along_axis(out, self._index, x.reshape(n, c, -1), axis=2)

    def backward(self, xp, tops, propagate_down, bottoms):
        if len(bottoms) == 2 and propagate_down[1]:
            bottoms[1].diff[...] = 0
        if not propagate_down[0]:
            return
        dy = tops[0].diff
        if not self.unpool:
            n, c, h, w = bottoms[0].shape
            bottoms[0].diff[...] = dy.reshape(n, c, h, self.scale[0], w, self.scale[1]).sum(axis=(3, 5))
            return
        n, c = dy.shape[:2]
        bottoms[0].diff[...] = np.take_along_axis(dy.reshape(n, c, -1), self._index, axis=2).reshape(bottoms[0].shape)


# -- Interp --------------------------------------------------------------------------------------------
@layer("Interp")
class Interp(Layer):
    """Bilinear resize with the corners aligned (PSPNet, after DeepLab), to height x width, or
    by zoom_factor (out = in + (in - 1)(zoom - 1)) and/or shrink_factor (out = (in - 1)/shrink + 1),
    after pad_beg/pad_end (zero or negative: they crop the input)."""
    fork = PSPNET

    def setup(self):
        p = self.param = self.lp.interp_param
        if p.pad_beg > 0 or p.pad_end > 0:
            self.fail("pad_beg and pad_end must be zero or negative (PSPNet's rule: they crop)")
        if not (p.HasField("zoom_factor") or p.HasField("shrink_factor") or (p.height and p.width)):
            self.fail("interp_param needs zoom_factor, shrink_factor, or height and width")
        if p.zoom_factor < 1 or p.shrink_factor < 1:
            self.fail("zoom_factor and shrink_factor must be at least 1")

    def _size(self, size):
        p = self.param
        eff = size + p.pad_beg + p.pad_end
        if p.HasField("shrink_factor"):
            eff = (eff - 1) // p.shrink_factor + 1
        if p.HasField("zoom_factor"):
            eff = eff + (eff - 1) * (p.zoom_factor - 1)
        return eff

    def infer(self, bottoms, ctx):
        x = tuple(bottoms[0])
        _need_4d(self, x)
        p = self.param
        if p.HasField("zoom_factor") or p.HasField("shrink_factor"):
            h, w = self._size(x[2]), self._size(x[3])
        else:
            h, w = p.height, p.width
        if x[2] + p.pad_beg + p.pad_end < 1:
            self.fail(f"pad_beg {p.pad_beg} and pad_end {p.pad_end} crop all of height {x[2]}")
        ctx.note(f"bilinear, corners aligned: {x[2]}x{x[3]} -> {h}x{w}")
        return [x[:2] + (h, w)]

    def _matrix(self, size_in, size_out):
        """(size_out, size_in): out = A @ in along one axis, as caffe_cpu_interp2 weighs it."""
        p = self.param
        start, eff = -p.pad_beg, size_in + p.pad_beg + p.pad_end
        a = np.zeros((size_out, size_in))
        ratio = (eff - 1) / (size_out - 1) if size_out > 1 else 0.0
        for i in range(size_out):
            pos = ratio * i
            lo = int(pos)
            step = 1 if lo < eff - 1 else 0
            frac = pos - lo
            a[i, start + lo] += 1 - frac
            a[i, start + lo + step] += frac
        return a

    def forward(self, xp, bottoms, tops):
        x = bottoms[0].data
        ah = xp.asarray(self._matrix(x.shape[2], tops[0].shape[2]), dtype=x.dtype)
        aw = xp.asarray(self._matrix(x.shape[3], tops[0].shape[3]), dtype=x.dtype)
        self._a = ah, aw
        tops[0].data[...] = xp.einsum("ih,nchw,jw->ncij", ah, x, aw)

    def backward(self, xp, tops, propagate_down, bottoms):
        if propagate_down[0]:
            ah, aw = self._a
            bottoms[0].diff[...] = xp.einsum("ih,ncij,jw->nchw", ah, tops[0].diff, aw)


# -- ReLU6, depthwise convolutions -------------------------------------------------------------------------
@layer("ReLU6")
class ReLU6(Neuron):
    """min(max(x, 0), 6)."""
    fork = MOBILENET
    param_fields = ()

    def value(self, xp, x):
        return xp.clip(x, 0, 6)

    def gradient(self, xp, x, y, dy):
        return dy * ((x > 0) & (x < 6))


@layer("DepthwiseConvolution")
class DepthwiseConvolution(Convolution):
    """A faster kernel for Convolution with group = channels; the same arithmetic and blobs
    (convolution_param, group as the file gives it)."""
    fork = MOBILENET


@layer("ConvolutionDepthwise")
class ConvolutionDepthwise(Convolution):
    """Depthwise convolution whatever `group` says: one filter per channel, so num_output must
    equal the input's channels; weights (C, 1, kh, kw)."""
    fork = MOBILENET

    def setup(self):
        super().setup()
        self.param = caffe_pb2.ConvolutionParameter()
        self.param.CopyFrom(self.lp.convolution_param)
        self.param.group = self.param.num_output

    def infer(self, bottoms, ctx):
        c = bottoms[0][1] if len(bottoms[0]) > 1 else None
        if c != self.param.num_output:
            self.fail(f"num_output {self.param.num_output} must equal the input's {c} channels "
                      "(one filter per channel)", f"set num_output: {c}")
        return super().infer(bottoms, ctx)


# -- ShuffleChannel, Axpy, Reorg ------------------------------------------------------------------------------
@layer("ShuffleChannel")
class ShuffleChannel(Layer):
    """ShuffleNet's channel shuffle: channels seen as (group, C/group), transposed."""
    fork = "farmingyard/ShuffleNet"

    def setup(self):
        self.group = self.lp.shuffle_channel_param.group
        if self.group < 1:
            self.fail("shuffle_channel_param group must be at least 1")

    def infer(self, bottoms, ctx):
        x = tuple(bottoms[0])
        if len(x) < 2 or x[1] % self.group:
            self.fail(f"group {self.group} does not divide the {x[1] if len(x) > 1 else 0} channels")
        ctx.note(f"{x[1]} channels as {self.group} groups of {x[1] // self.group}, transposed")
        return [x]

    def _shuffle(self, a, rows):
        n, c = a.shape[:2]
        return a.reshape((n, rows, c // rows) + a.shape[2:]).swapaxes(1, 2).reshape(a.shape)

    def forward(self, xp, bottoms, tops):
        tops[0].data[...] = self._shuffle(bottoms[0].data, self.group)

    def backward(self, xp, tops, propagate_down, bottoms):
        if propagate_down[0]:
            c = bottoms[0].shape[1]
            bottoms[0].diff[...] = self._shuffle(tops[0].diff, c // self.group)


@layer("Axpy")
class Axpy(Layer):
    """SENet's a * x + y: a (N, C, 1, 1) a weight per channel, x and y (N, C, H, W)."""
    fork = "hujie-frank/SENet"
    bottoms = (3, 3)
    param_fields = ()

    def infer(self, bottoms, ctx):
        a, x, y = (tuple(b) for b in bottoms)
        if x != y:
            self.fail(f"x {x} and y {y} must have the same shape")
        if len(a) < 2 or a[:2] != x[:2] or any(d != 1 for d in a[2:]):
            self.fail(f"a must be (N, C, 1, 1) with the N and C of x {x}; found {a}")
        return [x]

    def macs(self, bottoms, tops):
        return math.prod(tops[0])

    def forward(self, xp, bottoms, tops):
        a, x, y = (b.data for b in bottoms)
        tops[0].data[...] = a.reshape(a.shape[:2] + (1,) * (x.ndim - 2)) * x + y

    def backward(self, xp, tops, propagate_down, bottoms):
        a, x = bottoms[0].data, bottoms[1].data
        dy = tops[0].diff
        if propagate_down[0]:
            bottoms[0].diff[...] = (dy * x).sum(axis=tuple(range(2, x.ndim))).reshape(a.shape)
        if propagate_down[1]:
            bottoms[1].diff[...] = dy * a.reshape(a.shape[:2] + (1,) * (x.ndim - 2))
        if propagate_down[2]:
            bottoms[2].diff[...] = dy


@layer("Reorg")
class Reorg(Layer):
    """YOLOv2's passthrough: (N, C, H, W) -> (N, C*s*s, H/s, W/s), the elements moved as
    darknet's reorg_cpu moves them (which the Caffe ports call); reverse goes back."""
    fork = YOLO

    def setup(self):
        p = self.lp.reorg_param
        if not p.HasField("stride") or p.stride < 1:
            self.fail("reorg_param needs stride")
        self.stride, self.reverse = p.stride, p.reverse

    def infer(self, bottoms, ctx):
        x = tuple(bottoms[0])
        _need_4d(self, x)
        n, c, h, w = x
        s = self.stride
        if self.reverse:
            if c % (s * s):
                self.fail(f"stride {s}: the {c} channels are not a multiple of {s * s}")
            return [(n, c // (s * s), h * s, w * s)]
        if h % s or w % s or c % (s * s):
            self.fail(f"stride {s} must divide height {h} and width {w}, and {s * s} the {c} channels "
                      "(darknet's reorg reads the input as C/s^2 x H*s x W*s)")
        ctx.note(f"{c}x{h}x{w} -> {c * s * s}x{h // s}x{w // s}")
        return [(n, c * s * s, h // s, w // s)]

    def _gather(self, shape):
        """Flat source index of each element of the output, darknet's reorg_cpu with forward = 0
        (the ports pass the bottom's C, H, W and reverse_)."""
        n, c, h, w = shape
        s = self.stride
        out_c = c // (s * s)
        b, k, j, i = np.meshgrid(np.arange(n), np.arange(c), np.arange(h), np.arange(w), indexing="ij")
        offset = k // out_c
        src = (i * s + offset % s) + w * s * ((j * s + offset // s) + h * s * (k % out_c + out_c * b))
        return src.reshape(-1)

    def forward(self, xp, bottoms, tops):
        x = bottoms[0].data
        if not self.reverse:
            self._index = self._gather(x.shape)
            tops[0].data[...] = x.reshape(-1)[self._index].reshape(tops[0].shape)
        else:
            self._index = self._gather(tops[0].shape)
            flat = tops[0].data.reshape(-1)
            flat[self._index] = x.reshape(-1)

    def backward(self, xp, tops, propagate_down, bottoms):
        if not propagate_down[0]:
            return
        dy = tops[0].diff.reshape(-1)
        dx = bottoms[0].diff.reshape(-1)
        if not self.reverse:
            dx[...] = 0
            dx[self._index] = dy
        else:
            dx[...] = dy[self._index]


# -- Yolov3DetectionOutput --------------------------------------------------------------------------------
@layer("Yolov3DetectionOutput")
class Yolov3DetectionOutput(Layer):
    """The YOLOv3 head's boxes after NMS: each bottom a scale's (N, num_box*(num_classes+5), H, W);
    top (1, 1, ?, 7), one row per kept detection (how many: known at run time)."""
    fork = YOLO
    bottoms = (1, None)

    def setup(self):
        self.param = self.lp.yolov3_detection_output_param

    def infer(self, bottoms, ctx):
        p = self.param
        want = p.num_box * (p.num_classes + 5)
        for i, shape in enumerate(bottoms):
            shape = tuple(shape)
            _need_4d(self, shape, f"bottom {self.bottom_name(i)}")
            if shape[1] != want:
                self.fail(f"bottom {self.bottom_name(i)} has {shape[1]} channels; num_box {p.num_box} x "
                          f"(num_classes {p.num_classes} + 5) = {want} expected",
                          "check num_classes and the convolution before each head")
        ctx.note("the number of detections is known only when the net runs: (1, 1, ?, 7)")
        return [(1, 1, None, 7)]
