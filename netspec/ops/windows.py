"""Sliding-window arithmetic shared by convolution and pooling.

A window op visits, for each output position o on an axis, the inputs o*stride - pad +
t*dilation for the kernel taps t. `taps()` turns that into slices: for each tap, the run of
outputs whose input lies inside the image and the strided run of inputs it reads. Ops then
loop over the few kernel taps only, each step one vectorised copy or add (Chainer's im2col
idea, without materialising a padded copy of the input).
"""
import itertools
from functools import lru_cache
from typing import NamedTuple


class Window(NamedTuple):
    """A sliding window's geometry: one int per spatial axis in each field."""
    kernel: tuple
    stride: tuple
    pad: tuple
    dilation: tuple

    def out_shape(self, in_shape):
        """Convolution output shape (floor rule) for these input spatial dims."""
        return tuple(conv_out(*a) for a in zip(in_shape, self.kernel, self.stride, self.pad, self.dilation))

    def taps(self, in_shape, out_shape):
        return taps(tuple(in_shape), tuple(out_shape), self.kernel, self.stride, self.pad, self.dilation)

    @property
    def pointwise(self):
        """1x1 kernel, stride 1, no padding: im2col would be the identity."""
        return all(k == 1 for k in self.kernel) and all(s == 1 for s in self.stride) \
            and not any(self.pad)


def conv_out(size, kernel, stride=1, pad=0, dilation=1):
    """Caffe's convolution rule: (size + 2*pad - extent) / stride + 1 in C integer division,
    which truncates toward zero: a kernel overhanging the padded input by less than the
    stride still gives one output (may be <= 0 otherwise)."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    return (span // stride if span >= 0 else -(-span // stride)) + 1


def deconv_out(size, kernel, stride=1, pad=0, dilation=1):
    """Caffe's deconvolution rule: stride*(size - 1) + extent - 2*pad."""
    return stride * (size - 1) + dilation * (kernel - 1) + 1 - 2 * pad


def pool_out(size, kernel, stride=1, pad=0, ceil_mode=True, padded=None):
    """Caffe's pooling rule: ceil (or floor) of (size + 2*pad - kernel)/stride, + 1; then,
    with padding, drop the last window if it would start inside the padding. Caffe applies
    that clip to every axis once ANY axis is padded: `padded` (default: pad != 0) says so."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if (bool(pad) if padded is None else padded) and (out - 1) * stride >= size + pad:
        out -= 1
    return out


@lru_cache(maxsize=512)
def axis_taps(size, out, kernel, stride, pad, dilation=1):
    """For one axis: per kernel tap, (output slice, input slice), or None where no output
    position of that tap falls inside the input."""
    taps = []
    for t in range(kernel):
        offset = t * dilation - pad
        lo = max(0, -(offset // stride))            # first o with o*stride + offset >= 0
        hi = min(out, (size - 1 - offset) // stride + 1)
        if hi <= lo:
            taps.append(None)
            continue
        start = lo * stride + offset
        taps.append((slice(lo, hi), slice(start, start + (hi - lo - 1) * stride + 1, stride)))
    return tuple(taps)


@lru_cache(maxsize=512)
def taps(in_shape, out_shape, kernel, stride, pad, dilation):
    """All kernel taps of an N-d window: a list of (tap index tuple, output slices, input
    slices), skipping taps that read only padding. Arguments are tuples, one entry per axis."""
    per_axis = [axis_taps(*a) for a in zip(in_shape, out_shape, kernel, stride, pad, dilation)]
    result = []
    for tap in itertools.product(*(range(k) for k in kernel)):
        parts = [per_axis[a][t] for a, t in enumerate(tap)]
        if any(p is None for p in parts):
            continue
        result.append((tap, tuple(p[0] for p in parts), tuple(p[1] for p in parts)))
    return result


def flat_tap(tap, kernel):
    """The row-major index of a tap inside its kernel (what max pooling stores as argmax)."""
    index = 0
    for t, k in zip(tap, kernel):
        index = index * k + t
    return index


def ave_divisor(in_shape, out_shape, kernel, stride, pad):
    """Caffe's average-pooling divisor per output position, per axis: the window clipped to the
    padded input (min(start + kernel, size + pad) - start), not the kernel area. The N-d
    divisor is the outer product of these vectors."""
    vectors = []
    for size, out, k, s, p in zip(in_shape, out_shape, kernel, stride, pad):
        vectors.append([min(o * s - p + k, size + p) - (o * s - p) for o in range(out)])
    return vectors
