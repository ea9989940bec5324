"""Freed heap pages go back to the operating system while a run streams (glibc's allocator; elsewhere a no-op).

The stages allocate and free pictures, crops and torch's working buffers from many threads. glibc keeps what is
freed inside its heaps (one per thread, up to 8 per core) for reuse, and gives a heap's pages back only from its
top, so on a long run the resident size grows with the holes between live blocks: measured on the demo at 480x360,
the heaps held 500-600 MB free beside 400 MB in use. `malloc_trim(0)` returns every whole free page inside them
(MADV_DONTNEED) without moving anything; called about once a second it costs a few milliseconds. A fixed mmap
threshold would keep pictures out of the heaps too, but it maps and unmaps torch's working buffers on every call
(torch's CPU ops ran 1.8x slower with MALLOC_MMAP_THRESHOLD_=1048576).

Tried and not kept (README, memory step 8): trimming five times a second (the pages it returns are faulted in again
when torch reuses its freed buffers: the demo ran 13% slower), and the batches of pictures, crops and renders in
anonymous mappings of their own (the peaks moved within their run-to-run noise); step 9: every model call on one
thread (within the noise) and jemalloc through LD_PRELOAD (x1.13 between 48 and 480 frames, but the 480-frame run
took 429 s against 300-345 s).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

_libc = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _libc.malloc_trim  # absent outside glibc (musl)
    except (OSError, AttributeError):
        _libc = None


M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)
COMMAND_HEAPS = 1  # heaps for all the threads of a `sg3stream` command


def limit_heaps(count: int = COMMAND_HEAPS) -> bool:
    """At most `count` heaps for all threads from now on (glibc makes up to 8 per core, one per thread that finds
    the others busy, and each keeps its own free space). Called where the command line starts, before any stage
    thread exists: at 480x360 a 480-frame run peaked at 960 MB with two heaps against 1078 MB with glibc's
    default, and ran no slower (the stages allocate few, large blocks: pictures and torch's working buffers).

    One heap, not two: with two, the inversion's and the renderer's threads can land on different heaps, each
    keeping a model call's freed working buffers (about 150 MB on the demo) until the next trim, and which way a run
    goes is chance: 480-frame runs at 480x360 peaked at 753-773 MB or at 848-858 MB. With one heap, every call can
    reuse what the last one freed: six runs at 730-754 MB; perhaps 5% slower there, no slower at 1080p (README,
    memory step 10). Not called for the Python API: an application's allocator is its own business. False where
    it cannot."""
    if _libc is None:
        return False
    return _libc.mallopt(M_ARENA_MAX, count) == 1


def release_free_heap() -> bool:
    """Give the heaps' free pages back to the system; False where the allocator cannot."""
    if _libc is None:
        return False
    _libc.malloc_trim(0)
    return True
