"""Generated clips, so that tests, bench and the bundled sample need no data.

`write_clip` writes any sequence of RGB frames with chosen timestamps, rotation metadata and a tone;
`numbered_frame` makes frames whose content says their number (it survives lossy encoding);
`face_frames` moves the bundled public-domain face photo by smooth similarity transforms;
`faces_frames` places it several times in a frame, each face on its own known path (`face_places` says where).
`colour_bars_clip`, `resized_clip` and `multi_stream_clip` make the inputs of the colour, frame-size and
stream-copy tests.
"""
from __future__ import annotations

import math
from fractions import Fraction
from importlib import resources
from dataclasses import dataclass
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


def face_frames(count: int, width: int = 480, height: int = 360, blank: Sequence[int] = (), *,
                cycle: float | None = None, roll: float = 8.0) -> Iterable[np.ndarray]:
    """The face photo moving smoothly (rotation, scale, translation) over a grey background, framed as in the
    bundled sample whatever the size.

    cycle: frames per cycle of the motion (None: the clip is one cycle); fewer is faster motion.
    roll: amplitude of the head's in-plane rotation, degrees.
    """
    photo = face_photo()
    for i in range(count):
        if i in blank:
            yield np.full((height, width, 3), 90, np.uint8)
            continue
        t = i / cycle if cycle else i / max(count - 1, 1)
        angle = roll * math.sin(2 * math.pi * t)
        scale = (0.75 + 0.1 * math.sin(math.pi * t)) * min(width, height * 4 / 3) / 480  # as in the sample
        cx = width / 2 + 0.08 * width * math.sin(2 * math.pi * t)
        cy = height / 2 + 0.04 * height * math.cos(2 * math.pi * t)
        m = cv2.getRotationMatrix2D((200.0, 200.0), angle, scale)
        m[:, 2] += (cx - 200.0, cy - 200.0)
        yield cv2.warpAffine(photo, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=(90, 90, 90))


# The photo's face as mediapipe's landmarks (LandmarkDetector) find it: the mean of the 478 landmarks, and the mean
# side of their bounding box (168 x 194), in photo pixels. The face sits left of the photo's centre.
PHOTO_FACE_CENTRE = (135.2, 205.0)
PHOTO_FACE_SIZE = 181.0


@dataclass(frozen=True)
class FacePlace:
    """Where `faces_frames` put one face in one frame: `slot` (0 the leftmost path), `centre` (x, y frame pixels: where
    the photo's face centre, the mean of its landmarks, lands), `size` (the face's landmark box, mean side, frame
    pixels) and `angle` (in-plane rotation, degrees, counter-clockwise as cv2 has it)."""

    slot: int
    centre: tuple[float, float]
    size: float
    angle: float

    def matrix(self) -> np.ndarray:
        """The 2x3 similarity that maps the photo's pixels to the frame's."""
        m = cv2.getRotationMatrix2D(PHOTO_FACE_CENTRE, self.angle, self.size / PHOTO_FACE_SIZE)
        m[:, 2] += (self.centre[0] - PHOTO_FACE_CENTRE[0], self.centre[1] - PHOTO_FACE_CENTRE[1])
        return m


def face_places(i: int, count: int, width: int = 480, height: int = 360, faces: int = 2, *,
                enters: Sequence[int] = (), cycle: float | None = None, roll: float = 5.0) -> list[FacePlace]:
    """The faces on screen in frame i of `faces_frames(count, width, height, faces, ...)`, by slot.

    Slot k's path keeps to its own column, the k-th of `faces` equal columns across the frame: its centre circles
    the column's middle (x ± 6% of the column's width, y ± 5% of the height), its size swells by up to 8% from 40%
    of min(column width, height), and it rolls by ± `roll` degrees; each slot a quarter cycle behind the one before,
    so no two move alike. The faces never overlap.

    enters: the first frame of each slot (missing: 0): a slot is off screen before it.
    cycle: frames per cycle of the motion (None: the clip is one cycle).
    """
    t = i / cycle if cycle else i / max(count - 1, 1)
    column = width / faces
    places = []
    for k in range(faces):
        if i < (enters[k] if k < len(enters) else 0):
            continue
        phase = 2 * math.pi * t + k * math.pi / 2
        size = 0.4 * min(column, height) * (1 + 0.08 * math.sin(math.pi * t))
        places.append(FacePlace(slot=k, centre=(column * (k + 0.5) + 0.06 * column * math.sin(phase),
                                                height / 2 + 0.05 * height * math.cos(phase)),
                                size=size, angle=roll * math.sin(phase)))
    return places


def faces_frames(count: int, width: int = 480, height: int = 360, faces: int = 2, *, enters: Sequence[int] = (),
                 cycle: float | None = None, roll: float = 5.0) -> Iterable[np.ndarray]:
    """The face photo `faces` times per frame over a grey background, each copy moving on its own path in its own
    column (see `face_places`, which gives each face's place in each frame); a slot in `enters` appears at that
    frame. Deterministic: the same arguments give the same frames.

    Each copy is pasted whole (the photo's own background around the face), slot by slot from the left; a copy's
    square may cover the edge of the one before it, never its face."""
    photo = face_photo()
    cover = np.ones(photo.shape[:2], np.float32)
    for i in range(count):
        picture = np.full((height, width, 3), 90.0)
        for place in face_places(i, count, width, height, faces, enters=enters, cycle=cycle, roll=roll):
            m = place.matrix()
            face = cv2.warpAffine(photo, m, (width, height), flags=cv2.INTER_LINEAR)
            alpha = cv2.warpAffine(cover, m, (width, height), flags=cv2.INTER_LINEAR)[..., None]
            picture = picture * (1 - alpha) + face * alpha
        yield np.rint(picture).astype(np.uint8)


def write_clip(path: str | Path, frames: Iterable[np.ndarray], *, fps: float = 25, pts: Sequence[int] | None = None,
               time_base: Fraction | None = None, rotation: int = 0, audio: str | None = "aac",
               audio_rate: int = 44100, codec: str = "libx264", pix_fmt: str = "yuv420p",
               options: dict[str, str] | None = None, audio_seconds: float | None = None) -> Path:
    """Encode frames (RGB uint8) with optional explicit pts (variable frame rate) and a 440 Hz tone.

    `audio` is an FFmpeg encoder name (aac, pcm_s16le, …) or None; the tone lasts as long as the video, or
    `audio_seconds`.
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
            _write_tone(out, tone, audio_seconds or last_t, audio_rate)
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


# 75% colour bars (white, yellow, cyan, green, magenta, red, blue) and a full red, in RGB.
BARS_RGB = np.array([[191, 191, 191], [191, 191, 0], [0, 191, 191], [0, 191, 0], [191, 0, 191], [191, 0, 0],
                     [0, 0, 191], [255, 0, 0]])
# Luma weights (Kr, Kb) of the YUV matrices, by FFmpeg's names.
MATRIX_WEIGHTS = {"bt709": (0.2126, 0.0722), "smpte170m": (0.299, 0.114), "bt470bg": (0.299, 0.114)}


def bars_yuv(matrix: str = "bt709", full_range: bool = False) -> np.ndarray:
    """The Y, Cb, Cr code values (8 bits) of BARS_RGB under a matrix and range, rounded: shape (8, 3)."""
    kr, kb = MATRIX_WEIGHTS[matrix]
    rgb = BARS_RGB / 255.0
    y = kr * rgb[:, 0] + (1 - kr - kb) * rgb[:, 1] + kb * rgb[:, 2]
    cb, cr = (rgb[:, 2] - y) / (2 * (1 - kb)), (rgb[:, 0] - y) / (2 * (1 - kr))
    if full_range:
        yuv = np.stack([255 * y, 128 + 255 * cb, 128 + 255 * cr], 1)
    else:
        yuv = np.stack([16 + 219 * y, 128 + 224 * cb, 128 + 224 * cr], 1)
    return np.clip(np.round(yuv), 0, 255).astype(np.uint8)


def bar_centres(width: int) -> list[int]:
    """The x of each bar's centre in a frame `width` wide (8 bars of width // 8, at even x)."""
    step = width // 8
    return [(i * step + step // 2) // 2 * 2 for i in range(8)]


def colour_bars_clip(path: str | Path, width: int = 320, height: int = 180, frames: int = 3, *,
                     matrix: str = "bt709", full_range: bool = False, tagged: bool = True) -> Path:
    """Colour bars written directly as YUV 4:2:0 code values (no RGB conversion on the way in), losslessly.

    `matrix` gives the values and, when `tagged`, the tags (primaries, transfer and matrix all that standard's;
    range tv, or pc with `full_range`); untagged files say nothing about their colour, as many cameras' do.
    """
    path = Path(path)
    yuv = bars_yuv(matrix, full_range)
    step = width // 8
    columns = np.minimum(np.arange(width) // step, 7)
    y_plane = np.repeat(yuv[columns, 0][None], height, 0)
    cb_plane = np.repeat(yuv[columns[::2], 1][None], height // 2, 0)
    cr_plane = np.repeat(yuv[columns[::2], 2][None], height // 2, 0)
    image = np.concatenate([y_plane.ravel(), cb_plane.ravel(), cr_plane.ravel()]).reshape(height * 3 // 2, width)
    tags = {}
    if tagged:
        code = {"bt709": 1, "smpte170m": 6, "bt470bg": 5}[matrix]
        tags = {"colorspace": code, "color_primaries": code, "color_trc": 6 if code == 5 else code,
                "color_range": 2 if full_range else 1}
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qp": "0"}  # lossless: the file holds the exact values
        for name, value in tags.items():
            setattr(stream.codec_context, name, value)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
            for name, value in tags.items():
                setattr(frame, name, value)
            frame.pts, frame.time_base = i, Fraction(1, 25)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def resized_clip(path: str | Path, parts: Sequence[tuple[int, int, int]], fps: int = 25) -> Path:
    """A clip whose frame size changes mid-stream: `parts` are (width, height, frames), numbered frames throughout.

    Written as H.264 in MPEG-TS: each part is a fresh encoder whose in-band headers announce its size, as in a
    broadcast recording that switches resolution.
    """
    path = Path(path)
    time_base = Fraction(1, fps)
    with av.open(str(path), "w", format="mpegts") as out:
        stream = None
        number = 0
        for width, height, count in parts:
            if stream is None:
                stream = out.add_stream("libx264", rate=fps)
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                encoder = stream.codec_context
            else:
                encoder = av.CodecContext.create("libx264", "w")
                encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
                encoder.time_base, encoder.framerate = time_base, fps
            for _ in range(count):
                frame = av.VideoFrame.from_ndarray(numbered_frame(number, width, height), format="rgb24")
                frame.pts, frame.time_base = number, time_base
                number += 1
                for packet in encoder.encode(frame):
                    packet.stream = stream
                    out.mux(packet)
            for packet in encoder.encode(None):
                packet.stream = stream
                out.mux(packet)
    return path


def multi_stream_clip(path: str | Path, frames: int = 25, *, languages: Sequence[str] = ("eng", "fra"),
                      subtitles: Sequence[tuple[float, float, str]] = ((0.1, 0.4, "Hello"), (0.5, 0.8, "Bonjour")),
                      subtitle_language: str = "fra") -> Path:
    """A Matroska clip with one audio track per language (titled "<language> audio") and a SubRip subtitle.

    Subtitle packets are muxed as they are (a stream without an encoder): `subtitles` are (start, end, text).
    """
    path = Path(path)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        tones = []
        for language in languages:
            tone = out.add_stream("aac", rate=44100)
            tone.metadata["language"], tone.metadata["title"] = language, f"{language} audio"
            tones.append(tone)
        text = out.add_mux_stream("subrip")
        text.time_base = Fraction(1, 1000)
        text.metadata["language"], text.metadata["title"] = subtitle_language, f"{subtitle_language} subtitles"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(numbered_frame(i, 64, 48), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        for start, end, words in subtitles:
            packet = av.Packet(words.encode())
            packet.stream, packet.time_base = text, Fraction(1, 1000)
            packet.pts = packet.dts = int(start * 1000)
            packet.duration = int((end - start) * 1000)
            out.mux(packet)
        for tone in tones:
            _write_tone(out, tone, frames / 25, 44100)
    return path


def make_sample_clip(path: str | Path) -> Path:
    """The bundled sample (sg3stream/data/sample.mp4): 3 s of the face moving, 480x360, 25 fps, with a tone."""
    return write_clip(path, face_frames(75, 480, 360), fps=25, options={"crf": "26", "preset": "slow"})
