"""Mutated nets, solvers and binary files in every format, through every reader and `check`:
nothing but netspec's own error may come out, no input may take over a second of CPU, and `check`
may write nothing. A fixed seed: the same examples on every run (NETSPEC_FUZZ_EXAMPLES
raises the count, for a longer hunt)."""
import contextlib
import io
import os
import time
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from google.protobuf.descriptor import FieldDescriptor as FD

from netspec import caffe_pb2 as pb
from netspec import io as nio
from netspec.cli import main
from netspec.errors import NetspecError
from netspec.io import dump

EXAMPLES = int(os.environ.get("NETSPEC_FUZZ_EXAMPLES", "1000"))
# "No input takes over a second" is held to in CPU time (the test's own check): a busy shared
# machine stretches wall time, not the work done. Hypothesis's wall-clock deadline is only the
# net under it, wide enough that load cannot trip it, narrow enough that a hang is caught.
CPU_SECONDS = 1.0
SETTINGS = dict(max_examples=EXAMPLES, deadline=timedelta(seconds=15), database=None,
                suppress_health_check=list(HealthCheck))

NET = """name: "fuzz"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 4 dim: 8 dim: 8 } } }
layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 2 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 stride: 1 group: 2 } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "lrn" type: "LRN" bottom: "pool" top: "lrn" lrn_param { local_size: 3 } }
layer { name: "ip" type: "InnerProduct" bottom: "lrn" top: "ip" inner_product_param { num_output: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
layer { name: "out" type: "HDF5Output" bottom: "ip" bottom: "label" hdf5_output_param { file_name: "out.h5" } }
layer { name: "img" type: "ImageData" top: "img" top: "l2" transform_param { mean_file: "mean.binaryproto" crop_size: 2 }
  image_data_param { source: "list.txt" batch_size: 1 new_height: 4 new_width: 4 } }
layer { name: "dummy" type: "DummyData" top: "dummy" dummy_data_param { shape { dim: 1 dim: 2 } } }
layer { name: "rs" type: "Reshape" bottom: "dummy" top: "rs" reshape_param { shape { dim: 0 dim: -1 } } }
layer { name: "sl" type: "Slice" bottom: "rs" top: "s1" top: "s2" slice_param { axis: 1 } }
layer { name: "cat" type: "Concat" bottom: "s1" bottom: "s2" top: "cat" }
"""
SOLVER = 'net: "n.prototxt"\nbase_lr: 0.01\nmax_iter: 10\nlr_policy: "step"\nstepsize: 5\nsnapshot: 5\n' \
         'snapshot_prefix: "snap"\ntest_iter: 1\ntest_interval: 5\ntype: "Adam"\n'
INTERESTING = ["0", "-1", "1", "3", "2147483647", "4294967295", "4294967296", "9223372036854775807",
               "1000000000", "-2147483648", "1e9", "nan", "inf", "0.5", '""', '"\\377"', '"\\ud800"']
WORDS = ["layer", "bottom", "top", "name", "type", '"ReLU"', '"Convolution"', '"Pooling"', '"Input"',
         '"Split"', '"Eltwise"', '"Crop"', '"Deconvolution"', "dim", "shape", "group", "axis", "{", "}", ":",
         "[", "]", "num_output", "kernel_size", "stride", "pad", "dilation", '"data"', '"conv"', "global_pooling"]


def _weights():
    n = pb.NetParameter(name="w")
    layer = n.layer.add(name="ip", type="InnerProduct")
    blob = layer.blobs.add()
    blob.shape.dim.extend([3, 16])
    blob.data.extend(np.arange(48, dtype=np.float32))
    return n.SerializeToString()


def _mean():
    blob = pb.BlobProto(num=1, channels=3, height=4, width=4)
    blob.data.extend(np.zeros(48, np.float32))
    return blob.SerializeToString()


def _state():
    state = pb.SolverState(iter=5, learned_net="snap_iter_5.caffemodel", current_step=1)
    state.history.add().data.extend([1.0, 2.0])
    return state.SerializeToString()


NET_MESSAGE = nio.parse_net(NET, "text", "n.prototxt").param
SEEDS = {"n.prototxt": NET.encode(), "n.yaml": dump(NET_MESSAGE, "yaml").encode(),
         "n.json": dump(NET_MESSAGE, "json").encode(), "s.prototxt": SOLVER.encode(),
         "w.caffemodel": _weights(), "m.binaryproto": _mean(), "x.solverstate": _state()}
TEXT_SEEDS = [k for k in SEEDS if not k.endswith(("caffemodel", "binaryproto", "solverstate"))]


@st.composite
def mutated_text(draw, name):
    tokens = SEEDS[name].decode().replace("{", " { ").replace("}", " } ").split(" ")
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(tokens) - 1))
        op = draw(st.sampled_from(["number", "word", "delete", "duplicate", "cut", "byte", "drop field",
                                   "repeat field", "drop field", "repeat field"]))
        keys = [k for k, t in enumerate(tokens[:-1]) if t.endswith(":")]
        if op in ("drop field", "repeat field") and keys:    # a bottom or top too few or too many
            k = draw(st.sampled_from(keys))
            if op == "drop field":
                del tokens[k:k + 2]
            else:
                tokens[k:k] = tokens[k:k + 2]
        elif op == "number":
            tokens[i] = draw(st.sampled_from(INTERESTING))
        elif op == "word":
            tokens[i] = draw(st.sampled_from(WORDS))
        elif op == "delete":
            del tokens[i]
        elif op == "duplicate":
            tokens.insert(i, tokens[i])
        elif op == "cut":
            tokens = tokens[:i]
        else:
            tokens[i] += draw(st.sampled_from(["\x00", "\xff", "\ud800", "\\", '"', "#", "\n", "- ", "&a", "*a"]))
        if not tokens:
            tokens = [""]
    return " ".join(tokens).encode("utf-8", "surrogatepass")


@st.composite
def mutated_bytes(draw, name):
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, max(0, len(data) - 1)))
        op = draw(st.sampled_from(["flip", "cut", "insert", "varint"]))
        if op == "flip" and data:
            data[i] ^= draw(st.integers(1, 255))
        elif op == "cut":
            data = data[:i]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:       # a huge length or count: the reader must not believe it
            data[i:i] = b"\xff\xff\xff\xff\x0f"
    return bytes(data)


INTS = [0, 1, 2, 3, -1, 7, 2 ** 31 - 1, 2 ** 32 - 1, -2 ** 31, 10 ** 9, 2 ** 62]
_RANGES = {FD.TYPE_INT32: (-2 ** 31, 2 ** 31 - 1), FD.TYPE_UINT32: (0, 2 ** 32 - 1),
           FD.TYPE_INT64: (-2 ** 63, 2 ** 63 - 1), FD.TYPE_UINT64: (0, 2 ** 64 - 1)}


def _int_fields(message):
    """(message, field) for every integer field of a layer's parameter messages, set or not."""
    found = []
    for fd in message.DESCRIPTOR.fields:
        if fd.type in _RANGES:
            found.append((message, fd))
        elif fd.message_type is not None and not fd.is_repeated and fd.message_type.name != "BlobProto" \
                and (message.HasField(fd.name) or fd.message_type.name.endswith("Parameter")):
            if message.HasField(fd.name):
                found.extend(_int_fields(getattr(message, fd.name)))
    return found


@st.composite
def mutated_net(draw):
    """The seed net with its wiring and numbers changed, in any format: reaches the shape pass."""
    from netspec.layers.registry import LAYERS
    net = pb.NetParameter()
    net.CopyFrom(NET_MESSAGE)
    blobs = sorted({t for layer in net.layer for t in layer.top})
    for _ in range(draw(st.integers(1, 4))):
        layer = net.layer[draw(st.integers(0, len(net.layer) - 1))]
        op = draw(st.sampled_from(["bottoms", "tops", "add bottom", "add top", "number", "number", "type"]))
        if op in ("bottoms", "tops"):
            field = getattr(layer, op[:-1])
            del field[draw(st.integers(0, len(field))):]
        elif op in ("add bottom", "add top"):
            getattr(layer, op[4:]).append(draw(st.sampled_from(blobs)))
        elif op == "type":
            layer.type = draw(st.sampled_from(sorted(LAYERS)))
        else:
            fields = _int_fields(layer)
            if fields:
                owner, fd = draw(st.sampled_from(fields))
                low, high = _RANGES[fd.type]
                value = min(max(draw(st.sampled_from(INTS)), low), high)
                if fd.is_repeated:
                    getattr(owner, fd.name).append(value)
                else:
                    setattr(owner, fd.name, value)
    fmt = draw(st.sampled_from(["text", "yaml", "json", "binary"]))
    name = {"text": "m.prototxt", "yaml": "m.yaml", "json": "m.json", "binary": "m.caffemodel"}[fmt]
    data = dump(net, fmt)
    return name, data.encode() if isinstance(data, str) else data


def inputs():
    text = st.sampled_from(TEXT_SEEDS).flatmap(lambda n: st.tuples(st.just(n), mutated_text(n)))
    binary = st.sampled_from(["w.caffemodel", "m.binaryproto", "x.solverstate"]).flatmap(
        lambda n: st.tuples(st.just(n), mutated_bytes(n)))
    return st.one_of(mutated_net(), text, binary)


def _tree(folder):
    return {(p, os.stat(os.path.join(folder, p)).st_mtime_ns, os.stat(os.path.join(folder, p)).st_size)
            for p in os.listdir(folder)}


@contextlib.contextmanager
def _in(folder):
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def _world(folder):
    """The files the seed net names, beside the mutated one."""
    from PIL import Image
    Image.new("RGB", (4, 4)).save(os.path.join(folder, "a.png"))
    for name, data in SEEDS.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
    with open(os.path.join(folder, "list.txt"), "w") as f:
        f.write("a.png 0\n")
    with open(os.path.join(folder, "mean.binaryproto"), "wb") as f:
        f.write(_mean())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("fuzz"))
    _world(folder)
    return folder


READERS = [nio.read_net, nio.read_solver, nio.read_blobproto,     # read_caffemodel is read_net
           lambda p: nio.read_message(p, pb.SolverState), nio.read_kind]


@seed(17)
@settings(**SETTINGS)
@given(inputs())
def test_every_reader_and_check_fail_only_with_netspec_errors(world, case):
    name, data = case
    folder, name = world, "case" + os.path.splitext(name)[1]       # the seeds stay as they are
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)
    started = time.process_time()
    with _in(folder):
        for read in READERS:
            try:
                read(name)
            except NetspecError:
                pass
        before = _tree(folder)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["check", name])
        assert code in (0, 1, 2), err.getvalue()
        assert "Traceback" not in err.getvalue()
        assert _tree(folder) == before, "check wrote a file"
    assert time.process_time() - started < CPU_SECONDS, "an input took over a second"
