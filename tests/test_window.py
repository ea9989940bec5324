"""The hold-back window of the windowed stages (alignment, smoothing)."""
from fractions import Fraction

import numpy as np
import pytest

from sg3stream.pipeline.batch import FrameBatch
from sg3stream.pipeline.window import Window, one_batch


def batch(start, n):
    idx = np.arange(start, start + n)
    return FrameBatch(np.zeros((n, 1, 1, 3), np.uint8), idx, idx * 10, Fraction(1, 25),
                      data={"x": idx.astype(np.float32), "faces": np.zeros((n, 2, 3)), "style": {"a": idx[:, None]},
                            "constant": "kept"})


def test_a_batch_goes_once_after_frames_past_its_last_frame_have_arrived():
    window = Window(after=3)
    assert window.push(batch(100, 2)) == 0  # positions count arrivals, whatever the frame numbers
    assert window.take() == [] and window.frames_held == 2
    assert window.push(batch(102, 2)) == 2
    assert window.take() == []  # frame 101 has only 2 frames after it
    window.push(batch(104, 1))
    out = window.take()
    assert [b.frame_range for b in out] == [(100, 101)] and window.frames_held == 3 and window.released == 2
    window.push(batch(105, 4))  # lets the next two batches go at once
    assert [b.frame_range for b in window.take()] == [(102, 103), (104, 104)]
    assert window.frames_held == 4 and window.batches_held == 1
    assert [b.frame_range for b in window.take(final=True)] == [(105, 108)] and window.frames_held == 0


def test_without_look_ahead_every_batch_goes_at_once():
    window = Window(after=0)
    window.push(batch(0, 3))
    assert len(window.take()) == 1 and window.frames_held == 0
    with pytest.raises(ValueError):
        Window(after=-1)


def test_one_batch_joins_consecutive_batches_along_the_frame_axis():
    assert one_batch([]) is None
    single = batch(0, 2)
    assert one_batch([single]) is single
    joined = one_batch([batch(0, 2), batch(2, 3)])
    assert joined.index.tolist() == list(range(5)) and joined.pts.tolist() == [0, 10, 20, 30, 40]
    assert joined.frames.shape[0] == 5 and joined.data["x"].tolist() == list(range(5))
    assert joined.data["faces"].shape == (5, 2, 3) and joined.data["style"]["a"][:, 0].tolist() == list(range(5))
    assert joined.data["constant"] == "kept"
