"""The runner: order, backpressure, prompt failure with the stage's name, clean stop, no orphan processes."""
import multiprocessing
import threading
import time
from fractions import Fraction

import numpy as np
import pytest

from sg3stream.errors import StageError, UserError
from sg3stream.pipeline.batch import FrameBatch
from sg3stream.pipeline.runner import Interrupted, Pipeline, threads_left_running
from sg3stream.pipeline.stage import Stage


def batches(count, size=2, alive=None):
    for i in range(count):
        if alive is not None:
            alive["made"] += 1
        idx = np.arange(i * size, (i + 1) * size)
        yield FrameBatch(np.full((size, 4, 4, 3), i % 256, np.uint8), idx, idx * 10, Fraction(1, 250))


def run_with_deadline(fn, seconds=20):
    """Run fn in a thread; fail the test (instead of hanging) if it does not return in time."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"pipeline still running after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


class AddOne(Stage):
    name = "add-one"

    def __call__(self, batch):
        return batch.replace(frames=batch.frames + 1)


class ProcessAddOne(AddOne):
    name = "add-one-in-process"
    executor = "process"
    processes = 2


class HoldTwo(Stage):
    """Holds batches back and releases them two by two, like a smoothing window."""

    name = "hold"

    def __init__(self):
        self.held = []

    def __call__(self, batch):
        self.held.append(batch)
        if len(self.held) < 2:
            return None
        first = self.held.pop(0)
        return first

    def flush(self):
        out, self.held = self.held, []
        return out


class FailAt(Stage):
    executor = "thread"

    def __init__(self, frame, error=RuntimeError("boom")):
        self.frame, self.error = frame, error
        self.name = "failing"

    def __call__(self, batch):
        if batch.index[0] >= self.frame:
            raise self.error
        return batch


class ProcessFailAt(FailAt):
    executor = "process"
    processes = 2


def test_frames_flow_in_order_through_thread_and_process_stages():
    out = []
    stats = run_with_deadline(lambda: Pipeline(batches(30), [AddOne(), ProcessAddOne(), HoldTwo()], out.append,
                                               queue_size=2).run())
    assert [int(b.index[0]) for b in out] == list(range(0, 60, 2))
    assert all(int(b.frames[0, 0, 0, 0]) == (i % 256) + 2 for i, b in enumerate(out))
    assert [s.name for s in stats] == ["decode", "add-one", "add-one-in-process", "hold", "encode"]
    assert all(s.frames == 60 for s in stats)
    d = stats[1].to_dict()
    assert set(d) >= {"frames_per_s", "busy_fraction", "wait_in_fraction", "wait_out_fraction"}
    assert stats[2].busy_s > 0  # time measured inside the worker processes


@pytest.mark.parametrize("where", ["source", "thread", "process", "sink"])
def test_an_error_anywhere_stops_everything_promptly(where):
    def source():
        for b in batches(10_000):
            if where == "source" and b.index[0] >= 40:
                raise RuntimeError("boom")
            yield b

    stages = [AddOne()]
    if where == "thread":
        stages.append(FailAt(40))
    if where == "process":
        stages.append(ProcessFailAt(40))

    def sink(b):
        if where == "sink" and b.index[0] >= 40:
            raise RuntimeError("boom")

    pipeline = Pipeline(source(), stages, sink, queue_size=2)
    with pytest.raises(StageError) as info:
        run_with_deadline(pipeline.run, 30)
    error = info.value
    expected = {"source": "decode", "thread": "failing", "process": "failing", "sink": "encode"}[where]
    assert error.stage == expected
    assert "boom" in str(error) and expected in str(error)
    if where != "source":
        assert error.frame_range == (40, 41)
    assert not any(w.thread.is_alive() for w in pipeline.workers)
    assert multiprocessing.active_children() == []


def test_user_errors_pass_through_unchanged():
    with pytest.raises(UserError, match="no face"):
        run_with_deadline(Pipeline(batches(5), [FailAt(4, UserError("no face"))], lambda b: None).run)


def test_slow_consumer_keeps_memory_bounded():
    """Backpressure: batches alive at once stay under the queues' bound however long the clip is."""
    queue_size = 2

    def max_in_flight(count):
        alive = {"made": 0}
        seen = []

        def slow_sink(batch):
            seen.append(alive["made"] - int(batch.index[0]) // 2 - 1)
            time.sleep(0.002)

        run_with_deadline(lambda: Pipeline(batches(count, alive=alive), [AddOne(), AddOne()], slow_sink,
                                           queue_size=queue_size).run(), 60)
        return max(seen)

    short, long = max_in_flight(30), max_in_flight(300)
    bound = queue_size * 3 + 4  # three queues plus one batch in each of the four workers
    assert short <= bound and long <= bound


def test_a_blocked_chain_makes_no_picture_batch_it_cannot_pass_on():
    """While the sink is blocked, the source and the stages wait for room before they decode or compute: a batch
    of pictures exists only in a queue or in the worker using it (at 1080p a batch is 50 MB, one more per stage)."""
    alive = {"made": 0}
    release, got_first, received = threading.Event(), threading.Event(), []

    def blocked_sink(batch):
        received.append(int(batch.index[0]))
        got_first.set()
        release.wait(30)

    pipeline = Pipeline(batches(20, alive=alive), [AddOne(), AddOne()], blocked_sink, queue_size=1)
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()
    assert got_first.wait(20)
    made = -1
    while made != alive["made"]:  # until the chain has filled up behind the sink
        made = alive["made"]
        time.sleep(0.5)
    release.set()
    runner.join(30)
    # the sink's batch and one in each of the three queues; before: one more finished batch in each stage and in
    # the source, waiting for room (7)
    assert made == 4, made
    assert received == list(range(0, 40, 2))


def test_stop_ends_a_running_pipeline_and_its_processes():
    def slow_source():
        for b in batches(100_000):
            time.sleep(0.001)
            yield b

    pipeline = Pipeline(slow_source(), [ProcessAddOne()], lambda b: None, queue_size=2)
    threading.Timer(1.5, pipeline.stop).start()
    with pytest.raises(Interrupted):
        run_with_deadline(pipeline.run, 30)
    assert multiprocessing.active_children() == []


def test_frame_batch_replace_copies_data():
    b = next(batches(1))
    b.data["x"] = 1
    c = b.replace()
    c.data["x"] = 2
    assert b.data["x"] == 1 and b.frame_range == (0, 1)


def test_sequential_mode_gives_the_same_frames_and_stats():
    out_seq, out_par = [], []
    stages = lambda: [AddOne(), HoldTwo(), AddOne()]  # noqa: E731
    stats = Pipeline(batches(12), stages(), out_seq.append, sequential=True).run()
    Pipeline(batches(12), stages(), out_par.append).run()
    assert [int(b.index[0]) for b in out_seq] == [int(b.index[0]) for b in out_par] == list(range(0, 24, 2))
    assert all(np.array_equal(a.frames, b.frames) for a, b in zip(out_seq, out_par))
    assert [s.frames for s in stats] == [24] * 5
    assert stats[1].busy_s > 0 and stats[1].wait_in_s == 0  # nothing ever waits: no two stages overlap


def test_sequential_mode_reports_the_failing_stage():
    with pytest.raises(StageError) as info:
        Pipeline(batches(30), [AddOne(), FailAt(20)], lambda b: None, sequential=True).run()
    assert info.value.stage == "failing" and info.value.frame_range == (20, 21)


# --- stops and hangs: a stage busy in a native call, a worker process that stops responding ----------------------

class BlockedStage(Stage):
    """A thread stage that blocks in a native wait (like a long torch op) until the test releases it."""

    name = "invert"

    def __init__(self):
        self.busy = threading.Event()
        self.release = threading.Event()

    def __call__(self, batch):
        self.busy.set()
        self.release.wait()
        return batch


class FailWhenBusy(Stage):
    """Passes batches on until the stage it watches is mid-batch, then raises."""

    name = "landmarks"

    def __init__(self, watched):
        self.watched = watched

    def __call__(self, batch):
        if self.watched.busy.wait(0.2):
            raise RuntimeError("boom")
        return batch


class ProcessStopsItself(Stage):
    """A worker process that stops responding (SIGSTOP to itself) on the batch starting at `frame`."""

    name = "landmarks"
    executor = "process"
    processes = 2

    def __init__(self, frame):
        self.frame = frame

    def __call__(self, batch):
        import os
        import signal

        if batch.index[0] == self.frame:
            os.kill(os.getpid(), signal.SIGSTOP)
        return batch


def endless_slow_source():
    for b in batches(100_000):
        time.sleep(0.01)
        yield b


def stopped_children():
    """Children of this process that are stopped (state T), read from /proc."""
    stopped = []
    for child in multiprocessing.active_children():
        with open(f"/proc/{child.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                stopped.append(child)
    return stopped


@pytest.mark.parametrize("how", ["stop", "error"])
def test_a_stage_busy_in_a_native_call_does_not_hold_up_the_end(how):
    """The runner waits a bounded time for a stage stuck mid-batch, then returns and names the thread it left."""
    blocked = BlockedStage()
    stages = [FailWhenBusy(blocked), blocked] if how == "error" else [AddOne(), blocked]
    pipeline = Pipeline(endless_slow_source(), stages, lambda b: None, queue_size=2)
    if how == "stop":
        threading.Thread(target=lambda: blocked.busy.wait(20) and pipeline.stop(), daemon=True).start()
    try:
        with pytest.raises(StageError if how == "error" else Interrupted) as info:
            run_with_deadline(pipeline.run, 60)
        if how == "error":
            assert info.value.stage == "landmarks"
        left = threads_left_running()
        assert [t.name for t in left] == ["sg3-invert"]
        assert [w.name for w in pipeline.workers if w.thread.is_alive()] == ["invert"]
    finally:
        blocked.release.set()
    left[0].join(20)
    assert threads_left_running() == []


def test_a_stopped_worker_process_fails_the_run_naming_the_stage_and_frames():
    pipeline = Pipeline(endless_slow_source(), [ProcessStopsItself(frame=10)], lambda b: None, queue_size=2,
                        stall_timeout_s=3.0)  # longer than starting the pool
    with pytest.raises(StageError) as info:
        run_with_deadline(pipeline.run, 60)
    error = info.value
    assert error.stage == "landmarks" and error.frame_range == (10, 11)
    assert "no progress" in str(error) and "frames 10-11" in str(error)
    assert multiprocessing.active_children() == []
    assert threads_left_running() == []


def test_a_signal_ends_a_run_whose_worker_process_is_stopped():
    """No watchdog (0 = off): a stop must still end the run and kill the stopped process."""
    pipeline = Pipeline(endless_slow_source(), [ProcessStopsItself(frame=10)], lambda b: None, queue_size=2,
                        stall_timeout_s=0)

    def stop_once_stopped():
        deadline = time.monotonic() + 30
        while not stopped_children() and time.monotonic() < deadline:
            time.sleep(0.05)
        pipeline.stop()

    threading.Thread(target=stop_once_stopped, daemon=True).start()
    with pytest.raises(Interrupted):
        run_with_deadline(pipeline.run, 60)
    assert multiprocessing.active_children() == []


def test_a_thread_stage_that_hangs_fails_the_run():
    blocked = BlockedStage()
    pipeline = Pipeline(batches(20), [AddOne(), blocked], lambda b: None, queue_size=2, stall_timeout_s=0.5)
    try:
        with pytest.raises(StageError) as info:
            run_with_deadline(pipeline.run, 60)
        assert info.value.stage == "invert" and info.value.frame_range == (0, 1)
        assert "no progress" in str(info.value)
    finally:
        blocked.release.set()
    for thread in threads_left_running():
        thread.join(20)
    assert threads_left_running() == []


def test_waiting_on_a_queue_is_not_a_stall():
    """Stages blocked by a slow sink (backpressure) or starved by a slow source make no progress, but are not stuck."""
    def slow_source():
        for b in batches(30):
            time.sleep(0.05)
            yield b

    def slow_sink(batch):
        time.sleep(0.05)

    for source, sink in ((batches(48), slow_sink), (slow_source(), lambda b: None)):
        stats = run_with_deadline(lambda: Pipeline(source, [AddOne(), AddOne()], sink, queue_size=1,
                                                   stall_timeout_s=1.0).run(), 60)
        assert stats[-1].frames > 0
