"""Layer types, one family per module; importing a module registers its classes."""
from .registry import LAYERS, create, layer, layer_class  # noqa: F401
from . import convolution, pooling, vision, neuron, common, plumbing, arithmetic, normalization, loss, data, recurrent, python  # noqa: F401,E402


def __getattr__(name):
    """`from netspec import layers as L; L.Convolution(...)`: a type name is a NetSpec DSL call."""
    from ..dsl import layers as dsl_layers
    return getattr(dsl_layers, name)
