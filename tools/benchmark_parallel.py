#!/usr/bin/env python
"""Images per second of data-parallel LeNet training on 1 and 2 MPI ranks of this machine's CPUs.

  python tools/benchmark_parallel.py [--ranks 1,2] [--iterations 60] [--batch 64] [--threads 1]

Each run is `mpirun -n N netspec train` over LMDBs made from the Fashion-MNIST sample shipped in
the package (batch per rank --batch, --threads BLAS threads per rank, no testing); the figure is
the trainer's own "images/s" (all ranks' images, the first iterations included), the speed-up
against 1 rank, and rank 0's wait in the gradient exchange per step (waiting for slower ranks
included). Needs mpirun and mpi4py. Not a test: timings are never asserted, and on a shared
machine they vary from run to run.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ranks", default="1,2", help="rank counts to measure (default 1,2)")
    p.add_argument("--iterations", type=int, default=60, help="iterations per run (default 60)")
    p.add_argument("--batch", type=int, default=64, help="batch size per rank (default 64)")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads per rank (default 1)")
    return p.parse_args()


def make_files(d, batch, iterations):
    from google.protobuf import text_format
    from netspec import caffe_pb2
    from netspec.data.convert import mnist_to_lmdb
    example = os.path.join(ROOT, "netspec", "data", "example")
    mnist_to_lmdb(os.path.join(example, "train-images-idx3-ubyte.gz"),
                  os.path.join(example, "train-labels-idx1-ubyte.gz"), os.path.join(d, "train_lmdb"))
    with open(os.path.join(example, "lenet_train_test.prototxt")) as f:
        net = text_format.Parse(f.read(), caffe_pb2.NetParameter())
    layers = [lp for lp in net.layer if not any(r.phase == caffe_pb2.TEST for r in lp.include)]
    del net.layer[:]
    net.layer.extend(layers)
    for lp in net.layer:
        if lp.type == "Data":
            lp.data_param.source = os.path.join(d, "train_lmdb")
            lp.data_param.batch_size = batch
    with open(os.path.join(d, "net.prototxt"), "w") as f:
        f.write(text_format.MessageToString(net))
    solver = os.path.join(d, "solver.prototxt")
    with open(solver, "w") as f:
        f.write(f'net: "{d}/net.prototxt"\nbase_lr: 0.01\nmomentum: 0.9\nweight_decay: 0.0005\n'
                f'lr_policy: "inv"\ngamma: 0.0001\npower: 0.75\ndisplay: 0\nmax_iter: {iterations}\n'
                f'snapshot_after_train: false\nrandom_seed: 1\n')
    return solver


def run(ranks, solver, threads):
    mpirun = shutil.which("mpirun")
    flags = []
    if "Open MPI" in subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout:
        flags = ["--oversubscribe", "--bind-to", "none"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    env = dict(os.environ, PYTHONPATH=ROOT, **{v: str(threads) for v in
                                                ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    cmd = [mpirun, "-n", str(ranks)] + flags + [sys.executable, "-m", "netspec.cli", "train", "--solver", solver]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    found = re.search(r"Trained \d+ iterations in [\d.]+ s .*: (\d+) images/s", out.stdout)
    if out.returncode or not found:
        sys.exit(f"{ranks} ranks failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    exchange = re.search(r"Gradient exchange: ([\d.]+) ms per step", out.stdout)
    return float(found.group(1)), float(exchange.group(1)) if exchange else None


def main():
    args = parse_args()
    if shutil.which("mpirun") is None:
        sys.exit("needs mpirun: apt-get install openmpi-bin libopenmpi-dev; pip install mpi4py")
    counts = [int(n) for n in args.ranks.split(",")]
    print(f"LeNet training, batch {args.batch} per rank, {args.iterations} iterations, "
          f"{args.threads} BLAS thread(s) per rank, {os.cpu_count()} CPU cores")
    with tempfile.TemporaryDirectory(prefix="netspec-parallel-") as d:
        solver = make_files(d, args.batch, args.iterations)
        base = None
        for n in counts:
            speed, exchange = run(n, solver, args.threads)
            base = base or speed
            step = 1000 * n * args.batch / speed
            waited = f"; {exchange:.1f} ms of the {step:.0f} ms step in the gradient exchange" if exchange else ""
            print(f"{n} rank(s): {speed:7.0f} images/s   x{speed / base:.2f} against {counts[0]} rank(s){waited}",
                  flush=True)


if __name__ == "__main__":
    main()
