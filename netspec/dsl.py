"""NetSpec: write Caffe nets in Python, in the spirit of pycaffe's net_spec.

    from netspec import NetSpec, layers as L, params as P
    n = NetSpec()
    n.data, n.label = L.Data(source="train_lmdb", backend=P.Data.LMDB, batch_size=64, ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20, weight_filler=dict(type="xavier"))
    n.pool1 = L.Pooling(n.conv1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    text = netspec.io.dump(n.to_proto(), "text")    # the prototxt, as Caffe writes it

A keyword goes to the layer's own parameter message (convolution_param for Convolution,
found from the type through the LayerParameter descriptor) or else to a LayerParameter
field (param, loss_weight, include, exclude, propagate_down, name, top, any *_param).
Three keywords are the DSL's own: ntop (number of tops), in_place (top = bottom) and, for
several tops named explicitly, top=[...]. Enums go by value or by name ("MAX"); dicts fill
messages; lists fill repeated fields. Mistakes fail at the call, naming the closest names.

A blob takes the name of the NetSpec attribute it is assigned to; a layer takes the name
of its first top unless name= says otherwise. Block helpers (conv_bn, inception,
basic_block, bottleneck, preact_unit) build the repeated parts of the classic nets.
"""
from google.protobuf.message import Message

from . import caffe_pb2
from .errors import NetspecError
from .utils import did_you_mean

# Every layer type of BVLC Caffe 1.0; netspec's own registry adds to these.
CAFFE_TYPES = (
    "AbsVal", "Accuracy", "ArgMax", "BatchNorm", "BatchReindex", "Bias", "BNLL", "Clip",
    "Concat", "ContrastiveLoss", "Convolution", "Crop", "Data", "Deconvolution", "Dropout",
    "DummyData", "Eltwise", "ELU", "Embed", "EuclideanLoss", "Exp", "Filter", "Flatten",
    "HDF5Data", "HDF5Output", "HingeLoss", "Im2col", "ImageData", "InfogainLoss",
    "InnerProduct", "Input", "Log", "LRN", "LSTM", "LSTMUnit", "MemoryData",
    "MultinomialLogisticLoss", "MVN", "Parameter", "Pooling", "Power", "PReLU", "Python",
    "Reduction", "ReLU", "Reshape", "RNN", "Scale", "Sigmoid", "SigmoidCrossEntropyLoss",
    "Silence", "Slice", "Softmax", "SoftmaxWithLoss", "Split", "SPP", "Swish", "TanH",
    "Threshold", "Tile", "WindowData",
)

# Types whose parameter message is not named after them.
_EXTRA_PARAMS = {"Deconvolution": ("convolution_param",), "SoftmaxWithLoss": ("softmax_param",),
                 "RNN": ("recurrent_param",), "LSTM": ("recurrent_param",)}


class DSLError(NetspecError, AttributeError):
    """An unknown layer type or parameter name (an AttributeError too, for getattr's sake)."""


def _param_fields():
    """Type name -> its *_param fields, from the schema (ConvolutionParameter: Convolution)."""
    table = {}
    for field in caffe_pb2.LayerParameter.DESCRIPTOR.fields:
        if field.message_type is not None and field.message_type.name.endswith("Parameter"):
            table.setdefault(field.message_type.name[:-len("Parameter")], []).append(field.name)
    for type_name, fields in _EXTRA_PARAMS.items():
        table.setdefault(type_name, []).extend(fields)
    return table


PARAM_FIELDS = _param_fields()


def known_types():
    """Caffe's layer types and every type netspec's registry holds."""
    from .layers import LAYERS
    return sorted(set(CAFFE_TYPES) | set(LAYERS))


def own_params(type_name):
    """The parameter messages a type reads, its own first; loss layers also read loss_param."""
    fields = list(PARAM_FIELDS.get(type_name, ()))
    if type_name.endswith("Loss"):
        fields.append("loss_param")
    return fields


# -- filling protobuf messages from Python values ------------------------------------------

def _scalar(field, value, where):
    if field.enum_type is not None:
        names = field.enum_type.values_by_name
        if isinstance(value, str):
            if value not in names:
                raise NetspecError(f"{where}: '{value}' is not a {field.enum_type.name}"
                                   f"{did_you_mean(value, names)}",
                                   hint="one of: " + ", ".join(names))
            return names[value].number
        if value not in field.enum_type.values_by_number:
            raise NetspecError(f"{where}: {value!r} is not a {field.enum_type.name}",
                               hint="one of: " + ", ".join(names))
    return value


def fill(message, value, where):
    """Fill a message from a dict (recursively) or a message of its type."""
    if isinstance(value, Message):
        if value.DESCRIPTOR is not message.DESCRIPTOR:
            raise NetspecError(f"{where}: expected a {message.DESCRIPTOR.name}, "
                               f"got a {value.DESCRIPTOR.name}")
        message.MergeFrom(value)
        return
    if not isinstance(value, dict):
        raise NetspecError(f"{where}: expected a dict of {message.DESCRIPTOR.name} fields, "
                           f"got {value!r}")
    for key, item in value.items():
        assign(message, key, item, where)


def assign(message, key, value, where):
    """message.<key> = value, with lists for repeated fields, dicts for messages, enum names."""
    fields = message.DESCRIPTOR.fields_by_name
    field = fields.get(key)
    if field is None:
        raise DSLError(f"{where}: {message.DESCRIPTOR.name} has no field '{key}'"
                       f"{did_you_mean(key, fields)}",
                       hint="its fields: " + ", ".join(fields))
    where = f"{where}: {key}"
    try:
        if field.is_repeated:
            values = value if isinstance(value, (list, tuple)) else [value]
            container = getattr(message, key)
            for item in values:
                if field.message_type is not None:
                    fill(container.add(), item, where)
                else:
                    container.append(_scalar(field, item, where))
        elif field.message_type is not None:
            fill(getattr(message, key), value, where)
        else:
            setattr(message, key, _scalar(field, value, where))
    except (TypeError, ValueError) as e:
        raise NetspecError(f"{where}: cannot take {value!r} ({e})") from None


# -- the graph being described -------------------------------------------------------------

class Top:
    """One output blob of a layer call; assign it to a NetSpec attribute to name it."""

    def __init__(self, fn, index):
        self.fn, self.index = fn, index

    def __repr__(self):
        return f"<Top {self.index} of {self.fn.type}>"


class Function:
    """One layer call: its type, bottoms and a LayerParameter filled (and checked) at once."""

    def __init__(self, type_name, bottoms, kwargs):
        for i, b in enumerate(bottoms):
            if not isinstance(b, Top):
                raise NetspecError(f"{type_name}: bottom {i} is {b!r}, not a blob "
                                   f"(pass NetSpec attributes such as n.data)")
        self.type, self.inputs = type_name, tuple(bottoms)
        kwargs = dict(kwargs)
        self.in_place = bool(kwargs.pop("in_place", False))
        if self.in_place and not bottoms:
            raise NetspecError(f"{type_name}: in_place needs a bottom to write over")
        self.lp = caffe_pb2.LayerParameter(type=type_name)
        params = own_params(type_name)
        for key, value in kwargs.items():
            if key == "ntop":
                continue
            home = next((p for p in params
                         if key in getattr(self.lp, p).DESCRIPTOR.fields_by_name), None)
            if home is not None:
                assign(getattr(self.lp, home), key, value, f"{type_name} {home}")
            elif key in self.lp.DESCRIPTOR.fields_by_name:
                assign(self.lp, key, value, type_name)
            else:
                names = list(self.lp.DESCRIPTOR.fields_by_name) + ["ntop", "in_place"]
                for p in params:
                    names += getattr(self.lp, p).DESCRIPTOR.fields_by_name
                raise DSLError(f"{type_name}: unknown parameter '{key}'{did_you_mean(key, names)}",
                               hint=f"{type_name} takes the fields of "
                                    + " and ".join(params + ["LayerParameter"]))
        self.ntop = kwargs.get("ntop", len(self.lp.top) or 1)
        if not isinstance(self.ntop, int) or self.ntop < 0:
            raise NetspecError(f"{type_name}: ntop must be a count of tops, not {self.ntop!r}")
        if self.lp.top and len(self.lp.top) != self.ntop:
            raise NetspecError(f"{type_name}: ntop={self.ntop} but top names "
                               f"{list(self.lp.top)}")
        self.tops = tuple(Top(self, i) for i in range(self.ntop))

    def result(self):
        """What the layer call returns: the Function (no tops), its Top, or a tuple of Tops."""
        if self.ntop == 0:
            return self
        return self.tops[0] if self.ntop == 1 else self.tops


class _Emitter:
    """Turns Functions into LayerParameters in dependency order, naming blobs and layers."""

    def __init__(self, names):
        self.names = names          # Top or Function -> the attribute it was assigned to
        self.counts = {}
        self.done = {}              # Function -> its finished LayerParameter, in order

    def autoname(self, type_name):
        self.counts[type_name] = self.counts.get(type_name, 0) + 1
        return f"{type_name}{self.counts[type_name]}"

    def top_name(self, top):
        if top not in self.names:
            self.names[top] = self.autoname(top.fn.type)
        return self.names[top]

    def emit(self, fn):
        if fn in self.done:
            return self.done[fn]
        lp = caffe_pb2.LayerParameter()
        lp.CopyFrom(fn.lp)
        for top in fn.inputs:
            lp.bottom.append(self.emit(top.fn).top[top.index])
        if not lp.name:
            lp.name = self.names.get(fn) or (self.top_name(fn.tops[0]) if fn.tops
                                             else self.autoname(fn.type))
        if fn.in_place:
            del lp.top[:]
            lp.top.append(lp.bottom[0])
        elif not lp.top:
            lp.top.extend(self.top_name(t) for t in fn.tops)
        self.done[fn] = lp
        return lp


class NetSpec:
    """A net being written: assign layer calls to attributes; to_proto() gives the NetParameter."""

    def __init__(self):
        super().__setattr__("tops", {})

    def __setattr__(self, name, value):
        if isinstance(value, tuple) and value and all(isinstance(t, Top) for t in value):
            fn = value[0].fn
            if not fn.lp.top:
                raise NetspecError(f"'{name}' is given {len(value)} tops: unpack them "
                                   f"(n.a, n.b = ...) or name them with top=[...]")
            value = fn
        if not isinstance(value, (Top, Function)):
            raise NetspecError(f"'{name}' must be a layer call's output, not {value!r}")
        self.tops[name] = value

    def __getattr__(self, name):
        try:
            return self.tops[name]
        except KeyError:
            raise DSLError(f"the net has no blob '{name}'{did_you_mean(name, self.tops)}") from None

    __setitem__ = __setattr__
    __getitem__ = __getattr__

    def to_proto(self, name=None):
        """The NetParameter, layers in dependency order (first use of each assignment)."""
        emitter = _Emitter({value: key for key, value in self.tops.items()})
        for value in self.tops.values():
            emitter.emit(value.fn if isinstance(value, Top) else value)
        net = caffe_pb2.NetParameter()
        if name:
            net.name = name
        net.layer.extend(emitter.done.values())
        return net


class _Layers:
    """L.<Type>(*bottoms, **params) for every known layer type."""

    def __getattr__(self, type_name):
        if type_name.startswith("__"):
            raise AttributeError(type_name)
        types = known_types()
        if type_name not in types:
            raise DSLError(f"unknown layer type '{type_name}'{did_you_mean(type_name, types)}",
                           hint="known types: " + ", ".join(types))

        def layer_call(*bottoms, **kwargs):
            return Function(type_name, bottoms, kwargs).result()
        layer_call.__name__ = type_name
        return layer_call


class _Params:
    """P.Pooling.MAX, P.Data.LMDB, P.Eltwise.SUM ... (the *Parameter messages' enums), P.TRAIN."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        for candidate in (name + "Parameter", name):
            if hasattr(caffe_pb2, candidate):
                return getattr(caffe_pb2, candidate)
        names = [m[:-len("Parameter")] for m in caffe_pb2.DESCRIPTOR.message_types_by_name
                 if m.endswith("Parameter")] + ["TRAIN", "TEST", "Phase"]
        raise DSLError(f"no parameter message '{name}'{did_you_mean(name, names)}")


layers = _Layers()
params = _Params()


# -- blocks of the classic nets ----------------------------------------------------------------
# Each helper adds its layers to n under names derived from `name` and returns its output top.

def conv_relu(n, bottom, name, num_output, kernel_size, relu_name=None, **conv):
    """Convolution + in-place ReLU, named <name>_relu unless relu_name says otherwise."""
    n[name] = convolution(bottom, num_output, kernel_size, **conv)
    n[relu_name or name + "_relu"] = layers.ReLU(n[name], in_place=True)
    return n[name]


def convolution(bottom, num_output, kernel_size, stride=1, pad=None, **conv):
    """A convolution, padded by default to keep the size at stride 1 ((k-1)/2, as the papers do)."""
    pad = (kernel_size - 1) // 2 if pad is None else pad
    extra = {"stride": stride} if stride != 1 else {}
    if pad:
        extra["pad"] = pad
    return layers.Convolution(bottom, num_output=num_output, kernel_size=kernel_size,
                              **extra, **conv)


def conv_bn(n, bottom, name, num_output, kernel_size, stride=1, pad=None, relu=True,
            bn=None, scale=None, relu_name=None, **conv):
    """Convolution (no bias) + BatchNorm + Scale (with bias) [+ ReLU], all but the first in place.

    Names default to <name>/bn, <name>/scale, <name>/relu; pass bn=, scale=, relu_name= to
    follow a published file (KaimingHe's are bn2a_branch2a, scale2a_branch2a, ...)."""
    n[name] = convolution(bottom, num_output, kernel_size, stride, pad, bias_term=False, **conv)
    n[bn or name + "/bn"] = layers.BatchNorm(n[name], in_place=True)
    n[scale or name + "/scale"] = layers.Scale(n[name], bias_term=True, in_place=True)
    if relu:
        n[relu_name or name + "/relu"] = layers.ReLU(n[name], in_place=True)
    return n[name]


def bn_relu(n, bottom, name):
    """BatchNorm + Scale + ReLU into a new blob <name> (pre-activation: the input stays intact)."""
    n[name] = layers.BatchNorm(bottom)
    n[name + "/scale"] = layers.Scale(n[name], bias_term=True, in_place=True)
    n[name + "/relu"] = layers.ReLU(n[name], in_place=True)
    return n[name]


def inception(n, bottom, name, c1, c3r, c3, c5r, c5, p3, **conv):
    """GoogLeNet's Inception module from its channel counts, as the paper's table lists them:
    #1x1, #3x3 reduce -> #3x3, #5x5 reduce -> #5x5, pool proj (3x3 max pool, stride 1).
    Blob names follow bvlc_googlenet (inception_3a/1x1, .../relu_1x1, ..., .../output)."""
    def branch(suffix, source, channels, kernel):
        return conv_relu(n, source, f"{name}/{suffix}", channels, kernel,
                         relu_name=f"{name}/relu_{suffix}", **conv)
    b1 = branch("1x1", bottom, c1, 1)
    b3 = branch("3x3", branch("3x3_reduce", bottom, c3r, 1), c3, 3)
    b5 = branch("5x5", branch("5x5_reduce", bottom, c5r, 1), c5, 5)
    n[f"{name}/pool"] = layers.Pooling(bottom, pool="MAX", kernel_size=3, stride=1, pad=1)
    bp = branch("pool_proj", n[f"{name}/pool"], p3, 1)
    n[f"{name}/output"] = layers.Concat(b1, b3, b5, bp)
    return n[f"{name}/output"]


def inception_bn(n, bottom, name, c1, c3r, c3, d3r, d3, pool, proj, stride=1, **conv):
    """The batch-normalized Inception module (Ioffe & Szegedy 2015, figure 5's table):
    #1x1, #3x3 reduce -> #3x3, double #3x3 reduce -> #3x3 -> #3x3, pool ('ave' or 'max') + proj.
    At stride 2 there is no 1x1 branch (c1 = 0) and the pool passes through (proj = 0)."""
    branches = []
    if c1:
        branches.append(conv_bn(n, bottom, f"{name}/1x1", c1, 1, **conv))
    reduce3 = conv_bn(n, bottom, f"{name}/3x3_reduce", c3r, 1, **conv)
    branches.append(conv_bn(n, reduce3, f"{name}/3x3", c3, 3, stride, **conv))
    double = conv_bn(n, bottom, f"{name}/double3x3_reduce", d3r, 1, **conv)
    double = conv_bn(n, double, f"{name}/double3x3a", d3, 3, **conv)
    branches.append(conv_bn(n, double, f"{name}/double3x3b", d3, 3, stride, **conv))
    n[f"{name}/pool"] = layers.Pooling(bottom, pool=pool.upper(), kernel_size=3, stride=stride,
                                       pad=1 if stride == 1 else 0)
    branches.append(conv_bn(n, n[f"{name}/pool"], f"{name}/pool_proj", proj, 1, **conv)
                    if proj else n[f"{name}/pool"])
    n[f"{name}/output"] = layers.Concat(*branches)
    return n[f"{name}/output"]


def _kaiming(block, branch):
    """KaimingHe's names: res2a_branch2a, bn2a_branch2a, scale2a_branch2a, res2a_branch2a_relu."""
    return dict(name=f"res{block}_{branch}", bn=f"bn{block}_{branch}",
                scale=f"scale{block}_{branch}", relu_name=f"res{block}_{branch}_relu")


def _shortcut(n, bottom, block, channels, stride, project, conv):
    """The identity, or with project a 1x1 convolution + BN, for the block where the shape changes."""
    if not project:
        return bottom
    return conv_bn(n, bottom, num_output=channels, kernel_size=1, stride=stride, relu=False,
                   **_kaiming(block, "branch1"), **conv)


def _residual(n, block, shortcut, branch):
    n[f"res{block}"] = layers.Eltwise(shortcut, branch)
    n[f"res{block}_relu"] = layers.ReLU(n[f"res{block}"], in_place=True)
    return n[f"res{block}"]


def basic_block(n, bottom, block, channels, stride=1, project=False, **conv):
    """ResNet-18/34's block: 3x3 conv-BN-ReLU, 3x3 conv-BN, plus the shortcut, then ReLU.
    project: a 1x1 convolution + BN on the shortcut, for the block where the shape changes."""
    shortcut = _shortcut(n, bottom, block, channels, stride, project, conv)
    a = conv_bn(n, bottom, num_output=channels, kernel_size=3, stride=stride,
                **_kaiming(block, "branch2a"), **conv)
    b = conv_bn(n, a, num_output=channels, kernel_size=3, relu=False,
                **_kaiming(block, "branch2b"), **conv)
    return _residual(n, block, shortcut, b)


def bottleneck(n, bottom, block, channels, stride=1, project=False, **conv):
    """ResNet-50/101/152's block as KaimingHe's prototxts write it: 1x1 (channels, carrying the
    stride), 3x3 (channels), 1x1 (4 x channels), each with BN + Scale; the shortcut is a
    projection (1x1 conv + BN) where the shape changes, else the identity; Eltwise sum, ReLU."""
    out = 4 * channels
    shortcut = _shortcut(n, bottom, block, out, stride, project, conv)
    a = conv_bn(n, bottom, num_output=channels, kernel_size=1, stride=stride,
                **_kaiming(block, "branch2a"), **conv)
    b = conv_bn(n, a, num_output=channels, kernel_size=3, **_kaiming(block, "branch2b"), **conv)
    c = conv_bn(n, b, num_output=out, kernel_size=1, relu=False,
                **_kaiming(block, "branch2c"), **conv)
    return _residual(n, block, shortcut, c)


def preact_unit(n, bottom, block, channels, stride=1, project=False, activate=True, **conv):
    """The pre-activation bottleneck (He et al. 2016, 'Identity Mappings'): BN-ReLU-conv 1x1,
    BN-ReLU-conv 3x3 (carrying the stride), BN-ReLU-conv 1x1; nothing after the addition.
    A projection shortcut reads the pre-activated input; activate=False for a unit whose input
    is already activated (the first, after conv1-BN-ReLU-pool)."""
    pre = bn_relu(n, bottom, f"res{block}_preact") if activate else bottom
    out = 4 * channels
    shortcut = (convolution(pre, out, 1, stride, bias_term=False, **conv) if project else bottom)
    if project:
        n[f"res{block}_branch1"] = shortcut
    n[f"res{block}_branch2a"] = convolution(pre, channels, 1, bias_term=False, **conv)
    a = bn_relu(n, n[f"res{block}_branch2a"], f"res{block}_branch2a_act")
    n[f"res{block}_branch2b"] = convolution(a, channels, 3, stride, bias_term=False, **conv)
    b = bn_relu(n, n[f"res{block}_branch2b"], f"res{block}_branch2b_act")
    n[f"res{block}_branch2c"] = convolution(b, out, 1, bias_term=False, **conv)
    n[f"res{block}"] = layers.Eltwise(shortcut, n[f"res{block}_branch2c"])
    return n[f"res{block}"]
