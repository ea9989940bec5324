"""FrameReader(start=, stop=): a frame range, seeking near the start, with absolute index numbers and the
stream's own pts (what the farm's segments decode)."""
import logging

import numpy as np
import pytest

from sg3stream.errors import UserError
from sg3stream.synthetic import numbered_frame, write_clip
from sg3stream.video.decode import FrameReader

FRAMES = 70


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """B-frames and a keyframe every 16 frames, variable frame rate: seeking must land on a keyframe and count."""
    pts = [i * 512 + (i // 10) * 100 for i in range(FRAMES)]
    path = tmp_path_factory.mktemp("range") / "in.mp4"
    return write_clip(path, (numbered_frame(i, 64, 48) for i in range(FRAMES)), fps=25, pts=pts,
                      options={"g": "16", "bf": "2"})


def read(path, decoder="pyav", batch_size=4, **range_):
    reader = FrameReader(path, batch_size=batch_size, decoder=decoder, **range_)
    batches = list(reader)
    return (reader, np.concatenate([b.frames for b in batches]), np.concatenate([b.index for b in batches]),
            np.concatenate([b.pts for b in batches]), [len(b) for b in batches])


@pytest.fixture(scope="module")
def whole(clip):
    return read(clip)


@pytest.fixture(scope="module")
def whole_decord(clip):
    return read(clip, "decord")


@pytest.mark.parametrize("decoder", ["pyav", "decord"])
@pytest.mark.parametrize("start,stop", [(0, 9), (17, 41), (16, 32), (33, None), (69, None), (5, 200)])
def test_a_range_is_the_same_frames_as_a_full_read(clip, whole, whole_decord, decoder, start, stop):
    # the same decoder's full read: decord's YUV->RGB rounds differently from PyAV's (by about one code value)
    _, frames, index, pts, _ = whole if decoder == "pyav" else whole_decord
    assert pts.tolist() == whole[3].tolist()
    end = FRAMES if stop is None else min(stop, FRAMES)
    reader, got, got_index, got_pts, _ = read(clip, decoder, start=start, stop=stop)
    assert got_index.tolist() == list(range(start, end))  # absolute numbers
    assert got_pts.tolist() == pts[start:end].tolist()  # the stream's pts, not renumbered
    np.testing.assert_array_equal(got, frames[start:end])  # the same pictures, decoded after a seek
    assert reader.frames_read == end - start


def test_batches_of_a_range_start_at_its_first_frame(clip):
    *_, sizes = read(clip, batch_size=8, start=16, stop=37)
    assert sizes == [8, 8, 5]


def test_a_range_past_the_end_is_a_user_error(clip):
    with pytest.raises(UserError, match="past the end"):
        read(clip, start=FRAMES + 3)
    with pytest.raises(UserError, match="frame range"):
        FrameReader(clip, start=10, stop=10)
    with pytest.raises(UserError, match="frame range"):
        FrameReader(clip, start=-1)


def test_a_stop_past_the_end_reads_to_the_end_and_warns(clip, caplog):
    with caplog.at_level(logging.WARNING, logger="sg3stream"):
        reader, *_ = read(clip, start=60, stop=80)
    assert reader.frames_read == 10 and not reader.complete
    assert "read 10 of the 20 frames 60..79" in caplog.text


def test_frames_without_pts_fall_back_to_counting(clip, whole, monkeypatch):
    """When the seek cannot be matched by pts, the reader decodes from the beginning and drops by count."""
    from sg3stream.video import decode

    monkeypatch.setattr(decode, "packet_pts", lambda path: [p + 1 for p in whole[3].tolist()])  # never matches
    _, got, got_index, got_pts, _ = read(clip, start=21, stop=30)
    np.testing.assert_array_equal(got, whole[1][21:30])
    assert got_index.tolist() == list(range(21, 30)) and got_pts.tolist() == whole[3][21:30].tolist()
