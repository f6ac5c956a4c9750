"""Each bad-input case of `netspec check`, with its message."""
import netspec
from netspec.graph import build_graph
from netspec.io import parse_net_text
from netspec.shapes import nearest_clean_sizes

DATA = 'layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 dim: 3 dim: {h} dim: {w} }} }} }}\n'

# A max pool rounds up and a strided convolution rounds down: on odd sizes the branches disagree.
BRANCHES = """layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "down" type: "Convolution" bottom: "conv" top: "down" convolution_param { num_output: 8 kernel_size: 2 stride: 2 } }
"""
SUM = 'layer { name: "sum" type: "Eltwise" bottom: "pool" bottom: "down" top: "sum" }\n'
CAT = 'layer { name: "cat" type: "Concat" bottom: "pool" bottom: "down" top: "cat" }\n'


def check_text(text, tmp_path, **kw):
    path = tmp_path / "net.prototxt"
    path.write_text(text)
    return netspec.check(str(path), **kw)


def only_error(report):
    assert len(report.errors) == 1, [str(e) for e in report.errors]
    return report.errors[0]


def test_eltwise_operands_that_disagree_name_the_axis_the_amount_and_clean_sizes(tmp_path):
    e = only_error(check_text(DATA.format(h=225, w=225) + BRANCHES + SUM, tmp_path))
    assert (e.layer, e.type, e.line) == ("sum", "Eltwise", 5)
    assert "axis 2: bottom 'down' has 112, bottom 'pool' has 113 (off by -1)" in e.message
    assert "axis 3: bottom 'down' has 112, bottom 'pool' has 113 (off by -1)" in e.message
    assert e.hint.endswith("the whole net checks clean with data at 224x224 or 226x226 (now 225x225)")


def test_concat_operands_that_disagree_on_a_non_square_input(tmp_path):
    e = only_error(check_text(DATA.format(h=225, w=231) + BRANCHES + CAT, tmp_path))
    assert e.message.startswith("Concat along axis 1 needs every other axis equal: ")
    assert "axis 3: bottom 'down' has 115, bottom 'pool' has 116 (off by -1)" in e.message
    assert e.hint.endswith("the whole net checks clean with data at 224x230 or 226x232 (now 225x231)")


def test_the_clean_size_search_reruns_the_pass(tmp_path):
    g = build_graph(parse_net_text(DATA.format(h=9, w=9) + BRANCHES + SUM))
    assert nearest_clean_sizes(g, {}, "data", (1, 3, 9, 9)) == ((1, 3, 8, 8), (1, 3, 10, 10))
    # a first pool halves (rounding up); the branches then agree only where that half is even
    text = (DATA.format(h=10, w=10) +
            'layer { name: "half" type: "Pooling" bottom: "data" top: "conv" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
            + BRANCHES.split("\n", 1)[1].replace("num_output: 8", "num_output: 3") + SUM)
    g = build_graph(parse_net_text(text))
    assert nearest_clean_sizes(g, {}, "data", (1, 3, 10, 10), radius=1) == (None, (1, 3, 11, 11))
    assert nearest_clean_sizes(g, {}, "data", (1, 3, 10, 10), radius=2) == ((1, 3, 8, 8), (1, 3, 11, 11))


def test_no_clean_size_nearby_is_said_plainly(tmp_path):
    # a 3x3 convolution against a 1x1 one differ at every size (n - 2 vs n; at 2x2 the 3x3 has no output)
    text = (DATA.format(h=32, w=32) +
            'layer { name: "a" type: "Convolution" bottom: "data" top: "a" convolution_param { num_output: 2 kernel_size: 3 } }\n'
            'layer { name: "b" type: "Convolution" bottom: "data" top: "b" convolution_param { num_output: 2 kernel_size: 1 } }\n'
            'layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" }\n')
    e = only_error(check_text(text, tmp_path))
    assert e.hint.endswith("no data size within 32 of 32x32 checks clean")


def test_group_that_does_not_divide_the_channels(tmp_path):
    text = DATA.format(h=8, w=8) + 'layer { name: "g" type: "Convolution" bottom: "data" top: "g" convolution_param { num_output: 4 kernel_size: 3 group: 2 } }\n'
    e = only_error(check_text(text, tmp_path))
    assert (e.layer, e.type, e.line) == ("g", "Convolution", 2)
    assert "group 2 does not divide the 3 input channels" in e.message


def test_a_kernel_larger_than_the_padded_input(tmp_path):
    text = DATA.format(h=8, w=8) + 'layer { name: "big" type: "Convolution" bottom: "data" top: "big" convolution_param { num_output: 4 kernel_size: 11 pad: 1 } }\n'
    e = only_error(check_text(text, tmp_path))
    assert "kernel extent 11 is larger than the padded input 8 + 2*1 = 10" in e.message


def test_sizes_that_shrink_to_nothing(tmp_path):
    pools = "".join(f'layer {{ name: "p{i}" type: "Pooling" bottom: "{b}" top: "p{i}" '
                    f'pooling_param {{ pool: MAX kernel_size: 5 stride: 2 }} }}\n'
                    for i, b in enumerate(["data", "p0", "p1", "p2"]))
    r = check_text(DATA.format(h=16, w=16) + pools, tmp_path)
    e = only_error(r)
    assert e.layer == "p2"                       # 16 -> 7 -> 2: ceil((2 - 5)/2) + 1 = 0 windows of 5x5
    assert "larger than the padded input 2 + 2*0 = 2" in e.message
    assert r.shape("p1") == (1, 3, 2, 2) and r.shape("p2") is None and r.shape("p3") is None


def test_unknown_type_names_the_nearest_known_types(tmp_path):
    text = DATA.format(h=8, w=8) + 'layer { name: "u" type: "Convlution" bottom: "data" top: "u" }\n'
    e = only_error(check_text(text, tmp_path))
    assert e.message.startswith("unknown layer type 'Convlution' (did you mean 'Convolution'")
    assert (e.layer, e.type, e.line) == ("u", "Convlution", 2)


def test_errors_are_reported_together_in_file_order(tmp_path):
    text = (DATA.format(h=8, w=8) +
            'layer { name: "g" type: "Convolution" bottom: "data" top: "g" convolution_param { num_output: 4 kernel_size: 3 group: 2 } }\n'
            'layer { name: "u" type: "Convlution" bottom: "data" top: "u" }\n'
            'layer { name: "m" type: "ReLU" bottom: "dat" top: "m" }\n')
    r = check_text(text, tmp_path)
    assert [(e.layer, e.line) for e in r.errors] == [("g", 2), ("u", 3), ("m", 4)]
    assert r.exit_code == 1


def test_the_alexnet_stride_warning_shows_the_arithmetic(tmp_path):
    text = (DATA.format(h=224, w=224) +
            'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 96 kernel_size: 11 stride: 4 } }\n')
    r = check_text(text, tmp_path)
    assert r.ok and r.shape("conv1") == (1, 96, 54, 54)
    w = r.warnings[0]
    assert (w.layer, w.line) == ("conv1", 2)
    assert w.message == ("(224 - 11)/4 = 53.25; floor 53, + 1 = 54; stride 4 leaves remainder 1, "
                         "so 55 needs input 227 or pad 2")
    assert not check_text(text, tmp_path, strict=True).ok
    assert check_text(text, tmp_path, inputs={"data": (1, 3, 227, 227)}).warnings == []
