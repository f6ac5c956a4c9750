"""Running NumPy work on independent blocks in more than one thread.

NumPy's elementwise loops run in one thread, so on two cores a pooling layer used half the
machine while PyTorch used all of it. NumPy releases the GIL inside a ufunc's loop, so
blocks of a few MB run in parallel from a thread pool. The number of threads follows what
the BLAS is told (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS), else every core: one setting for all.
Each part draws on scratch buffers of its own (workspace.lanes), so parts share no temporaries.
"""
import os
import threading

import numpy

from . import workspace

_pool, _pool_size = None, 0
_inside = threading.local()     # set in the pool's threads: work they split runs there, in order
MIN_BYTES = 1 << 20     # below this a second thread costs more than it saves


def workers():
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_blocks(fn, blocks):
    """fn(*block) for each block (a tuple of arrays); in parallel where there are threads to
    use: part i of n takes blocks i, i+n, ... in lane i of the caller's scratch buffers."""
    global _pool, _pool_size
    blocks = list(blocks)
    n = min(workers(), len(blocks))
    if n <= 1 or getattr(_inside, "pool", False):       # no waiting on the pool from inside it
        for block in blocks:
            fn(*block)
        return
    if _pool_size < n - 1:
        from concurrent.futures import ThreadPoolExecutor     # here: a command that never computes needs none
        _pool, _pool_size = ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="netspec",
                                               initializer=_mark_inside), n - 1
    lanes = workspace.lanes(n)

    def part(i):
        for block in blocks[i::n]:
            fn(*block)
    futures = [_pool.submit(workspace.in_lane, lanes[i], part, i) for i in range(1, n)]
    part(0)                                 # the caller's share, in its own buffers
    for future in futures:
        future.result()


def _mark_inside():
    _inside.pool = True


def parts(count, nbytes):
    """Slices cutting `count` items (channels, elements) into one part per thread; a single
    part when the work (`nbytes`) is small."""
    n = min(workers(), count) if nbytes >= MIN_BYTES else 1
    return [slice(count * i // n, count * (i + 1) // n) for i in range(max(n, 1))]


def each_part(fn, slices):
    """[fn(s) for s in slices], run in parallel; the results in order."""
    results = [None] * len(slices)

    def one(i, s):
        results[i] = fn(s)
    run_blocks(one, list(enumerate(slices)))
    return results


def by_parts(xp, fn, count, nbytes):
    """[fn(s) for s in slices of `count` independent items (channels, planes)], in parallel on
    NumPy when the work (`nbytes`) is big; one call with slice(None) on CuPy."""
    return each_part(fn, parts(count, nbytes) if xp is numpy else [slice(None)])


def flat_parts(fn, *arrays):
    """fn(*views) on matching parts of the flattened arrays (same size), in parallel on NumPy;
    fn(*arrays) once on CuPy or where one is not contiguous."""
    if not all(isinstance(a, numpy.ndarray) and a.flags.c_contiguous for a in arrays):
        fn(*arrays)
        return
    flats = [a.reshape(-1) for a in arrays]
    each_part(lambda s: fn(*(f[s] for f in flats)), parts(flats[0].size, flats[0].nbytes))


def add_all(xp, terms, out):
    """out = the sum of two or more arrays (out may be one of them only if it is the first)."""
    xp.add(terms[0], terms[1], out=out)
    for t in terms[2:]:
        out += t
