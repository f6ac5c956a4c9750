"""The shape pass: tops' shapes, errors reported together, inputs, parameter sharing, costs."""
import pytest

from netspec.errors import NetspecError
from netspec.graph import build_graph
from netspec.io import parse_net_text
from netspec.shapes import infer_shapes


def run(text, inputs=None, **kw):
    return infer_shapes(build_graph(parse_net_text(text, "net.prototxt"), **kw), inputs)


def data(*shape, name="data"):
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {dims} }} }} }}\n'


def ip(name, bottom, n, extra=""):
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}" {extra} '
            f'inner_product_param {{ num_output: {n} }} }}\n')


def test_shapes_flow_through_in_order_and_in_place():
    r = run(data(4, 3, 5, 5) + ip("fc1", "data", 10) +
            'layer { name: "relu" type: "ReLU" bottom: "fc1" top: "fc1" }\n' + ip("fc2", "fc1", 7))
    assert r.ok and r.errors == []
    assert r.blob_shapes == {"data": (4, 3, 5, 5), "fc1": (4, 10), "fc2": (4, 7)}
    assert [x.top_shapes for x in r.layers] == [[(4, 3, 5, 5)], [(4, 10)], [(4, 10)], [(4, 7)]]
    assert r.layer("fc1").bottom_shapes == [(4, 3, 5, 5)]


def test_every_independent_error_is_reported_with_file_line_layer_and_type():
    text = (data(2, 6) +
            'layer { name: "bad1" type: "Reshape" bottom: "data" top: "r" reshape_param { shape { dim: 5 dim: -1 } } }\n' +
            ip("after_bad1", "r", 3) +                       # skipped quietly: its bottom is unknown
            'layer { name: "bad2" type: "Eltwise" bottom: "data" bottom: "x" top: "s" }\n' +
            ip("fine", "data", 2))
    r = run(text)
    assert not r.ok
    assert [(e.layer, e.type, e.line) for e in r.errors] == [("bad1", "Reshape", 2), ("bad2", "Eltwise", 4)]
    assert "bottom 'x' (bottom 1) is produced by no layer before it" in r.errors[1].message
    assert str(r.errors[0]).startswith("net.prototxt:2: bad1 (Reshape): ")
    assert r.blob_shapes["fine"] == (2, 2)
    assert r.layer("after_bad1").top_shapes == [None] and r.layer("after_bad1").errors == []
    with pytest.raises(NetspecError, match="net.prototxt:2: layer 'bad1'"):
        r.check()


def test_given_inputs_override_the_files_shapes_with_a_note():
    r = run(data(1, 3, 4, 4) + ip("fc", "data", 5), {"data": [8, 3, 4, 4]})
    assert r.blob_shapes["fc"] == (8, 5)
    assert r.layer("data").notes == ["data: 8x3x4x4 from --input (the file gives 1x3x4x4)"]


def test_a_given_input_must_name_an_input_blob():
    with pytest.raises(NetspecError, match="this net has no input blob 'dat' \\(did you mean 'data'\\?\\)"):
        run(data(1, 3) + ip("fc", "data", 5), {"dat": (1, 3)})
    with pytest.raises(NetspecError, match="every dimension must be positive"):
        run(data(1, 3) + ip("fc", "data", 5), {"data": (1, 0)})


def test_a_data_layer_without_its_source_takes_given_shapes_and_the_labels_follow(tmp_path):
    text = (f'layer {{ name: "d" type: "Data" top: "data" top: "label" '
            f'data_param {{ source: "{tmp_path}/missing_lmdb" batch_size: 4 backend: LMDB }} }}\n' + ip("fc", "data", 2))
    r = run(text)
    missing = [w for w in r.warnings if "does not exist" in w.message]
    assert r.ok and len(missing) == 1           # shaped from the net: N known, the rest at run time
    w = missing[0]
    assert (w.layer, w.type, w.line) == ("d", "Data", 1) and "missing_lmdb' does not exist" in w.message
    assert r.blob_shapes["data"] == (4, None, None, None) and r.blob_shapes["label"] == (4,)
    assert r.blob_shapes["fc"] == (4, 2) and r.layer("fc").param_shapes == [(2, None), (2,)]
    r = run(text, {"data": (4, 1, 6, 6)})
    assert r.ok and not [w for w in r.warnings if "does not exist" in w.message], r.errors
    assert r.blob_shapes["label"] == (4,) and r.blob_shapes["fc"] == (4, 2)


def test_sizes_that_reach_zero_are_errors_whatever_the_rule():
    r = run(data(0, 3))
    assert not r.ok   # the Input rule or the fallback catches a zero dimension
    assert "zero" in r.errors[0].message or "0" in r.errors[0].message


# -- statistics ----------------------------------------------------------------------------------

def test_params_counted_once_when_shared_by_name():
    shared = 'param { name: "w" } param { name: "b" }'
    r = run(data(2, 6) + ip("a", "data", 4, shared) + ip("b", "data", 4, shared) + ip("c", "data", 4))
    a, b, c = (r.layer(n) for n in "abc")
    assert a.param_shapes == b.param_shapes == c.param_shapes == [(4, 6), (4,)]
    assert (a.param_count, b.param_count, c.param_count) == (28, 0, 28)
    assert b.shared == [(0, "w", "a"), (1, "b", "a")]
    assert r.stats["params"] == 56


def test_shared_params_must_agree_in_shape():
    shared = 'param { name: "w" }'
    r = run(data(2, 6) + ip("a", "data", 4, shared) + ip("b", "data", 5, shared))
    assert [e.message for e in r.errors] == ["param 'w' is 5x6 here but 4x6 in 'a', which it shares"]


def test_permissive_sharing_needs_only_the_same_count():
    strict, permissive = 'param { name: "w" }', 'param { name: "w" share_mode: PERMISSIVE }'
    r = run(data(2, 6) + ip("a", "data", 4, strict) + ip("b", "a", 6, permissive))
    assert r.ok and r.layer("b").param_shapes[0] == (6, 4) and r.layer("b").param_count == 6
    r = run(data(2, 6) + ip("a", "data", 4, strict) + ip("b", "a", 6, strict))
    assert [e.message for e in r.errors] == ["param 'w' is 6x4 here but 4x6 in 'a', which it shares"]


def test_sharers_agree_on_the_multipliers_they_give():
    owner = 'param { name: "w" } param { name: "b" }'
    r = run(data(2, 6) + ip("a", "data", 4, owner)
            + ip("b", "data", 4, 'param { name: "w" lr_mult: 2 } param { name: "b" decay_mult: 0 }')
            + ip("c", "data", 4, 'param { name: "w" lr_mult: 3 } param { name: "b" decay_mult: 0 }'))
    assert [e.message for e in r.errors] == ["param 'w' has lr_mult 3 here but 2 before (shared with 'a')"]
    assert r.errors[0].layer == "c"


def test_param_checks_run_without_the_statistics():
    r = infer_shapes(build_graph(parse_net_text(data(2, 6) + ip("a", "data", 4, "param { } param { } param { }"))),
                     stats=False)
    assert [e.message for e in r.errors] == ["3 param specs for 2 learnable blobs"]


def test_too_many_param_specs():
    r = run(data(2, 6) + ip("a", "data", 4, "param { } param { } param { }"))
    assert [e.message for e in r.errors] == ["3 param specs for 2 learnable blobs"]


def test_memory_counts_new_activations_only():
    r = run(data(2, 6) + ip("a", "data", 4) + 'layer { name: "r" type: "ReLU" bottom: "a" top: "a" }\n'
            + ip("b", "a", 3) + ip("c", "a", 3))
    mem = {x.name: x.memory for x in r.layers}
    assert mem == {"data": 48, "a": 32, "r": 0, "a_r_0_split": 0, "b": 24, "c": 24}
    assert r.stats["memory"] == 128
    assert r.layer("a").macs == 2 * 4 * 6


def test_a_top_without_spatial_axes_sees_the_whole_input():
    r = run(data(2, 3, 8, 6) + 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n' + ip("fc", "r", 5))
    f = r.layer("r").receptive_fields["r"]
    assert (f.size, f.stride, f.whole) == ((1, 1), (1, 1), False)
    f = r.layer("fc").receptive_fields["fc"]
    assert (f.size, f.whole) == ((8, 6), True)


# -- warnings about wiring --------------------------------------------------------------------------

def test_unused_tops_and_layers_that_reach_no_loss():
    text = ('layer { name: "data" type: "Input" top: "data" top: "label" '
            'input_param { shape { dim: 2 dim: 6 } shape { dim: 2 } } }\n'
            + ip("fc", "data", 3) + ip("dead", "data", 3) +
            'layer { name: "sl" type: "Slice" bottom: "fc" top: "s1" top: "s2" slice_param { slice_point: 1 } }\n'
            + ip("s3", "data", 2) +
            'layer { name: "loss" type: "EuclideanLoss" bottom: "s2" bottom: "s3" top: "loss" }\n')
    r = run(text, phase="TRAIN")
    msgs = [(w.layer, w.message) for w in r.warnings]
    assert msgs == [("data", "top 'label' is used by no layer"),
                    ("dead", "reaches no loss: its parameters get no gradient and never learn"),
                    ("sl", "top 's1' is used by no layer")]
    # no loss in TEST-only terms: the same wiring without a loss warns only about unused tops
    r = run(text.replace("EuclideanLoss", "Eltwise"), phase="TRAIN")
    assert [w.message for w in r.warnings] == ["top 'label' is used by no layer", "top 's1' is used by no layer"]


def test_a_data_layer_reads_its_shapes_from_its_source(tmp_path):
    import h5py
    import numpy as np
    with h5py.File(tmp_path / "part0.h5", "w") as f:
        f["data"] = np.zeros((10, 3, 8, 8), np.float32)
        f["label"] = np.zeros((10,), np.float32)
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'part0.h5'}\n")
    text = (f'layer {{ name: "d" type: "HDF5Data" top: "data" top: "label" '
            f'hdf5_data_param {{ source: "{tmp_path / "list.txt"}" batch_size: 4 }} }}\n' + ip("fc", "data", 2))
    r = run(text)
    assert r.ok, r.errors
    assert (r.blob_shapes["data"], r.blob_shapes["label"], r.blob_shapes["fc"]) == ((4, 3, 8, 8), (4,), (4, 2))
