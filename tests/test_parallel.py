"""Data-parallel training: Caffe's record dealing, and 2 MPI ranks on the CPU against one process
with iter_size 2 over the same records; a rank that dies, ranks that differ."""
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from google.protobuf import text_format

from netspec import caffe_pb2
from netspec.errors import NetspecError
from netspec.layers import create

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "netspec", "data", "example")


# -- the records each rank reads (no MPI needed) ----------------------------------------------------
def data_layer(phase=caffe_pb2.TRAIN, batch=4):
    lp = text_format.Parse(f'name: "d" type: "Data" top: "data" data_param {{ source: "x" batch_size: {batch} }}',
                           caffe_pb2.LayerParameter())
    layer = create(lp, phase)
    layer.rng = np.random.default_rng(0)
    return layer


def test_record_offsets_follow_caffes_skip_rule():
    ranks = [data_layer() for _ in range(3)]
    for r, layer in enumerate(ranks):
        layer.set_solver_rank(r, 3)
    for k in range(3):
        seen = np.sort(np.concatenate([layer.record_offsets(k) for layer in ranks]))
        np.testing.assert_array_equal(seen, np.arange(12 * k, 12 * (k + 1)))    # every record once
        for r, layer in enumerate(ranks):       # Caffe's loop: skip until the offset is this rank's
            kept = [o for o in range(12 * k, 12 * (k + 1)) if not layer.skip(o)]
            np.testing.assert_array_equal(layer.record_offsets(k), kept)
    test = data_layer(caffe_pb2.TEST)
    test.set_solver_rank(1, 3)                  # only rank 0 tests, on every record
    np.testing.assert_array_equal(test.record_offsets(1), [4, 5, 6, 7])
    assert not any(test.skip(o) for o in range(8))


def test_resume_takes_up_the_position_with_another_rank_count():
    two = [data_layer() for _ in range(2)]
    for r, layer in enumerate(two):
        layer.set_solver_rank(r, 2)
        layer.batches = 3                       # three steps of 2 ranks x 4 records: 24 read
    state = two[0].data_state()
    assert state["records"] == 24
    one = data_layer()
    one.set_data_state(state)
    np.testing.assert_array_equal(one.record_offsets(3), [24, 25, 26, 27])
    three = [data_layer() for _ in range(3)]
    for r, layer in enumerate(three):
        layer.set_solver_rank(r, 3)
        layer.set_data_state(state)
    seen = np.sort(np.concatenate([layer.record_offsets(3) for layer in three]))
    np.testing.assert_array_equal(seen, np.arange(24, 36))


def test_hdf5_rows_are_dealt_to_the_ranks(tmp_path):
    import h5py
    with h5py.File(tmp_path / "rows.h5", "w") as h5:
        h5["data"] = np.arange(10, dtype=np.float32).reshape(10, 1)
    (tmp_path / "list.txt").write_text(str(tmp_path / "rows.h5"))
    lp = text_format.Parse(f'name: "h" type: "HDF5Data" top: "data" hdf5_data_param {{ source: "{tmp_path}/list.txt" '
                           'batch_size: 3 }', caffe_pb2.LayerParameter())
    layer = create(lp, caffe_pb2.TRAIN)
    layer.rng = np.random.default_rng(0)
    layer.set_solver_rank(1, 2)
    produce = layer.producer()
    np.testing.assert_array_equal(np.concatenate([produce(k)[0][:, 0] for k in range(2)]), [1, 3, 5, 7, 9, 1])


def test_image_list_is_dealt_to_the_ranks(tmp_path):
    from PIL import Image
    lines = []
    for i in range(5):
        Image.fromarray(np.full((2, 2), i, np.uint8)).save(tmp_path / f"{i}.png")
        lines.append(f"{tmp_path}/{i}.png {i}")
    (tmp_path / "list.txt").write_text("\n".join(lines))
    lp = text_format.Parse(f'name: "i" type: "ImageData" top: "data" top: "label" image_data_param {{ '
                           f'source: "{tmp_path}/list.txt" batch_size: 2 is_color: false }}', caffe_pb2.LayerParameter())
    layer = create(lp, caffe_pb2.TRAIN)
    layer.rng = np.random.default_rng(0)
    layer.set_solver_rank(0, 2)
    produce = layer.producer()
    np.testing.assert_array_equal(np.concatenate([produce(k)[1] for k in range(2)]), [0, 2, 4, 1])


def test_the_nccl_module_imports_without_cupy():
    from netspec.parallel import nccl
    assert nccl.NcclReducer


def test_gpu_list_and_the_launch_command():
    from netspec.parallel.launcher import gpu_list, mpirun_command
    assert gpu_list("0,1,3") == [0, 1, 3]
    for bad in ("0,0", "a", "-1", ""):
        with pytest.raises(NetspecError):
            gpu_list(bad)
    if shutil.which("mpirun") or shutil.which("mpiexec"):
        cmd = mpirun_command(2, ["train", "--solver", "s.prototxt", "-gpu", "0,1"])
        assert cmd[1:3] == ["-n", "2"] and cmd[-6:] == ["netspec.cli", "train", "--solver", "s.prototxt", "-gpu", "0,1"]


# -- two ranks over MPI ----------------------------------------------------------------------------
pytest.importorskip("mpi4py")
MPIRUN = shutil.which("mpirun")
pytestmark = pytest.mark.skipif(MPIRUN is None, reason="needs mpirun (apt-get install openmpi-bin)")


def mpirun(*ranks, timeout=120):
    """Run `mpirun -n 1 CMD1 : -n 1 CMD2 ...` (one command per rank); (status, output, seconds)."""
    flags = []
    if "Open MPI" in subprocess.run([MPIRUN, "--version"], capture_output=True, text=True).stdout:
        flags = ["--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    cmd = [MPIRUN] + flags
    for i, argv in enumerate(ranks):
        cmd += ([":"] if i else []) + ["-n", "1", sys.executable] + list(argv)
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    """LeNet over LMDBs of the shipped Fashion-MNIST sample, batch 8; solvers for 4 iterations."""
    from netspec.data.convert import mnist_to_lmdb
    d = tmp_path_factory.mktemp("parallel")
    for split, name in (("train", "train"), ("t10k", "test")):
        mnist_to_lmdb(os.path.join(EXAMPLE, f"{split}-images-idx3-ubyte.gz"),
                      os.path.join(EXAMPLE, f"{split}-labels-idx1-ubyte.gz"), str(d / f"{name}_lmdb"))
    with open(os.path.join(EXAMPLE, "lenet_train_test.prototxt")) as f:
        net = text_format.Parse(f.read(), caffe_pb2.NetParameter())
    for lp in net.layer:
        if lp.type == "Data":
            train = any(rule.phase == caffe_pb2.TRAIN for rule in lp.include)
            lp.data_param.source = str(d / ("train_lmdb" if train else "test_lmdb"))
            lp.data_param.batch_size = 8
    (d / "net.prototxt").write_text(text_format.MessageToString(net))
    return d


def solver(d, name, extra="", max_iter=4):
    path = d / f"{name}.prototxt"
    path.write_text(f'net: "{d}/net.prototxt"\ntest_iter: 2\ntest_interval: 100\ntest_initialization: false\n'
                    f'base_lr: 0.02\nmomentum: 0.9\nweight_decay: 0.0005\nlr_policy: "inv"\ngamma: 0.0001\n'
                    f'power: 0.75\ndisplay: 1\nmax_iter: {max_iter}\nsnapshot: 2\nsnapshot_prefix: "{d}/{name}/lenet"\n'
                    f'random_seed: 5\n{extra}')
    return str(path)


def weights(path):
    from netspec.io import read_weights
    from netspec.io.blobs import proto_to_array
    return {name: [proto_to_array(bp) for bp in blobs] for name, blobs in read_weights(path).items()}


def single_process(sp_path, resume=None):
    from netspec.training import Log, Trainer, read_solver
    with open(os.devnull, "w") as quiet:
        trainer = Trainer(read_solver(sp_path), log=Log(stream=quiet, progress=False), solver_path=sp_path)
        trainer.solve(resume=resume)


def assert_same_weights(a, b):
    a, b = weights(a), weights(b)
    assert sorted(a) == sorted(b)
    assert [name for name in sorted(a) if a[name]] == ["conv1", "conv2", "ip1", "ip2"]
    for name in a:
        for x, y in zip(a[name], b[name]):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=name)


def test_two_ranks_equal_one_process_with_iter_size_2(lenet):
    two = solver(lenet, "two")
    status, out, _ = mpirun(["-m", "netspec.cli", "train", "--solver", two],
                            ["-m", "netspec.cli", "train", "--solver", two])
    assert status == 0, out
    assert "Effective batch: 2 (ranks) x 8 (batch_size) x 1 (iter_size) = 16 images per iteration" in out
    assert out.count("Iteration 4, loss = ") == 1               # rank 0 alone logs
    files = sorted(os.listdir(lenet / "two"))                   # one set of snapshots
    assert files == sorted(f"lenet_iter_{i}.{ext}" for i in (2, 4)
                           for ext in ("caffemodel", "solverstate", "solverstate.rng.json"))
    one = solver(lenet, "one", "iter_size: 2")
    single_process(one)
    assert_same_weights(lenet / "one" / "lenet_iter_4.caffemodel", lenet / "two" / "lenet_iter_4.caffemodel")
    # a changed process count takes up the data position: one process resumes the 2-rank run
    resumed = solver(lenet, "resumed", "iter_size: 2")
    single_process(resumed, resume=str(lenet / "two" / "lenet_iter_2.solverstate"))
    assert_same_weights(lenet / "resumed" / "lenet_iter_4.caffemodel", lenet / "two" / "lenet_iter_4.caffemodel")
    # and a wrong sharing of the records would show: one process without iter_size differs
    plain = solver(lenet, "plain", "", max_iter=2)
    single_process(plain)
    with pytest.raises(AssertionError):
        assert_same_weights(lenet / "plain" / "lenet_iter_2.caffemodel", lenet / "two" / "lenet_iter_2.caffemodel")


FAILING_RANK_1 = """
import os, signal, sys
from mpi4py import MPI
from netspec.errors import NetspecError
from netspec.solver import Solver
update = Solver.apply_update
def failing(self, rate=None):
    if MPI.COMM_WORLD.Get_rank() == 1 and self.iter == 2:
        if sys.argv[1] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise NetspecError("the loss became nan at iteration 2")
    return update(self, rate)
Solver.apply_update = failing
from netspec.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("how, said", [("kill", "rank 1 .* exited on signal 9 \\(Killed\\)"),
                                       ("raise", "netspec train: error: rank 1: the loss became nan")])
def test_a_rank_that_fails_ends_the_job_naming_it(lenet, tmp_path, how, said):
    import re
    script = tmp_path / "failing.py"
    script.write_text(FAILING_RANK_1)
    sp = solver(lenet, f"fails-{how}", max_iter=50)
    argv = [str(script), how, "train", "--solver", sp]
    status, out, seconds = mpirun(argv, argv, timeout=90)
    assert status != 0 and (how == "kill" or status == 2), out
    assert re.search(said, out), out
    assert seconds < 60                         # ended, not hung


def test_ranks_with_different_nets_are_refused(lenet):
    other = (lenet / "net.prototxt").read_text().replace("num_output: 500", "num_output: 400")
    (lenet / "other.prototxt").write_text(other)
    a = solver(lenet, "a")
    b = solver(lenet, "b")
    with open(b) as f:
        text = f.read().replace("/net.prototxt", "/other.prototxt")
    with open(b, "w") as f:
        f.write(text)
    status, out, _ = mpirun(["-m", "netspec.cli", "train", "--solver", a],
                            ["-m", "netspec.cli", "train", "--solver", b])
    assert status == 2, out
    assert "rank(s) 1 have another solver and train net than rank 0" in out
    assert out.count("error:") == 1                 # said once, by rank 0
    assert not os.path.exists(lenet / "a")          # nothing trained, nothing written


def test_a_failure_of_every_rank_at_set_up_is_said_once(lenet):
    argv = ["-m", "netspec.cli", "train", "--solver", str(lenet / "missing.prototxt")]
    status, out, _ = mpirun(argv, argv)
    assert status == 2, out
    assert out.count("netspec train: error: ") == 1 and "missing.prototxt: cannot read the file" in out


DIGESTS = """
import sys
from netspec.parallel import world
from netspec.errors import NetspecError
group = world()
try:
    group.check_same("weights after the broadcast", "same", hint="")
    print("rank %d agreed" % group.rank, flush=True)
    group.check_same("weights after the broadcast", "d%d" % group.rank, hint="")
except NetspecError as e:
    print("rank %d refused: %s" % (group.rank, e.message), flush=True)
"""


def test_weights_that_differ_after_the_broadcast_are_refused(tmp_path):
    script = tmp_path / "digests.py"
    script.write_text(DIGESTS)
    status, out, _ = mpirun([str(script)], [str(script)])
    assert status == 0, out
    assert "rank 0 agreed" in out and "rank 1 agreed" in out
    for r in (0, 1):
        assert f"rank {r} refused: rank(s) 1 have another weights after the broadcast than rank 0" in out
