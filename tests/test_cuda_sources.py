"""netspec's CuPy kernels checked without a GPU.

* Every kernel source, wrapped as CuPy wraps an ElementwiseKernel (tests/cuda_wrap.py), for
  float and double, compiles with nvcc for sm_90 (skipped where nvcc is absent).
* The same bodies, compiled for the CPU with a C++ compiler, run behind a stand-in `cupy`
  module, so netspec.ops.cuda's Python side (argument order, dtypes, output buffers) and the
  kernel arithmetic are compared with the NumPy twins (im2col.py, pooling.py, lrn.py), and
  whole vision layers run forward and backward on their CuPy path against NumPy.
"""
import ctypes
import importlib.util
import pathlib
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

import cuda_wrap
from harness import check_layer, make_layer, run
from netspec.ops import cuda, lrn, pooling, workspace
from netspec.ops.im2col import col2im, im2col
from netspec.ops.windows import Window, pool_out
from test_ops_cuda import CONV_WINDOWS, POOL_WINDOWS

PACKAGE = pathlib.Path(cuda.__file__).parents[1]
CTYPES = ["float", "double"]


def _compile(cmd, cwd):
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout + done.stderr


def _our_warnings(log):
    """Compiler diagnostics that point into a kernel body (named '<kernel><type>')."""
    return [line for line in log.splitlines() if re.search(r"netspec_\w+<\w+>", line)]


# -- where the kernels live ----------------------------------------------------------------------
def test_kernels_are_built_only_from_the_module_sources(monkeypatch):
    made = []
    fake = types.ModuleType("cupy")
    fake.ElementwiseKernel = lambda *args, **kwargs: made.append((args, kwargs))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    for name in cuda.SOURCES:
        cuda.kernel.__wrapped__(name)
    assert made == [(src + (name,), {"preamble": cuda.PREAMBLE}) for name, src in cuda.SOURCES.items()]
    # nowhere else in the package builds a CuPy kernel, so the sources above are all there is
    builders = re.compile(r"\b(ElementwiseKernel|RawKernel|RawModule|ReductionKernel|cupy\.fuse)\b")
    elsewhere = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if p.name != "cuda.py" and builders.search(p.read_text())]
    assert elsewhere == []


def test_importing_the_package_does_not_import_cupy():
    code = ("import sys, netspec.ops.cuda, netspec.net, netspec.solver, netspec.layers; "
            "sys.exit('cupy' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# -- nvcc ------------------------------------------------------------------------------------------
def _cupy_include():
    spec = importlib.util.find_spec("cupy")
    if spec is None:
        return None
    path = pathlib.Path(spec.submodule_search_locations[0]) / "_core" / "include"
    return path if (path / "cupy" / "carray.cuh").exists() else None


@pytest.mark.parametrize("header", ["stand-in", "cupy"])
def test_kernels_compile_with_nvcc(tmp_path, header):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not installed")
    source = cuda_wrap.translation_unit(cuda.SOURCES, cuda.PREAMBLE, CTYPES, "device")
    cmd = [nvcc, "-std=c++17", "-arch=sm_90", "-cubin", "-o", "kernels.cubin", "kernels.cu"]
    if header == "cupy":       # CuPy's own carray.cuh, where CuPy is installed
        include = _cupy_include()
        if include is None:
            pytest.skip("CuPy's headers not installed")
        source = source.replace(cuda_wrap.HEADER_COMMON + cuda_wrap.LOOP["device"],
                                "#include <cupy/carray.cuh>\n")
        cmd[1:1] = ["-I", str(include)]
    (tmp_path / "kernels.cu").write_text(source)
    rc, log = _compile(cmd, tmp_path)
    assert rc == 0, log
    assert _our_warnings(log) == []


# -- the kernel bodies run on the CPU --------------------------------------------------------------
def _cxx():
    return shutil.which("g++") or shutil.which("c++")


def test_the_wrapper_catches_a_broken_kernel(tmp_path):
    """A write to a raw input (const in CuPy) and an undeclared name are compile errors that
    name the kernel, so the checks above can fail."""
    cxx = _cxx()
    if cxx is None:
        pytest.skip("no C++ compiler")
    broken = {"netspec_bad": ("raw T x, int32 w", "T y", "x[i] = 0;\n y = x[i] * wdth;")}
    (tmp_path / "bad.cpp").write_text(cuda_wrap.translation_unit(broken, "", ["float"], "host"))
    rc, log = _compile([cxx, "-fsyntax-only", "bad.cpp"], tmp_path)
    assert rc != 0
    assert "netspec_bad<float>:1" in log and "netspec_bad<float>:2" in log


@pytest.fixture(scope="module")
def host_library(tmp_path_factory):
    cxx = _cxx()
    if cxx is None:
        pytest.skip("no C++ compiler")
    where = tmp_path_factory.mktemp("host_kernels")
    (where / "kernels.cpp").write_text(
        cuda_wrap.translation_unit(cuda.SOURCES, cuda.PREAMBLE, CTYPES, "host"))
    rc, log = _compile([cxx, "-O1", "-Wall", "-shared", "-fPIC", "-o", "kernels.so", "kernels.cpp"], where)
    assert rc == 0, log
    assert _our_warnings(log) == []
    return ctypes.CDLL(str(where / "kernels.so"))


class HostKernel:
    """cupy.ElementwiseKernel's calling rules, running a body compiled for the CPU: T taken
    from the array arguments (mismatches are TypeErrors, as in CuPy), scalars cast to their
    declared type, raw arrays indexed in C order, one loop step per element of the non-raw
    (output) arrays."""
    library = None

    def __init__(self, in_params, out_params, body, name, preamble=""):
        assert (in_params, out_params, body) == cuda.SOURCES[name] and preamble == cuda.PREAMBLE
        self.params, self.name = cuda_wrap.params(in_params, out_params), name

    def _types(self, args):
        found = {}
        for p, a in zip(self.params, args):
            if isinstance(a, np.ndarray):
                want = found.setdefault(p.type, a.dtype) if p.placeholder else np.dtype(p.type)
                if a.dtype != want:
                    raise TypeError(f"{self.name}: {p.name} is {a.dtype}, expected {want}")
        return found

    def __call__(self, *args):
        assert len(args) == len(self.params), "netspec passes every output"
        found = self._types(args)
        dtype = found["T"]
        keep, copy_back, shapes = [], [], set()
        for p, a in zip(self.params, args):
            if p.raw:
                assert isinstance(a, np.ndarray)
                keep.append(np.ascontiguousarray(a))
            elif p.is_input:        # a scalar: cast to its declared type, losing nothing
                assert not isinstance(a, np.ndarray), f"{p.name}: an array where a scalar goes"
                value = np.array(a, dtype=dtype if p.placeholder else p.type)
                assert value == a or p.placeholder, f"{p.name}={a!r} does not fit {p.type}"
                keep.append(value)
            else:
                shapes.add(a.shape)
                work = np.ascontiguousarray(a)
                keep.append(work)
                copy_back.append((a, work))
        assert len(shapes) == 1, f"{self.name}: outputs of shapes {shapes}"
        argv = (ctypes.c_void_p * len(keep))(*(k.ctypes.data for k in keep))
        run = getattr(self.library, cuda_wrap.symbol(self.name, cuda_wrap.C_TYPES[dtype.name]))
        run(argv, ctypes.c_ssize_t(int(np.prod(shapes.pop()))))
        for out, work in copy_back:
            if out is not work:
                out[...] = work


@pytest.fixture
def gpu(host_library, monkeypatch):
    """A stand-in for cupy, used as `xp`: NumPy's arrays and functions, but code that asks
    `xp is not numpy` takes its CuPy path, whose kernels run on the CPU."""
    fake = types.ModuleType("cupy_on_cpu")      # its own name: scratch buffers are kept by it
    fake.__getattr__ = lambda name: getattr(np, name)      # the array functions: NumPy's
    fake.ElementwiseKernel = HostKernel
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDevice=lambda: 0))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(HostKernel, "library", host_library)
    cuda.kernel.cache_clear()
    yield fake
    cuda.kernel.cache_clear()
    workspace._local.buffers = {}     # drop the buffers made while cupy was the fake


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


def _close(got, want, dtype):
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("shape,win", CONV_WINDOWS)
def test_im2col_and_col2im_kernels(gpu, shape, win, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    out = win.out_shape(shape[2:])
    col = im2col(np, x, win, out)
    np.testing.assert_array_equal(im2col(gpu, x, win, out), col)
    c = rng.standard_normal(col.shape).astype(dtype)
    _close(col2im(gpu, c, shape, win), col2im(np, c, shape, win), dtype)


def _pool_out(shape, win):
    return tuple(pool_out(s, k, st, p) for s, k, st, p in zip(shape[2:], win.kernel, win.stride, win.pad))


def _pool_cases():
    for shape, win in POOL_WINDOWS:
        yield shape, win, "distinct"
    yield (2, 3, 7, 8), Window((3, 3), (2, 2), (1, 1), (1, 1)), "ties and NaN"


def _pool_input(shape, kind, dtype):
    rng = np.random.default_rng(2)
    if kind == "distinct":
        return rng.permutation(np.prod(shape)).reshape(shape).astype(dtype)
    x = rng.integers(0, 3, shape).astype(dtype)      # many ties: the first maximum must win
    x.flat[::7] = np.nan                             # a NaN never wins (Caffe's strict >)
    return x


@pytest.mark.parametrize("shape,win,kind", list(_pool_cases()))
def test_pooling_kernels(gpu, shape, win, kind, dtype):
    x = _pool_input(shape, kind, dtype)
    out = _pool_out(shape, win)
    y, arg = pooling.max_pool(np, x, win, out)
    gy, garg = pooling.max_pool(gpu, x, win, out)
    np.testing.assert_array_equal(gy, y)
    np.testing.assert_array_equal(garg, arg)
    dy = np.random.default_rng(3).standard_normal(y.shape).astype(dtype)
    _close(pooling.max_pool_backward(gpu, dy, garg, shape[2:], win),
           pooling.max_pool_backward(np, dy, arg, shape[2:], win), dtype)
    finite = np.nan_to_num(x)
    _close(pooling.ave_pool(gpu, finite, win, out), pooling.ave_pool(np, finite, win, out), dtype)
    _close(pooling.ave_pool_backward(gpu, dy, shape[2:], win),
           pooling.ave_pool_backward(np, dy, shape[2:], win), dtype)


def test_pooling_kernels_write_into_strided_outputs(gpu, dtype):
    """Layers may hand a view as the output buffer; the element a kernel writes is its own."""
    shape, win = POOL_WINDOWS[0]
    x = _pool_input(shape, "distinct", dtype)
    out = _pool_out(shape, win)
    wide = np.zeros(shape[:2] + (out[0], 2 * out[1]), dtype=dtype)
    pooling.ave_pool(gpu, x, win, out, out=wide[..., ::2])
    _close(wide[..., ::2], pooling.ave_pool(np, x, win, out), dtype)
    assert not wide[..., 1::2].any()


@pytest.mark.parametrize("channels,size", [(7, 5), (3, 5), (4, 3), (2, 1)])
def test_lrn_across_channel_kernels(gpu, channels, size, dtype):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, channels, 3, 4)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    want = lrn.lrn_across(np, x, size, 0.3, 0.75, 2.0)
    got = lrn.lrn_across(gpu, x, size, 0.3, 0.75, 2.0)
    for g, w in zip(got, want):
        _close(g, w, dtype)
    _close(lrn.lrn_across_backward(gpu, x, *got, dy, size, 0.3, 0.75),
           lrn.lrn_across_backward(np, x, *want, dy, size, 0.3, 0.75), dtype)


VISION_LAYERS = [
    ('type: "Convolution" convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 2 group: 2 }',
     (2, 4, 7, 6)),
    ('type: "Convolution" convolution_param { num_output: 3 kernel_size: 3 dilation: 2 }', (1, 2, 8, 7)),
    ('type: "Deconvolution" convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 }',
     (2, 2, 4, 5)),
    ('type: "Im2col" convolution_param { kernel_size: 3 stride: 2 pad: 1 }', (2, 3, 6, 5)),
    ('type: "Pooling" top: "y" top: "mask" pooling_param { pool: MAX kernel_size: 3 stride: 2 }',
     (2, 3, 7, 8)),
    ('type: "Pooling" pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }', (2, 3, 7, 8)),
    ('type: "Pooling" pooling_param { pool: STOCHASTIC kernel_size: 2 stride: 2 }', (2, 3, 6, 6)),
    ('type: "SPP" spp_param { pyramid_height: 2 pool: MAX }', (2, 3, 5, 6)),
    ('type: "LRN" lrn_param { local_size: 5 alpha: 0.3 beta: 0.75 k: 2 }', (2, 7, 3, 4)),
    ('type: "LRN" lrn_param { local_size: 3 alpha: 0.3 beta: 0.6 norm_region: WITHIN_CHANNEL }',
     (2, 3, 5, 4)),
]


def _forward_backward(text, shape, xp):
    layer = make_layer('name: "l" bottom: "x" top: "y" ' + text)
    rng = np.random.default_rng(5)
    x = rng.permutation(np.prod(shape)).reshape(shape) / np.prod(shape)   # positive, tie-free
    r = run(layer, [x], xp, seed=6)
    dx = r.backward([rng.standard_normal(t.shape) for t in r.tops])
    return r.y + dx + r.param_diffs


@pytest.mark.parametrize("text,shape", VISION_LAYERS, ids=[t.split('"')[1] + str(k) for k, (t, _) in
                                                           enumerate(VISION_LAYERS)])
def test_vision_layers_on_the_cupy_path(gpu, text, shape):
    """Whole layers, forward and backward, on the CuPy path (kernels on the CPU) against NumPy."""
    for got, want in zip(_forward_backward(text, shape, gpu), _forward_backward(text, shape, np)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("text,shape", VISION_LAYERS, ids=[t.split('"')[1] + str(k) for k, (t, _) in
                                                           enumerate(VISION_LAYERS)])
def test_vision_layers_pass_the_harness_on_the_cupy_path(gpu, text, shape):
    """The layer harness (strided inputs, accumulation, propagate_down, numeric gradient)
    with the CuPy path's kernels."""
    rng = np.random.default_rng(5)
    x = rng.permutation(np.prod(shape)).reshape(shape) / np.prod(shape)
    check_layer('name: "l" bottom: "x" top: "y" ' + text, [x], xp=gpu)


@pytest.mark.parametrize("rectify", [False, True])
def test_batch_norm_group_kernels_on_the_cupy_path(gpu, rectify, monkeypatch):
    """BatchNorm with its Scale (and ReLU) as one, on the CuPy path (one block) against NumPy's
    blocks (of 2 items)."""
    from netspec.ops import norm
    monkeypatch.setattr(norm, "BLOCK_BYTES", 2 * 3 * 14 * 8)
    rng = np.random.default_rng(7)
    x, dy = rng.standard_normal((5, 3, 14)) * 2 + 1, rng.standard_normal((5, 3, 14))
    scale, bias = rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    results = []
    for xp in (gpu, np):
        z, y, d = np.empty_like(x), np.empty_like(x), dy.copy()
        stats = norm.batch_norm_forward(xp, x, z, 1e-5, scale=scale, bias=bias, y=y, rectify=rectify)
        dscale, dbias = np.zeros(3), np.zeros(3)
        norm.batch_norm_backward(xp, d, z, stats[2], d, scale=scale, dscale=dscale, dbias=dbias,
                                 y=y if rectify else None)
        results.append(list(stats) + [z, y, d, dscale, dbias])
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
