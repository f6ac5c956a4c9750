#!/usr/bin/env python
"""How long netspec takes to reject a malformed 1 MB net, in each text format, and to convert
a 431k-parameter caffemodel to YAML and back. Not a test: timings are never asserted.

  python tools/benchmark_readers.py
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from netspec import caffe_pb2  # noqa: E402


def timed(*argv):
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "netspec.cli", *argv], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    return time.perf_counter() - start, done.returncode


def _cut(text, junk):
    """junk inserted at the line break nearest the middle."""
    middle = text.index("\n", len(text) // 2)
    return text[:middle] + junk + text[middle:]


def main():
    folder = tempfile.mkdtemp()
    layers = [{"name": f"l{i}", "type": "ReLU", "bottom": ["x"], "top": ["x"]} for i in range(20000)]
    text = "".join(f'layer {{ name: "{d["name"]}" type: "ReLU" bottom: "x" top: "x" }}\n' for d in layers)
    js = json.dumps({"layer": layers}, indent=1)
    import yaml
    ym = yaml.safe_dump({"layer": layers})
    files = {"broken.prototxt": text[:len(text) // 2] + "layer { name: \n" + text[len(text) // 2:],
             "broken.json": _cut(js, "\n ,,\n"),
             "broken.yaml": ym[:len(ym) // 2] + "\n  - : : [\n" + ym[len(ym) // 2:]}
    for name, body in files.items():
        path = os.path.join(folder, name)
        with open(path, "w") as f:
            f.write(body)
        seconds, code = timed("check", path)
        print(f"check {name} ({len(body) / 2**20:.1f} MiB, malformed): {seconds:.2f} s, exit {code}")
    net = caffe_pb2.NetParameter(name="w")
    rng = np.random.default_rng(0)
    for i in range(4):
        blob = net.layer.add(name=f"ip{i}", type="InnerProduct").blobs.add()
        blob.shape.dim.extend([330, 330])
        blob.data.extend(rng.random(330 * 330, np.float32))
    model = os.path.join(folder, "w.caffemodel")
    with open(model, "wb") as f:
        f.write(net.SerializeToString())
    seconds, code = timed("convert", model, os.path.join(folder, "w.yaml"))
    print(f"convert a 435,600-value caffemodel to YAML: {seconds:.2f} s, exit {code}")
    seconds, code = timed("convert", os.path.join(folder, "w.yaml"), os.path.join(folder, "back.caffemodel"))
    print(f"convert that YAML back to a caffemodel: {seconds:.2f} s, exit {code}")
    seconds, code = timed("check", "--help")
    print(f"(start-up of the command alone: {seconds:.2f} s)")


if __name__ == "__main__":
    main()
