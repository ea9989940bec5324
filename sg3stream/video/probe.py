"""What a video file holds: streams, codec, size, rate, frame count, duration, rotation and colour."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from ..errors import UserError
from . import colour as colours


@dataclass
class StreamInfo:
    index: int
    type: str
    codec: str
    extra: dict = field(default_factory=dict)


@dataclass
class VideoInfo:
    path: str
    format: str
    streams: list[StreamInfo]
    video_index: int
    codec: str
    width: int          # as displayed, i.e. after rotation
    height: int
    fps: float          # average frame rate (the stream may be variable-rate)
    frames: int | None  # from the container header; None when the container does not say
    duration: float | None
    rotation: int       # degrees counter-clockwise that the display matrix asks for (0, 90, 180, 270)
    time_base: Fraction
    # range, primaries, transfer, matrix: as the file tags them ("unknown" where it does not), and as they are
    # read and written (the tags, with what players assume for the unknown ones: sg3stream/video/colour.py)
    colour_tags: dict = field(default_factory=dict)
    colour: dict = field(default_factory=dict)
    pix_fmt: str | None = None  # the decoder's pixel format ("yuv420p10le"); for a sequence, its pictures' ("rgb48le")
    bits: int = 8                # bits per component: what an output keeps where it can
    sequence: Any = None         # the `Sequence` (sequence.py) of an image-sequence input; None for a file
    timecode: str | None = None  # the start timecode ("01:00:00:00") the container or the video stream gives

    def to_dict(self) -> dict:
        d = asdict(self)
        d["time_base"] = str(self.time_base)
        d["sequence"] = self.sequence.pattern if self.sequence is not None else None
        return d


def sequence_rate(fps: float) -> Fraction:
    """--fps as an exact rate: 23.976 and 29.97 are NTSC's 24000/1001 and 30000/1001."""
    for base in (24, 30, 48, 60, 120):
        if abs(fps - base * 1000 / 1001) < 0.002:
            return Fraction(base * 1000, 1001)
    return Fraction(fps).limit_denominator(1001)


def probe_sequence(path, fps: float | None, allow_gaps: bool = True) -> VideoInfo:
    """What an image sequence holds: its first picture's size and depth, its count, and the rate --fps gives."""
    from .sequence import check_gaps, find_sequence, image_format, read_image

    sequence = find_sequence(path)
    check_gaps(sequence, allow_gaps)
    if not fps or fps <= 0:
        raise UserError(f"{path} is an image sequence, which has no frame rate: give it with --fps (e.g. --fps 24)")
    rate = sequence_rate(float(fps))
    first = read_image(sequence.path(sequence.numbers[0]))
    h, w = first.shape[:2]
    pix_fmt = image_format(sequence.path(sequence.numbers[0]))
    bits = max(c.bits for c in av.VideoFormat(pix_fmt).components)  # the file's: 10 for a 10-bit DPX
    # RGB pictures: no matrix; PNG/TIFF/DPX are display-encoded (sRGB), EXR scene-linear
    tags = {"range": "unknown", "primaries": "bt709", "matrix": "gbr",
            "transfer": "linear" if sequence.codec == "exr" else "iec61966-2-1"}
    count = len(sequence.numbers)
    return VideoInfo(
        path=str(path), format="image-sequence",
        streams=[StreamInfo(0, "video", sequence.codec, {"width": w, "height": h})],
        video_index=0, codec=sequence.codec, width=w, height=h, fps=float(rate), frames=count,
        duration=float((sequence.numbers[-1] - sequence.numbers[0] + 1) / rate), rotation=0,
        time_base=1 / rate, colour_tags=tags, colour=colours.resolve(tags, w, h),
        pix_fmt=pix_fmt, bits=bits, sequence=sequence)


def open_input(path: str | os.PathLike, hwaccel=None) -> av.container.InputContainer:
    """Open a media file, turning FFmpeg's errors into one clear line; `hwaccel` (an av HWAccel) decodes on a GPU."""
    from .sequence import is_sequence

    path = Path(path)
    if is_sequence(path):  # callers ask probe() first, which reads sequences
        raise UserError(f"{path} is an image sequence: it has no container to open")
    if not path.exists():
        raise UserError(f"input not found: {path}")
    try:
        if hwaccel is not None:
            return av.open(str(path), metadata_errors="ignore", hwaccel=hwaccel)
        return av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as e:
        raise UserError(f"not a readable video file: {path} ({e.strerror or e})") from e


def video_stream(container: av.container.InputContainer, path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise UserError(f"no video stream in {path}")
    return container.streams.video[0]


def read_rotation(container: av.container.InputContainer, stream) -> int:
    """Rotation from the display matrix, read off the first decoded frame (PyAV exposes it per frame)."""
    try:
        for frame in container.decode(stream):
            return int(round(frame.rotation / 90.0)) * 90 % 360
    except av.error.FFmpegError:
        return 0
    return 0


def tag_seconds(text: str | None) -> float | None:
    """Matroska's per-stream DURATION tag ("00:00:01.600000000") in seconds; None if absent or unreadable."""
    try:
        hours, minutes, seconds = (text or "").split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def stream_duration(container, stream) -> float | None:
    """The video stream's own duration: the stream's, Matroska's DURATION tag, or the container's when the video
    is its only stream (otherwise that may be an audio track's, which can outlast the video)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    tagged = tag_seconds(stream.metadata.get("DURATION"))
    if tagged:
        return tagged
    if container.duration is not None and len(container.streams) == 1:
        return container.duration / av.time_base
    return None


def probe(path: str | os.PathLike, fps: float | None = None, allow_gaps: bool = True) -> VideoInfo:
    """What `path` holds; an image sequence (sequence.py) needs its rate `fps`, and a gap in it is refused
    unless `allow_gaps`."""
    from .sequence import is_sequence

    if is_sequence(path):
        return probe_sequence(path, fps, allow_gaps)
    with open_input(path) as container:
        stream = video_stream(container, path)
        streams = []
        for s in container.streams:
            extra = {}
            if s.type == "audio":
                extra = {"sample_rate": s.codec_context.sample_rate, "channels": s.codec_context.channels}
            elif s.type == "video":
                extra = {"width": s.codec_context.width, "height": s.codec_context.height}
                extra.update(colours.read_tags(s.codec_context))
            for key in ("language", "title"):
                if s.metadata.get(key) not in (None, "", "und"):
                    extra[key] = s.metadata[key]
            streams.append(StreamInfo(s.index, s.type, s.codec_context.name if s.codec_context else "?", extra))
        duration = stream_duration(container, stream)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        w, h = stream.codec_context.width, stream.codec_context.height
        tags = colours.read_tags(stream.codec_context)
        fmt = stream.codec_context.format
        pix_fmt = fmt.name if fmt else None
        bits = max((c.bits for c in fmt.components), default=8) if fmt else 8
        colour = colours.resolve(tags, w, h, pix_fmt)  # by the coded size: rotation changes no standard
        rotation = read_rotation(container, stream)
        if rotation in (90, 270):
            w, h = h, w
        return VideoInfo(
            path=str(path),
            format=container.format.name,
            streams=streams,
            video_index=stream.index,
            codec=stream.codec_context.name,
            width=w,
            height=h,
            fps=float(rate) if rate else 0.0,
            frames=stream.frames or None,
            duration=duration,
            rotation=rotation,
            time_base=stream.time_base or Fraction(1, 90000),
            colour_tags=tags,
            colour=colour,
            pix_fmt=pix_fmt,
            bits=bits,
            timecode=stream.metadata.get("timecode") or container.metadata.get("timecode"),
        )
