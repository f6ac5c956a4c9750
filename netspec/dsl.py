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
of its first top unless name= says otherwise. The layer calls come from `netspec.layers`
(L.Convolution ...), which knows the types and which parameter messages each one reads;
this module needs nothing above the schema.
"""
from google.protobuf.message import Message

from . import caffe_pb2
from .errors import NetspecError
from .utils import did_you_mean

class DSLError(NetspecError, AttributeError):
    """An unknown layer type or parameter name (an AttributeError too, for getattr's sake)."""


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

    def to_proto(self):
        """The NetParameter of this top and every layer it depends on."""
        return to_proto(self)


class Function:
    """One layer call: its type, bottoms and a LayerParameter filled (and checked) at once."""

    def __init__(self, type_name, param_fields, bottoms, kwargs):
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
        params = list(param_fields)
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


def to_proto(*tops):
    """The NetParameter of the layers the tops depend on, in dependency order (names generated)."""
    emitter = _Emitter({})
    for top in tops:
        if not isinstance(top, Top):
            raise NetspecError(f"to_proto takes layer calls' outputs, not {top!r}")
        emitter.emit(top.fn)
    net = caffe_pb2.NetParameter()
    net.layer.extend(emitter.done.values())
    return net


def layer_call(type_name, param_fields):
    """L.<Type>: the call that makes one layer of a type whose parameters live in param_fields
    (the layer class says which; `netspec.layers` hands these out by type name)."""
    def call(*bottoms, **kwargs):
        return Function(type_name, param_fields, bottoms, kwargs).result()
    call.__name__ = type_name
    return call


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


params = _Params()
