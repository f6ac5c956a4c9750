"""The explicit registry: Caffe's layer type string -> the class that implements it."""
from ..errors import LayerError
from ..utils import did_you_mean

LAYERS = {}


def layer(type_name):
    """Class decorator: register a layer class under Caffe's type string (once only)."""
    def register(cls):
        if type_name in LAYERS:
            raise ValueError(f"layer type '{type_name}' is registered twice "
                             f"({LAYERS[type_name].__name__} and {cls.__name__})")
        cls.type = type_name
        LAYERS[type_name] = cls
        return cls
    return register


def layer_class(type_name):
    """The class for a type string; an unknown type names the nearest known ones."""
    try:
        return LAYERS[type_name]
    except KeyError:
        raise LayerError(f"unknown layer type '{type_name}'{did_you_mean(type_name, LAYERS)}",
                         hint="known types: " + ", ".join(sorted(LAYERS))) from None


def create(lp, phase):
    """Instantiate the layer for a LayerParameter in a phase (caffe_pb2.TRAIN or TEST)."""
    return layer_class(lp.type)(lp, phase)
