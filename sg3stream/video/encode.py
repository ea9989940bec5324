"""Encoding: FrameBatches become a video file with the input's timestamps, colour, audio, subtitles and data.

The file is written to a hidden temporary path beside the target and renamed onto it only when
everything succeeded (`commit`); `abort` removes it, and so does a commit that fails (a full disk, say).
RGB frames become YUV with the matrix and range the output is tagged with: the input's (`colour`), or what
players assume for the frame size (colour.py). The input's audio, subtitle and data streams are copied packet by
packet as the video advances (interleaved, so the muxer never buffers a whole stream), with their language and
title; audio is re-encoded (AAC, or the container's own audio codec) only where the output container cannot hold
the input's codec, and a subtitle or data stream it cannot hold is dropped with a warning.
`check_codec` tries the writer's whole setup on two small frames in memory before any work starts.
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
from . import colour as colours
from .source_pixels import LOSSLESS_CODECS, SourceFrames, copy_outside, restorable

log = logging.getLogger("sg3stream")

# Codecs that take a constant-rate-factor quality setting, and its range.
CRF_RANGES = {"libx264": (0, 51), "libx265": (0, 51), "libsvtav1": (0, 63), "libaom-av1": (0, 63),
              "libvpx-vp9": (0, 63)}
CRF_CODECS = set(CRF_RANGES)
# NVIDIA's hardware encoders (in PyAV's FFmpeg build): constant quality is "cq" (0-51), presets p1 (fast) .. p7.
NVENC_CODECS = {"h264_nvenc", "hevc_nvenc", "av1_nvenc"}
# Muxers that write pictures, not a video.
IMAGE_FORMATS = {"image2", "image2pipe", "apng", "webp"}
# The MP4/QuickTime muxers: they keep only the metadata keys they know unless told to write all of them.
MOV_FORMATS = {"mov", "mp4", "ipod", "ismv", "3gp", "3g2", "psp", "f4v"}
# FFmpeg's default channel order for a channel count, for audio that comes without one.
DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}


def check_output_path(output: str | os.PathLike, input: str | os.PathLike | None = None) -> Path:
    """Refuse, before any work, an output that cannot be written or that would overwrite the input."""
    from .sequence import is_sequence_name, parse_name

    output = Path(output)
    if is_sequence_name(output):  # out/%04d.png: a folder of pictures
        folder = parse_name(output).folder
        if not folder.is_dir():
            raise UserError(f"output folder does not exist: {folder}")
        if not os.access(folder, os.W_OK):
            raise UserError(f"output folder is not writable: {folder}")
        if input is not None and is_sequence_name(input) and output.resolve() == Path(input).resolve():
            raise UserError(f"output sequence is the input sequence: {output}")
        return output
    if output.is_dir():
        raise UserError(f"output is a folder; give a file name, or a numbered picture name for a sequence "
                        f"({output / '%04d.png'}): {output}")
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

    if torch.cuda.is_available():
        if _encoder_opens("h264_nvenc"):
            return "h264_nvenc"
        log.info("h264_nvenc cannot encode here (its trial encode failed): using libx264")
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
    except (av.error.FFmpegError, ValueError, OSError) as e:
        log.debug("trial encode with %s failed: %s", codec, e)
        return False


def check_codec(codec: str, output: str | os.PathLike | None = None, *, crf: int = 18, preset: str = "fast",
                size: tuple[int, int] = (64, 48), streams_from: str | os.PathLike | None = None,
                pix_fmt: str | None = None, bits: int = 8, source_format: str | None = None) -> None:
    """Refuse, before any work starts, an encoder this FFmpeg build lacks or a --crf outside its range; with
    `output`, also a container, pixel format or setting that does not work: the writer's own setup (with the
    streams of `streams_from`) encodes two frames of `size` (width, height) into memory."""
    try:
        found = av.codec.Codec(codec, "w")
    except (av.error.FFmpegError, ValueError, av.codec.codec.UnknownCodecError) as e:
        raise UserError(f"unknown or unavailable video encoder '{codec}' (try libx264, libx265, mpeg4)") from e
    if found.type != "video":
        raise UserError(f"'{codec}' is a {found.type} encoder, not a video encoder")
    low, high = CRF_RANGES.get(codec, (0, 51) if codec in NVENC_CODECS else (None, None))
    if low is not None and not low <= crf <= high:
        raise UserError(f"--crf must be from {low} to {high} for {codec} (got {crf})")
    if pix_fmt is not None and pix_fmt not in [f.name for f in (found.video_formats or [])]:
        raise UserError(f"--pix-fmt {pix_fmt}: {codec} does not take it (it takes "
                        f"{', '.join(f.name for f in (found.video_formats or []))})")
    if output is None:
        return
    output = Path(output)
    container_format(output)
    trial = io.BytesIO()
    trial.name = output.name  # the muxer is chosen by the name, as for the real file
    writer = VideoWriter(output, time_base=Fraction(1, 25), rate=25, audio_from=streams_from, codec=codec,
                         crf=crf, preset=preset, into=trial, pix_fmt=pix_fmt, bits=bits, source_format=source_format)
    width, height = size
    try:
        writer.write(FrameBatch(np.zeros((2, height, width, 3), np.uint16 if bits > 8 else np.uint8), np.arange(2),
                                np.arange(2), Fraction(1, 25)))
        writer._flush(copy_rest=False)
        writer._release()  # writes the trailer: a muxer may refuse the file only here
    except (av.error.FFmpegError, OSError) as e:
        raise UserError(f"cannot write {output.name} with {codec} (crf {crf}, preset {preset}): {e}") from e
    finally:
        writer._release(strict=False)


def container_format(output: Path) -> str:
    """The muxer FFmpeg picks for the output's name; a clear error where there is none, or it writes images."""
    probe_file = io.BytesIO()
    probe_file.name = output.name
    try:
        with av.open(probe_file, "w") as container:
            name = container.format.name
    except ValueError as e:
        raise UserError(f"no container format for {output.suffix} files: use .mp4, .mkv or .mov") from e
    if name in IMAGE_FORMATS:
        raise UserError(f"{output.name} names an image format ({name}): give a video container (.mp4, .mkv, .mov)")
    return name


def container_refuses(container, output: Path, codec: str) -> str:
    """The message for a container that cannot hold a video codec, with one that it can."""
    hint = ""
    try:
        default = av.codec.Codec(container.default_video_codec, "w").name
        hint = f" (its usual one is --codec {default})"
    except Exception:  # no default video codec, or no encoder for it in this build
        pass
    return (f"the {container.format.name} container ({output.suffix}) cannot hold {codec} video: choose another "
            f"container (.mp4, .mkv) or codec{hint}")


def pixel_format(codec: str, width: int, height: int) -> str:
    """YUV 4:2:0, or 4:4:4 for odd sizes (4:2:0 needs even ones), where the encoder takes it; else its first."""
    formats = [f.name for f in (av.codec.Codec(codec, "w").video_formats or [])]
    wanted = "yuv444p" if width % 2 or height % 2 else "yuv420p"
    for name in (wanted, "yuv420p", "yuv444p"):
        if not formats or name in formats:
            return name
    return formats[0]


def deep_pixel_format(codec: str, width: int, height: int, source: str | None, bits: int) -> str:
    """A pixel format keeping `bits` per component (the input's `source` format itself where the encoder takes
    it: a 10-bit 4:2:0 HEVC to FFV1 stays yuv420p10le); the 8-bit choice where the encoder has none deeper."""
    formats = [f.name for f in (av.codec.Codec(codec, "w").video_formats or [])]
    floating = source is not None and ("f16" in source or "f32" in source)  # EXR: a video gets it display-encoded
    if source in formats and not av.VideoFormat(source).has_palette and not floating:
        return source

    def depth(name: str) -> int:
        return min(c.bits for c in av.VideoFormat(name).components)

    odd = width % 2 or height % 2
    deep = [f for f in formats if not f.startswith(("gray", "ya", "yuva", "gbra", "rgba", "bgra"))
            and "f16" not in f and "f32" not in f and depth(f) > 8]
    if not deep:
        log.warning("%s holds no more than 8 bits per component: the %d-bit input is written in 8 bits", codec, bits)
        return pixel_format(codec, width, height)
    # the input's subsampling first (4:2:0 for video; RGB pictures as RGB), then the least depth that holds it
    rgb = source is not None and av.VideoFormat(source).is_rgb
    family = ("gbrp", "rgb48", "yuv444p") if rgb else ("yuv444p",) if odd else ("yuv420p", "yuv422p", "yuv444p")
    for prefix in family:
        fits = sorted((f for f in deep if f.startswith(prefix)), key=depth)
        enough = [f for f in fits if depth(f) >= min(bits, 16)]
        if enough or fits:
            return (enough or fits[::-1])[0]
    return sorted(deep, key=depth)[-1]


DNXHR_PROFILES = {"yuv422p10le": "dnxhr_hqx", "yuv444p10le": "dnxhr_444", "gbrp10le": "dnxhr_444"}


# The layer mode's codecs (with alpha), by container, and their pixel formats
LAYER_CODECS = {".mov": "prores_ks", ".mkv": "ffv1"}
ALPHA_FORMATS = {"prores_ks": "yuva444p10le", "ffv1": "bgra"}


def layer_codec(output: str | os.PathLike) -> str:
    """The codec with alpha for `--output-mode layer` by the output's container: ProRes 4444 (.mov), FFV1 (.mkv)."""
    suffix = Path(output).suffix.lower()
    if suffix not in LAYER_CODECS:
        raise UserError(f"--output-mode layer writes alpha: ProRes 4444 in .mov or FFV1 in .mkv "
                        f"(not {suffix or 'no extension'})")
    return LAYER_CODECS[suffix]


def temporary_path(output: Path) -> Path:
    """Hidden sibling of the output (same folder, so the final rename is atomic)."""
    return output.with_name(f".{output.stem}.partial-{os.getpid()}{output.suffix}")


class StreamCopier:
    """Copies the input's audio, subtitle and data streams into the output, packet by packet, up to a time.

    Each stream is copied where a trial copy into the output's format works, audio is re-encoded where it does
    not, anything else is dropped with a warning; language and title (and the default/forced flags) are kept.
    """

    def __init__(self, input_path: str | os.PathLike, output: av.container.OutputContainer, quiet: bool = False):
        self.source = av.open(str(input_path), metadata_errors="ignore")
        self.routes = {}  # input stream index -> (output stream, resampler when re-encoding else None)
        say = (lambda *args: None) if quiet else log.warning
        format_name = output.format.name
        first_video = self.source.streams.video[0] if self.source.streams.video else None
        for stream in self.source.streams:
            what = f"{stream.type} stream {stream.index} ({describe(stream)})"
            if stream.type == "video":
                if stream is not first_video:
                    say("%s is not copied: sg3stream processes the first video stream only", what)
                continue
            if stream.type not in ("audio", "subtitle", "data"):
                say("%s is not copied: dropped", what)
                continue
            if _copy_works(input_path, stream.index, format_name):
                route = (output.add_stream_from_template(stream), None)
            elif stream.type == "audio":
                route = _audio_encoder(stream, output)
                if route is None:
                    say("%s cannot go into %s, nor any audio codec it holds: dropped", what, format_name)
                    continue
                say("%s cannot go into %s: re-encoding to %s", what, format_name, route[0].codec_context.name)
            else:
                say("%s cannot go into %s: dropped (.mkv holds most subtitle codecs)", what, format_name)
                continue
            keep_stream_tags(stream, route[0])
            self.routes[stream.index] = route
        if first_video is not None and output.streams.video:
            keep_stream_tags(first_video, output.streams.video[0])
        self.output = output
        copied = [self.source.streams[i] for i in self.routes]
        self.packets = self.source.demux(copied) if copied else iter(())
        self.pending = None
        self.done = not self.routes

    def pump(self, until_seconds: float | None) -> None:
        """Write every packet that starts before `until_seconds` (None: all the rest)."""
        while not self.done:
            packet = self.pending or next(self.packets, None)
            self.pending = None
            if packet is None:
                self.finish()
                return
            if packet.dts is None and packet.size == 0:
                continue  # demuxer's end-of-stream marker
            t = float(packet.pts * packet.time_base) if packet.pts is not None else None
            if until_seconds is not None and t is not None and t > until_seconds:
                self.pending = packet
                return
            out, resampler = self.routes[packet.stream.index]
            if resampler is not None:
                try:
                    for frame in packet.decode():
                        for resampled in resampler.resample(frame):
                            self.output.mux(out.encode(resampled))
                except av.error.FFmpegError as e:
                    if isinstance(e, OSError):  # the disk: the writer says so
                        raise
                    raise UserError(f"audio stream {packet.stream.index} cannot be re-encoded to "
                                    f"{out.codec_context.name} for {self.output.format.name}: {e}") from e
            else:
                packet.stream = out
                self.output.mux(packet)

    def finish(self) -> None:
        """Flush the re-encoders (the packets not pumped yet are left out: a trial stops here)."""
        if self.done:
            return
        for out, resampler in self.routes.values():
            if resampler is not None:
                for resampled in resampler.resample(None):
                    self.output.mux(out.encode(resampled))
                self.output.mux(out.encode(None))
        self.done = True

    def close(self) -> None:
        self.source.close()


def describe(stream) -> str:
    """A stream's codec (or file name) and language, for messages: "aac, fra"."""
    codec = (stream.codec_context.name if stream.codec_context else None) or getattr(stream, "name", None) \
        or stream.metadata.get("filename") or "?"
    language = stream.metadata.get("language")
    return f"{codec}, {language}" if language and language != "und" else codec


def keep_stream_tags(source, out) -> None:
    """Language and title survive the copy (the muxer writes the rest itself), and the default/forced flags."""
    for key in ("language", "title"):
        if source.metadata.get(key):
            out.metadata[key] = source.metadata[key]
    try:
        out.disposition = source.disposition
    except (AttributeError, TypeError, ValueError):  # a stream kind that keeps no flags
        pass


def _audio_encoder(stream, output: av.container.OutputContainer):
    """(output stream, resampler) re-encoding to AAC, or to the container's own audio codec; None if neither fits."""
    supported = output.supported_codecs
    candidates = ["aac"] + ([output.default_audio_codec] if output.default_audio_codec else [])
    # name the layout: AAC in MP4 refuses an unordered "2 channels" layout (e.g. from PCM in MKV)
    layout = DEFAULT_LAYOUTS.get(stream.codec_context.channels, stream.codec_context.layout.name)
    for name in candidates:
        if supported and name not in supported:
            continue
        try:
            # the input's rate where the encoder takes it, else the nearest one above (Opus: 44.1 -> 48 kHz)
            rate = stream.codec_context.sample_rate
            rates = av.codec.Codec(name, "w").audio_rates
            if rates and rate not in rates:
                rate = min(rates, key=lambda r: (r < rate, abs(r - rate)))
            out = output.add_stream(name, rate=rate, layout=layout)
        except (av.error.FFmpegError, ValueError):
            continue
        sample_format = out.codec_context.format.name if out.codec_context.format else "fltp"
        return out, av.AudioResampler(format=sample_format, layout=layout, rate=rate)
    return None


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
    """Write frames with their own pts (in `time_base`), then `commit()` or `abort()`.

    `audio_from`: the input, whose audio, subtitle and data streams are copied. `colour`: the input's colour
    (VideoInfo.colour); None: what players assume for the frame size. `metadata`: container-level tags.
    `into`: a file object to write instead of the output (check_codec's trial in memory).
    `alpha`: the batches carry an alpha (`matte` [N,H,W] uint16, the layer mode's), encoded with the colour: ProRes
    4444 (`prores_ks`) or FFV1 RGBA (`ffv1`), the codecs `layer_codec` picks.
    """

    def __init__(self, output: str | os.PathLike, *, time_base: Fraction, rate: float, audio_from=None,
                 codec: str = "libx264", crf: int = 18, preset: str = "fast", colour: dict[str, str] | None = None,
                 metadata: dict[str, str] | None = None, into=None, alpha: bool = False,
                 source_format: str | None = None, bits: int = 8, pix_fmt: str | None = None,
                 timecode: str | None = None, transfer: str = "srgb", keep_source: str | os.PathLike | None = None):
        self.output = Path(output)
        self.tmp = temporary_path(self.output)
        self.time_base = time_base
        self.rate = Fraction(rate).limit_denominator(100000) if rate else Fraction(25)
        self.audio_from = audio_from
        self.codec, self.crf, self.preset = codec, crf, preset
        self.colour = colour
        self.metadata = dict(metadata or {})
        self.into = into
        self.alpha = alpha
        # the input's pixel format and depth: a deeper input stays deep where the codec can hold it (--pix-fmt
        # chooses); scene-linear (float) pictures are encoded with `transfer` first
        self.source_format, self.bits, self.pix_fmt, self.transfer = source_format, bits, pix_fmt, transfer
        self.timecode = timecode  # the input's start timecode, kept (a tmcd track in .mov)
        # the input, whose own samples are copied wherever the batches' `matte` is 0, when the output is lossless
        # in the input's pixel format (source_pixels.py); decided when the stream opens
        self.keep_source = keep_source
        self.source_frames = None
        self.container = None
        self.stream = None
        self.audio = None  # the StreamCopier (audio, subtitles, data)
        self.size = None
        self.convert: dict = {}
        self.frame_tags: dict[str, int] = {}
        self.frames_written = 0

    def _open(self, width: int, height: int) -> None:
        try:
            self.container = av.open(self.into if self.into is not None else str(self.tmp), mode="w")
        except ValueError as e:  # FFmpeg knows no muxer for the extension
            raise UserError(f"no container format for {self.output.suffix} files: use .mp4, .mkv or .mov") from e
        except (av.error.FFmpegError, OSError) as e:
            raise UserError(f"cannot write {self.output}: {e}") from e
        try:
            stream = self.container.add_stream(self.codec, rate=self.rate)
        except ValueError as e:  # the container does not take this codec
            raise UserError(container_refuses(self.container, self.output, self.codec)) from e
        except av.error.FFmpegError as e:
            raise UserError(f"unknown or unavailable video codec '{self.codec}' ({e})") from e
        stream.width, stream.height = width, height
        if self.pix_fmt is not None:
            stream.pix_fmt = self.pix_fmt
        elif self.alpha:
            stream.pix_fmt = ALPHA_FORMATS[self.codec]
            if self.codec == "ffv1" and self.bits > 8:
                stream.pix_fmt = "rgba64le"  # 16-bit colour and alpha
        elif self.bits > 8:
            stream.pix_fmt = deep_pixel_format(self.codec, width, height, self.source_format, self.bits)
        else:
            stream.pix_fmt = pixel_format(self.codec, width, height)
        if stream.pix_fmt == "yuv444p" and (width % 2 or height % 2) and self.into is None:
            # keep the exact size and lose no pixel rather than pad or crop
            log.warning("odd frame size %dx%d: encoding yuv444p instead of yuv420p", width, height)
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        if self.alpha and self.codec == "prores_ks":
            stream.options = {"profile": "4"}  # 4444: the one with alpha
        elif self.codec in CRF_CODECS:
            stream.options = {"crf": str(self.crf), "preset": self.preset}
        elif self.codec in NVENC_CODECS:
            stream.options = {"rc": "vbr", "cq": str(self.crf), "preset": "p4"}
        elif self.codec == "dnxhd":  # DNxHR (any frame size) in the profile of the pixel format's depth and sampling
            stream.options = {"profile": DNXHR_PROFILES.get(stream.pix_fmt, "dnxhr_hq")}
        if self.codec == "libx265":
            stream.options = {**stream.options, "x265-params": "log-level=error"}  # x265 writes its banner to stderr
        # The output is tagged with the colour its YUV values are computed with.
        colour = colours.resolve(self.colour or {}, width, height)
        tags = colours.codes(colour)
        self.convert = {"format": stream.pix_fmt}
        if av.VideoFormat(stream.pix_fmt).is_rgb:
            del tags["colorspace"], tags["color_range"]  # RGB: no matrix, full range
        else:
            matrix, range_ = colours.scaler_args(colour)
            self.convert.update(dst_colorspace=matrix, dst_color_range=range_)
        for attribute, value in tags.items():
            setattr(stream.codec_context, attribute, value)
        self.frame_tags = tags
        for key, value in self.metadata.items():
            self.container.metadata[key] = value
        if self.timecode:
            stream.metadata["timecode"] = self.timecode
        if self.metadata and self.container.format.name in MOV_FORMATS:
            self.container.options["movflags"] = "use_metadata_tags"  # else a key like sg3stream_demo is lost
        self.stream = stream
        self.size = (width, height)
        if (self.keep_source is not None and self.codec in LOSSLESS_CODECS and stream.pix_fmt == self.source_format
                and restorable(stream.pix_fmt)):
            self.source_frames = SourceFrames(self.keep_source)
        if self.audio_from is not None:
            self.audio = StreamCopier(self.audio_from, self.container, quiet=self.into is not None)

    def write(self, batch: FrameBatch) -> None:
        width, height = batch.frames.shape[2], batch.frames.shape[1]
        if self.container is None:
            self._open(width, height)
        elif (width, height) != self.size:  # the encoder would stretch them silently
            raise UserError(f"frames {batch.index[0]}-{batch.index[-1]} are {width}x{height}, the output is "
                            f"{self.size[0]}x{self.size[1]}: sg3stream needs one frame size per clip")
        alphas = batch.data["matte"] if self.alpha else [None] * len(batch)
        mattes = None
        if self.source_frames is not None:  # no matte: a pass-through, the input everywhere
            mattes = batch.data.get("matte", np.zeros((len(batch), height, width), np.uint16))
        for i, (image, alpha, pts) in enumerate(zip(batch.frames, alphas, batch.pts)):
            if image.dtype.kind == "f":  # scene-linear: the display encoding, in 16 bits
                image = np.clip(np.rint(colours.encode_linear(image, self.transfer) * 65535), 0, 65535
                                ).astype(np.uint16)
            deep = image.dtype == np.uint16
            if alpha is not None and deep:
                image = np.dstack([image, alpha])
            elif alpha is not None:  # 16-bit weights to 8 bits, rounded
                image = np.dstack([image, ((alpha.astype(np.uint32) + 128) // 257).astype(np.uint8)])
            source = ("rgba64le" if deep else "rgba") if alpha is not None else ("rgb48le" if deep else "rgb24")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=source).reformat(**self.convert)
            if mattes is not None:
                original = self.source_frames.frame(int(batch.index[i]))
                if original is not None and original.format.name == frame.format.name \
                        and (original.width, original.height) == (frame.width, frame.height):
                    copy_outside(frame, original, mattes[i])
            for attribute, value in self.frame_tags.items():
                setattr(frame, attribute, value)
            frame.pts = int(pts)
            frame.time_base = batch.time_base
            try:
                for packet in self.stream.encode(frame):
                    self._mux_video(packet)
            except OSError as e:  # the disk, not the encoder
                raise self._write_failed(e) from e
            except av.error.FFmpegError as e:
                raise UserError(f"{self.codec} cannot encode {width}x{height} video for {self.output.name} "
                                f"(crf {self.crf}, preset {self.preset}): {e}") from e
            self.frames_written += 1

    def discard(self) -> None:
        """Remove the partial file (a run that gave up while a write was in progress)."""
        self.tmp.unlink(missing_ok=True)

    def _mux_video(self, packet) -> None:
        if self.audio is not None and packet.dts is not None:
            self.audio.pump(float(packet.dts * packet.time_base))
        self.container.mux(packet)

    def _flush(self, copy_rest: bool = True) -> None:
        """Flush the encoder and (with `copy_rest`) the rest of the copied streams."""
        for packet in self.stream.encode(None):
            self._mux_video(packet)
        if self.audio is not None:
            self.audio.pump(None) if copy_rest else self.audio.finish()

    def commit(self) -> None:
        """Flush, close and move the finished file onto the output path; on failure nothing is left behind."""
        if self.container is None:
            raise UserError("no frames to write")
        try:
            self._flush()
            self._close()
            os.replace(self.tmp, self.output)
        except OSError as e:  # a full disk while the index is written, a folder gone read-only...
            self.abort()
            raise self._write_failed(e) from e
        except BaseException:
            self.abort()
            raise

    def _write_failed(self, error: OSError) -> UserError:
        return UserError(f"could not write {self.output}: {error.strerror or error}")

    def abort(self) -> None:
        """Drop everything written so far: nothing is left at (or beside) the output path."""
        try:
            self._close()
        except Exception:  # closing a half-written file may fail; removing it is what matters
            pass
        if self.into is None:
            self.tmp.unlink(missing_ok=True)

    def _close(self) -> None:
        self._release()

    def _release(self, strict: bool = True) -> None:
        """Close the input of the copied streams and the output (which writes its index); `strict`: raise errors."""
        if self.source_frames is not None:
            source_frames, self.source_frames = self.source_frames, None
            source_frames.close()
        try:
            if self.audio is not None:
                audio, self.audio = self.audio, None
                audio.close()
        finally:
            if self.container is not None:
                container, self.container = self.container, None
                try:
                    container.close()
                except Exception:
                    if strict:
                        raise
