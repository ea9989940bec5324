"""Generated clips, so that tests, bench and the bundled sample need no data.

`write_clip` writes any sequence of RGB frames with chosen timestamps, rotation metadata and a tone;
`numbered_frame` makes frames whose content says their number (it survives lossy encoding);
`face_frames` moves the bundled public-domain face photo by smooth similarity transforms.
"""
from __future__ import annotations

import math
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import av
import cv2
import numpy as np


def face_photo() -> np.ndarray:
    """The bundled 400x400 RGB photo (astronaut portrait, NASA, public domain)."""
    data = resources.files("sg3stream").joinpath("data/face.png").read_bytes()
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def numbered_frame(i: int, width: int, height: int) -> np.ndarray:
    """A grey frame whose brightness encodes i (cycling every 30) over a checker pattern that averages 10."""
    y, x = np.mgrid[0:height, 0:width]
    pattern = ((x // 8 + y // 8) % 2) * 20
    level = 30 + (i % 30) * 6
    return np.repeat((level + pattern).astype(np.uint8)[..., None], 3, axis=2)


def frame_number(frame: np.ndarray) -> int:
    """Inverse of numbered_frame (modulo 30), robust to encoding noise."""
    return int(round((float(frame.mean()) - 10 - 30) / 6)) % 30


def face_frames(count: int, width: int = 480, height: int = 360, blank: Sequence[int] = ()) -> Iterable[np.ndarray]:
    """The face photo moving smoothly (rotation, scale, translation) over a grey background, framed as in the
    bundled sample whatever the size."""
    photo = face_photo()
    for i in range(count):
        if i in blank:
            yield np.full((height, width, 3), 90, np.uint8)
            continue
        t = i / max(count - 1, 1)
        angle = 8.0 * math.sin(2 * math.pi * t)
        scale = (0.75 + 0.1 * math.sin(math.pi * t)) * min(width, height * 4 / 3) / 480  # as in the sample
        cx = width / 2 + 0.08 * width * math.sin(2 * math.pi * t)
        cy = height / 2 + 0.04 * height * math.cos(2 * math.pi * t)
        m = cv2.getRotationMatrix2D((200.0, 200.0), angle, scale)
        m[:, 2] += (cx - 200.0, cy - 200.0)
        yield cv2.warpAffine(photo, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=(90, 90, 90))


def write_clip(path: str | Path, frames: Iterable[np.ndarray], *, fps: float = 25, pts: Sequence[int] | None = None,
               time_base: Fraction | None = None, rotation: int = 0, audio: str | None = "aac",
               audio_rate: int = 44100, codec: str = "libx264", pix_fmt: str = "yuv420p",
               options: dict[str, str] | None = None) -> Path:
    """Encode frames (RGB uint8) with optional explicit pts (variable frame rate) and a 440 Hz tone.

    `audio` is an FFmpeg encoder name (aac, pcm_s16le, …) or None; the tone lasts as long as the video.
    """
    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    time_base = time_base or Fraction(1, int(rate.numerator * 512 // rate.denominator) or 12800)
    with av.open(str(path), "w") as out:
        video = None
        last_t = 0.0
        for i, image in enumerate(frames):
            if video is None:
                video = out.add_stream(codec, rate=rate)
                video.height, video.width = image.shape[:2]
                video.pix_fmt = pix_fmt
                video.options = dict(options or {})
                video.time_base = time_base
                video.codec_context.time_base = time_base
                if rotation:
                    video.set_display_rotation(rotation)
                tone = out.add_stream(audio, rate=audio_rate) if audio else None
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = int(pts[i]) if pts is not None else int(round(i / (rate * time_base)))
            frame.time_base = time_base
            last_t = float(frame.pts * time_base) + 1 / float(rate)
            for packet in video.encode(frame):
                out.mux(packet)
        if video is None:
            raise ValueError("write_clip needs at least one frame")
        for packet in video.encode(None):
            out.mux(packet)
        if tone is not None:
            _write_tone(out, tone, last_t, audio_rate)
    return path


def _write_tone(out, stream, seconds: float, rate: int) -> None:
    samples = int(seconds * rate)
    t = np.arange(samples) / rate
    wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    step = stream.codec_context.frame_size or 1024
    for start in range(0, samples, step):
        chunk = wave[start:start + step]
        frame = av.AudioFrame.from_ndarray(chunk[None], format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def make_sample_clip(path: str | Path) -> Path:
    """The bundled sample (sg3stream/data/sample.mp4): 3 s of the face moving, 480x360, 25 fps, with a tone."""
    return write_clip(path, face_frames(75, 480, 360), fps=25, options={"crf": "26", "preset": "slow"})
