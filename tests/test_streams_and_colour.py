"""What the output keeps besides the pictures: the colour (matrix, range and tags), the audio and subtitle streams
with their languages and titles, data streams; and what probe says about them."""
import logging
from fractions import Fraction

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from sg3stream.cli import app
from sg3stream.synthetic import bar_centres, bars_yuv, colour_bars_clip, multi_stream_clip, numbered_frame
from sg3stream.video.decode import FrameReader
from sg3stream.video.encode import VideoWriter
from sg3stream.video.probe import probe

BT709 = {"range": "tv", "primaries": "bt709", "transfer": "bt709", "matrix": "bt709"}


def copy_video(src, dst, decoder="pyav"):
    reader = FrameReader(src, batch_size=2, decoder=decoder)
    writer = VideoWriter(dst, time_base=reader.info.time_base, rate=reader.info.fps, audio_from=src,
                         colour=reader.info.colour)
    for batch in reader:
        writer.write(batch)
    writer.commit()


def yuv_at_bars(path) -> np.ndarray:
    """Y, Cb, Cr of the first frame at each bar's centre, read from the file's planes (no conversion): (8, 3)."""
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        assert frame.format.name in ("yuv420p", "yuvj420p")
        w, h = frame.width, frame.height
        planes = frame.to_ndarray()
    y = planes[:h]
    cb = planes[h:h + h // 4].reshape(h // 2, w // 2)
    cr = planes[h + h // 4:].reshape(h // 2, w // 2)
    return np.array([[y[h // 2, x], cb[h // 4, x // 2], cr[h // 4, x // 2]] for x in bar_centres(w)], int)


def rgb_at_bars(frame: np.ndarray) -> np.ndarray:
    h = frame.shape[0]
    return np.array([frame[h // 2, x] for x in bar_centres(frame.shape[1])], int)


def test_bt709_bars_through_passthrough_keep_their_values_and_tags(tmp_path):
    clip = colour_bars_clip(tmp_path / "bars.mp4", 320, 180)
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(app, ["run", "--passthrough", str(clip), "-o", str(out)])
    assert result.exit_code == 0, result.output
    got, want = yuv_at_bars(out), yuv_at_bars(clip)
    assert np.array_equal(want, bars_yuv("bt709"))
    print("in ", want.tolist(), "\nout", got.tolist())
    assert np.abs(got - want).max() <= 2
    assert probe(out).colour_tags == probe(clip).colour_tags == BT709


@pytest.mark.parametrize("size,matrix,tagged,full_range,expect", [
    ((1280, 720), "bt709", False, False, BT709),  # untagged HD: BT.709, as players assume
    ((320, 240), "smpte170m", False, False,
     {"range": "tv", "primaries": "smpte170m", "transfer": "smpte170m", "matrix": "smpte170m"}),  # untagged SD
    ((320, 240), "smpte170m", True, True,
     {"range": "pc", "primaries": "smpte170m", "transfer": "smpte170m", "matrix": "smpte170m"}),  # full range
])
def test_colour_is_read_and_written_with_the_inputs_matrix_and_range(tmp_path, size, matrix, tagged, full_range,
                                                                      expect):
    clip = colour_bars_clip(tmp_path / "bars.mkv", *size, frames=2, matrix=matrix, tagged=tagged,
                            full_range=full_range)
    out = tmp_path / "out.mp4"
    copy_video(clip, out)
    assert np.abs(yuv_at_bars(out) - bars_yuv(matrix, full_range)).max() <= 2
    assert probe(out).colour_tags == expect  # tagged explicitly, whatever the input said


def test_a_pass_through_does_not_shift_the_levels(tmp_path):
    # FFmpeg's fast YUV->RGB path darkens by about 0.7 code values on average: every pass-through would.
    from sg3stream.synthetic import face_frames, write_clip

    clip = write_clip(tmp_path / "in.mkv", face_frames(2, 320, 240), audio=None, options={"qp": "0"})
    out = tmp_path / "out.mkv"
    copy_video(clip, out)

    def planes(path):
        with av.open(str(path)) as c:
            return next(c.decode(video=0)).to_ndarray().astype(float)

    shift = planes(out).mean() - planes(clip).mean()
    assert abs(shift) < 0.2, shift


@pytest.mark.parametrize("tagged", [True, False])
def test_decoders_agree_on_the_colours_of_an_hd_clip(tmp_path, caplog, tagged):
    # decord reads untagged video as BT.601, whatever its size: such clips go to PyAV, with a warning.
    clip = colour_bars_clip(tmp_path / "bars.mp4", 1280, 720, frames=2, tagged=tagged)
    frames = {}
    with caplog.at_level(logging.WARNING, logger="sg3stream"):
        for decoder in ("pyav", "decord"):
            frames[decoder] = rgb_at_bars(next(iter(FrameReader(clip, decoder=decoder))).frames[0])
    assert np.abs(frames["pyav"] - frames["decord"]).max() <= 3  # decord's conversion rounds less accurately
    assert np.abs(frames["pyav"][-1] - [255, 0, 0]).max() <= 1  # full red is red, not BT.601's orange-red
    assert ("decoding with PyAV" in caplog.text) == (not tagged)


def test_probe_reports_the_colour_tags_and_what_is_assumed(tmp_path):
    tagged = probe(colour_bars_clip(tmp_path / "tagged.mp4", 64, 48, frames=1))
    assert tagged.colour_tags == tagged.colour == BT709
    untagged = probe(colour_bars_clip(tmp_path / "hd.mp4", 1280, 720, frames=1, tagged=False))
    assert untagged.colour_tags == dict.fromkeys(BT709, "unknown")
    assert untagged.colour == BT709
    video = next(s for s in tagged.streams if s.type == "video")
    assert video.extra["matrix"] == "bt709" and video.extra["range"] == "tv"
    result = CliRunner().invoke(app, ["probe", str(tmp_path / "tagged.mp4")])
    assert result.exit_code == 0 and "matrix=bt709" in result.output


def stream_summary(path):
    with av.open(str(path)) as c:
        return [(s.type, s.codec_context.name if s.codec_context else None, s.metadata.get("language"),
                 s.metadata.get("title")) for s in c.streams]


def subtitle_packets(path):
    with av.open(str(path)) as c:
        s = c.streams.subtitles[0]
        return [(float(p.pts * p.time_base), bytes(p)) for p in c.demux(s) if p.size]


def test_subtitles_and_the_audio_languages_are_kept(tmp_path):
    clip = multi_stream_clip(tmp_path / "in.mkv")
    out = tmp_path / "out.mkv"
    copy_video(clip, out)
    assert stream_summary(out) == stream_summary(clip) == [
        ("video", "h264", None, None), ("audio", "aac", "eng", "eng audio"), ("audio", "aac", "fra", "fra audio"),
        ("subtitle", "srt", "fra", "fra subtitles")]
    assert subtitle_packets(out) == subtitle_packets(clip) == [(0.1, b"Hello"), (0.5, b"Bonjour")]


def test_subtitles_the_container_cannot_hold_are_dropped_with_a_warning(tmp_path, caplog):
    clip = multi_stream_clip(tmp_path / "in.mkv")
    out = tmp_path / "out.mp4"
    with caplog.at_level(logging.WARNING, logger="sg3stream"):
        copy_video(clip, out)
    assert [s[:3] for s in stream_summary(out)] == [("video", "h264", "und"), ("audio", "aac", "eng"),
                                                    ("audio", "aac", "fra")]
    assert "subtitle stream 3 (srt, fra) cannot go into mp4" in caplog.text


def data_clip(path):
    """MPEG-TS with a KLV data stream (as drones and broadcast cameras write metadata)."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        data = out.add_data_stream("klv")
        tick = Fraction(1, 90000)
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(numbered_frame(i, 64, 48), format="rgb24")
            frame.pts, frame.time_base = i * 3600, tick
            for packet in video.encode(frame):
                out.mux(packet)
            if i % 5 == 0:
                packet = av.Packet(b"\x06\x0e\x2b\x34" + bytes([i]) * 12)
                packet.stream, packet.time_base = data, tick
                packet.pts = packet.dts = i * 3600
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
    return path


def test_data_streams_are_copied_where_the_container_holds_them(tmp_path, caplog):
    clip = data_clip(tmp_path / "in.ts")

    def data_packets(path):
        with av.open(str(path)) as c:
            return [bytes(p) for p in c.demux(c.streams.data[0]) if p.size] if c.streams.data else None

    copy_video(clip, tmp_path / "out.ts")
    assert data_packets(tmp_path / "out.ts") == data_packets(clip) and len(data_packets(clip)) == 2
    with caplog.at_level(logging.WARNING, logger="sg3stream"):
        copy_video(clip, tmp_path / "out.mkv")
    assert data_packets(tmp_path / "out.mkv") is None
    assert "data stream 1 (klv) cannot go into matroska" in caplog.text
