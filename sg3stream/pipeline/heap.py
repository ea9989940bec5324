"""Freed heap pages go back to the operating system while a run streams (glibc's allocator; elsewhere a no-op).

The stages allocate and free pictures, crops and torch's working buffers from many threads. glibc keeps what is
freed inside its heaps (one per thread, up to 8 per core) for reuse, and gives a heap's pages back only from its
top, so on a long run the resident size grows with the holes between live blocks: measured on the demo at 480x360,
the heaps held 500-600 MB free beside 400 MB in use. `malloc_trim(0)` returns every whole free page inside them
(MADV_DONTNEED) without moving anything; the runner calls it about once a second. More often costs time: the pages
it returns are faulted in again when torch reuses its freed working buffers. At five times a second a 480-frame
480x360 clip peaked lower and steadier (751-755 MB against 744-847), but the demo on a 48-frame clip took 41-44 s
against 36-39 s. A fixed mmap threshold would keep pictures out of the heaps too, but it maps and unmaps torch's
working buffers on every call (torch's CPU ops ran 1.8x slower with MALLOC_MMAP_THRESHOLD_=1048576): our own
batches get mappings of their own instead (`mapped_empty`).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import sys

import numpy as np

_libc = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _libc.malloc_trim  # absent outside glibc (musl)
    except (OSError, AttributeError):
        _libc = None


M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)
COMMAND_HEAPS = 2  # heaps for all the threads of a `sg3stream` command


def limit_heaps(count: int = COMMAND_HEAPS) -> bool:
    """At most `count` heaps for all threads from now on (glibc makes up to 8 per core, one per thread that finds
    the others busy, and each keeps its own free space). Called where the command line starts, before any stage
    thread exists: at 480x360 a 480-frame run peaked at 960 MB with two heaps against 1078 MB with glibc's
    default, and ran no slower (the stages allocate few, large blocks: pictures and torch's working buffers). Not
    called for the Python API: an application's allocator is its own business. False where it cannot."""
    if _libc is None:
        return False
    return _libc.mallopt(M_ARENA_MAX, count) == 1


def release_free_heap() -> bool:
    """Give the heaps' free pages back to the system; False where the allocator cannot."""
    if _libc is None:
        return False
    _libc.malloc_trim(0)
    return True


MAPPED_MIN_BYTES = 256 * 1024  # below this an array stays in the heaps (a mapping costs a system call and page faults)


def mapped_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """np.empty, in a mapping of its own when it is large: its pages go back to the system the moment the last view
    of it is gone, instead of leaving a hole in a heap that only `release_free_heap` can return, and only by whole
    pages. For the batches of pictures, crops and renders. glibc's own mmap threshold rises to 32 MiB once torch
    frees a large buffer, so without this they all land in the heaps. Measured at 480x360 (`sg3stream run --edit
    smile`, demo): a 480-frame run peaked at 744 MB with these batches mapped against 828 MB (median of 3) before.
    Fixing glibc's threshold at 256 KiB for every allocation did as much (658 MB), but maps torch's working buffers
    afresh at every call, which slows its CPU ops."""
    return _mapped(shape, dtype, np.empty)


def mapped_zeros(shape: tuple[int, ...], dtype) -> np.ndarray:
    """np.zeros, in a mapping of its own when it is large (see `mapped_empty`; a new mapping reads as zeros)."""
    return _mapped(shape, dtype, np.zeros)


def _mapped(shape: tuple[int, ...], dtype, small) -> np.ndarray:
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes < MAPPED_MIN_BYTES or not hasattr(mmap, "MAP_PRIVATE"):  # Windows' mmap takes no flags
        return small(shape, dtype)
    # private: a worker process forked later must not write into the parent's pictures
    buffer = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return np.frombuffer(buffer, dtype).reshape(shape)
