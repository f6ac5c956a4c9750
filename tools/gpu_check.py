#!/usr/bin/env python
"""Check the CuPy backend on a machine with an NVIDIA GPU, in one run.

  python tools/gpu_check.py [--logs DIR] [--skip-tests] [--skip-bench] [--iterations N] [--wheels DIR]

1. The environment: Python, NumPy, CuPy, the GPU. Stops (exit 2) where CuPy sees no GPU.
2. The whole test suite (`pytest -q`): where a GPU is present, every test that takes the `xp`
   fixture also runs on CuPy, and the CuPy-only tests (kernels against their NumPy twins,
   Net on CuPy against Net on NumPy) run instead of being skipped. The summary counts the
   CuPy tests apart and lists each failure.
3. Timings: `netspec time` on the zoo's LeNet and AlexNet (deploy nets with a SoftmaxWithLoss
   added, so backward runs too) on both backends, with the speed-up.
Run from anywhere; the tree's own netspec is used (no install needed). On a machine that
cannot reach a package index, `--wheels DIR` installs the wheels in DIR (e.g. protobuf and
lmdb for that machine's Python) into the log folder first and puts them ahead on the path.
Exit status 0 when every test passed and every timing ran.
"""
import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

ROOT = pathlib.Path(__file__).resolve().parents[1]
NETS = {   # zoo deploy net, input shape for the timing
    "lenet": ("models/lenet/deploy.prototxt", (64, 1, 28, 28)),
    "alexnet": ("models/alexnet/deploy.prototxt", (10, 3, 227, 227)),
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--logs", help="folder for the logs (default: a new temporary folder)")
    p.add_argument("--skip-tests", action="store_true", help="timings only")
    p.add_argument("--skip-bench", action="store_true", help="tests only")
    p.add_argument("--iterations", type=int, default=20, help="timed iterations on CuPy (NumPy: a quarter)")
    p.add_argument("--wheels", help="a folder of wheels to install (no index) before anything runs")
    return p.parse_args()


def environment():
    """Lines describing the setup; raises SystemExit(2) where CuPy or a GPU is missing."""
    import numpy
    lines = [f"python {sys.version.split()[0]}, numpy {numpy.__version__}"]
    try:
        from google.protobuf import __version__ as protobuf_version

        import netspec  # noqa: F401  (its generated schema needs a recent protobuf)
        lines.append(f"protobuf {protobuf_version}, netspec imports")
    except Exception as e:
        print("\n".join(lines + [f"netspec does not import: {type(e).__name__}: {e}",
                                  "  (carry wheels of its dependencies and pass --wheels DIR)"]))
        raise SystemExit(2)
    try:
        import cupy
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        runtime = cupy.cuda.runtime.runtimeGetVersion()
    except Exception as e:      # ImportError, or CuPy's CUDA errors where no GPU answers
        print("\n".join(lines + [f"CuPy/GPU not usable: {type(e).__name__}: {e}"]))
        raise SystemExit(2)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    lines.append(f"cupy {cupy.__version__}, CUDA runtime {runtime // 1000}.{runtime % 1000 // 10}, "
                 f"GPU {name} (sm_{props['major']}{props['minor']}, "
                 f"{props['totalGlobalMem'] / 2 ** 30:.0f} GiB)")
    return lines


def run(cmd, log, env):
    """Run cmd, its output streamed to the terminal and to `log` (what ran is kept even if
    this is killed); -> (exit status, seconds, output)."""
    t0 = time.perf_counter()
    lines = []
    with open(log, "w") as f, subprocess.Popen(cmd, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                                               stderr=subprocess.STDOUT) as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            f.write(line)
            f.flush()
            lines.append(line)
    return proc.returncode, time.perf_counter() - t0, "".join(lines)


# -- tests --------------------------------------------------------------------------------------
def is_cupy_case(case):
    """A test that ran (or would run) on CuPy: a `cupy` parameter, or a CuPy-only test."""
    cls, name = case.get("classname", ""), case.get("name", "")
    return "cupy" in name.lower() or cls.endswith(("test_ops_cuda", "test_cuda_sources"))


def outcome(case):
    for kind in ("failure", "error", "skipped"):
        if case.find(kind) is not None:
            return {"failure": "failed", "error": "failed", "skipped": "skipped"}[kind]
    return "passed"


def test_summary(junit):
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    counts = {}
    failures = []
    for case in cases:
        group = "cupy" if is_cupy_case(case) else "other"
        result = outcome(case)
        counts[group, result] = counts.get((group, result), 0) + 1
        if result == "failed":
            failures.append(f"  FAILED {case.get('classname')}::{case.get('name')}")
    lines = []
    for group, title in (("cupy", "CuPy tests"), ("other", "other tests")):
        lines.append(f"{title}: " + ", ".join(f"{counts.get((group, r), 0)} {r}"
                                              for r in ("passed", "failed", "skipped")))
    if not counts.get(("cupy", "passed")):
        lines.append("  WARNING: no CuPy test passed: did the tests see the GPU (netspec.backend.gpu_available)?")
    return lines + failures[:40], not failures and bool(counts.get(("cupy", "passed")))


def tests(logs, env):
    junit = logs / "junit.xml"
    rc, seconds, _ = run([sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider",
                          f"--junitxml={junit}"], logs / "pytest.log", env)
    if not junit.exists():
        return [f"pytest gave no report (exit {rc}); see {logs / 'pytest.log'}"], False
    lines, ok = test_summary(junit)
    return [f"pytest: exit {rc} in {seconds:.0f} s"] + lines, ok and rc == 0


# -- timings ------------------------------------------------------------------------------------
def net_with_loss(name, logs):
    """The zoo's deploy net, its batch set and its final Softmax replaced by SoftmaxWithLoss."""
    from google.protobuf import text_format

    from netspec import caffe_pb2
    path, shape = NETS[name]
    net = text_format.Parse((ROOT / path).read_text(), caffe_pb2.NetParameter())
    kept = [lp for lp in net.layer if lp.type != "Softmax"]
    scores = kept[-1].top[0]
    del net.layer[:]
    net.layer.extend(kept)
    data = next(lp for lp in net.layer if lp.type == "Input")
    data.input_param.shape[0].dim[:] = list(shape)
    net.layer.add(name="label", type="Input", top=["label"]).input_param.shape.add(dim=[shape[0]])
    net.layer.add(name="loss", type="SoftmaxWithLoss", bottom=[scores, "label"], top=["loss"])
    out = logs / f"{name}_with_loss.prototxt"
    out.write_text(text_format.MessageToString(net))
    return out


def average_ms(output, what):
    found = re.search(rf"Average {what}: ([0-9.eE+-]+) ms", output)
    return float(found.group(1)) if found else None


def timings(logs, env, iterations):
    lines, ok = ["netspec time, forward+backward per iteration:"], True
    for name in NETS:
        model = net_with_loss(name, logs)
        ms = {}
        for backend, n in (("cupy", iterations), ("numpy", max(1, iterations // 4))):
            rc, _, out = run([sys.executable, "-m", "netspec.cli", "time", str(model), "--backend", backend,
                              "-n", str(n)], logs / f"time_{name}_{backend}.log", env)
            ms[backend] = average_ms(out, "Forward-Backward") if rc == 0 else None
            ok &= ms[backend] is not None
        speedup = f"{ms['numpy'] / ms['cupy']:.1f}x" if ms["cupy"] and ms["numpy"] else "n/a"
        lines.append(f"  {name} {NETS[name][1]}: cupy {ms['cupy']} ms, numpy {ms['numpy']} ms, "
                     f"cupy speed-up {speedup}")
    return lines, ok


def main():
    args = parse_args()
    logs = pathlib.Path(args.logs or tempfile.mkdtemp(prefix="netspec_gpu_check_"))
    logs.mkdir(parents=True, exist_ok=True)
    front = [str(ROOT)]
    if args.wheels:
        site = logs / "site"
        wheels = sorted(str(w) for w in pathlib.Path(args.wheels).glob("*.whl"))
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        "--target", str(site)] + wheels, check=True)
        front.insert(0, str(site))
    sys.path[:0] = front
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(front + list(filter(None, [os.environ.get("PYTHONPATH")]))),
               PYTHONUNBUFFERED="1")
    summary, ok = environment(), True
    print("\n".join(summary))
    stages = [] if args.skip_tests else [lambda: tests(logs, env)]
    stages += [] if args.skip_bench else [lambda: timings(logs, env, args.iterations)]
    for stage in stages:
        lines, passed = stage()
        print("\n".join(lines))            # each stage's result as soon as it is known
        summary += lines
        ok &= passed
    print("\n==== netspec GPU check ====\n" + "\n".join(summary) + f"\nlogs: {logs}\nresult: {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
