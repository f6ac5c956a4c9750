"""Zoo nets export to ONNX and onnxruntime reproduces netspec (a few small ones here; the
big ones are measured by tools/onnx_zoo.py)."""
import pytest

pytest.importorskip("onnxruntime")

from tools.onnx_zoo import measure  # noqa: E402


@pytest.mark.parametrize("path,size", [
    ("models/lenet/deploy.prototxt", None),
    ("tests/nets/squeezenet_v1.1.prototxt", 67),
    ("tests/nets/mobilenet_v1.prototxt", 128),         # depthwise convolutions: group = channels
    ("tests/nets/densenet_small.prototxt", None),      # a train net: its labels and loss are dropped
    ("models/nin/deploy.prototxt", 67),
])
def test_zoo_net_matches_onnxruntime(path, size):
    rows, nodes, _ = measure(path, batch=2, size=size)
    assert nodes > 0
    for name, shape, rel, top1 in rows:
        assert rel < 1e-4, (name, rel)
        assert top1 == 1.0, name
