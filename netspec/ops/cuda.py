"""CuPy kernels for what NumPy-style array code does badly on a GPU: im2col/col2im, pooling
with argmax, LRN. Each has a NumPy twin (im2col.py, pooling.py, lrn.py) that computes the
same thing; tests compare the two where a GPU is present.

Kernels are compiled lazily, on first use, and cached; importing this module needs no CuPy.
Every kernel computes one output element per thread and gathers what it needs (col2im and
the pooling backwards loop over the taps that reach their input element), so no atomics.
Raw inputs are made C-contiguous before they are indexed by hand. Inside a body `i` is
CuPy's element index (a ptrdiff_t); a non-raw output names the element at i, a `raw`
input the whole array, and the scalars come typed as declared.

SOURCES (name -> in_params, out_params, body) and PREAMBLE are plain data, so the tests
compile every kernel with nvcc and run the bodies on the CPU where no GPU is present
(tests/test_cuda_sources.py).
"""
from functools import lru_cache

import numpy

# Integer helpers (no reliance on CUDA's min/max overloads for mixed types).
PREAMBLE = """
__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int imax(int a, int b) { return a > b ? a : b; }
"""
# Index decoding for outputs shaped (N*C, h, w) and (N*C, out_h, out_w).
_DECODE_INPUT = """
    const int x0 = (int)(i % w);
    const int y0 = (int)((i / w) % h);
    const long long nc = i / ((long long)w * h);
"""
_DECODE_OUTPUT = """
    const int ox = (int)(i % out_w);
    const int oy = (int)((i / out_w) % out_h);
    const long long nc = i / ((long long)out_w * out_h);
"""
_GEOMETRY = ("int32 h, int32 w, int32 out_h, int32 out_w, int32 kh, int32 kw, "
             "int32 sy, int32 sx, int32 py, int32 px")

SOURCES = {
    # col[c, ki, kj, n, oy, ox] = x[n, c, oy*sy - py + ki*dil_y, ox*sx - px + kj*dil_x], 0 outside.
    "netspec_im2col": (
        "raw T x, int32 num, int32 channels, " + _GEOMETRY + ", int32 dil_y, int32 dil_x",
        "T col",
        _DECODE_OUTPUT.replace("nc", "rest") + """
        const long long nb = rest % num;
        const int kj = (int)((rest / num) % kw);
        const int ki = (int)((rest / num / kw) % kh);
        const long long c = rest / num / kw / kh;
        const int yy = oy * sy - py + ki * dil_y;
        const int xx = ox * sx - px + kj * dil_x;
        col = (yy >= 0 && yy < h && xx >= 0 && xx < w)
            ? x[((nb * channels + c) * h + yy) * w + xx] : (T)0;
        """),
    # img[n, c, y, x] = sum of the col entries that im2col copied from (y, x).
    "netspec_col2im": (
        "raw T col, int32 num, int32 channels, " + _GEOMETRY + ", int32 dil_y, int32 dil_x",
        "T img",
        _DECODE_INPUT + """
        const long long nb = nc / channels;
        const long long c = nc % channels;
        T sum = 0;
        for (int ki = 0; ki < kh; ++ki) {
            const int ty = y0 + py - ki * dil_y;
            if (ty < 0 || ty % sy != 0 || ty / sy >= out_h) continue;
            for (int kj = 0; kj < kw; ++kj) {
                const int tx = x0 + px - kj * dil_x;
                if (tx < 0 || tx % sx != 0 || tx / sx >= out_w) continue;
                sum += col[((((c * kh + ki) * kw + kj) * num + nb) * out_h + ty / sy) * out_w + tx / sx];
            }
        }
        img = sum;
        """),
    # Max over the window clipped to the image; the first maximum in row-major order wins.
    "netspec_max_pool": (
        "raw T x, " + _GEOMETRY,
        "T y, int32 arg",
        _DECODE_OUTPUT + """
        const int ys = oy * sy - py, xs = ox * sx - px;
        const int y_lo = imax(ys, 0), y_hi = imin(ys + kh, h);
        const int x_lo = imax(xs, 0), x_hi = imin(xs + kw, w);
        const long long plane = nc * h * w;
        T best = -3.402823466e+38;      // Caffe's -FLT_MAX: what a window left empty gives
        int where = -1;
        for (int yy = y_lo; yy < y_hi; ++yy) {
            for (int xx = x_lo; xx < x_hi; ++xx) {
                const T v = x[plane + (long long)yy * w + xx];
                if (v > best) {                 // strict: the first maximum wins, a NaN never does
                    best = v;
                    where = (yy - ys) * kw + (xx - xs);
                }
            }
        }
        y = best;
        arg = where;
        """),
    # dx[y, x] = sum of dy over the windows whose argmax is (y, x).
    "netspec_max_pool_backward": (
        "raw T dy, raw int32 arg, " + _GEOMETRY,
        "T dx",
        _DECODE_INPUT + """
        T sum = 0;
        for (int ki = 0; ki < kh; ++ki) {
            const int ty = y0 + py - ki;
            if (ty < 0 || ty % sy != 0 || ty / sy >= out_h) continue;
            for (int kj = 0; kj < kw; ++kj) {
                const int tx = x0 + px - kj;
                if (tx < 0 || tx % sx != 0 || tx / sx >= out_w) continue;
                const long long o = (nc * out_h + ty / sy) * out_w + tx / sx;
                if (arg[o] == ki * kw + kj) sum += dy[o];
            }
        }
        dx = sum;
        """),
    # Sum of the in-image part / the window clipped to the padded input (Caffe's divisor).
    "netspec_ave_pool": (
        "raw T x, " + _GEOMETRY,
        "T y",
        _DECODE_OUTPUT + """
        const int ys = oy * sy - py, xs = ox * sx - px;
        const int ye = imin(ys + kh, h + py), xe = imin(xs + kw, w + px);
        const T area = (T)((ye - ys) * (xe - xs));
        const long long plane = nc * h * w;
        T sum = 0;
        for (int yy = imax(ys, 0); yy < imin(ye, h); ++yy)
            for (int xx = imax(xs, 0); xx < imin(xe, w); ++xx)
                sum += x[plane + (long long)yy * w + xx];
        y = sum / area;
        """),
    "netspec_ave_pool_backward": (
        "raw T dy, " + _GEOMETRY,
        "T dx",
        _DECODE_INPUT + """
        T sum = 0;
        for (int ki = 0; ki < kh; ++ki) {
            const int ty = y0 + py - ki;
            if (ty < 0 || ty % sy != 0 || ty / sy >= out_h) continue;
            const int ys = ty - py;
            const int rows = imin(ys + kh, h + py) - ys;
            for (int kj = 0; kj < kw; ++kj) {
                const int tx = x0 + px - kj;
                if (tx < 0 || tx % sx != 0 || tx / sx >= out_w) continue;
                const int xs = tx - px;
                const int cols = imin(xs + kw, w + px) - xs;
                sum += dy[(nc * out_h + ty / sy) * out_w + tx / sx] / (T)(rows * cols);
            }
        }
        dx = sum;
        """),
    # scale = k + alpha/n * sum of squares over the n channels centred on c.
    "netspec_lrn_across": (
        "raw T x, int32 channels, int32 plane, int32 window, T alpha_over_n, T k, T neg_beta",
        "T y, T scale, T inv",
        """
        const int c = (int)((i / plane) % channels);
        const long long base = i - (long long)c * plane;
        const int first = c - (window - 1) / 2;
        T acc = 0;
        for (int cc = imax(first, 0); cc < imin(first + window, channels); ++cc) {
            const T v = x[base + (long long)cc * plane];
            acc += v * v;
        }
        scale = k + alpha_over_n * acc;
        inv = pow(scale, neg_beta);
        y = x[i] * inv;
        """),
    # dx = dy * scale^-beta - ratio * x * sum over the window of dy * y / scale.
    "netspec_lrn_across_backward": (
        "raw T x, raw T y, raw T scale, raw T dy, int32 channels, int32 plane, int32 window, "
        "T ratio, T neg_beta",
        "T dx",
        """
        const int c = (int)((i / plane) % channels);
        const long long base = i - (long long)c * plane;
        const int first = c - (window - 1) / 2;
        T acc = 0;
        for (int cc = imax(first, 0); cc < imin(first + window, channels); ++cc) {
            const long long j = base + (long long)cc * plane;
            acc += dy[j] * y[j] / scale[j];
        }
        dx = dy[i] * pow(scale[i], neg_beta) - ratio * x[i] * acc;
        """),
}


@lru_cache(maxsize=None)
def kernel(name):
    """The compiled ElementwiseKernel `name`, built once."""
    import cupy
    in_params, out_params, body = SOURCES[name]
    return cupy.ElementwiseKernel(in_params, out_params, body, name, preamble=PREAMBLE)


def _contiguous(a):
    import cupy
    return cupy.ascontiguousarray(a)


def _geometry(in_shape, out_shape, win):
    (h, w), (out_h, out_w) = in_shape, out_shape
    (kh, kw), (sy, sx), (py, px) = win.kernel, win.stride, win.pad
    return (h, w, out_h, out_w, kh, kw, sy, sx, py, px)


def im2col(x, win, out_shape, out):
    n, c = x.shape[:2]
    kernel("netspec_im2col")(_contiguous(x), n, c, *_geometry(x.shape[2:], out_shape, win),
                             *win.dilation, out)
    return out


def col2im(col, x_shape, win, out):
    n, c = x_shape[:2]
    kernel("netspec_col2im")(_contiguous(col), n, c, *_geometry(x_shape[2:], col.shape[-2:], win),
                             *win.dilation, out)
    return out


def max_pool(x, win, out_shape, y):
    import cupy
    arg = cupy.empty(y.shape, dtype=numpy.int32)
    kernel("netspec_max_pool")(_contiguous(x), *_geometry(x.shape[2:], out_shape, win), y, arg)
    return y, arg


def max_pool_backward(dy, arg, in_shape, win, dx):
    kernel("netspec_max_pool_backward")(_contiguous(dy), _contiguous(arg),
                                        *_geometry(in_shape, dy.shape[2:], win), dx)
    return dx


def ave_pool(x, win, out_shape, y):
    kernel("netspec_ave_pool")(_contiguous(x), *_geometry(x.shape[2:], out_shape, win), y)
    return y


def ave_pool_backward(dy, in_shape, win, dx):
    kernel("netspec_ave_pool_backward")(_contiguous(dy), *_geometry(in_shape, dy.shape[2:], win), dx)
    return dx


def lrn_across(x, size, alpha, beta, k):
    import cupy
    x = _contiguous(x)
    t = x.dtype.type
    y, scale, inv = (cupy.empty_like(x) for _ in range(3))
    kernel("netspec_lrn_across")(x, x.shape[1], int(numpy.prod(x.shape[2:])), size,
                                 t(alpha / size), t(k), t(-beta), y, scale, inv)
    return y, scale, inv


def lrn_across_backward(x, y, scale, dy, size, alpha, beta):
    import cupy
    t = x.dtype.type
    dx = cupy.empty(x.shape, dtype=x.dtype)
    kernel("netspec_lrn_across_backward")(_contiguous(x), _contiguous(y), _contiguous(scale),
                                          _contiguous(dy), x.shape[1], int(numpy.prod(x.shape[2:])),
                                          size, t(2 * alpha * beta / size), t(-beta), dx)
    return dx
