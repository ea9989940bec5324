"""What a video file holds: streams, codec, size, rate, frame count, duration and rotation."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from ..errors import UserError


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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["time_base"] = str(self.time_base)
        return d


def open_input(path: str | os.PathLike, hwaccel=None) -> av.container.InputContainer:
    """Open a media file, turning FFmpeg's errors into one clear line; `hwaccel` (an av HWAccel) decodes on a GPU."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"input not found: {path}")
    if path.is_dir():
        raise UserError(f"input is a folder, not a video file: {path}")
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


def probe(path: str | os.PathLike) -> VideoInfo:
    with open_input(path) as container:
        stream = video_stream(container, path)
        streams = []
        for s in container.streams:
            extra = {}
            if s.type == "audio":
                extra = {"sample_rate": s.codec_context.sample_rate, "channels": s.codec_context.channels}
            elif s.type == "video":
                extra = {"width": s.codec_context.width, "height": s.codec_context.height}
            streams.append(StreamInfo(s.index, s.type, s.codec_context.name if s.codec_context else "?", extra))
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        w, h = stream.codec_context.width, stream.codec_context.height
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
        )
