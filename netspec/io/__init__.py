"""Readers and writers for nets, solvers and blobs (to be completed: see netspec/io)."""
import re
from dataclasses import dataclass, field

from google.protobuf import text_format

from .. import caffe_pb2
from ..errors import NetspecError


@dataclass
class NetSource:
    """A loaded net: the upgraded NetParameter, where it came from, and each layer's line."""
    param: caffe_pb2.NetParameter
    path: str = None
    lines: list = field(default_factory=list)   # lines[i]: 1-based source line of param.layer[i], or None

    def line_of(self, index):
        return self.lines[index] if index < len(self.lines) else None


def read_net(path):
    """Read a net file (any supported format) into a NetSource. Raises NetspecError."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise NetspecError(f"cannot read net file: {e.strerror}", file=path) from None
    return parse_net_text(text, path)


def parse_net_text(text, path="<string>"):
    net = caffe_pb2.NetParameter()
    try:
        text_format.Parse(text, net)
    except text_format.ParseError as e:
        raise NetspecError(str(e), file=path) from None
    lines = [text.count("\n", 0, m.start()) + 1
             for m in re.finditer(r"^\s*layers?\s*\{", text, re.M)]
    return NetSource(net, path, lines)
