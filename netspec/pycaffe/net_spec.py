"""caffe.net_spec: netspec's DSL under pycaffe's names (layers as L, params as P, NetSpec, to_proto)."""
from .. import caffe_pb2
from ..dsl import NetSpec, Top, assign, params, to_proto  # noqa: F401
from .. import layers  # noqa: F401  (L.Convolution(...) and every other registered type)


def param_name_dict():
    """{layer type: its parameter field's prefix} ('Convolution': 'convolution', ...), as pycaffe."""
    out = {}
    for f in caffe_pb2.LayerParameter.DESCRIPTOR.fields:
        if f.name.endswith("_param") and f.message_type is not None:
            out[f.message_type.name[:-len("Parameter")]] = f.name[:-len("_param")]
    return out


def assign_proto(proto, name, val):
    """Set proto.name from a Python value (lists for repeated fields, dicts for messages)."""
    assign(proto, name, val, type(proto).__name__)
