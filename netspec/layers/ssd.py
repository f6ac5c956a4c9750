"""The SSD fork's layer types (weiliu89/caffe): Normalize, Permute, PriorBox, DetectionOutput,
MultiBoxLoss, AnnotatedData and DetectionEvaluate, with the shape rules of that fork's sources.

A dimension known only when the net runs (how many detections survive NMS, how many boxes
an image has) is None: `?` in the report, null in --json.
"""
import math
import os

from .. import caffe_pb2
from .base import Layer, MissingSource, ParamBlob
from .registry import layer

SSD = "weiliu89/caffe (SSD)"


def _need(layer_obj, shape, ndim, what):
    if len(shape) != ndim:
        layer_obj.fail(f"{what} must be {ndim}-d; found {len(shape)}-d {shape}")


@layer("Normalize")
class Normalize(Layer):
    """y = scale * x / sqrt(sum(x^2) + eps): the sum over C x H x W of each item
    (across_spatial) or over the channels at each position; one scale for all channels
    (channel_shared) or one each, filled with 1 unless scale_filler says otherwise."""
    fork = SSD
    param_fields = ("norm_param",)

    def setup(self):
        self.param = self.lp.norm_param

    def infer(self, bottoms, ctx):
        shape = tuple(bottoms[0])
        if len(shape) < 2:
            self.fail(f"Normalize needs at least 2 axes (num, channels); found {shape}")
        over = "C x H x W of each item" if self.param.across_spatial else "the channels at each position"
        ctx.note(f"L2-normalise over {over}, then scale ({'one value' if self.param.channel_shared else 'one per channel'})")
        return [shape]

    def param_blobs(self, bottoms):
        p = self.param
        filler = p.scale_filler if p.HasField("scale_filler") else caffe_pb2.FillerParameter(type="constant", value=1)
        shape = (1,) if p.channel_shared else (bottoms and (bottoms[0][1],))
        return [ParamBlob(shape, filler)]

    def macs(self, bottoms, tops):
        return 2 * math.prod(tops[0])

    def _axes(self, ndim):
        return tuple(range(1, ndim)) if self.param.across_spatial else (1,)

    def _scale(self, ndim):
        s = self.blobs[0].data
        return s.reshape((1,) * ndim) if self.param.channel_shared else s.reshape((1, -1) + (1,) * (ndim - 2))

    def forward(self, xp, bottoms, tops):
        x = bottoms[0].data
        self._norm = xp.sqrt(xp.sum(x * x, axis=self._axes(x.ndim), keepdims=True) + self.param.eps)
        self._x = x.copy()
        tops[0].data[...] = self._scale(x.ndim) * x / self._norm

    def backward(self, xp, tops, propagate_down, bottoms):
        x, n, dy = self._x, self._norm, tops[0].diff
        s = self._scale(x.ndim)
        if self.param_wanted(0):
            g = dy * x / n
            self.blobs[0].diff += (xp.sum(g) if self.param.channel_shared else
                                   xp.sum(g, axis=tuple(a for a in range(x.ndim) if a != 1))).reshape(self.blobs[0].diff.shape)
        if propagate_down[0]:
            inner = xp.sum(s * dy * x, axis=self._axes(x.ndim), keepdims=True)
            bottoms[0].diff[...] = s * dy / n - x * inner / n ** 3


@layer("Permute")
class Permute(Layer):
    """Reorders the axes as `order` gives them; axes it leaves out follow in their order."""
    fork = SSD

    def setup(self):
        self.given = list(self.lp.permute_param.order)
        if len(set(self.given)) != len(self.given):
            self.fail(f"permute_param order {self.given} repeats an axis", "name each axis once")

    def order(self, ndim):
        bad = [a for a in self.given if a >= ndim]
        if bad:
            self.fail(f"permute_param order names axis {bad[0]}, but the bottom has {ndim} axes")
        return self.given + [a for a in range(ndim) if a not in self.given]

    def infer(self, bottoms, ctx):
        shape = tuple(bottoms[0])
        order = self.order(len(shape))
        ctx.note(f"axes {tuple(order)}")
        return [tuple(shape[a] for a in order)]

    def forward(self, xp, bottoms, tops):
        tops[0].data[...] = xp.transpose(bottoms[0].data, self.order(bottoms[0].data.ndim))

    def backward(self, xp, tops, propagate_down, bottoms):
        if propagate_down[0]:
            order = self.order(bottoms[0].diff.ndim)
            bottoms[0].diff[...] = xp.transpose(tops[0].diff, [order.index(a) for a in range(len(order))])


@layer("PriorBox")
class PriorBox(Layer):
    """Default boxes for a feature map (bottom 0) over an image (bottom 1): top (1, 2, H*W*P*4),
    box corners in channel 0 and their variances in channel 1, with P = aspect ratios x
    min_size + max_size as SSD's prior_box_layer.cpp counts them."""
    fork = SSD
    bottoms = (2, 2)

    def setup(self):
        p = self.param = self.lp.prior_box_param
        if not p.min_size:
            self.fail("prior_box_param needs min_size", "add min_size: the box size in pixels")
        if p.max_size and len(p.max_size) != len(p.min_size):
            self.fail(f"{len(p.max_size)} max_size for {len(p.min_size)} min_size; give one each or none")
        for lo, hi in zip(p.min_size, p.max_size):
            if hi <= lo:
                self.fail(f"max_size {hi:g} must be larger than min_size {lo:g}")
        self.ratios = [1.0]
        for r in p.aspect_ratio:
            if all(abs(r - known) >= 1e-6 for known in self.ratios):
                self.ratios.append(r)
                if p.flip:
                    self.ratios.append(1.0 / r)
        self.priors = len(self.ratios) * len(p.min_size) + len(p.max_size)
        if len(p.variance) not in (0, 1, 4):
            self.fail(f"prior_box_param has {len(p.variance)} variance values; give 1 or 4")
        if p.HasField("img_size") and (p.HasField("img_h") or p.HasField("img_w")):
            self.fail("give img_size or img_h/img_w, not both")
        if p.HasField("step") and (p.HasField("step_h") or p.HasField("step_w")):
            self.fail("give step or step_h/step_w, not both")

    def infer(self, bottoms, ctx):
        feat, img = tuple(bottoms[0]), tuple(bottoms[1])
        _need(self, feat, 4, "bottom 0 (the feature map)")
        h, w = feat[2], feat[3]
        ctx.note(f"{self.priors} priors at each of {h}x{w} positions ({len(self.ratios)} aspect ratios x "
                 f"{len(self.param.min_size)} min_size + {len(self.param.max_size)} max_size), 4 coordinates each")
        return [(1, 2, h * w * self.priors * 4)]

    def _geometry(self, feat, img):
        p = self.param
        img_h = p.img_h if p.HasField("img_h") else (p.img_size if p.HasField("img_size") else img[2])
        img_w = p.img_w if p.HasField("img_w") else (p.img_size if p.HasField("img_size") else img[3])
        step_h = p.step_h if p.HasField("step_h") else (p.step if p.HasField("step") else img_h / feat[2])
        step_w = p.step_w if p.HasField("step_w") else (p.step if p.HasField("step") else img_w / feat[3])
        return img_h, img_w, step_h, step_w

    def boxes(self, feat, img):
        """(H*W*P, 4) corners, normalised by the image size, in the fork's order."""
        p = self.param
        img_h, img_w, step_h, step_w = self._geometry(feat, img)
        out = []
        for i in range(feat[2]):
            for j in range(feat[3]):
                cx, cy = (j + p.offset) * step_w, (i + p.offset) * step_h
                for k, size in enumerate(p.min_size):
                    sizes = [(size, size)]
                    if p.max_size:
                        side = math.sqrt(size * p.max_size[k])
                        sizes.append((side, side))
                    sizes += [(size * math.sqrt(r), size / math.sqrt(r)) for r in self.ratios if abs(r - 1) >= 1e-6]
                    for bw, bh in sizes:
                        out.append(((cx - bw / 2) / img_w, (cy - bh / 2) / img_h, (cx + bw / 2) / img_w, (cy + bh / 2) / img_h))
        return out

    def forward(self, xp, bottoms, tops):
        import numpy as np
        corners = np.asarray(self.boxes(bottoms[0].shape, bottoms[1].shape), dtype=np.float64)
        if self.param.clip:
            corners = np.clip(corners, 0, 1)
        variance = list(self.param.variance) or [0.1]
        var = np.broadcast_to(np.asarray(variance if len(variance) == 4 else variance * 4), corners.shape)
        tops[0].data[...] = xp.asarray(np.stack([corners.reshape(-1), var.reshape(-1)])[None])

    def backward(self, xp, tops, propagate_down, bottoms):
        for b, wanted in zip(bottoms, propagate_down):
            if wanted:
                b.diff[...] = 0     # the boxes depend on the shapes only


def _prior_count(layer_obj, prior):
    _need(layer_obj, prior, 3, "the prior bottom")
    if prior[2] is not None and prior[2] % 4:
        layer_obj.fail(f"the prior bottom {prior} does not hold 4 coordinates per box")
    return None if prior[2] is None else prior[2] // 4


def _check_predictions(layer_obj, loc, conf, prior, num_classes, share_location, ctx):
    """SSD's checks: loc holds priors x 4 values per class (or once, share_location), conf
    priors x num_classes, and both have the same number of items."""
    if num_classes < 1:
        layer_obj.fail("num_classes must be set", "give num_classes, counting the background class")
    priors = _prior_count(layer_obj, prior)
    loc_classes = 1 if share_location else num_classes
    if loc[0] != conf[0]:
        layer_obj.fail(f"loc has {loc[0]} items but conf has {conf[0]}")
    if priors is None:
        return None
    per_item = lambda s: math.prod(s[1:])  # noqa: E731
    if per_item(loc) != priors * loc_classes * 4:
        layer_obj.fail(f"loc has {per_item(loc)} values per item; {priors} priors x {loc_classes} x 4 = "
                       f"{priors * loc_classes * 4} expected", "check num_output of the loc convolutions and the PriorBox layers")
    if per_item(conf) != priors * num_classes:
        layer_obj.fail(f"conf has {per_item(conf)} values per item; {priors} priors x {num_classes} classes = "
                       f"{priors * num_classes} expected", "check num_classes and the conf convolutions")
    ctx.note(f"{priors} priors, {num_classes} classes")
    return priors


@layer("DetectionOutput")
class DetectionOutput(Layer):
    """Decodes loc against the priors, NMS per class, keep_top_k: top (1, 1, ?, 7), one row
    [image, label, score, xmin, ymin, xmax, ymax] per kept detection (how many: known at run time)."""
    fork = SSD
    bottoms = (3, 4)

    def setup(self):
        self.param = self.lp.detection_output_param

    def infer(self, bottoms, ctx):
        loc, conf, prior = (tuple(b) for b in bottoms[:3])
        p = self.param
        _check_predictions(self, loc, conf, prior, p.num_classes, p.share_location, ctx)
        ctx.note("the number of detections is known only when the net runs: (1, 1, ?, 7)")
        return [(1, 1, None, 7)]


@layer("MultiBoxLoss")
class MultiBoxLoss(Layer):
    """SSD's training loss over loc, conf, priors and the ground truth (1, 1, ?, 8): a scalar."""
    fork = SSD
    loss = True
    bottoms = (4, 4)
    param_fields = ("multibox_loss_param", "loss_param")

    def setup(self):
        self.param = self.lp.multibox_loss_param

    def allow_force_backward(self, bottom_index):
        return bottom_index < 2     # the priors and the labels get no gradient

    def infer(self, bottoms, ctx):
        loc, conf, prior, label = (tuple(b) for b in bottoms)
        p = self.param
        _check_predictions(self, loc, conf, prior, p.num_classes, p.share_location, ctx)
        if len(label) != 4 or label[3] not in (None, 8):
            self.fail(f"the ground truth must be (1, 1, boxes, 8); found {label}")
        return [()]


@layer("AnnotatedData")
class AnnotatedData(Layer):
    """SSD's data layer over an LMDB of AnnotatedDatum: data (batch_size, C, H, W) with H x W
    from transform_param's resize_param (or crop), and boxes (1, 1, ?, 8), one row per box."""
    fork = SSD
    bottoms = (0, 0)
    tops = (1, 2)
    param_fields = ("annotated_data_param", "data_param", "transform_param")

    def read_source(self):
        """Its shapes come from the parameters alone; a missing LMDB is still worth a warning."""
        source = self.lp.data_param.source
        if not os.path.isdir(source):
            raise MissingSource(f"data_param.source '{source}' does not exist or is not a folder")

    def infer(self, bottoms, ctx):
        t, d = self.lp.transform_param, self.lp.data_param
        if d.batch_size < 1:
            self.fail("data_param needs batch_size", "add batch_size to data_param")
        if t.crop_size or (t.crop_h and t.crop_w):
            h, w = (t.crop_h, t.crop_w) if t.crop_h else (t.crop_size, t.crop_size)
            how = "crop"
        elif t.resize_param.height and t.resize_param.width:
            h, w, how = t.resize_param.height, t.resize_param.width, "resize_param"
        else:
            h = w = None
            how = None
        channels = 1 if t.force_gray else (3 if t.force_color else (len(t.mean_value) if len(t.mean_value) > 1 else None))
        ctx.note(f"{d.batch_size} images" + (f", {h}x{w} from {how}" if how else ", their size known from the data only")
                 + ("" if channels else "; channels from the data"))
        data = (d.batch_size, channels, h, w)
        return [data, (1, 1, None, 8)][:self.top_count()]


@layer("DetectionEvaluate")
class DetectionEvaluate(Layer):
    """Scores detections (1, 1, D, 7) against the ground truth (1, 1, G, 8): top
    (1, 1, positive classes + D, 5) as SSD's detection_evaluate_layer.cpp shapes it."""
    fork = SSD
    bottoms = (2, 2)

    def setup(self):
        self.param = self.lp.detection_evaluate_param
        if self.param.num_classes < 1:
            self.fail("detection_evaluate_param needs num_classes")

    def infer(self, bottoms, ctx):
        det, gt = tuple(bottoms[0]), tuple(bottoms[1])
        if len(det) != 4 or det[3] != 7:
            self.fail(f"the detections must be (1, 1, D, 7); found {det}")
        if len(gt) != 4 or gt[3] != 8:
            self.fail(f"the ground truth must be (1, 1, G, 8); found {gt}")
        p = self.param
        positive = p.num_classes - (0 if p.background_label_id == -1 else 1)
        return [(1, 1, None if det[2] is None else positive + det[2], 5)]
