"""Every decoder runs a fixed, small number of threads, whatever the machine's core count.

The chain decodes its input two or three times at once (the landmarks, the crops, the paste), and each of FFmpeg's
frame threads holds a picture or two of its own outside the chain's frame budget: with FFmpeg's own choice (one
thread per core plus one, up to 16) three 4K decoders on a 16-core machine would hold about a hundred pictures.
"""
import contextlib

import pytest

import sg3stream.video.decode as decode
from sg3stream.synthetic import numbered_frame, write_clip
from sg3stream.video.decode import DECODER_THREADS, FrameReader


def test_the_pyav_decoder_runs_decoder_threads_threads(tmp_path, monkeypatch):
    clip = write_clip(tmp_path / "in.mp4", (numbered_frame(i, 64, 48) for i in range(12)), audio=None)
    seen = []
    real_open = decode.open_input

    @contextlib.contextmanager
    def recording_open(*args, **kwargs):
        with real_open(*args, **kwargs) as container:
            yield container
            seen.append(container.streams.video[0].codec_context.thread_count)

    monkeypatch.setattr(decode, "open_input", recording_open)
    frames = sum(len(b) for b in FrameReader(clip, batch_size=4, hwdec="none"))
    assert frames == 12
    assert seen == [DECODER_THREADS] and 1 <= DECODER_THREADS <= 4


def test_the_decord_decoder_runs_decoder_threads_threads(tmp_path, monkeypatch):
    decord = pytest.importorskip("decord")
    clip = write_clip(tmp_path / "in.mp4", (numbered_frame(i, 64, 48) for i in range(12)), audio=None)
    threads = []
    real_reader = decord.VideoReader

    def recording_reader(*args, **kwargs):
        threads.append(kwargs.get("num_threads", 0))  # decord's default, 0, is one thread per core
        return real_reader(*args, **kwargs)

    monkeypatch.setattr(decord, "VideoReader", recording_reader)
    frames = sum(len(b) for b in FrameReader(clip, batch_size=4, decoder="decord", hwdec="none"))
    assert frames == 12
    assert threads == [DECODER_THREADS]
