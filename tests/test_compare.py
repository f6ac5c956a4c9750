"""`netspec compare`: finds an injected difference at the right layer, for each kind of side."""
import h5py
import numpy as np
import pytest

from netspec import Net
from netspec.cli import main

NET = """name: "small"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "pool" type: "Pooling" bottom: "conv2" top: "pool" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "pool" top: "ip"
        inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""


@pytest.fixture
def files(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(NET)
    net = Net(str(path), seed=3)
    net.save(str(tmp_path / "a.caffemodel"))
    net.params["conv2"][0].data[0, 0, 0, 0] += 0.5          # the injected difference
    net.save(str(tmp_path / "b.caffemodel"))
    return tmp_path


def first_divergence(out):
    line = [l for l in out.splitlines() if l.startswith("first divergence")]
    return line[0] if line else None


def test_two_weight_files_diverge_at_the_changed_layer(files, capsys):
    rc = main(["compare", str(files / "net.prototxt"), str(files / "a.caffemodel"), str(files / "b.caffemodel")])
    out = capsys.readouterr().out
    assert rc == 1
    assert "layer 'conv2' (Convolution), blob 'conv2'" in first_divergence(out)
    conv1 = [l for l in out.splitlines() if l.startswith("conv1 ")][0]
    assert "DIFFERS" not in conv1


def test_same_weights_agree(files, capsys):
    rc = main(["compare", str(files / "net.prototxt"), str(files / "a.caffemodel"), "--weights",
               str(files / "a.caffemodel")])
    assert rc == 0 and "agree" in capsys.readouterr().out


def test_onnx_side(files, capsys):
    pytest.importorskip("onnxruntime")
    net, onnx_path = str(files / "net.prototxt"), str(files / "m.onnx")
    assert main(["convert", net, onnx_path, "--weights", str(files / "a.caffemodel")]) == 0
    assert main(["compare", net, onnx_path, "--weights", str(files / "a.caffemodel")]) == 0
    out = capsys.readouterr().out
    assert "conv1/conv1" in out        # the value before the in-place ReLU is compared too
    assert main(["compare", net, onnx_path, "--weights", str(files / "b.caffemodel")]) == 1
    assert "layer 'conv2'" in first_divergence(capsys.readouterr().out)


@pytest.mark.parametrize("fmt", ["npz", "h5"])
def test_blob_dump_side(files, capsys, fmt):
    """A dump of final blob values (pycaffe's net.blobs), with the input inside it."""
    net = Net(str(files / "net.prototxt"), weights=str(files / "a.caffemodel"))
    x = np.random.default_rng(5).standard_normal((2, 3, 8, 8)).astype(np.float32)
    net.forward(data=x)
    blobs = {k: b.data.copy() for k, b in net.blobs.items()}
    blobs["ip"][1, 2] += 1e-2                              # divergence first visible at ip
    path = str(files / f"blobs.{fmt}")
    if fmt == "npz":
        np.savez(path, **blobs)
    else:
        with h5py.File(path, "w") as f:
            for k, v in blobs.items():
                f[k] = v
    rc = main(["compare", str(files / "net.prototxt"), path, "--weights", str(files / "a.caffemodel")])
    out = capsys.readouterr().out
    assert rc == 1 and "layer 'ip' (InnerProduct), blob 'ip'" in first_divergence(out)
    assert "conv1/conv1" not in out    # a dump holds final values only: the ReLU's, named conv1


def test_bad_inputs_exit_2(files, capsys):
    net = str(files / "net.prototxt")
    assert main(["compare", net]) == 2
    assert "two sides" in capsys.readouterr().err
    assert main(["compare", net, str(files / "what.bin")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["compare", str(files / "a.caffemodel"), str(files / "b.caffemodel")]) == 2
    assert "not a net definition" in capsys.readouterr().err
    (files / "junk.onnx").write_bytes(b"\x00garbage")
    pytest.importorskip("onnx")
    assert main(["compare", net, str(files / "junk.onnx")]) == 2
    assert "not an ONNX model" in capsys.readouterr().err


def test_two_backends(files, capsys):
    from netspec.backend import gpu_available
    net, w = str(files / "net.prototxt"), str(files / "a.caffemodel")
    assert main(["compare", net, "--weights", w, "--backend", "numpy", "--backend", "numpy"]) == 0
    rc = main(["compare", net, "--weights", w, "--backend", "numpy", "--backend", "cupy"])
    if gpu_available():
        assert rc == 0
    else:
        assert rc == 2 and "cupy" in capsys.readouterr().err
