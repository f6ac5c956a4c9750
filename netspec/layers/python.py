"""Caffe's `Python` layer: a class from the user's own module, which netspec does not import."""
from .base import Layer
from .registry import layer


@layer("Python")
class Python(Layer):
    """Known, so that the error names the user's module and class instead of an unknown type;
    any number of bottoms and tops, as the user's class decides."""
    bottoms = (0, None)
    tops = (0, None)

    def infer(self, bottoms, ctx):
        self.unsupported()

    def forward(self, xp, bottoms, tops):      # a Net never calls it: the layer is refused, or its tops fed
        self.unsupported()

    def unsupported(self):
        p = self.lp.python_param
        self.fail(f"Python layers (module '{p.module}', layer '{p.layer}') run user code that netspec does not "
                  "load: this layer is not supported",
                  hint="replace it with netspec's built-in layers (Caffe's own types)")
