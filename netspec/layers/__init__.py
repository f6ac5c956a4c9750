"""Layer types, one family per module; importing a module registers its classes.

`from netspec import layers as L`: L.Convolution(...) and every other registered type name is
a NetSpec DSL call (netspec.dsl), as in pycaffe's net_spec."""
from .. import dsl
from ..utils import did_you_mean
from .registry import LAYERS, create, layer, layer_class  # noqa: F401
from . import (convolution, pooling, vision, neuron, common, plumbing, arithmetic,  # noqa: F401,E402
               normalization, loss, data, hdf5, recurrent, python, ssd, rcnn, forks)


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    cls = LAYERS.get(name)
    if cls is None:
        raise dsl.DSLError(f"unknown layer type '{name}'{did_you_mean(name, LAYERS)}",
                           hint="known types: " + ", ".join(sorted(LAYERS)))
    return dsl.layer_call(cls.type, cls.param_fields)
