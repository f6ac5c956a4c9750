"""ONNX export of netspec nets (needs the `onnx` package: pip install 'netspec[onnx]').

    from netspec.onnx import to_onnx
    model = to_onnx(Net("deploy.prototxt", weights="w.caffemodel"), opset=17)

Each layer type's mapping is one function keyed by its layer class (see export.maps), in the
module of this package named like the layer family's (vision, common, neuron). They are
looked up by class (through the layer registry), so they could move onto the classes as a
to_onnx(ctx) method without changing their bodies.
"""
from .export import DEFAULT_OPSET, MIN_OPSET, check_opset, layer_tops, maps, require, save, to_onnx  # noqa: F401
