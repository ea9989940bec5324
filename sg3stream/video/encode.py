"""Encoding: FrameBatches become a video file with the input's timestamps and its audio.

The file is written to a hidden temporary path beside the target and renamed onto it only when
everything succeeded (`commit`); `abort` removes it. Audio packets are copied from the input as the video
advances (interleaved, so the muxer never buffers a whole stream), re-encoded to AAC only where the output
container cannot hold the input's audio codec.
"""
from __future__ import annotations

import io
import logging
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import UserError
from ..pipeline.batch import FrameBatch

log = logging.getLogger("sg3stream")

# Codecs that take a constant-rate-factor quality setting.
CRF_CODECS = {"libx264", "libx265", "libsvtav1", "libaom-av1", "libvpx-vp9"}
# NVIDIA's hardware encoders (in PyAV's FFmpeg build): constant quality is "cq", presets p1 (fast) .. p7 (best).
NVENC_CODECS = {"h264_nvenc", "hevc_nvenc", "av1_nvenc"}
# FFmpeg's default channel order for a channel count, for audio that comes without one.
DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}


def check_output_path(output: str | os.PathLike, input: str | os.PathLike | None = None) -> Path:
    """Refuse, before any work, an output that cannot be written or that would overwrite the input."""
    output = Path(output)
    if output.is_dir():
        raise UserError(f"output is a folder; give a file name: {output}")
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"output folder does not exist: {folder}")
    try:  # try it: permission bits say nothing for root, read-only mounts and the like
        temporary_path(output).touch()
        temporary_path(output).unlink()
    except OSError as e:
        raise UserError(f"output folder is not writable: {folder} ({e.strerror})") from e
    if input is not None and Path(input).exists():
        same = output.exists() and os.path.samefile(output, input)
        if same or output.resolve() == Path(input).resolve():
            raise UserError(f"output path is the input file: {output}")
    if not output.suffix:
        raise UserError(f"output needs a file extension that names the container (.mp4, .mkv, .mov): {output}")
    return output


def resolve_codec(codec: str) -> str:
    """`auto`: NVENC H.264 where an NVIDIA GPU and its encoder work, libx264 otherwise; other names unchanged."""
    if codec != "auto":
        return codec
    import torch

    if torch.cuda.is_available() and _encoder_opens("h264_nvenc"):
        return "h264_nvenc"
    return "libx264"


def _encoder_opens(codec: str) -> bool:
    """Encode one small frame in memory: listing an encoder does not mean the driver and GPU behind it work."""
    try:
        with av.open(io.BytesIO(), "w", format="mp4") as out:
            stream = out.add_stream(codec, rate=25)
            stream.width, stream.height, stream.pix_fmt = 256, 256, "yuv420p"
            frame = av.VideoFrame.from_ndarray(np.zeros((256, 256, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        return True
    except (av.error.FFmpegError, ValueError, OSError):
        return False


def check_codec(codec: str) -> None:
    """Refuse an encoder this FFmpeg build lacks before any work starts."""
    try:
        found = av.codec.Codec(codec, "w")
    except (av.error.FFmpegError, ValueError, av.codec.codec.UnknownCodecError) as e:
        raise UserError(f"unknown or unavailable video encoder '{codec}' (try libx264, libx265, mpeg4)") from e
    if found.type != "video":
        raise UserError(f"'{codec}' is a {found.type} encoder, not a video encoder")


def temporary_path(output: Path) -> Path:
    """Hidden sibling of the output (same folder, so the final rename is atomic)."""
    return output.with_name(f".{output.stem}.partial-{os.getpid()}{output.suffix}")


class AudioCopier:
    """Copies (or re-encodes) the input's audio streams into the output, packet by packet, up to a time."""

    def __init__(self, input_path: str | os.PathLike, output: av.container.OutputContainer):
        self.source = av.open(str(input_path), metadata_errors="ignore")
        self.routes = {}  # input stream index -> (output stream, resampler when re-encoding else None)
        for stream in self.source.streams.audio:
            name = stream.codec_context.name
            if name in output.supported_codecs and _copy_works(input_path, stream.index, output.format.name):
                self.routes[stream.index] = (output.add_stream_from_template(stream), None)
            else:
                # name the layout: AAC in MP4 refuses an unordered "2 channels" layout (e.g. from PCM in MKV)
                layout = DEFAULT_LAYOUTS.get(stream.codec_context.channels, stream.codec_context.layout.name)
                rate = stream.codec_context.sample_rate
                out = output.add_stream("aac", rate=rate, layout=layout)
                log.warning("audio codec %s cannot go into %s: re-encoding to AAC", name, output.format.name)
                self.routes[stream.index] = (out, av.AudioResampler(format="fltp", layout=layout, rate=rate))
        self.output = output
        self.packets = self.source.demux(self.source.streams.audio) if self.routes else iter(())
        self.pending = None
        self.done = not self.routes

    def pump(self, until_seconds: float | None) -> None:
        """Write every audio packet that starts before `until_seconds` (None: all the rest)."""
        while not self.done:
            packet = self.pending or next(self.packets, None)
            self.pending = None
            if packet is None:
                self._finish()
                return
            if packet.dts is None and packet.size == 0:
                continue  # demuxer's end-of-stream marker
            t = float(packet.pts * packet.time_base) if packet.pts is not None else None
            if until_seconds is not None and t is not None and t > until_seconds:
                self.pending = packet
                return
            out, resampler = self.routes[packet.stream.index]
            if resampler is not None:
                for frame in packet.decode():
                    for resampled in resampler.resample(frame):
                        self.output.mux(out.encode(resampled))
            else:
                packet.stream = out
                self.output.mux(packet)

    def _finish(self) -> None:
        for out, resampler in self.routes.values():
            if resampler is not None:
                for resampled in resampler.resample(None):
                    self.output.mux(out.encode(resampled))
                self.output.mux(out.encode(None))
        self.done = True

    def close(self) -> None:
        self.source.close()


def _copy_works(input_path, stream_index: int, format_name: str) -> bool:
    """Try copying the stream's first packets into an in-memory container of the output's format.

    A muxer may list a codec and still refuse its parameters when writing the trailer (PCM in MP4 without
    a channel order, say): trying is the only reliable test, and it costs a few packets.
    """
    try:
        with av.open(str(input_path), metadata_errors="ignore") as source:
            stream = source.streams[stream_index]
            buffer = io.BytesIO()
            with av.open(buffer, "w", format=format_name.split(",")[0]) as sink:
                out = sink.add_stream_from_template(stream)
                for i, packet in enumerate(source.demux(stream)):
                    if packet.size == 0 or i >= 4:
                        break
                    packet.stream = out
                    sink.mux(packet)
        return True
    except (av.error.FFmpegError, ValueError):
        return False


class VideoWriter:
    """Write frames with their own pts (in `time_base`), then `commit()` or `abort()`."""

    def __init__(self, output: str | os.PathLike, *, time_base: Fraction, rate: float, audio_from=None,
                 codec: str = "libx264", crf: int = 18, preset: str = "fast"):
        self.output = Path(output)
        self.tmp = temporary_path(self.output)
        self.time_base = time_base
        self.rate = Fraction(rate).limit_denominator(100000) if rate else Fraction(25)
        self.audio_from = audio_from
        self.codec, self.crf, self.preset = codec, crf, preset
        self.container = None
        self.stream = None
        self.audio = None
        self.frames_written = 0

    def _open(self, width: int, height: int) -> None:
        try:
            self.container = av.open(str(self.tmp), mode="w")
        except (av.error.FFmpegError, OSError) as e:
            raise UserError(f"cannot write {self.output}: {e}") from e
        try:
            stream = self.container.add_stream(self.codec, rate=self.rate)
        except (av.error.FFmpegError, ValueError) as e:
            raise UserError(f"unknown or unavailable video codec '{self.codec}' ({e})") from e
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        if (width % 2 or height % 2) and self.codec in CRF_CODECS:
            # 4:2:0 needs even sizes; keep the exact size and lose no pixel rather than pad or crop.
            stream.pix_fmt = "yuv444p"
            log.warning("odd frame size %dx%d: encoding yuv444p instead of yuv420p", width, height)
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        if self.codec in CRF_CODECS:
            stream.options = {"crf": str(self.crf), "preset": self.preset}
        elif self.codec in NVENC_CODECS:
            stream.options = {"rc": "vbr", "cq": str(self.crf), "preset": "p4"}
        self.stream = stream
        if self.audio_from is not None:
            self.audio = AudioCopier(self.audio_from, self.container)

    def write(self, batch: FrameBatch) -> None:
        if self.container is None:
            self._open(batch.frames.shape[2], batch.frames.shape[1])
        for image, pts in zip(batch.frames, batch.pts):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = int(pts)
            frame.time_base = batch.time_base
            for packet in self.stream.encode(frame):
                self._mux_video(packet)
            self.frames_written += 1

    def _mux_video(self, packet) -> None:
        if self.audio is not None and packet.dts is not None:
            self.audio.pump(float(packet.dts * packet.time_base))
        self.container.mux(packet)

    def commit(self) -> None:
        """Flush, close and move the finished file onto the output path."""
        if self.container is None:
            raise UserError("no frames to write")
        for packet in self.stream.encode(None):
            self._mux_video(packet)
        if self.audio is not None:
            self.audio.pump(None)
        self._close()
        os.replace(self.tmp, self.output)

    def abort(self) -> None:
        """Drop everything written so far: nothing is left at (or beside) the output path."""
        try:
            self._close()
        except Exception:  # closing a half-written file may fail; removing it is what matters
            pass
        self.tmp.unlink(missing_ok=True)

    def _close(self) -> None:
        if self.audio is not None:
            self.audio.close()
            self.audio = None
        if self.container is not None:
            container, self.container = self.container, None
            container.close()
