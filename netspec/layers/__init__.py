"""Layer types, one family per module; importing a module registers its classes."""
from .registry import LAYERS, create, layer, layer_class  # noqa: F401
from . import vision, neuron, common, loss, data, recurrent  # noqa: F401,E402
