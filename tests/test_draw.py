"""`netspec draw`: shapes on the edges, in-place layers folded, blocks collapsed, errors in red."""
import html
import re
import shutil

import pytest

import netspec
from netspec.cli import main
from netspec.draw import Drawing, shape_text

pytest.importorskip("pydot")

NET = """name: "shared"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 3 dim: 8 dim: 8 } } }
layer { name: "a" type: "Convolution" bottom: "data" top: "a"
        param { name: "w" } param { name: "b" } convolution_param { num_output: 6 kernel_size: 3 } }
layer { name: "b" type: "Convolution" bottom: "data" top: "b"
        param { name: "w" } param { name: "b" } convolution_param { num_output: 6 kernel_size: 3 } }
layer { name: "relu_b" type: "ReLU" bottom: "b" top: "b" }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" }
layer { name: "fc" type: "InnerProduct" bottom: "sum" top: "fc" inner_product_param { num_output: 10 } }
layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 4 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
"""


def edges(dot):
    """(source, target, label) of every edge of the .dot text."""
    return re.findall(r'(n\d+) -> (n\d+) \[.*?label="([^"]*)"', dot)


def labels(dot):
    return dict(re.findall(r'^(n\d+) \[.*?label=<(.*?)>, ', dot, re.M))


def node_of(dot, layer):
    return next(n for n, text in labels(dot).items() if text.startswith(f"<b>{layer}</b>"))


def test_googlenet_every_blob_has_its_shape_on_its_edge():
    report = netspec.check("models/googlenet/deploy.prototxt")
    dot = Drawing(report).to_string()
    found = edges(dot)
    # every read of a blob made by a layer is an edge (Splits gone, in-place layers folded)
    reads = sum(1 for r in report.layers if not r.node.split and not (len(r.node.bottoms) == 1 and r.node.in_place(0))
                for b in r.node.bottoms)
    assert len(found) == reads + len(report.outputs)
    assert all(label.strip() and "?" not in label for _, _, label in found)
    conv1, pool1 = node_of(dot, "conv1/7x7_s2"), node_of(dot, "pool1/3x3_s2")
    assert (conv1, pool1, " 64x112x112") in found
    concat = node_of(dot, "inception_3a/output")
    assert sum(1 for s, _, label in found if s == concat and label == " 256x28x28") == 4
    assert "relu" not in "".join(t for t in labels(dot).values() if t.startswith("<b>conv1/relu"))
    assert "+ ReLU" in labels(dot)[conv1] and "7x7 /2 pad 3" in labels(dot)[conv1]
    assert "batch 1" in dot


def test_shared_weights_loss_tops_and_family_colours(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(NET)
    dot = Drawing(netspec.check(str(path))).to_string()
    a, b = node_of(dot, "a"), node_of(dot, "b")
    assert re.search(rf'{a} -> {b} \[.*style=dashed.*label=" shares w"', dot)
    assert "+ ReLU" in labels(dot)[b]
    assert "loss × 1" in dot and "peripheries=2" in dot
    assert (node_of(dot, "sum"), node_of(dot, "fc"), " 6x6x6") in edges(dot)
    assert (node_of(dot, "label"), node_of(dot, "loss"), " 4") in edges(dot)   # (N,): not dropped
    conv_colour = re.search(rf'^{a} \[.*fillcolor="([^"]+)"', dot, re.M)[1]
    fc_colour = re.search(rf'^{node_of(dot, "fc")} \[.*fillcolor="([^"]+)"', dot, re.M)[1]
    assert conv_colour != fc_colour


def test_a_broken_net_still_draws_with_the_error_in_red(tmp_path, capsys):
    path = tmp_path / "net.prototxt"
    path.write_text(NET.replace("num_output: 6 kernel_size: 3 } }\nlayer { name: \"relu_b\"",
                                "num_output: 6 kernel_size: 3 pad: 1 } }\nlayer { name: \"relu_b\""))
    out = tmp_path / "broken.dot"
    assert main(["draw", str(path), str(out)]) == 1
    dot = out.read_text()
    node = node_of(dot, "sum")
    assert re.search(rf'^{node} \[.*color="#cb181d"', dot, re.M)
    assert "error: " in labels(dot)[node]
    assert "1 error(s) drawn in red" in capsys.readouterr().out
    # the layer after the error has no shape: its edge says so
    assert (node, node_of(dot, "fc"), " ?") in edges(dot)


def test_collapse_folds_resnet152_to_a_page():
    report = netspec.check("models/resnet-152/deploy.prototxt")
    full, small = Drawing(report).to_string(), Drawing(report, collapse=True).to_string()
    assert len(labels(full)) > 150
    assert len(labels(small)) < 40
    assert "× 35 blocks" in small and "res4b1 … res4b35" in small
    assert "× 7 blocks" in small
    # shapes still on the edges into and out of a folded run
    assert " 1024x14x14" in small and " 2048x7x7" in small
    # a blob read by several layers of a folded run is one edge into it
    googlenet = Drawing(netspec.check("models/googlenet/deploy.prototxt"), collapse=True).to_string()
    assert "inception_4a … inception_4e" in googlenet and googlenet.count('label=" 832x7x7"') == 1


def test_shape_text_says_the_batch_once():
    assert shape_text((10, 96, 55, 55), 10) == "96x55x55"
    assert shape_text((10,), 10) == "10"
    assert shape_text((3, 5), 10) == "3x5"
    assert shape_text((), 10) == "scalar"
    assert shape_text(None, 10) == "?"


def test_dot_output_needs_no_program_and_a_missing_dot_is_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("netspec.draw.shutil.which", lambda name: None)
    assert main(["draw", "models/lenet/deploy.prototxt", str(tmp_path / "l.dot")]) == 0
    assert (tmp_path / "l.dot").read_text().startswith("digraph")
    assert main(["draw", "models/lenet/deploy.prototxt", str(tmp_path / "l.svg")]) == 2
    err = capsys.readouterr().err
    assert "dot" in err and "apt-get install graphviz" in err
    assert not (tmp_path / "l.svg").exists()


def test_wrong_extension_is_exit_2(tmp_path, capsys):
    assert main(["draw", "models/lenet/deploy.prototxt", str(tmp_path / "l.jpeg")]) == 2
    assert ".svg" in capsys.readouterr().err


@pytest.mark.skipif(not shutil.which("dot"), reason="Graphviz's dot is not installed")
@pytest.mark.parametrize("ext", ["svg", "png", "pdf"])
def test_renders_with_graphviz(tmp_path, ext):
    out = tmp_path / f"g.{ext}"
    assert main(["draw", "models/lenet/lenet_train_test.prototxt", str(out), "--phase", "TRAIN",
                 "--input", "data=64,1,28,28", "--rankdir", "LR"]) == 0
    data = out.read_bytes()
    assert data[:4] in (b"<?xm", b"\x89PNG", b"%PDF")
    if ext == "svg":
        text = html.unescape(data.decode())
        assert 'id="layer-conv1"' in text and "20x24x24" in text and "20x12x12" in text


def test_every_output_of_a_layer_with_several_tops_ends_in_its_own_node(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text("""name: "slices"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 6 } } }
layer { name: "cut" type: "Slice" bottom: "data" top: "left" top: "right" slice_param { slice_point: 2 } }
layer { name: "relu" type: "ReLU" bottom: "left" top: "left" }
""")
    dot = Drawing(netspec.check(str(path))).to_string()
    cut = node_of(dot, "cut")
    assert "+ ReLU" in labels(dot)[cut]
    assert sorted(label for s, _, label in edges(dot) if s == cut) == [" 2", " 4"]
