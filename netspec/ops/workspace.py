"""Scratch buffers for temporaries that live within one op call (column buffers, transposed
copies, matrix products).

Allocating a fresh 50 MB array costs page faults on first touch every time; Caffe keeps one
column buffer per layer for this reason. Here each named temporary keeps one buffer, grown to
the largest request, per thread and per device: layers run one after another, so they can all
share it. A buffer's content is undefined on return; callers overwrite what they read.
"""
import threading

import numpy

_local = threading.local()
_allocations = 0        # buffers made or grown so far (tests assert none in the steady state)


def _own():
    """This thread's buffers: its own, or the lane it works in for another (lanes below)."""
    buffers = getattr(_local, "lane", None)
    if buffers is None:
        buffers = getattr(_local, "buffers", None)
        if buffers is None:
            buffers = _local.buffers = {}
    return buffers


def lanes(count):
    """This thread's buffer sets for `count` parallel parts (threads.py): part i always uses
    lane i, whichever pool thread runs it, so the steady state allocates nothing."""
    extra = getattr(_local, "lanes", None)
    if extra is None:
        extra = _local.lanes = []
    while len(extra) < count - 1:
        extra.append({})
    return [_own()] + extra[:count - 1]


def in_lane(buffers, fn, *args):
    """fn(*args) with scratch() drawing on `buffers`."""
    saved = getattr(_local, "lane", None)
    _local.lane = buffers
    try:
        return fn(*args)
    finally:
        _local.lane = saved


def scratch(xp, name, shape, dtype):
    """An uninitialised array of `shape` backed by the reusable buffer `name`."""
    buffers = _own()
    device = 0 if xp is numpy else xp.cuda.runtime.getDevice()
    key = (name, xp.__name__, device, numpy.dtype(dtype).str)
    size = int(numpy.prod(shape, dtype=numpy.int64))
    buffer = buffers.get(key)
    if buffer is None or buffer.size < size:
        global _allocations
        _allocations += 1
        buffer = buffers[key] = xp.empty(size, dtype=dtype)
    return buffer[:size].reshape(shape)


def allocations():
    """How many scratch buffers have been made or grown in this process."""
    return _allocations
