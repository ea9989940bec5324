"""Freed heap pages go back to the system while a run streams (sg3stream/pipeline/heap.py), and the runner does it."""
import sys
import threading

import numpy as np
import pytest

from sg3stream.pipeline import runner as runner_module
from sg3stream.pipeline.heap import release_free_heap
from sg3stream.pipeline.runner import Pipeline

from test_runner import AddOne, batches

linux_glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or not release_free_heap(),
                                 reason="malloc_trim is glibc's")


def resident_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@linux_glibc
def test_free_pages_between_live_blocks_go_back_to_the_system():
    # What a stage thread leaves behind: many blocks below the mmap threshold, every other one still alive, so
    # the heap cannot shrink from its top. Done in a thread of its own, as the stages are (its own arena).
    kept = []

    def churn():
        blocks = [np.ones(96 * 1024, np.uint8) for _ in range(3000)]  # ~290 MB on the thread's heap
        kept.extend(blocks[::40])
        blocks.clear()

    thread = threading.Thread(target=churn)
    thread.start()
    thread.join()
    before = resident_mb()
    assert release_free_heap()
    after = resident_mb()
    assert before - after > 150, f"resident {before:.0f} MB -> {after:.0f} MB"
    assert all(int(b[0]) == 1 and int(b[-1]) == 1 for b in kept)  # live blocks untouched


def test_the_runner_releases_free_heap_while_it_runs(monkeypatch):
    calls = []
    monkeypatch.setattr(runner_module, "release_free_heap", lambda: calls.append(1) or True)
    monkeypatch.setattr(runner_module, "HEAP_TRIM_S", 0.0)  # at every poll of the main loop
    seen = []
    Pipeline(batches(6), [AddOne()], sink=lambda b: seen.append(int(b.frames[0, 0, 0, 0])), queue_size=1).run()
    assert seen == [1, 2, 3, 4, 5, 6]
    assert calls, "the runner never released the free heap"


def test_the_command_line_limits_the_heaps_before_anything_runs(monkeypatch):
    import sg3stream.cli as cli
    from sg3stream.pipeline import heap

    calls = []
    monkeypatch.setattr(heap, "limit_heaps", lambda count=heap.COMMAND_HEAPS: calls.append(count) or True)
    monkeypatch.setattr(cli, "app", lambda: calls.append("app"))
    cli.main()
    assert calls == [1, "app"]


@linux_glibc
def test_limit_heaps_is_accepted_by_the_allocator():
    from sg3stream.pipeline.heap import limit_heaps

    assert limit_heaps(8)  # glibc's own default for 1 core: harmless in the test process
