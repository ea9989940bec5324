"""The chain's contract: every key read is written upstream, keys go after their last reader, context adds up."""
import time

import numpy as np
import pytest

from sg3stream.pipeline.batch import FrameBatch
from sg3stream.pipeline.contract import Chain, ChainError, Key, batch_bytes, drop_keys
from sg3stream.pipeline.runner import Pipeline
from sg3stream.pipeline.stage import Stage


def stage(name, reads=(), writes=(), before=0, after=0):
    cls = type(name, (Stage,), {"name": name, "reads": tuple(reads), "writes": tuple(Key(k) for k in writes),
                                "context_before": before, "context_after": after})
    return cls()


def test_a_key_read_before_any_stage_writes_it_fails_naming_the_stage_and_the_key():
    with pytest.raises(ChainError, match="stage 'paste' reads 'landmarks', which no stage before it writes"):
        Chain([stage("align", ["frames"], ["quad"]), stage("paste", ["frames", "quad", "landmarks"], ["frames"])])
    with pytest.raises(ChainError, match="stage 'encode' reads 'render'"):
        Chain([stage("align", ["frames"], ["quad"])], sink_reads=["frames", "render"])


def test_a_key_written_after_its_reader_does_not_count():
    with pytest.raises(ChainError, match="'b' reads 'x'"):
        Chain([stage("b", ["x"], ["y"]), stage("a", [], ["x"])])


def test_each_key_is_dropped_after_its_last_reader():
    chain = Chain([stage("landmarks", ["frames"], ["landmarks"]),
                   stage("align", ["frames", "landmarks"], ["aligned", "quad", "unused"]),
                   stage("invert", ["aligned"], ["latents"]),
                   stage("render", ["latents"], ["render"]),
                   stage("paste", ["frames", "render", "quad"], ["frames"])])
    drops = {link.name: link.drops for link in chain.links}
    assert drops == {"landmarks": (), "align": ("landmarks", "unused"), "invert": ("aligned",),
                     "render": ("latents",), "paste": ("quad", "render")}


def test_what_the_sink_reads_is_kept_and_context_adds_up():
    chain = Chain([stage("align", ["frames"], ["crop"], before=18, after=18),
                   stage("smooth", ["crop"], ["latents_smoothed"], before=60, after=60)],
                  sink_reads=["crop", "latents_smoothed"], sink_name="collect")
    assert [link.drops for link in chain.links] == [("frames",), ()]  # the sink reads no picture
    assert chain.context == (78, 78)
    assert chain.table()[1] == {"stage": "smooth", "reads": ["crop"], "writes": {"latents_smoothed": "[N, F] float32"},
                                "drops": [], "context": [60, 60]}


def test_drop_keys_copies_the_batch_and_batch_bytes_counts_frames_and_data():
    batch = FrameBatch(frames=np.zeros((2, 4, 4, 3), np.uint8), index=np.arange(2), pts=np.arange(2), time_base=1,
                       data={"a": np.zeros((2, 10), np.float32), "b": {"layer": np.zeros((2, 5), np.float64)}})
    assert batch_bytes(batch) == 96 + 80 + 80
    dropped = drop_keys(batch, ["a", "missing"])
    assert set(dropped.data) == {"b"} and set(batch.data) == {"a", "b"}
    assert drop_keys(batch, ["missing"]) is batch


def source(count, size=4, pixels=8):
    for start in range(0, count, size):
        n = min(size, count - start)
        yield FrameBatch(frames=np.zeros((n, pixels, pixels, 3), np.uint8), index=np.arange(start, start + n),
                         pts=np.arange(start, start + n), time_base=1)


class Writes(Stage):
    def __init__(self, name, key, reads=(), width=100):
        self.name, self.key, self.reads, self.width = name, key, tuple(reads), width
        self.writes = (Key(key, (width,), "float32", per_face=False),)
        self.seen: list[set] = []

    def __call__(self, batch):
        self.seen.append(set(batch.data))
        out = batch.replace()
        out.data[self.key] = np.zeros((len(batch), self.width), np.float32)
        return out


class Holds(Stage):
    """Holds `frames` frames back, as a windowed stage does."""

    name = "hold"

    def __init__(self, frames):
        self.context_after = frames
        self.held = []

    def __call__(self, batch):
        self.held.append(batch)
        if sum(len(b) for b in self.held) - len(self.held[0]) >= self.context_after:
            return self.held.pop(0)
        return None

    def flush(self):
        out, self.held = self.held, []
        return out


def test_the_runner_drops_each_key_after_its_last_reader_and_measures_what_flows():
    a, b, c = Writes("a", "big", width=1000), Writes("b", "small", reads=["big"], width=10), Writes("c", "x", ["small"])
    received = []
    pipeline = Pipeline(source(16), Chain([a, b, c], sink_reads=["frames"]), received.append, queue_size=1)
    pipeline.run()
    assert c.seen == [{"small"}] * 4  # 'big' went after b, its last reader
    assert all(set(batch.data) == set() for batch in received)  # nothing rides to the sink that it does not read
    sizes = pipeline.memory()["bytes_per_frame_after"]
    assert sizes == {"decode": 192, "a": 192 + 4000, "b": 192 + 40, "c": 192}


@pytest.mark.parametrize("budget", [8, 12, 20])
def test_frames_in_flight_stay_within_the_budget_even_behind_a_window(budget):
    received = []

    def slow_sink(batch):
        time.sleep(0.002)
        received.append(batch)

    pipeline = Pipeline(source(64), [Holds(4), Writes("w", "k")], slow_sink, queue_size=8,
                        max_frames_in_flight=budget)
    pipeline.run()
    assert np.concatenate([b.index for b in received]).tolist() == list(range(64))
    assert 4 < pipeline.peak_frames_in_flight <= budget


def test_without_a_budget_the_queues_fill():
    pipeline = Pipeline(source(64), [Holds(4), Writes("w", "k")], lambda b: time.sleep(0.002), queue_size=8)
    pipeline.run()
    assert pipeline.peak_frames_in_flight > 20


def test_the_picture_goes_after_its_last_reader_when_a_later_stage_decodes_it_again():
    chain = Chain([stage("landmarks", ["frames"], ["landmarks"]), stage("align", ["frames", "landmarks"], ["crop"]),
                   stage("smooth", ["crop"], ["latents"]), stage("redecode", [], ["frames"]),
                   stage("paste", ["frames", "latents"], ["frames"])])
    assert {link.name: link.drops for link in chain.links} == {
        "landmarks": (), "align": ("frames", "landmarks"), "smooth": ("crop",), "redecode": (), "paste": ("latents",)}
    batch = FrameBatch(frames=np.zeros((2, 4, 4, 3), np.uint8), index=np.arange(2), pts=np.arange(2), time_base=1)
    assert drop_keys(batch, ["frames"]).frames is None and batch.frames is not None
    # without a sink that reads it, the picture goes after its last reader (PTI's first pass)
    chain = Chain([stage("align", ["frames"], ["crop"]), stage("smooth", ["crop"], ["latents"])],
                  sink_reads=["crop", "latents"])
    assert chain.links[0].drops == ("frames",)


def test_a_stage_that_holds_more_than_it_declares_does_not_stall_the_budget():
    """Holds 20 frames but declares none: the budget of 8 stretches rather than leave every stage waiting."""
    received = []

    class Undeclared(Holds):
        context_after = 0

        def __call__(self, batch):
            self.held.append(batch)
            return self.held.pop(0) if sum(len(b) for b in self.held) - len(self.held[0]) >= 20 else None

    pipeline = Pipeline(source(64), [Undeclared(0)], received.append, queue_size=2, max_frames_in_flight=8)
    pipeline.run()
    assert np.concatenate([b.index for b in received]).tolist() == list(range(64))


def test_queues_that_carry_the_pictures_can_be_shorter():
    chain = Chain([stage("align", ["frames"], ["crop"]), stage("smooth", ["crop"], ["latents"]),
                   stage("redecode", [], ["frames"]), stage("paste", ["frames", "latents"], ["frames"])])
    assert chain.pictures_flow() == [True, False, False, True, True]
    chain.picture_queue_size = 1
    pipeline = Pipeline(source(8), chain, lambda batch: None, queue_size=4)
    assert [q.maxsize for q in pipeline.queues] == [1, 4, 4, 1, 1]
