"""Wrap netspec's CuPy ElementwiseKernel sources the way CuPy does, for tests without a GPU.

CuPy turns ElementwiseKernel(in_params, out_params, body, name, preamble) into

    typedef float T;                                  // one per type placeholder
    <preamble>
    extern "C" __global__ void name(const CArray<T, ...> x,   // a `raw T x` input
                                    const int h,              // an `int32 h` scalar
                                    CArray<T, ...> _raw_y,    // a non-raw `T y` output
                                    CIndexer<...> _ind) {
      CUPY_FOR(i, _ind.size()) {                      // i is a ptrdiff_t
        _ind.set(i);
        T &y = _raw_y[_ind.get()];                    // non-raw: the element
        <body>;
      }
    }

`unit(name, ctype, mode)` writes that for one kernel, with a small stand-in for CuPy's
carray.cuh: "device" for nvcc, "host" for g++, where the loop runs on the CPU and a kernel
is called with a void* per parameter, so tests can run a kernel body against NumPy.
A `#line` directive makes a compiler error name the kernel, the type and the body line.
"""
import numpy as np

# NumPy dtype names in CuPy's parameter lists -> C types (CuPy's _scalar.get_typename).
C_TYPES = {
    "float16": "float16", "float32": "float", "float64": "double",
    "int8": "signed char", "int16": "short", "int32": "int", "int64": "long long",
    "uint8": "unsigned char", "uint16": "unsigned short", "uint32": "unsigned int",
    "uint64": "unsigned long long", "bool": "bool",
}
C_DTYPES = {"float": np.float32, "double": np.float64}

HEADER = {
    "device": "#include <cstddef>\n",
    "host": ("#include <cstddef>\n#include <math.h>\n"
             "#define __device__\n#define __global__\n#define __forceinline__ inline\n"),
}
HEADER_COMMON = """
template <typename T, int ndim, bool c_contiguous = false, bool index_32 = false, int core = 0>
class CArray {
  T* data_;
 public:
  __device__ CArray(T* data) : data_(data) {}
  __device__ const T& operator[](ptrdiff_t i) const { return data_[i]; }
  __device__ T& operator[](ptrdiff_t i) { return data_[i]; }
};
template <int ndim, bool index_32 = false>
class CIndexer {
  ptrdiff_t size_, index_;
 public:
  __device__ CIndexer(ptrdiff_t size) : size_(size), index_(0) {}
  __device__ ptrdiff_t size() const { return size_; }
  __device__ void set(ptrdiff_t i) { index_ = i; }
  __device__ ptrdiff_t get() const { return index_; }
};
"""
LOOP = {
    "device": ("#define CUPY_FOR(i, n) for (ptrdiff_t i = (ptrdiff_t)blockIdx.x * blockDim.x + "
               "threadIdx.x; i < (n); i += (ptrdiff_t)blockDim.x * gridDim.x)\n"),
    "host": "#define CUPY_FOR(i, n) for (ptrdiff_t i = 0; i < (n); ++i)\n",
}


class Param:
    """One entry of a CuPy parameter list: 'raw T x', 'int32 h', 'T y'."""

    def __init__(self, text, is_input):
        *flags, self.type, self.name = text.split()
        assert set(flags) <= {"raw"}, f"unknown keyword in {text!r}"
        self.raw = "raw" in flags
        self.is_input = is_input
        self.placeholder = len(self.type) == 1
        self.scalar = False        # set from the call: CuPy decides by the argument given

    def ctype(self):
        return self.type if self.placeholder else C_TYPES[self.type]


def params(in_params, out_params):
    """Parameters of a kernel, inputs then outputs, as CuPy parses them."""
    return ([Param(p, True) for p in in_params.split(",")]
            + [Param(p, False) for p in out_params.split(",")])


def placeholders(ps):
    return sorted({p.type for p in ps if p.placeholder})


def symbol(name, ctype):
    return f"{name}__{ctype.replace(' ', '_')}"


def unit(name, source, preamble, ctype, mode):
    """One kernel, its placeholders typed as `ctype`, in its own namespace (CuPy compiles each
    kernel as a module of its own). Scalar parameters: every non-raw input of a kernel whose
    non-raw arrays are its outputs (how netspec's kernels are built; CuPy would take an array
    there too)."""
    in_params, out_params, body = source
    ps = params(in_params, out_params)
    for p in ps:
        p.scalar = p.is_input and not p.raw
    typedefs = "".join(f"typedef {ctype} {t};\n" for t in placeholders(ps))
    elements = "".join(f"    {p.ctype()} &{p.name} = _raw_{p.name}[_ind.get()];\n"
                       for p in ps if not p.raw and not p.scalar)
    fn = symbol(name, ctype)
    if mode == "device":
        decls = [f"const {p.ctype()} {p.name}" if p.scalar else
                 f"{'const ' if p.is_input else ''}CArray<{p.ctype()}, 1, true> "
                 f"{p.name if p.raw else '_raw_' + p.name}" for p in ps]
        signature = f'extern "C" __global__ void {fn}({", ".join(decls + ["CIndexer<1> _ind"])})'
        unpack = ""
    else:
        signature = f'extern "C" void {fn}(void** _args, ptrdiff_t _size)'
        unpack = "".join(_host_unpack(k, p) for k, p in enumerate(ps)) + "  CIndexer<1> _ind(_size);\n"
    return (f"namespace ns_{fn} {{\n{typedefs}{preamble}\n{signature} {{\n{unpack}"
            f"  CUPY_FOR(i, _ind.size()) {{\n    _ind.set(i);\n{elements}"
            f'#line 1 "{name}<{ctype}>"\n{body};\n  }}\n}}\n}}  // namespace\n')


def _host_unpack(k, p):
    """The host kernel's local for parameter p, from its void* argument k."""
    t = p.ctype()
    if p.scalar:
        return f"  const {t} {p.name} = *static_cast<const {t}*>(_args[{k}]);\n"
    const = "const " if p.is_input else ""
    return f"  {const}CArray<{t}, 1, true> {p.name if p.raw else '_raw_' + p.name}(static_cast<{t}*>(_args[{k}]));\n"


def translation_unit(sources, preamble, ctypes, mode):
    """All kernels, for each C type, in one file for one compiler run."""
    return (HEADER[mode] + HEADER_COMMON + LOOP[mode]
            + "".join(unit(name, src, preamble, c, mode) for name, src in sources.items()
                      for c in ctypes))
