"""The numbers the papers and the chapter count: depth on the longest path, and connections
beside parameters (section 4.1.4's sparse-connection argument)."""
import pathlib

import pytest

from netspec.graph import build_graph
from netspec.io import parse_net
from netspec.shapes import infer_shapes

MODELS = pathlib.Path(__file__).resolve().parent.parent / "models"


@pytest.mark.parametrize("model,depth", [("googlenet", 22), ("alexnet", 8), ("vgg16", 16),
                                         ("resnet-50", 50), ("resnet-152", 152)])
def test_depth_as_the_papers_count_it(model, depth):
    result = infer_shapes(build_graph(str(MODELS / model / "deploy.prototxt")), suggest=False)
    assert result.stats["depth"] == depth


def _one_layer(size, body):
    text = (f'input: "x" input_shape {{ dim: 1 dim: 1 dim: {size} dim: {size} }}\n'
            f'layer {{ name: "l" bottom: "x" top: "y" {body} }}')
    result = infer_shapes(build_graph(parse_net(text, "text", "net.prototxt")), suggest=False)
    (note,) = [n for n in result.layer("l").notes if "connections" in n]
    return note


@pytest.mark.parametrize("size,out,full,conv", [(4, 3, 144, 36), (256, 255, 4261478400, 260100)])
def test_connections_of_full_and_sparse_layers(size, out, full, conv):
    ip = _one_layer(size, f'type: "InnerProduct" inner_product_param {{ num_output: {out * out} }}')
    assert ip == f"{full} connections per item through {full} weights"
    c = _one_layer(size, 'type: "Convolution" convolution_param { num_output: 1 kernel_size: 2 }')
    assert c == f"{conv} connections per item through 4 weights"
