"""netspec: a Caffe-style declarative network compiler.

Parse Caffe nets (prototxt, YAML, JSON, binary, or the NetSpec DSL), check and explain their
shapes, and run and train them on NumPy or CuPy.
"""
__version__ = "0.1.0"

from . import caffe_pb2  # noqa: F401
from .errors import NetspecError  # noqa: F401
