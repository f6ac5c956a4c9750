"""netspec.pycaffe: pycaffe's API and semantics (what forward returns, views, reshape, errors)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from netspec import pycaffe as caffe

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LENET = os.path.join(ROOT, "models", "lenet", "deploy.prototxt")

SMALL = """name: "small"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 1 dim: 6 dim: 6 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
  inner_product_param { num_output: 4 weight_filler { type: "xavier" } } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.prototxt"
    path.write_text(SMALL)
    return str(path)


def images(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 1, 6, 6)).astype(np.float32)


def test_constants_and_settings():
    assert (caffe.TRAIN, caffe.TEST) == (0, 1)
    assert {"Convolution", "Python", "Data"} <= set(caffe.layer_type_list())
    caffe.set_mode_cpu()
    caffe.set_device(0)
    caffe.set_random_seed(3)
    try:
        assert caffe.Net(LENET, caffe.TEST).params["conv1"][0].data.sum() == \
            caffe.Net(LENET, caffe.TEST).params["conv1"][0].data.sum()     # same seed, same fillers
    finally:
        caffe.pycaffe._MODE["seed"] = None


def test_constructor_forms_and_their_errors(small, tmp_path):
    net = caffe.Net(small, caffe.TEST)
    net.save(str(tmp_path / "w.caffemodel"))
    w = str(tmp_path / "w.caffemodel")
    for other in (caffe.Net(small, w, caffe.TEST), caffe.Net(small, caffe.TEST, weights=w),
                  caffe.Net(small, phase=caffe.TEST, weights=w), caffe.Net(network_file=small, phase=caffe.TEST, weights=w)):
        np.testing.assert_array_equal(other.params["conv"][0].data, net.params["conv"][0].data)
    with pytest.raises(RuntimeError, match="Could not open file"):
        caffe.Net(str(tmp_path / "missing.prototxt"), caffe.TEST)
    with pytest.raises(RuntimeError, match="Could not open file"):
        caffe.Net(small, str(tmp_path / "missing.caffemodel"), caffe.TEST)
    with pytest.raises(TypeError):
        caffe.Net(small)
    with pytest.raises(TypeError):
        caffe.Net(small, "TEST")
    with pytest.raises(TypeError):
        caffe.Net(small, caffe.TEST, bogus=1)


def test_names_and_structure(small):
    net = caffe.Net(small, caffe.TEST)
    assert net.inputs == ["data"] and net.outputs == ["prob"]
    assert net._layer_names == ["data", "conv", "relu", "ip", "prob"]
    assert list(net.blobs) == net._blob_names == ["data", "conv", "ip", "prob"]
    assert [layer.type for layer in net.layers] == ["Input", "Convolution", "ReLU", "InnerProduct", "Softmax"]
    assert list(net.layer_dict) == net._layer_names and net.layer_dict["conv"].type == "Convolution"
    assert list(net.params) == ["conv", "ip"] and [b.shape for b in net.params["conv"]] == [(3, 1, 3, 3), (3,)]
    assert net.params["conv"][0] is net.layer_dict["conv"].blobs[0]
    assert net.top_names["relu"] == ["conv"] and net.bottom_names["ip"] == ["conv"]
    assert set(net.blob_loss_weights.values()) == {0.0}
    blob = net.blobs["data"]
    assert (blob.num, blob.channels, blob.height, blob.width, blob.count) == (2, 1, 6, 6, 72)


def test_forward_returns_the_blobs_own_arrays_and_checks_inputs(small):
    net = caffe.Net(small, caffe.TEST)
    out = net.forward(data=images(2))
    assert set(out) == {"prob"} and out["prob"] is net.blobs["prob"].data      # a view, as pycaffe
    np.testing.assert_allclose(out["prob"].sum(axis=1), 1, rtol=1e-5)
    with pytest.raises(Exception, match="Input is not batch sized"):
        net.forward(data=images(3))
    with pytest.raises(Exception, match="do not match net inputs"):
        net.forward(image=images(2))
    with pytest.raises(ValueError):
        net.forward(end="no_such_layer")
    partial = net.forward(blobs=["conv"], end="ip")
    assert set(partial) == {"ip", "conv"}


def test_reshape_then_forward(small):
    net = caffe.Net(small, caffe.TEST)
    x = images(5)
    net.blobs["data"].reshape(5, 1, 6, 6)
    net.reshape()
    assert net.blobs["prob"].data.shape == (5, 4)
    net.blobs["data"].data[...] = x
    five = net.forward()["prob"].copy()
    net.blobs["data"].reshape(1, 1, 6, 6)          # without net.reshape(): forward follows, as Caffe's does
    net.blobs["data"].data[...] = x[:1]
    np.testing.assert_allclose(net.forward()["prob"][0], five[0], rtol=1e-5)


def test_forward_all_batches_and_drops_the_padding(small):
    net = caffe.Net(small, caffe.TEST)
    x = images(5)
    out = net.forward_all(data=x)["prob"]
    assert out.shape == (5, 4)
    one = caffe.Net(small, caffe.TEST)
    one.share_with(net)
    one.blobs["data"].reshape(5, 1, 6, 6)
    one.reshape()
    np.testing.assert_allclose(one.forward(data=x)["prob"], out, rtol=1e-5)


def test_backward_with_output_diffs_and_forward_backward_all(small):
    net = caffe.Net(small, caffe.TEST)
    net.forward(data=images(2))
    seed = np.zeros((2, 4), np.float32)
    seed[:, 0] = 1
    assert np.abs(net.backward(prob=seed)["data"]).sum() == 0      # no loss, no force_backward: Caffe skips it
    with open(small) as f:
        text = f.read()
    with open(small, "w") as f:
        f.write("force_backward: true\n" + text)
    net = caffe.Net(small, caffe.TEST)
    x = images(2)
    net.forward(data=x)
    diffs = net.backward(**{"prob": np.ones((2, 4), np.float32)})
    assert set(diffs) == {"data"}
    # d(sum of softmax)/d anything is 0
    np.testing.assert_allclose(diffs["data"], 0, atol=1e-6)
    net.clear_param_diffs()
    net.forward(data=x)
    d = net.backward(diffs=["conv"], **{"prob": seed})
    assert set(d) == {"data", "conv"} and np.abs(d["data"]).sum() > 0
    assert np.abs(net.params["ip"][0].diff).sum() > 0
    with pytest.raises(Exception, match="do not match net outputs"):
        net.backward(conv=np.zeros((2, 3, 4, 4), np.float32))
    outs, all_diffs = net.forward_backward_all(data=images(3), prob=np.ones((3, 4), np.float32))
    assert outs["prob"].shape == (3, 4) and all_diffs["data"].shape == (3, 1, 6, 6)


def test_weights_files_round_trip(small, tmp_path):
    net = caffe.Net(small, caffe.TEST)
    net.save_hdf5(str(tmp_path / "w.caffemodel.h5"))
    other = caffe.Net(small, caffe.TEST)
    other.load_hdf5(str(tmp_path / "w.caffemodel.h5"))
    np.testing.assert_array_equal(other.params["ip"][0].data, net.params["ip"][0].data)
    import h5py
    with h5py.File(tmp_path / "w.caffemodel.h5") as f:          # Caffe's layout
        assert f["data/conv/0"].shape == (3, 1, 3, 3) and f["data/conv/1"].shape == (3,)


def test_set_input_arrays_on_a_memory_data_net(tmp_path, small):
    path = tmp_path / "mem.prototxt"
    path.write_text('layer { name: "m" type: "MemoryData" top: "data" top: "label" '
                    'memory_data_param { batch_size: 2 channels: 1 height: 2 width: 2 } }\n')
    net = caffe.Net(str(path), caffe.TEST)
    data = np.arange(16, dtype=np.float32).reshape(4, 1, 2, 2)
    net.set_input_arrays(data, np.arange(4, dtype=np.float32))
    net.forward()
    np.testing.assert_array_equal(net.blobs["data"].data, data[:2])
    net.forward()
    np.testing.assert_array_equal(net.blobs["label"].data, [2, 3])
    with pytest.raises(RuntimeError, match="multiple of batch size"):
        net.set_input_arrays(data[:3], np.arange(3, dtype=np.float32))
    with pytest.raises(RuntimeError, match="float32"):
        net.set_input_arrays(data.astype(np.float64), np.arange(4, dtype=np.float32))
    with pytest.raises(RuntimeError, match="MemoryDataLayer"):
        caffe.Net(small, caffe.TEST).set_input_arrays(data, np.arange(4, dtype=np.float32))


SOLVER = """net: "{net}"
base_lr: 0.05
lr_policy: "fixed"
max_iter: 20
display: 0
snapshot_after_train: false
snapshot_prefix: "{prefix}"
type: "Adam"
"""

TRAIN_NET = """name: "train"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 }
    data_filler { type: "gaussian" } data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


def test_solvers_step_update_snapshot_and_restore(tmp_path):
    (tmp_path / "net.prototxt").write_text(TRAIN_NET)
    solver_file = tmp_path / "solver.prototxt"
    solver_file.write_text(SOLVER.format(net=tmp_path / "net.prototxt", prefix=tmp_path / "snap"))
    solver = caffe.SGDSolver(str(solver_file))
    assert solver._trainer.solver.type == "SGD"          # SGDSolver forces its rule, as in Caffe
    assert caffe.get_solver(str(solver_file))._trainer.solver.type == "Adam"
    assert isinstance(caffe.AdamSolver(str(solver_file)), caffe.Solver)
    before = solver.net.params["ip"][0].data.copy()
    solver.step(3)
    assert solver.iter == 3 and not np.array_equal(before, solver.net.params["ip"][0].data)
    solver.net.forward()
    solver.net.backward()
    w = solver.net.params["ip"][0].data.copy()
    solver.apply_update()
    assert solver.iter == 3 and not np.array_equal(w, solver.net.params["ip"][0].data)
    solver.snapshot()
    assert os.path.exists(tmp_path / "snap_iter_3.solverstate")
    again = caffe.SGDSolver(str(solver_file))
    again.restore(str(tmp_path / "snap_iter_3.solverstate"))
    assert again.iter == 3
    np.testing.assert_array_equal(again.net.params["ip"][0].data, solver.net.params["ip"][0].data)
    solver.solve()
    assert solver.iter == 20 and solver.test_nets == []


def test_io_transformer_and_conversions():
    t = caffe.io.Transformer({"data": (1, 3, 4, 5)})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255)
    t.set_mean("data", np.array([10.0, 20.0, 30.0]))
    t.set_input_scale("data", 0.5)
    image = np.random.default_rng(0).random((4, 5, 3)).astype(np.float32)
    x = t.preprocess("data", image)
    np.testing.assert_allclose(x[0], (image[:, :, 2] * 255 - 10) * 0.5, rtol=1e-5)
    np.testing.assert_allclose(t.deprocess("data", x), image, rtol=1e-5, atol=1e-6)
    with pytest.raises(Exception, match="not one of the net inputs"):
        t.preprocess("label", image)
    with pytest.raises(ValueError, match="Mean channels"):
        t.set_mean("data", np.zeros(2))
    with pytest.raises(Exception, match="Channel swap"):
        t.set_channel_swap("data", (1, 0))
    assert caffe.io.resize_image(image, (8, 10)).shape == (8, 10, 3)
    crops = caffe.io.oversample([np.arange(16, dtype=np.float32).reshape(4, 4, 1)], (2, 2))
    assert crops.shape == (10, 2, 2, 1)
    np.testing.assert_array_equal(crops[0, :, :, 0], [[0, 1], [4, 5]])          # top-left corner
    np.testing.assert_array_equal(crops[4, :, :, 0], [[5, 6], [9, 10]])         # centre
    np.testing.assert_array_equal(crops[5], crops[0][:, ::-1])                  # its mirror
    a = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    np.testing.assert_array_equal(caffe.io.blobproto_to_array(caffe.io.array_to_blobproto(a)), a)
    d = caffe.io.array_to_datum(a.astype(np.uint8), label=3)
    assert d.label == 3 and caffe.io.datum_to_array(d).dtype == np.uint8
    with pytest.raises(ValueError):
        caffe.io.array_to_datum(np.zeros((2, 2)))
    s = caffe.io.arraylist_to_blobprotovector_str([a, a + 1])
    np.testing.assert_array_equal(caffe.io.blobprotovector_str_to_arraylist(s)[1], a + 1)


def test_load_image_and_classifier(tmp_path):
    from PIL import Image
    Image.fromarray((np.random.default_rng(1).random((32, 30)) * 255).astype(np.uint8)).save(tmp_path / "x.png")
    image = caffe.io.load_image(str(tmp_path / "x.png"), color=False)
    assert image.shape == (32, 30, 1) and image.dtype == np.float32 and 0 <= image.min() <= image.max() <= 1
    net = caffe.Net(LENET, caffe.TEST)
    net.save(str(tmp_path / "w.caffemodel"))
    clf = caffe.Classifier(LENET, str(tmp_path / "w.caffemodel"), image_dims=(32, 32), raw_scale=255)
    p = clf.predict([image, image], oversample=True)
    assert p.shape == (2, 10)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    center = clf.predict([image], oversample=False)
    assert center.shape == (1, 10)


def test_draw_net_to_file(tmp_path):
    from google.protobuf import text_format
    param = text_format.Parse(SMALL, caffe.proto.caffe_pb2.NetParameter()) if hasattr(caffe, "proto") else None
    from netspec.pycaffe import draw, proto
    param = text_format.Parse(SMALL, proto.caffe_pb2.NetParameter())
    draw.draw_net_to_file(param, str(tmp_path / "net.png"), "TB")
    assert (tmp_path / "net.png").read_bytes()[:4] == b"\x89PNG"
    dot = draw.get_pydot_graph(param, "LR").to_string()
    assert "conv" in dot and "#FF5050" in dot


def test_net_spec_and_coord_map():
    from netspec.pycaffe import coord_map, net_spec
    L, P = net_spec.layers, net_spec.params
    n = net_spec.NetSpec()
    n.data = L.Input(shape=[dict(dim=[1, 3, 20, 20])])
    n.conv = L.Convolution(n.data, num_output=2, kernel_size=5)
    n.pool = L.Pooling(n.conv, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.crop = coord_map.crop(n.data, n.conv)                    # data cut to conv's size
    assert n.crop.fn.lp.crop_param.axis == 2 and list(n.crop.fn.lp.crop_param.offset) == [2]
    with pytest.raises(AssertionError, match="negative offset"):
        coord_map.crop(n.conv, n.data)
    ax, a, b = coord_map.coord_map_from_to(n.data, n.conv)
    assert ax == 1 and a == 1 and b == -2                      # 5x5 kernel, no pad: shifted by 2
    ax, a, b = coord_map.coord_map_from_to(n.pool, n.data)
    assert a == 2 and b == 2.5                                 # pool 0 sees conv 0..1, centred on data 2.5
    proto = n.to_proto()
    assert [lp.type for lp in proto.layer] == ["Input", "Convolution", "Pooling", "Crop"]
    assert [lp.type for lp in n.pool.to_proto().layer] == ["Input", "Convolution", "Pooling"]
    assert len(net_spec.to_proto(n.pool, n.conv).layer) == 3


LAUNCHED = """import sys
import caffe
import caffe.io
import caffe.draw
from caffe import layers as L, params as P
from caffe.proto import caffe_pb2
print("args", sys.argv[1:])
print("module", caffe.__name__, caffe_pb2.__name__, caffe.io.__name__)
net = caffe.Net(sys.argv[1], caffe.TEST)
print("prob", net.forward(data=caffe.np_zeros if False else __import__("numpy").zeros((2, 1, 6, 6), "float32"))["prob"].shape)
"""


def run_launcher(*args, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "netspec.pycaffe", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_launcher_runs_scripts_and_modules_unchanged(tmp_path, small):
    (tmp_path / "script.py").write_text(LAUNCHED)
    done = run_launcher("script.py", small, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "args ['%s']" % small in done.stdout and "module netspec.pycaffe netspec.caffe_pb2" in done.stdout
    assert "prob (2, 4)" in done.stdout
    (tmp_path / "mod.py").write_text(LAUNCHED)
    done = run_launcher("-m", "mod", small, cwd=tmp_path)
    assert done.returncode == 0 and "prob (2, 4)" in done.stdout, done.stderr
    (tmp_path / "bad.py").write_text("import caffe\ncaffe.Net('%s', caffe.TEST).forward(end='nope')\n" % small)
    bad = run_launcher("bad.py", cwd=tmp_path)
    assert bad.returncode == 1 and "ValueError" in bad.stderr       # the script's own exception, as Python shows it
    (tmp_path / "broken.prototxt").write_text("layer { name: 'x' type: 'Nope' }\n")
    (tmp_path / "netspec_error.py").write_text("import caffe\ncaffe.Net('broken.prototxt', caffe.TEST)\n")
    failed = run_launcher("netspec_error.py", cwd=tmp_path)
    assert failed.returncode == 2 and "unknown layer type 'Nope'" in failed.stderr and "Traceback" not in failed.stderr


def test_no_caffe_module_outside_the_launcher(tmp_path):
    """Loading a Python layer lends `caffe` to its module only while it imports."""
    code = ("import sys, netspec\n"
            "sys.path.insert(0, %r)\n"
            "net = netspec.Net(%r, phase='TRAIN')\n"
            "print('caffe' in sys.modules)\n") % (os.path.join(HERE, "pycaffe_files", "layers"),
                                                 os.path.join(HERE, "pycaffe_files", "linreg.prototxt"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


DET = """name: "det"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""


def test_detector_windows_with_and_without_context(tmp_path):
    from PIL import Image
    (tmp_path / "det.prototxt").write_text(DET)
    caffe.Net(str(tmp_path / "det.prototxt"), caffe.TEST).save(str(tmp_path / "w.caffemodel"))
    Image.fromarray((np.random.default_rng(2).random((24, 30, 3)) * 255).astype(np.uint8)).save(tmp_path / "im.png")
    windows = [(str(tmp_path / "im.png"), [(0, 0, 10, 12), (4, 6, 20, 28), (1, 1, 9, 9)])]
    for pad in (None, 2):
        det = caffe.Detector(str(tmp_path / "det.prototxt"), str(tmp_path / "w.caffemodel"), raw_scale=255,
                             mean=np.array([100.0, 110.0, 120.0]), context_pad=pad)
        found = det.detect_windows(windows)
        assert [d["window"] for d in found] == windows[0][1]
        assert all(d["prediction"].shape == (3,) and abs(d["prediction"].sum() - 1) < 1e-5 for d in found)


def test_blob_reshape_refuses_keywords_as_pycaffe():
    net = caffe.Net(LENET, caffe.TEST)
    with pytest.raises(RuntimeError, match="no kwargs"):
        net.blobs["data"].reshape(shape=(1, 1, 28, 28))
