"""Softmax along an axis: the Softmax layer's forward and the softmax losses' probabilities."""


def softmax(xp, x, axis, out=None):
    """exp(x) / sum(exp(x)) along `axis`, the max subtracted first for stability (as Caffe)."""
    out = xp.empty_like(x) if out is None else out
    xp.subtract(x, x.max(axis=axis, keepdims=True), out=out)
    xp.exp(out, out=out)
    out /= out.sum(axis=axis, keepdims=True)
    return out
