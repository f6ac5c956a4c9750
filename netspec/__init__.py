"""netspec: a Caffe-style declarative network compiler.

Parse Caffe nets (prototxt, YAML, JSON, binary, or the NetSpec DSL), check and explain their
shapes, and run and train them on NumPy or CuPy.
"""
__version__ = "0.1.0"

from . import caffe_pb2  # noqa: F401
from .errors import NetspecError  # noqa: F401
from .dsl import NetSpec, params  # noqa: F401,E402  (`layers` is the package; its type names are DSL calls)
from .net import Net  # noqa: F401,E402
from .report import check  # noqa: F401,E402
