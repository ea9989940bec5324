"""Decoding and encoding keep every frame, its timestamp, the rotation and the audio."""
import errno
import io
import logging
from fractions import Fraction

import av
import numpy as np
import pytest

from sg3stream.errors import UserError
from sg3stream.pipeline.batch import FrameBatch
from sg3stream.synthetic import frame_number, numbered_frame, resized_clip, write_clip
from sg3stream.video.decode import FrameReader, packed_pixels
from sg3stream.video.encode import VideoWriter, check_codec, check_output_path
from sg3stream.video.probe import probe


def read_all(path, decoder="pyav", batch_size=4):
    reader = FrameReader(path, batch_size=batch_size, decoder=decoder)
    batches = list(reader)
    return reader, np.concatenate([b.frames for b in batches]), np.concatenate([b.pts for b in batches])


def pts_seconds(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return sorted(float(f.pts * s.time_base) for f in c.decode(s))


def copy_video(src, dst, **kw):
    reader = FrameReader(src, batch_size=3)
    writer = VideoWriter(dst, time_base=reader.info.time_base, rate=reader.info.fps, audio_from=src, **kw)
    for batch in reader:
        writer.write(batch)
    writer.commit()
    return reader


@pytest.mark.parametrize("decoder", ["pyav", "decord"])
def test_decoders_give_every_frame_in_order_with_pts(tmp_path, decoder):
    clip = write_clip(tmp_path / "in.mp4", (numbered_frame(i, 64, 48) for i in range(23)), fps=25)
    reader, frames, pts = read_all(clip, decoder)
    assert frames.shape == (23, 48, 64, 3) and frames.dtype == np.uint8
    assert [frame_number(f) for f in frames] == [i % 30 for i in range(23)]
    seconds = pts * float(reader.info.time_base)
    np.testing.assert_allclose(seconds - seconds[0], np.arange(23) / 25, atol=1e-3)
    assert reader.complete


def test_decoders_agree(tmp_path):
    clip = write_clip(tmp_path / "in.mp4", (numbered_frame(i, 64, 48) for i in range(10)), audio=None)
    _, a, pa = read_all(clip, "pyav")
    _, b, pb = read_all(clip, "decord")
    assert np.array_equal(pa, pb)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 2


def test_variable_frame_rate_timestamps_survive_a_round_trip(tmp_path):
    pts = [0, 40, 80, 200, 210, 400, 440, 900, 950, 1000]
    clip = write_clip(tmp_path / "vfr.mp4", (numbered_frame(i, 64, 48) for i in range(10)), pts=pts,
                      time_base=Fraction(1, 1000))
    out = tmp_path / "out.mp4"
    copy_video(clip, out)
    np.testing.assert_allclose(pts_seconds(out), np.array(pts) / 1000, atol=1e-3)
    assert pts_seconds(out) == pytest.approx(pts_seconds(clip), abs=1e-6)


@pytest.mark.parametrize("decoder", ["pyav", "decord"])  # decord hands rotated clips to PyAV
def test_rotation_metadata_is_applied(tmp_path, decoder):
    frame = numbered_frame(3, 64, 48)
    frame[:8, :8] = 255  # mark the top-left corner
    clip = write_clip(tmp_path / "rot.mp4", [frame] * 3, rotation=90, audio=None)
    info = probe(clip)
    assert (info.rotation, info.width, info.height) == (90, 48, 64)
    _, frames, _ = read_all(clip, decoder)
    assert frames.shape[1:3] == (64, 48)
    # 90 degrees counter-clockwise: the top-left corner moves to the bottom-left
    assert frames[0, -8:, :8].mean() > 200 and frames[0, :8, :8].mean() < 200


def test_odd_size_round_trip_keeps_size_and_content(tmp_path):
    clip = write_clip(tmp_path / "odd.mkv", (numbered_frame(i, 65, 47) for i in range(8)), pix_fmt="yuv444p")
    out = tmp_path / "odd.mp4"
    copy_video(clip, out)
    _, a, _ = read_all(clip)
    _, b, _ = read_all(out)
    assert b.shape == a.shape == (8, 47, 65, 3)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 3


def audio_packets(path):
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return s.codec_context.name, [bytes(p) for p in c.demux(s) if p.size]


def test_audio_is_copied_bit_exact(tmp_path):
    clip = write_clip(tmp_path / "in.mp4", (numbered_frame(i, 64, 48) for i in range(25)))
    out = tmp_path / "out.mp4"
    copy_video(clip, out)
    assert audio_packets(out) == audio_packets(clip)


def test_audio_the_container_cannot_hold_is_reencoded_to_aac(tmp_path):
    clip = write_clip(tmp_path / "in.mkv", (numbered_frame(i, 64, 48) for i in range(25)), audio="pcm_s16le")
    out = tmp_path / "out.mp4"
    copy_video(clip, out)
    codec, packets = audio_packets(out)
    assert codec == "aac" and packets
    with av.open(str(out)) as c:
        s = c.streams.audio[0]
        assert float(s.duration * s.time_base) == pytest.approx(1.0, abs=0.1)


def test_audio_goes_to_the_containers_own_codec_where_it_takes_no_aac(tmp_path):
    # WebM holds Opus, not AAC; Opus takes 48 kHz, not the tone's 44.1 kHz
    clip = write_clip(tmp_path / "in.mp4", (numbered_frame(i, 64, 48) for i in range(25)))
    out = tmp_path / "out.webm"
    check_codec("libvpx-vp9", out, size=(64, 48), streams_from=clip)
    copy_video(clip, out, codec="libvpx-vp9")
    with av.open(str(out)) as c:
        s = c.streams.audio[0]
        assert s.codec_context.name == "opus"
        assert sum(f.samples for f in c.decode(s)) / s.codec_context.sample_rate == pytest.approx(1.0, abs=0.1)


def test_truncated_file_decodes_what_is_there_and_warns(tmp_path, caplog):
    clip = write_clip(tmp_path / "in.mkv", (numbered_frame(i, 64, 48) for i in range(40)))
    data = clip.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    reader, frames, _ = read_all(cut)
    assert 0 < len(frames) < 40
    assert not reader.complete
    assert any("truncated" in r.getMessage() and str(len(frames)) in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("make", ["missing", "text", "random", "empty"])
def test_unreadable_inputs_are_user_errors(tmp_path, make):
    path = tmp_path / "bad.mp4"
    if make == "text":
        path.write_text("not a video\n" * 100)
    elif make == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    elif make == "empty":
        path.write_bytes(b"")
    with pytest.raises(UserError):
        list(FrameReader(path))


def test_video_with_no_frames_is_a_user_error(tmp_path):
    path = tmp_path / "none.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()
    with pytest.raises(UserError, match="no frames|no video stream"):  # MP4 drops a track with no samples
        list(FrameReader(path))


def test_writer_is_atomic(tmp_path):
    out = tmp_path / "out.mp4"
    writer = VideoWriter(out, time_base=Fraction(1, 25), rate=25)
    batch = FrameBatch(np.stack([numbered_frame(i, 64, 48) for i in range(4)]), np.arange(4), np.arange(4),
                       Fraction(1, 25))
    writer.write(batch)
    assert not out.exists()  # nothing at the output path until commit
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_output_path_checks(tmp_path):
    src = write_clip(tmp_path / "in.mp4", [numbered_frame(0, 64, 48)], audio=None)
    with pytest.raises(UserError, match="is the input"):
        check_output_path(src, src)
    with pytest.raises(UserError, match="does not exist"):
        check_output_path(tmp_path / "nope" / "out.mp4", src)
    with pytest.raises(UserError, match="extension"):
        check_output_path(tmp_path / "out", src)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError):
        check_output_path(tmp_path / "file" / "out.mp4", src)


@pytest.mark.parametrize("name,codec,crf,preset,message", [
    ("out.gif", "libx264", 18, "fast", "gif container .* cannot hold libx264"),
    ("out.webm", "libx264", 18, "fast", "webm container .* cannot hold libx264"),
    ("out.xyz", "libx264", 18, "fast", "no container format for .xyz"),
    ("out.png", "libx264", 18, "fast", "image"),
    ("out.mp4", "libx264", -5, "fast", "--crf .* 0 to 51"),
    ("out.mp4", "libx264", 52, "fast", "--crf .* 0 to 51"),
    ("out.mp4", "libx264", 18, "warpspeed", "cannot encode"),
    ("out.mp4", "nosuchcodec", 18, "fast", "unknown or unavailable video encoder"),
    ("out.mp4", "aac", 18, "fast", "audio encoder"),
])
def test_output_settings_are_refused_before_any_work(tmp_path, name, codec, crf, preset, message):
    with pytest.raises(UserError, match=message):
        check_codec(codec, tmp_path / name, crf=crf, preset=preset, size=(64, 48))
    assert list(tmp_path.iterdir()) == []  # the trial writes nothing beside the output


@pytest.mark.parametrize("name,codec,size", [("out.mp4", "libx264", (65, 47)), ("out.webm", "libvpx-vp9", (64, 48)),
                                             ("out.mkv", "ffv1", (64, 48)), ("out.avi", "mpeg4", (64, 48)),
                                             ("out.mov", "libx264", (64, 48))])
def test_output_settings_that_work_pass_the_check(tmp_path, name, codec, size):
    check_codec(codec, tmp_path / name, crf=18, preset="fast", size=size)
    assert list(tmp_path.iterdir()) == []


def test_the_output_is_checked_before_the_models_load(tmp_path, monkeypatch):
    """`run` with an output it cannot write fails in the up-front check, not at the first encode."""
    from sg3stream import job
    from sg3stream.report import Reporter

    def no_models(*args, **kwargs):
        raise AssertionError("the models were loaded before the output was checked")

    monkeypatch.setattr(job, "load_parts", no_models)
    clip = write_clip(tmp_path / "in.mp4", (numbered_frame(i, 64, 48) for i in range(3)), audio=None)
    with pytest.raises(UserError, match="gif container"):
        job.run_video(job.RunOptions(input=clip, output=tmp_path / "out.gif"), Reporter())


class FullDisk(io.FileIO):
    """A file whose writes fail with ENOSPC once `full` is set: a disk that fills while the index is written."""
    full = False

    def write(self, data):
        if FullDisk.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def test_a_full_disk_at_the_end_is_a_user_error_and_leaves_nothing(tmp_path, monkeypatch):
    real_open = av.open

    def open_on_a_full_disk(file, mode="r", **kwargs):
        if mode == "w" and isinstance(file, str):  # the writer's output file; trials in memory are left alone
            return real_open(FullDisk(file, "w+b"), mode, **kwargs)
        return real_open(file, mode, **kwargs)

    monkeypatch.setattr(av, "open", open_on_a_full_disk)
    monkeypatch.setattr(FullDisk, "full", False)
    clip = write_clip(tmp_path / "in.mp4", (numbered_frame(i, 64, 48) for i in range(10)))
    out = tmp_path / "out.mp4"
    reader = FrameReader(clip, batch_size=4)
    writer = VideoWriter(out, time_base=reader.info.time_base, rate=reader.info.fps, audio_from=clip)
    for batch in reader:
        writer.write(batch)
    FullDisk.full = True  # MP4 writes its index (moov) at the end
    with pytest.raises(UserError, match=f"could not write {out}: No space left on device"):
        writer.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


@pytest.mark.parametrize("decoder", ["pyav", "decord"])
@pytest.mark.parametrize("batch_size", [4, 3])  # the new size starts a batch, or comes in the middle of one
def test_a_frame_size_change_is_an_error_naming_the_frame(tmp_path, decoder, batch_size):
    clip = resized_clip(tmp_path / "in.ts", [(64, 48, 8), (32, 24, 4)])
    reader = FrameReader(clip, batch_size=batch_size, decoder=decoder)
    read = []
    with pytest.raises(UserError, match="frame 8 is 32x24, frame 0 was 64x48: sg3stream needs one frame size"):
        for batch in reader:
            read.extend(batch.index.tolist())
    assert read == list(range(len(read))) and len(read) <= 8  # every frame before it, none after


def test_the_writer_refuses_frames_of_another_size(tmp_path):
    writer = VideoWriter(tmp_path / "out.mp4", time_base=Fraction(1, 25), rate=25)
    first = FrameBatch(np.stack([numbered_frame(i, 64, 48) for i in range(2)]), np.arange(2), np.arange(2),
                       Fraction(1, 25))
    smaller = FrameBatch(np.stack([numbered_frame(i, 32, 24) for i in range(2)]), np.arange(2, 4), np.arange(2, 4),
                         Fraction(1, 25))
    writer.write(first)
    with pytest.raises(UserError, match="frames 2-3 are 32x24, the output is 64x48"):
        writer.write(smaller)
    writer.abort()


def test_audio_that_outlasts_the_video_is_not_a_truncated_file(tmp_path, caplog):
    clip = write_clip(tmp_path / "in.mkv", (numbered_frame(i, 64, 48) for i in range(25)), audio_seconds=3.0)
    with caplog.at_level(logging.WARNING, logger="sg3stream"):
        reader, frames, _ = read_all(clip)
    assert len(frames) == 25 and reader.complete and "truncated" not in caplog.text
    assert reader.info.duration == pytest.approx(1.0, abs=0.05)  # the video's own duration, not the audio's


@pytest.mark.parametrize("name", ["out.mp4", "out.mkv"])
def test_container_metadata_is_written(tmp_path, name):
    out = tmp_path / name
    tags = {"comment": "made by a test", "sg3stream_demo": "a key MP4 does not know"}
    writer = VideoWriter(out, time_base=Fraction(1, 25), rate=25, metadata=tags)
    writer.write(FrameBatch(np.stack([numbered_frame(0, 64, 48)]), np.arange(1), np.arange(1), Fraction(1, 25)))
    writer.commit()
    with av.open(str(out)) as c:
        written = {k.lower(): v for k, v in c.metadata.items()}  # Matroska reads its tags back in capitals
    assert written["comment"] == tags["comment"] and written["sg3stream_demo"] == tags["sg3stream_demo"]


def test_auto_codec_is_libx264_without_an_nvidia_gpu(monkeypatch):
    import torch

    from sg3stream.video.encode import resolve_codec

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_codec("auto") == "libx264"
    assert resolve_codec("libx265") == "libx265"


def test_auto_codec_falls_back_to_libx264_when_the_nvenc_trial_fails(monkeypatch, caplog):
    # Pretend torch sees a GPU: the trial encode with h264_nvenc then really runs, and fails here (no NVIDIA
    # driver), so "auto" must pick libx264 and say why.
    import torch

    import sg3stream.video.encode as encode

    if torch.cuda.is_available():
        pytest.skip("a real GPU: NVENC may work here")
    tried = []
    real_trial = encode._encoder_opens
    monkeypatch.setattr(encode, "_encoder_opens", lambda codec: tried.append(codec) or real_trial(codec))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with caplog.at_level(logging.INFO, logger="sg3stream"):
        assert encode.resolve_codec("auto") == "libx264"
    assert tried == ["h264_nvenc"]
    assert "h264_nvenc cannot encode here" in caplog.text and "libx264" in caplog.text


@pytest.mark.parametrize("decoder", ["pyav", "decord"])
def test_hardware_decoding_falls_back_to_the_cpu_when_the_gpu_cannot_decode(tmp_path, monkeypatch, caplog, decoder):
    # Pretend torch sees a GPU: the trial decode on NVDEC / decord's GPU context then really runs, and fails here
    # (no driver), so "auto" must give the CPU decoder's frames and say why; "cuda" must be a clear error.
    import sg3stream.video.decode as decode

    clip = write_clip(tmp_path / "in.mp4", (numbered_frame(i, 64, 48) for i in range(6)), audio=None)
    _, expected, expected_pts = read_all(clip, decoder)
    monkeypatch.setattr(decode, "cuda_present", lambda: True)
    reader = FrameReader(clip, batch_size=4, decoder=decoder, hwdec="auto")
    with caplog.at_level("INFO", logger="sg3stream"):
        batches = list(reader)
    assert reader.hw_decoding is False
    assert np.array_equal(np.concatenate([b.frames for b in batches]), expected)
    assert np.array_equal(np.concatenate([b.pts for b in batches]), expected_pts)
    assert "decoding on the CPU" in caplog.text
    with pytest.raises(UserError, match="--hwdec cuda"):
        list(FrameReader(clip, decoder=decoder, hwdec="cuda"))


def test_hardware_decoding_is_not_tried_without_a_gpu(tmp_path, monkeypatch):
    import sg3stream.video.decode as decode

    clip = write_clip(tmp_path / "in.mp4", (numbered_frame(i, 64, 48) for i in range(3)), audio=None)
    monkeypatch.setattr(decode, "cuda_present", lambda: False)
    reader = FrameReader(clip, hwdec="auto")
    list(reader)
    assert reader.hw_decoding is False
    with pytest.raises(UserError, match="no CUDA device"):
        list(FrameReader(clip, hwdec="cuda"))
    with pytest.raises(UserError, match="unknown hardware decoding mode"):
        FrameReader(clip, hwdec="nvdec")


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_decoding_gives_the_cpu_decoders_frames(tmp_path):
    clip = write_clip(tmp_path / "in.mp4", (numbered_frame(i, 256, 144) for i in range(12)), audio=None)
    _, expected, expected_pts = read_all(clip, "pyav")
    reader = FrameReader(clip, batch_size=4, hwdec="auto")
    batches = list(reader)
    assert reader.hw_decoding is True  # a silent fallback to the CPU decoder must not pass
    frames = np.concatenate([b.frames for b in batches])
    assert np.array_equal(np.concatenate([b.pts for b in batches]), expected_pts)
    assert np.abs(frames.astype(int) - expected.astype(int)).mean() < 1


def test_a_decoded_picture_is_read_from_the_frame_without_a_copy_and_equals_to_ndarray():
    source = av.VideoFrame.from_ndarray(np.random.default_rng(0).integers(0, 256, (49, 65, 3), np.uint8), "rgb24")
    for fmt in ("rgb24", "rgb48le"):  # an odd width: FFmpeg pads each row, the view must skip the padding
        frame = source.reformat(format=fmt)
        view = packed_pixels(frame)
        assert view.shape == (49, 65, 3) and np.array_equal(view, frame.to_ndarray())
        assert not view.flags.owndata  # a view of the frame's own buffer
