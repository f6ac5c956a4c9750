"""caffe.coord_map: how coordinates map between two tops of a NetSpec net, and crop() built on it.

A map is (axis, a, b): a coordinate x in the lower blob is a * x + b in the upper one, on the
spatial axes from `axis` on (axis None: any). Convolution-like layers scale by 1/stride and
shift by (pad - (kernel_extent - 1)/2)/stride; Deconvolution inverts that; Crop shifts by
-offset; elementwise layers pass coordinates through. Layers read their parameters from the
DSL call's LayerParameter.
"""
import numpy as np

from ..dsl import Top  # noqa: F401
from .. import layers as L
from ..layers import LAYERS, convolution as _convolution, pooling as _pooling, vision as _vision

PASS_THROUGH_LAYERS = ["AbsVal", "BatchNorm", "Bias", "BNLL", "Dropout", "Eltwise", "ELU", "Log", "LRN",
                       "Exp", "MVN", "Power", "ReLU", "PReLU", "Scale", "Sigmoid", "Split", "TanH", "Threshold"]


class UndefinedMapException(Exception):
    """The layer type has no known coordinate map."""


class AxisMismatchException(Exception):
    """Two maps that act on different axes cannot be composed."""


def _vector(values, default):
    values = list(values) if hasattr(values, "__len__") else [values]
    return np.array(values or [default], dtype=float)


def conv_params(fn):
    """(axis, stride, kernel extent, pad) of a Convolution, Deconvolution, Pooling or Im2col call."""
    lp = fn.lp
    if LAYERS.get(fn.type) is _pooling.Pooling:
        p = lp.pooling_param
        legacy = [f for f in ("pad_h", "pad_w", "kernel_h", "kernel_w", "stride_h", "stride_w") if p.HasField(f)]
        stride, kernel, pad, dilation, axis = [p.stride], [p.kernel_size], [p.pad], [1], 1
    else:
        p = lp.convolution_param
        legacy = [f for f in ("pad_h", "pad_w", "kernel_h", "kernel_w", "stride_h", "stride_w") if p.HasField(f)]
        stride, kernel, pad, dilation, axis = p.stride, p.kernel_size, p.pad, p.dilation, p.axis
    if legacy:
        raise AssertionError(f"cropping does not support the legacy _h/_w parameters ({', '.join(legacy)})")
    extent = (_vector(kernel, 1) - 1) * _vector(dilation, 1) + 1
    return axis, _vector(stride, 1), extent, _vector(pad, 0)


def crop_params(fn):
    p = fn.lp.crop_param
    return p.axis, _vector(p.offset, 0)


def _conv_map(fn):
    axis, stride, extent, pad = conv_params(fn)
    return axis, 1 / stride, (pad - (extent - 1) / 2) / stride


def _deconv_map(fn):
    axis, stride, extent, pad = conv_params(fn)
    return axis, stride, (extent - 1) / 2 - pad


def _crop_map(fn):
    axis, offset = crop_params(fn)
    return axis - 1, 1, -offset          # the axis before the first cropped one: as conv maps count


# the layer classes with a coordinate map (by class, as the registry hands them out)
MAPS = {_convolution.Convolution: _conv_map, _convolution.Im2col: _conv_map, _pooling.Pooling: _conv_map,
        _convolution.Deconvolution: _deconv_map, _vision.Crop: _crop_map}


def coord_map(fn):
    """The (axis, a, b) of one layer call."""
    cls = LAYERS.get(fn.type)
    if cls in MAPS:
        return MAPS[cls](fn)
    if fn.type in PASS_THROUGH_LAYERS:
        return None, 1, 0
    raise UndefinedMapException(f"no coordinate map for layer type {fn.type}")


def compose(base_map, next_map):
    ax1, a1, b1 = base_map
    ax2, a2, b2 = next_map
    if ax1 is not None and ax2 is not None and ax1 != ax2:
        raise AxisMismatchException(f"maps on axis {ax1} and axis {ax2}")
    return (ax2 if ax1 is None else ax1), a1 * a2, a1 * b2 + b1


def inverse(coord_map):
    ax, a, b = coord_map
    return ax, 1 / a, -b / a


def _bottoms(top):
    inputs = top.fn.inputs
    return inputs[:1] if LAYERS.get(top.fn.type) is _vision.Crop else inputs     # a Crop's reference input is not its source


def _maps_below(top):
    """{every top reachable downwards: the map from it up to `top`}."""
    maps, frontier = {top: (None, 1, 0)}, [top]
    while frontier:
        t = frontier.pop()
        try:
            step = coord_map(t.fn)
        except UndefinedMapException:
            continue
        for bottom in _bottoms(t):
            maps[bottom] = compose(maps[t], step)
            frontier.append(bottom)
    return maps


def coord_map_from_to(top_from, top_to):
    """The map taking coordinates of top_from to those of top_to, through a common ancestor."""
    from_maps = _maps_below(top_from)
    to_maps, frontier = {top_to: (None, 1, 0)}, [top_to]
    while frontier:
        t = frontier.pop()
        if t in from_maps:
            return compose(to_maps[t], inverse(from_maps[t]))
        try:
            step = coord_map(t.fn)
        except UndefinedMapException:
            continue
        for bottom in _bottoms(t):
            to_maps[bottom] = compose(to_maps[t], step)
            frontier.append(bottom)
    raise RuntimeError("Could not compute map between tops; are they connected by spatial layers?")


def crop(top_from, top_to):
    """A Crop of top_from to top_to's size, with the offsets that align their coordinates."""
    ax, a, b = coord_map_from_to(top_from, top_to)
    a, b = np.broadcast_to(a, np.shape(b)), np.asarray(b)
    assert (a == 1).all(), f"scale mismatch on crop (a = {a})"
    assert (b <= 0).all(), f"cannot crop negative offset (b = {b})"
    assert (np.round(b) == b).all(), f"cannot crop noninteger offset (b = {b})"
    return L.Crop(top_from, top_to, crop_param=dict(axis=ax + 1, offset=[int(v) for v in -np.round(b)]))
