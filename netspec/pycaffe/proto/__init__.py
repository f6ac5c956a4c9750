"""caffe.proto: the schema's generated module (netspec's, wire-compatible with Caffe's)."""
from ... import caffe_pb2  # noqa: F401
