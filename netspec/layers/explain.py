"""Words for the sliding-window arithmetic of Convolution and Pooling.

Shape notes are local (the shape pass shows them under the layer's name), one per spatial
axis unless all axes share the same arithmetic, e.g.
  (224 - 11)/4 = 53.25; floor 53, + 1 = 54; stride 4 leaves remainder 1, so 55 needs input 227 or pad 2
An inexact division is also a warning; so is pooling whose ceil rounding differs from floor.
"""
from ..ops.windows import conv_out, pool_out
from ..utils import format_shape


def window_words(win):
    """'11x11 /4 pad 2' (and ' dil 2'): a drawing's words for a window; one number where axes agree."""
    one = lambda v: str(v[0]) if len(set(v)) == 1 else "x".join(map(str, v))  # noqa: E731
    words = "x".join(map(str, win.kernel)) + (f" /{one(win.stride)}" if set(win.stride) != {1} else "")
    words += f" pad {one(win.pad)}" if any(win.pad) else ""
    return words + (f" dil {one(win.dilation)}" if set(win.dilation) != {1} else "")


def axis_labels(n):
    return {1: ("width",), 2: ("height", "width"), 3: ("depth", "height", "width")}.get(
        n, tuple(f"spatial axis {i}" for i in range(n)))


def number_text(value):
    """54.25, 55.5, 7.33: at most two decimals, no trailing zeros."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def explain_floor(size, kernel, stride, pad, dilation=1):
    """(text, clean) for Caffe's convolution rule on one axis. Not clean: the remainder leaves
    real input rows uncovered at the end (not just padding), more than the gaps between
    windows skip anyway (a 1x1 stride-2 kernel skips every other row, so 14 -> 7 is clean)."""
    extent = dilation * (kernel - 1) + 1
    span = size + 2 * pad - extent
    out = conv_out(size, kernel, stride, pad, dilation)
    head = f"({size} + 2*{pad} - {extent})/{stride} + 1"
    if dilation > 1 and kernel > 1:
        head = f"kernel {kernel} dilated by {dilation} spans {extent}; " + head
    if span < 0:
        return (f"{head} = {number_text(span / stride + 1)} -> truncated toward 0 (Caffe's integer division) -> "
                f"{out}; the kernel overhangs the padded input by {-span}"), False
    remainder = span % stride
    # the chapter's steps: divide, floor, add one (AlexNet: (224 - 11)/4 = 53.25; floor 53, + 1 = 54)
    padded = f"{size} - {extent}" if pad == 0 else f"{size} + 2*{pad} - {extent}"
    if dilation > 1 and kernel > 1:
        padded = f"kernel {kernel} dilated by {dilation} spans {extent}; ({padded}"
    else:
        padded = f"({padded}"
    if remainder == 0:
        return f"{padded})/{stride} = {span // stride}, + 1 = {out}", True
    exact_input = size + stride - remainder
    next_pad = -(-(out * stride - size + extent) // 2)
    return (f"{padded})/{stride} = {number_text(span / stride)}; floor {span // stride}, + 1 = {out}; stride {stride} "
            f"leaves remainder {remainder}, so {out + 1} needs input {exact_input} or pad {next_pad}"), \
        max(0, remainder - pad) <= max(0, stride - extent)


def explain_pool(size, kernel, stride, pad, ceil_mode, padded=None):
    """(text, exact) for Caffe's pooling rule on one axis (ceil or floor, then the pad clip,
    which applies when any axis is padded: see pool_out)."""
    span = size + 2 * pad - kernel
    head = f"({size} + 2*{pad} - {kernel})/{stride} + 1"
    remainder = span % stride
    floor_out = span // stride + 1
    if remainder == 0:
        return f"{head} = {floor_out}", True
    out = pool_out(size, kernel, stride, pad, ceil_mode, padded)
    rounded = floor_out + 1 if ceil_mode else floor_out
    text = f"{head} = {number_text(span / stride + 1)} -> {'ceil' if ceil_mode else 'floor'} -> {rounded}"
    if out != rounded:
        text += (f"; the last window would start in the padding -> {out}" if pad else
                 f"; the last window would start past the input, dropped as another axis is padded -> {out}")
    text += f"; stride {stride} leaves remainder {remainder}"
    exact_input = size + stride - remainder
    if not ceil_mode:
        text += f"; input {exact_input} gives {floor_out + 1}"
    elif out != floor_out:
        text += f"; floor (other frameworks) gives {floor_out}; input {exact_input} gives {out} either way"
    return text, False


def explain_axes(ctx, labels, per_axis):
    """One note for all axes when they agree, else one per axis; a warning where not clean."""
    texts = [t for t, _ in per_axis]
    if len(set(texts)) == 1:
        items = [("", per_axis[0])]
    else:
        items = [(f"{label}: ", item) for label, item in zip(labels, per_axis)]
    for prefix, (text, clean) in items:
        ctx.note(prefix + text)
        if not clean:
            ctx.warn(prefix + text)


def need_4d(layer_obj, shape):
    if len(shape) != 4:
        layer_obj.fail(f"{layer_obj.type} takes a 4-d (num, channels, height, width) bottom; found "
                       f"{len(shape)}-d {format_shape(shape)}")
