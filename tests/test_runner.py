"""The runner: order, backpressure, prompt failure with the stage's name, clean stop, no orphan processes."""
import multiprocessing
import threading
import time
from fractions import Fraction

import numpy as np
import pytest

from sg3stream.errors import StageError, UserError
from sg3stream.pipeline.batch import FrameBatch
from sg3stream.pipeline.runner import Interrupted, Pipeline
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
