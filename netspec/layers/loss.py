"""Loss layers, and Accuracy: Caffe's rules for shapes, label handling and normalization.

Every loss writes a 0-d top. Its backward scales by the seeded top diff (d total / d loss,
the loss weight), as Caffe does. Labels are data, so a label outside [0, classes) is found
in forward() and raised as a LayerError (the executor adds the layer's name and line).
"""
import math

import numpy as np

from .. import caffe_pb2
from ..errors import LayerError, NetspecError
from ..io.formats import load
from ..io.blobs import proto_to_array
from ..ops.softmax import softmax
from .base import Layer
from .registry import layer

Mode = caffe_pb2.LossParameter
FLT_MIN = 1.1754943508222875e-38    # float(np.finfo(np.float32).tiny): Caffe clamps softmax probabilities here before log
LOG_THRESHOLD = 1e-20                        # Caffe's kLOG_THRESHOLD


# -- helpers shared by the loss family --------------------------------------------------------

def prod(dims):
    return math.prod(int(d) for d in dims)


def split_at(shape, axis):
    """(outer, classes, inner) around `axis`, as Caffe's count(0, axis), shape(axis), count(axis+1)."""
    return prod(shape[:axis]), int(shape[axis]), prod(shape[axis + 1:])


def split_scores(layer, bottoms):
    """(axis, outer, classes, inner) for scores bottoms[0] with classes on layer.axis_param and
    one label per prediction in bottoms[1]."""
    x, label = bottoms[0], bottoms[1]
    if not x:
        raise LayerError("bottom[0] (the scores) is 0-d; it needs a class axis")
    axis = layer.canonical_axis(layer.axis_param, len(x))
    outer, classes, inner = split_at(x, axis)
    if outer * inner != prod(label):
        raise LayerError(
            f"the number of labels must match the number of predictions: scores {x} with "
            f"classes on axis {axis} need {outer}*{inner} = {outer * inner} labels, but the "
            f"label blob {label} holds {prod(label)}",
            hint="for (N, C, H, W) scores over axis 1 give N*H*W labels with values in {0..C-1}")
    return axis, outer, classes, inner


def normalization_mode(loss_param, default):
    """Caffe's resolution of `normalization` and the legacy `normalize` bool."""
    if loss_param.HasField("normalization"):
        return loss_param.normalization
    if loss_param.HasField("normalize"):
        return Mode.VALID if loss_param.normalize else Mode.BATCH_SIZE
    return default


def normalizer(mode, outer, inner, valid_count):
    """Caffe's get_normalizer, with its max(1, ...) so that an all-ignored batch gives 0, not NaN."""
    value = {Mode.FULL: outer * inner, Mode.VALID: valid_count,
             Mode.BATCH_SIZE: outer, Mode.NONE: 1}[mode]
    return float(max(1, value))


def ignore_label_of(param):
    return param.ignore_label if param.HasField("ignore_label") else None


def class_labels(xp, labels, num_classes, ignore_label, where):
    """Integer labels (truncated toward zero, as Caffe's static_cast<int>) and the mask of the
    ones that count. A label outside [0, num_classes) that is not ignore_label is an error."""
    raw = labels.reshape(-1)
    finite = xp.isfinite(raw)
    lab = xp.where(finite, xp.clip(raw, -2.0 ** 31, 2.0 ** 31), -1).astype(np.int64)
    valid = xp.ones(lab.shape, dtype=bool) if ignore_label is None else \
        (lab != ignore_label) | ~finite
    bad = valid & ((lab < 0) | (lab >= num_classes) | ~finite)
    if bool(bad.any()):
        index = int(xp.argmax(bad))
        value = float(raw[index])
        whole = math.isfinite(value) and value == int(value)
        text = str(int(value)) if whole else f"{value:g}"
        skip = f"set loss_param {{ ignore_label: {text} }} to skip it, or " if whole else ""
        raise LayerError(
            f"label {text} (label #{index}) is out of range: labels must be integers in "
            f"[0, {num_classes}) for the {num_classes} classes {where}",
            hint=f"labels count from 0; {skip}make the classifier's num_output match the labels")
    return xp.where(valid, lab, 0).reshape(labels.shape), valid.reshape(labels.shape)


def same_first_dim(bottoms, what="data and label"):
    """LossLayer's rule: bottom[0] and bottom[1] agree on their first dimension."""
    a, b = bottoms[0], bottoms[1]
    if len(a) < 1 or len(b) < 1:
        raise LayerError(f"the {what} blobs need at least one axis (found {a} and {b})")
    if a[0] != b[0]:
        raise LayerError(f"the {what} must have the same first dimension: "
                         f"bottom[0] is {a}, bottom[1] is {b} ({a[0]} vs {b[0]})",
                         hint="both come from the same batch; check the batch_size of the data layers")


def zero_diffs(bottoms, propagate_down, indices):
    """Labels and other integer inputs have no gradient: a request for one gets zeros."""
    for i in indices:
        if i < len(bottoms) and propagate_down[i]:
            bottoms[i].diff[...] = 0


def loss_top(xp, value, like):
    return xp.asarray(value, dtype=like.dtype)


class LossLayer(Layer):
    """Shared parts: two bottoms, a 0-d loss top, Caffe's first-dimension check."""
    label_bottom = 1
    loss = True
    family = "loss"
    bottoms = (2, 2)
    tops = (1, 1)

    def infer(self, bottoms, ctx):
        same_first_dim(bottoms)
        return [()]

    def tops_when_unknown(self, bottoms):
        return [()] + [tuple(bottoms[0])] * (len(self.lp.top) - 1)     # the loss, and any probabilities

    def macs(self, bottoms, tops):
        return prod(bottoms[0])


class ClassLossLayer(LossLayer):
    """A loss over class scores along an axis: labels, ignore_label and normalization."""

    def setup(self):
        lp = self.lp.loss_param
        self.ignore_label = ignore_label_of(lp)
        self.mode = normalization_mode(lp, Mode.VALID)
        self.axis_param = self.lp.softmax_param.axis

    def split(self, bottoms, ctx=None):
        x = bottoms[0]
        axis, outer, classes, inner = split_scores(self, bottoms)
        if ctx is not None:
            ctx.note(f"{classes} classes on axis {axis} of {x}; {outer * inner} labels "
                     f"({outer} outer x {inner} inner); loss normalized by "
                     f"{Mode.NormalizationMode.Name(self.mode)}"
                     + (f", ignoring label {self.ignore_label}" if self.ignore_label is not None else ""))
        return axis, outer, classes, inner

    def infer(self, bottoms, ctx):
        same_first_dim(bottoms)
        self.split(bottoms, ctx)
        return [()] + [tuple(bottoms[0])] * (self.tops_wanted - 1)

    @property
    def tops_wanted(self):
        return max(1, len(self.lp.top))

    @staticmethod
    def add_probability_gradient(xp, tops, prob, grad):
        """A consumer of the probabilities (top 1) adds its gradient through the softmax (Caffe drops it)."""
        if len(tops) > 1:
            g = tops[1].diff.reshape(prob.shape)
            grad += prob * (g - xp.sum(g * prob, axis=1, keepdims=True))


# -- the layers ---------------------------------------------------------------------------------

@layer("SoftmaxWithLoss")
class SoftmaxWithLoss(ClassLossLayer):
    """-log softmax(x)[label] over the classes on `axis`; top 1 (optional) holds the probabilities.
    caffe-segnet's weight_by_label_freqs weighs each term (and its gradient) by class_weighting[label],
    one weight per class; the normalizer still counts the labels."""
    param_fields = ("softmax_param", "loss_param")
    tops = (1, 2)

    def setup(self):
        super().setup()
        lp = self.lp.loss_param
        self.class_weights = list(lp.class_weighting) if lp.weight_by_label_freqs else None

    def infer(self, bottoms, ctx):
        tops = super().infer(bottoms, ctx)
        classes = self.split(bottoms)[2]
        if self.class_weights is not None and len(self.class_weights) != classes:
            self.fail(f"weight_by_label_freqs needs one class_weighting per class: {len(self.class_weights)} "
                      f"given for {classes} classes", f"give {classes} class_weighting values")
        return tops

    def _weights(self, xp, lab, valid, dtype):
        return valid if self.class_weights is None else valid * xp.asarray(self.class_weights, dtype)[lab]

    def forward(self, xp, bottoms, tops):
        x = bottoms[0].data
        axis, outer, classes, inner = self.split([x.shape, bottoms[1].data.shape])
        prob = softmax(xp, x.reshape(outer, classes, inner), axis=1)
        lab, valid = class_labels(xp, bottoms[1].data.reshape(outer, inner), classes,
                                  self.ignore_label, f"on axis {axis} of bottom[0] {x.shape}")
        picked = xp.take_along_axis(prob, lab[:, None, :], axis=1)[:, 0, :]
        total = -xp.sum(xp.log(xp.maximum(picked, FLT_MIN)) * self._weights(xp, lab, valid, x.dtype))
        self.norm = normalizer(self.mode, outer, inner, int(valid.sum()))
        tops[0].data[...] = loss_top(xp, total / self.norm, x)
        if len(tops) > 1:
            tops[1].data[...] = prob.reshape(x.shape)
        self.saved = prob, lab, valid

    def backward(self, xp, tops, propagate_down, bottoms):
        zero_diffs(bottoms, propagate_down, [1])
        if not propagate_down[0]:
            return
        prob, lab, valid = self.saved
        classes = prob.shape[1]
        onehot = xp.arange(classes)[None, :, None] == lab[:, None, :]
        grad = (prob - onehot) * (self._weights(xp, lab, valid, prob.dtype)[:, None, :] * (tops[0].diff / self.norm))
        self.add_probability_gradient(xp, tops, prob, grad)
        bottoms[0].diff[...] = grad.reshape(bottoms[0].diff.shape)


@layer("EuclideanLoss")
class EuclideanLoss(LossLayer):
    """sum((a - b)^2) / (2 N); both bottoms get gradients."""

    def allow_force_backward(self, bottom_index):
        return True     # both inputs are differentiable

    def infer(self, bottoms, ctx):
        same_first_dim(bottoms, "two inputs")
        a, b = bottoms
        if prod(a[1:]) != prod(b[1:]):
            raise LayerError(f"the inputs must have the same dimension: bottom[0] {a} has "
                             f"{prod(a[1:])} values per item, bottom[1] {b} has {prod(b[1:])}")
        ctx.note(f"0.5 * sum of squared differences over {prod(a)} values / N={a[0]}")
        return [()]

    def forward(self, xp, bottoms, tops):
        a = bottoms[0].data
        self.diff = a - bottoms[1].data.reshape(a.shape)
        num = a.shape[0]
        tops[0].data[...] = loss_top(xp, xp.sum(self.diff * self.diff) / num / 2, a)

    def backward(self, xp, tops, propagate_down, bottoms):
        scale = tops[0].diff / self.diff.shape[0]
        for i, sign in ((0, 1), (1, -1)):
            if propagate_down[i]:
                bottoms[i].diff[...] = (sign * scale * self.diff).reshape(bottoms[i].diff.shape)


@layer("SigmoidCrossEntropyLoss")
class SigmoidCrossEntropyLoss(LossLayer):
    """Cross-entropy of sigmoid(x) against targets in [0, 1], computed stably;
    ignore_label and normalization (BATCH_SIZE unless the file says otherwise) as in Caffe."""

    def setup(self):
        lp = self.lp.loss_param
        self.ignore_label = ignore_label_of(lp)
        self.mode = normalization_mode(lp, Mode.BATCH_SIZE)

    def infer(self, bottoms, ctx):
        same_first_dim(bottoms, "scores and targets")
        x, t = bottoms
        if prod(x) != prod(t):
            raise LayerError(f"the inputs must have the same count: bottom[0] {x} holds {prod(x)}"
                             f" values, the targets bottom[1] {t} hold {prod(t)}")
        ctx.note(f"{prod(x)} independent sigmoid cross-entropies, normalized by "
                 f"{Mode.NormalizationMode.Name(self.mode)}")
        return [()]

    def forward(self, xp, bottoms, tops):
        x = bottoms[0].data
        t = bottoms[1].data.reshape(x.shape)
        pos = x >= 0
        # -[t log s(x) + (1 - t) log(1 - s(x))] = -(x (t - [x >= 0]) - log(1 + e^(-|x|)))
        each = xp.log1p(xp.exp(-xp.abs(x))) - x * (t - pos)
        valid = xp.ones(x.shape, dtype=bool) if self.ignore_label is None else \
            t.astype(np.int64) != self.ignore_label
        outer = x.shape[0]
        self.norm = normalizer(self.mode, outer, x.size // max(outer, 1), int(valid.sum()))
        tops[0].data[...] = loss_top(xp, xp.sum(each * valid) / self.norm, x)
        self.saved = valid

    def backward(self, xp, tops, propagate_down, bottoms):
        zero_diffs(bottoms, propagate_down, [1])
        if not propagate_down[0]:
            return
        x = bottoms[0].data
        sig = 0.5 * (1 + xp.tanh(0.5 * x))   # the logistic function, overflow-free
        grad = (sig - bottoms[1].data.reshape(x.shape)) * self.saved
        bottoms[0].diff[...] = grad * (tops[0].diff / self.norm)


@layer("HingeLoss")
class HingeLoss(LossLayer):
    """One-vs-all hinge: sum over classes of max(0, 1 - y_k x_k), y = +1 at the label, -1
    elsewhere; L1 sums the hinges, L2 their squares; divided by N."""

    def setup(self):
        self.norm_type = self.lp.hinge_loss_param.norm

    def infer(self, bottoms, ctx):
        same_first_dim(bottoms)
        x, label = bottoms
        if prod(label) != x[0]:
            raise LayerError(f"expected one label per item: {x[0]} labels for scores {x}, "
                             f"but the label blob {label} holds {prod(label)}")
        ctx.note(f"{caffe_pb2.HingeLossParameter.Norm.Name(self.norm_type)} hinge over "
                 f"{prod(x[1:])} classes, / N={x[0]}")
        return [()]

    def forward(self, xp, bottoms, tops):
        x = bottoms[0].data
        num = x.shape[0]
        x2 = x.reshape(num, -1)
        lab, _ = class_labels(xp, bottoms[1].data.reshape(num), x2.shape[1], None,
                              f"of bottom[0] {x.shape}")
        self.sign = xp.where(xp.arange(x2.shape[1])[None, :] == lab[:, None], -1, 1).astype(x.dtype)
        self.margin = xp.maximum(0, 1 + x2 * self.sign)
        total = self.margin.sum() if self.norm_type == caffe_pb2.HingeLossParameter.L1 \
            else xp.sum(self.margin * self.margin)
        tops[0].data[...] = loss_top(xp, total / num, x)

    def backward(self, xp, tops, propagate_down, bottoms):
        zero_diffs(bottoms, propagate_down, [1])
        if not propagate_down[0]:
            return
        m = self.margin
        inner = xp.sign(m) if self.norm_type == caffe_pb2.HingeLossParameter.L1 else 2 * m
        grad = inner * self.sign * (tops[0].diff / m.shape[0])
        bottoms[0].diff[...] = grad.reshape(bottoms[0].diff.shape)


@layer("MultinomialLogisticLoss")
class MultinomialLogisticLoss(LossLayer):
    """-log p[label] of probabilities given directly (clamped at 1e-20), / N."""

    def infer(self, bottoms, ctx):
        same_first_dim(bottoms)
        x, label = bottoms
        if prod(label[1:]) != 1:
            raise LayerError(f"the label blob must hold one label per item (N x 1 x 1 x 1); "
                             f"found {label}")
        ctx.note(f"-log p[label] over {prod(x[1:])} classes, / N={x[0]}")
        return [()]

    def forward(self, xp, bottoms, tops):
        p = bottoms[0].data
        num = p.shape[0]
        p2 = p.reshape(num, -1)
        lab, _ = class_labels(xp, bottoms[1].data.reshape(num), p2.shape[1], None,
                              f"of bottom[0] {p.shape}")
        picked = xp.maximum(xp.take_along_axis(p2, lab[:, None], axis=1)[:, 0], LOG_THRESHOLD)
        tops[0].data[...] = loss_top(xp, -xp.sum(xp.log(picked)) / num, p)
        self.saved = lab, picked

    def backward(self, xp, tops, propagate_down, bottoms):
        zero_diffs(bottoms, propagate_down, [1])
        if not propagate_down[0]:
            return
        lab, picked = self.saved
        classes = bottoms[0].diff.size // lab.shape[0]
        onehot = xp.arange(classes)[None, :] == lab[:, None]
        grad = onehot * (-(tops[0].diff / lab.shape[0]) / picked)[:, None]
        bottoms[0].diff[...] = grad.reshape(bottoms[0].diff.shape)


def read_infogain_matrix(path):
    """The values of H from a .binaryproto BlobProto, read with netspec's blob reader."""
    try:
        return proto_to_array(load(path, caffe_pb2.BlobProto, fmt="binary").message).reshape(-1)
    except NetspecError as e:
        raise LayerError(f"cannot read the infogain matrix '{path}': {e.message}",
                         hint=e.hint or "infogain_loss_param.source names a .binaryproto holding "
                                        "H (relative paths resolve against the current directory)") from None


@layer("InfogainLoss")
class InfogainLoss(ClassLossLayer):
    """-sum_l H[label, l] log softmax(x)_l: SoftmaxWithLoss weighted by an infogain matrix H
    (classes x classes) from infogain_loss_param.source or a third bottom."""
    bottoms = (2, 3)
    tops = (1, 2)

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0    # not the labels, nor H

    def setup(self):
        super().setup()
        lp = self.lp.loss_param
        if lp.HasField("normalize"):
            raise LayerError("InfogainLoss does not take the deprecated loss_param.normalize",
                             hint="use loss_param { normalization: VALID } (or FULL, BATCH_SIZE, NONE)")
        self.mode = lp.normalization
        ip = self.lp.infogain_loss_param
        self.axis_param = ip.axis
        self.matrix = None
        if len(self.lp.bottom) < 3:
            if not ip.source:
                raise LayerError("the infogain matrix H is missing",
                                 hint="set infogain_loss_param { source: 'H.binaryproto' } "
                                      "or give H as a third bottom")
            self.matrix = read_infogain_matrix(ip.source)

    def infer(self, bottoms, ctx):
        same_first_dim(bottoms)
        _, _, classes, _ = self.split(bottoms, ctx)
        count = prod(bottoms[2]) if len(bottoms) > 2 else self.matrix.size
        if count != classes * classes:
            where = f"bottom[2] {bottoms[2]}" if len(bottoms) > 2 else \
                f"'{self.lp.infogain_loss_param.source}'"
            raise LayerError(f"the infogain matrix H must be {classes}x{classes} for {classes} "
                             f"classes, but {where} holds {count} values")
        return [()] + [tuple(bottoms[0])] * (self.tops_wanted - 1)

    def forward(self, xp, bottoms, tops):
        x = bottoms[0].data
        axis, outer, classes, inner = self.split([x.shape, bottoms[1].data.shape])
        h = bottoms[2].data if len(bottoms) > 2 else xp.asarray(self.matrix, dtype=x.dtype)
        h = h.reshape(classes, classes)
        prob = softmax(xp, x.reshape(outer, classes, inner), axis=1)
        lab, valid = class_labels(xp, bottoms[1].data.reshape(outer, inner), classes,
                                  self.ignore_label, f"on axis {axis} of bottom[0] {x.shape}")
        rows = xp.moveaxis(h[lab], -1, 1)               # (outer, classes, inner): H[label, l]
        total = -xp.sum(rows * xp.log(xp.maximum(prob, LOG_THRESHOLD)) * valid[:, None, :])
        self.norm = normalizer(self.mode, outer, inner, int(valid.sum()))
        tops[0].data[...] = loss_top(xp, total / self.norm, x)
        if len(tops) > 1:
            tops[1].data[...] = prob.reshape(x.shape)
        self.saved = prob, rows, valid

    def backward(self, xp, tops, propagate_down, bottoms):
        zero_diffs(bottoms, propagate_down, [1, 2])
        if not propagate_down[0]:
            return
        prob, rows, valid = self.saved
        grad = prob * rows.sum(axis=1, keepdims=True) - rows
        grad *= valid[:, None, :] * (tops[0].diff / self.norm)
        self.add_probability_gradient(xp, tops, prob, grad)
        bottoms[0].diff[...] = grad.reshape(bottoms[0].diff.shape)


@layer("ContrastiveLoss")
class ContrastiveLoss(LossLayer):
    """Siamese loss over pairs (a, b) with similarity y: similar pairs pay d^2, dissimilar ones
    max(margin - d, 0)^2 (legacy_version: max(margin - d^2, 0)); summed, / (2 N)."""
    bottoms = (3, 3)

    def allow_force_backward(self, bottom_index):
        return bottom_index != 2    # not the similarity labels

    def setup(self):
        p = self.lp.contrastive_loss_param
        self.margin, self.legacy = p.margin, p.legacy_version

    def infer(self, bottoms, ctx):
        same_first_dim(bottoms, "two feature")
        a, b, y = bottoms
        if len(a) < 2 or len(b) < 2 or a[1] != b[1]:
            raise LayerError(f"the two feature blobs must be N x C with the same C: found {a} and {b}")
        for name, s in (("bottom[0]", a), ("bottom[1]", b)):
            if prod(s[2:]) != 1:
                raise LayerError(f"{name} {s} must be N x C (x 1 x 1)",
                                 hint="flatten the features first (e.g. an InnerProduct layer)")
        if not y or y[0] != a[0] or prod(y[1:]) != 1:
            raise LayerError(f"the similarity blob bottom[2] must hold one value per pair "
                             f"({a[0]} x 1 x 1 x 1); found {y}")
        ctx.note(f"{a[0]} pairs of {a[1]}-d features, margin {self.margin:g}"
                 + (" (legacy: max(margin - d^2, 0))" if self.legacy else ""))
        return [()]

    def forward(self, xp, bottoms, tops):
        a = bottoms[0].data
        num = a.shape[0]
        self.diff = (a - bottoms[1].data.reshape(a.shape)).reshape(num, -1)
        self.dist_sq = xp.sum(self.diff * self.diff, axis=1)
        self.similar = bottoms[2].data.reshape(num).astype(np.int64) != 0
        if self.legacy:
            apart = xp.maximum(self.margin - self.dist_sq, 0)
        else:
            apart = xp.maximum(self.margin - xp.sqrt(self.dist_sq), 0) ** 2
        total = xp.sum(xp.where(self.similar, self.dist_sq, apart))
        tops[0].data[...] = loss_top(xp, total / num / 2, a)

    def backward(self, xp, tops, propagate_down, bottoms):
        zero_diffs(bottoms, propagate_down, [2])
        num = self.diff.shape[0]
        if self.legacy:
            factor = -((self.margin - self.dist_sq) > 0).astype(self.diff.dtype)
        else:   # Caffe adds 1e-4 to the distance to keep d = 0 finite
            dist = xp.sqrt(self.dist_sq)
            mdist = self.margin - dist
            factor = -xp.maximum(mdist, 0) / (dist + 1e-4)
        coeff = xp.where(self.similar, 1, factor).astype(self.diff.dtype)
        for i, sign in ((0, 1), (1, -1)):
            if propagate_down[i]:
                alpha = sign * tops[0].diff / num
                bottoms[i].diff[...] = (alpha * coeff[:, None] * self.diff).reshape(bottoms[i].diff.shape)


@layer("Accuracy")
class Accuracy(Layer):
    """The fraction of labels within the top_k scores on `axis`. As in Caffe, a tie counts
    against the true class: it is a hit when fewer than top_k other classes score at least as
    high. Top 1 (optional): per-class accuracy. Not a loss; its gradient is zero."""
    label_bottom = 1
    family = "metric"
    bottoms = (2, 2)
    tops = (1, 2)

    def allow_force_backward(self, bottom_index):
        return False

    def setup(self):
        p = self.lp.accuracy_param
        self.top_k, self.axis_param = p.top_k, p.axis
        self.ignore_label = ignore_label_of(p)

    def split(self, bottoms):
        axis, outer, classes, inner = split_scores(self, bottoms)
        if self.top_k > classes:
            raise LayerError(f"top_k {self.top_k} exceeds the {classes} classes on axis {axis}",
                             hint=f"set accuracy_param {{ top_k: {classes} }} or less")
        return axis, outer, classes, inner

    def tops_when_unknown(self, bottoms):
        classes = bottoms[0][self.canonical_axis(self.axis_param, len(bottoms[0]))]
        return [()] + [(classes,)] * (max(1, len(self.lp.top)) - 1)

    def infer(self, bottoms, ctx):
        axis, outer, classes, inner = self.split(bottoms)
        ctx.note(f"top-{self.top_k} accuracy over {classes} classes on axis {axis}; "
                 f"{outer * inner} labels")
        return [()] + [(classes,)] * (max(1, len(self.lp.top)) - 1)

    def macs(self, bottoms, tops):
        return prod(bottoms[0])

    def forward(self, xp, bottoms, tops):
        x = bottoms[0].data
        axis, outer, classes, inner = self.split([x.shape, bottoms[1].data.shape])
        x3 = x.reshape(outer, classes, inner)
        lab, valid = class_labels(xp, bottoms[1].data.reshape(outer, inner), classes,
                                  self.ignore_label, f"on axis {axis} of bottom[0] {x.shape}")
        score = xp.take_along_axis(x3, lab[:, None, :], axis=1)
        at_least = (x3 >= score).sum(axis=1) - 1        # other classes scoring >= the true one
        hit = (at_least < self.top_k) & valid
        count = int(valid.sum())
        tops[0].data[...] = loss_top(xp, hit.sum() / max(count, 1), x)
        if len(tops) > 1:
            seen = xp.bincount(lab[valid], minlength=classes)
            right = xp.bincount(lab[hit], minlength=classes)
            tops[1].data[...] = xp.where(seen > 0, right / xp.maximum(seen, 1), 0).astype(x.dtype)

    def backward(self, xp, tops, propagate_down, bottoms):
        zero_diffs(bottoms, propagate_down, range(len(bottoms)))
