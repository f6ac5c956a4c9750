#!/usr/bin/env python
"""How long netspec takes to reject a malformed 1 MB net in each text format, and to convert a
LeNet-sized caffemodel (431,080 parameters, randomly initialised) to each text format and
back. Each timing is the best of three runs of a whole command in a fresh process, start-up
included (printed apart).
Not a test: timings are never asserted.

  python tools/benchmark_readers.py
"""
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from netspec import caffe_pb2  # noqa: E402
from netspec.net import Net  # noqa: E402

LENET = os.path.join(ROOT, "models", "lenet", "deploy.prototxt")


# Compiled modules cached as in an installation (a PYTHONDONTWRITEBYTECODE shell would make
# every start compile them again), in a folder of their own.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV.update(PYTHONPATH=ROOT, PYTHONPYCACHEPREFIX=os.path.join(tempfile.gettempdir(), "netspec-benchmark-pycache"))


def timed(*argv, repeat=3):
    """The best of `repeat` runs (a shared machine's other work only ever adds time), and the exit status."""
    best = None
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "netspec.cli", *argv], capture_output=True, text=True,
                              env=ENV)
        seconds = time.perf_counter() - start
        best = seconds if best is None else min(best, seconds)
    return best, done.returncode


def _cut(text, junk):
    """junk inserted at the line break nearest the middle."""
    middle = text.index("\n", len(text) // 2)
    return text[:middle] + junk + text[middle:]


def malformed_nets(folder):
    import yaml
    layers = [{"name": f"l{i}", "type": "ReLU", "bottom": ["x"], "top": ["x"]} for i in range(20000)]
    text = "".join(f'layer {{ name: "{d["name"]}" type: "ReLU" bottom: "x" top: "x" }}\n' for d in layers)
    bodies = {"broken.prototxt": _cut(text, "\nlayer { name: \n"),
              "broken-end.prototxt": text + "layer { name: \n",
              "broken.json": _cut(json.dumps({"layer": layers}, indent=1), "\n ,,\n"),
              "broken.yaml": _cut(yaml.safe_dump({"layer": layers}), "\n  - : : [\n")}
    for name, body in bodies.items():
        path = os.path.join(folder, name)
        with open(path, "w") as f:
            f.write(body)
        yield name, len(body), path


def lenet_weights(folder):
    """A caffemodel of LeNet with its fillers' random weights (as `train` would start it)."""
    net = Net(LENET, seed=0)
    path = os.path.join(folder, "lenet.caffemodel")
    net.save(path)
    message = caffe_pb2.NetParameter()
    with open(path, "rb") as f:
        message.ParseFromString(f.read())
    return path, sum(len(b.data) for layer in message.layer for b in layer.blobs)


def main():
    folder = tempfile.mkdtemp()
    for name, size, path in malformed_nets(folder):
        seconds, code = timed("check", path)
        print(f"check {name} ({size / 2**20:.1f} MiB, malformed): {seconds:.2f} s, exit {code}")
    model, count = lenet_weights(folder)
    for ext in ("yaml", "json", "prototxt"):
        out = os.path.join(folder, f"lenet.{ext}")
        seconds, code = timed("convert", model, out)
        print(f"convert a {count:,}-parameter caffemodel to {ext} ({os.path.getsize(out) / 2**20:.1f} MiB): "
              f"{seconds:.2f} s, exit {code}")
        seconds, code = timed("convert", out, os.path.join(folder, f"back-{ext}.caffemodel"))
        print(f"  and that {ext} back to a caffemodel: {seconds:.2f} s, exit {code}")
    seconds, code = timed("check", "--help")
    print(f"(start-up of the command alone: {seconds:.2f} s)")


if __name__ == "__main__":
    main()
