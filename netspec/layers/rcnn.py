"""Region layers of the R-CNN forks: ROIPooling and SmoothL1Loss (rbgirshick's caffe-fast-rcnn,
as py-faster-rcnn ships it) and PSROIPooling (R-FCN), with their forks' rules.

A region of interest is a row (batch index, x1, y1, x2, y2) in image pixels; spatial_scale
maps it onto the feature map. The loops are plain Python over regions and bins: the shapes
are small (a few hundred regions of 7x7 bins).
"""
import math

import numpy as np

from .base import Layer
from .registry import layer

FAST_RCNN = "rbgirshick/caffe-fast-rcnn (Fast/Faster R-CNN)"
RFCN = "daijifeng001/caffe-rfcn (R-FCN)"


def _check_rois(layer_obj, feat, rois):
    if len(feat) != 4:
        layer_obj.fail(f"bottom 0 (the feature map) must be 4-d; found {feat}")
    if None not in rois[1:] and math.prod(rois[1:]) != 5:
        layer_obj.fail(f"bottom 1 (the regions) must hold 5 values per region (batch index, x1, y1, x2, y2); "
                       f"found {rois}")


def _c_round(v):
    """C's round(): halves away from zero."""
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


class _RegionPooling(Layer):
    """Pooling of a feature map (bottom 0) over regions (bottom 1, (R, 5) rows of batch index
    and corners): the regions take no gradient, even with force_backward. The regions' count is
    known only when the net runs; a list of them from an unchecked layer (py-faster-rcnn's
    proposal, a Python layer) is read as (?, 5), so the pooled features are still shaped."""
    bottoms = (2, 2)
    takes_unknown = True
    rankless_as = {1: (None, 5)}

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0


@layer("ROIPooling")
class ROIPooling(_RegionPooling):
    """Max over pooled_h x pooled_w bins of each region: top (R, C, pooled_h, pooled_w)."""
    fork = FAST_RCNN

    def setup(self):
        p = self.param = self.lp.roi_pooling_param
        if p.pooled_h < 1 or p.pooled_w < 1:
            self.fail("roi_pooling_param needs pooled_h and pooled_w of at least 1")

    def infer(self, bottoms, ctx):
        feat, rois = tuple(bottoms[0]), tuple(bottoms[1])
        _check_rois(self, feat, rois)
        p = self.param
        ctx.note(f"each of {'?' if rois[0] is None else rois[0]} regions, scaled by {p.spatial_scale:g}, max-pooled into {p.pooled_h}x{p.pooled_w} bins")
        return [(rois[0], feat[1], p.pooled_h, p.pooled_w)]

    def _bins(self, roi, height, width):
        p = self.param
        x1, y1, x2, y2 = (_c_round(v * p.spatial_scale) for v in roi[1:5])
        rh, rw = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
        bh, bw = rh / p.pooled_h, rw / p.pooled_w
        for ph in range(p.pooled_h):
            hs = min(max(math.floor(ph * bh) + y1, 0), height)
            he = min(max(math.ceil((ph + 1) * bh) + y1, 0), height)
            for pw in range(p.pooled_w):
                ws = min(max(math.floor(pw * bw) + x1, 0), width)
                we = min(max(math.ceil((pw + 1) * bw) + x1, 0), width)
                yield ph, pw, hs, he, ws, we

    def forward(self, xp, bottoms, tops):
        x, rois = np.asarray(bottoms[0].data), np.asarray(bottoms[1].data).reshape(-1, 5)
        out = np.zeros(tops[0].shape, dtype=x.dtype)
        self._argmax = np.full(tops[0].shape, -1, dtype=np.int64)
        for r, roi in enumerate(rois):
            n = int(roi[0])
            for ph, pw, hs, he, ws, we in self._bins(roi, x.shape[2], x.shape[3]):
                if he <= hs or we <= ws:
                    continue                      # an empty bin gives 0
                patch = x[n, :, hs:he, ws:we].reshape(x.shape[1], -1)
                k = patch.argmax(axis=1)
                out[r, :, ph, pw] = patch[np.arange(x.shape[1]), k]
                self._argmax[r, :, ph, pw] = n * x.shape[1] * x.shape[2] * x.shape[3] + \
                    np.arange(x.shape[1]) * x.shape[2] * x.shape[3] + (hs + k // (we - ws)) * x.shape[3] + ws + k % (we - ws)
        tops[0].data[...] = xp.asarray(out)

    def backward(self, xp, tops, propagate_down, bottoms):
        if propagate_down[0]:
            dx = np.zeros(bottoms[0].shape, dtype=bottoms[0].diff.dtype).reshape(-1)
            keep = self._argmax >= 0
            np.add.at(dx, self._argmax[keep], np.asarray(tops[0].diff)[keep])
            bottoms[0].diff[...] = xp.asarray(dx.reshape(bottoms[0].shape))
        if propagate_down[1]:
            bottoms[1].diff[...] = 0


@layer("PSROIPooling")
class PSROIPooling(_RegionPooling):
    """Position-sensitive average pooling: bin (i, j) of output channel c averages input channel
    (c * group_size + i) * group_size + j; top (R, output_dim, group_size, group_size)."""
    fork = RFCN

    def setup(self):
        p = self.param = self.lp.psroi_pooling_param
        for name in ("spatial_scale", "output_dim", "group_size"):
            if not p.HasField(name):
                self.fail(f"psroi_pooling_param needs {name} (a required field in R-FCN's schema)")
        if p.output_dim < 1 or p.group_size < 1:
            self.fail("output_dim and group_size must be at least 1")

    def infer(self, bottoms, ctx):
        feat, rois = tuple(bottoms[0]), tuple(bottoms[1])
        _check_rois(self, feat, rois)
        p = self.param
        want = p.output_dim * p.group_size ** 2
        if feat[1] not in (want, None):
            self.fail(f"bottom 0 has {feat[1]} channels; output_dim {p.output_dim} x group_size {p.group_size}^2 "
                      f"= {want} expected", "the convolution below needs num_output = output_dim x group_size^2")
        return [(rois[0], p.output_dim, p.group_size, p.group_size)]

    def _bins(self, roi, height, width):
        p, g = self.param, self.param.group_size
        x1, y1 = _c_round(roi[1]) * p.spatial_scale, _c_round(roi[2]) * p.spatial_scale
        x2, y2 = (_c_round(roi[3]) + 1.0) * p.spatial_scale, (_c_round(roi[4]) + 1.0) * p.spatial_scale
        bh, bw = max(y2 - y1, 0.1) / g, max(x2 - x1, 0.1) / g
        for ph in range(g):
            hs = min(max(math.floor(ph * bh + y1), 0), height)
            he = min(max(math.ceil((ph + 1) * bh + y1), 0), height)
            for pw in range(g):
                ws = min(max(math.floor(pw * bw + x1), 0), width)
                we = min(max(math.ceil((pw + 1) * bw + x1), 0), width)
                yield ph, pw, hs, he, ws, we

    def _channels(self, ph, pw):
        g = self.param.group_size
        return (np.arange(self.param.output_dim) * g + ph) * g + pw

    def forward(self, xp, bottoms, tops):
        x, rois = np.asarray(bottoms[0].data), np.asarray(bottoms[1].data).reshape(-1, 5)
        out = np.zeros(tops[0].shape, dtype=x.dtype)
        for r, roi in enumerate(rois):
            for ph, pw, hs, he, ws, we in self._bins(roi, x.shape[2], x.shape[3]):
                if he > hs and we > ws:
                    out[r, :, ph, pw] = x[int(roi[0]), self._channels(ph, pw), hs:he, ws:we].mean(axis=(1, 2))
        tops[0].data[...] = xp.asarray(out)

    def backward(self, xp, tops, propagate_down, bottoms):
        if propagate_down[0]:
            rois, dy = np.asarray(bottoms[1].data).reshape(-1, 5), np.asarray(tops[0].diff)
            dx = np.zeros(bottoms[0].shape, dtype=dy.dtype)
            for r, roi in enumerate(rois):
                for ph, pw, hs, he, ws, we in self._bins(roi, dx.shape[2], dx.shape[3]):
                    if he > hs and we > ws:
                        dx[int(roi[0]), self._channels(ph, pw), hs:he, ws:we] += \
                            (dy[r, :, ph, pw] / ((he - hs) * (we - ws)))[:, None, None]
            bottoms[0].diff[...] = xp.asarray(dx)
        if propagate_down[1]:
            bottoms[1].diff[...] = 0


@layer("SmoothL1Loss")
class SmoothL1Loss(Layer):
    """py-faster-rcnn's loss: d = inside_weights * (a - b); sum of outside_weights * f(d) / N,
    f(d) = 0.5 (sigma d)^2 where |d| < 1/sigma^2, else |d| - 0.5/sigma^2."""
    fork = FAST_RCNN
    loss = True
    bottoms = (2, 4)
    param_fields = ("smooth_l1_loss_param", "loss_param")

    def setup(self):
        self.sigma2 = self.lp.smooth_l1_loss_param.sigma ** 2
        if len(self.lp.bottom) == 3:
            self.fail("takes 2 bottoms, or 4 (with inside and outside weights); got 3")

    def allow_force_backward(self, bottom_index):
        return bottom_index < 2

    def infer(self, bottoms, ctx):
        first = tuple(bottoms[0])
        for i, shape in enumerate(bottoms[1:], 1):
            if math.prod(shape) != math.prod(first) or shape[:1] != first[:1]:
                self.fail(f"bottom {self.bottom_name(i)} is {shape}; it must match bottom 0, {first}")
        return [()]

    def forward(self, xp, bottoms, tops):
        a = bottoms[0].data
        d = a - bottoms[1].data.reshape(a.shape)
        if len(bottoms) == 4:
            d = d * bottoms[2].data.reshape(a.shape)
        small = xp.abs(d) < 1.0 / self.sigma2
        value = xp.where(small, 0.5 * d * d * self.sigma2, xp.abs(d) - 0.5 / self.sigma2)
        if len(bottoms) == 4:
            value = value * bottoms[3].data.reshape(a.shape)
        self._grad = xp.where(small, d * self.sigma2, xp.sign(d))
        tops[0].data[...] = xp.sum(value) / a.shape[0]

    def backward(self, xp, tops, propagate_down, bottoms):
        a = bottoms[0].data
        g = self._grad * (tops[0].diff / a.shape[0])
        if len(bottoms) == 4:
            g = g * bottoms[2].data.reshape(a.shape) * bottoms[3].data.reshape(a.shape)
        for i, sign in ((0, 1), (1, -1)):
            if propagate_down[i]:
                bottoms[i].diff[...] = (sign * g).reshape(bottoms[i].shape)
        for i in range(2, len(bottoms)):
            if propagate_down[i]:
                bottoms[i].diff[...] = 0
