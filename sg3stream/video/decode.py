"""Decoding: a video file becomes a lazy stream of FrameBatches (RGB uint8, upright, with exact pts).

PyAV is the default decoder; decord is an alternative (`--decoder decord`). Both give the same frames and
the stream's own timestamps: nothing is renumbered, so variable frame rate survives.

Hardware decoding (`hwdec`): "auto" decodes on the GPU (NVDEC, through FFmpeg's CUDA hwaccel in PyAV, or decord's
GPU context) when torch sees a CUDA device and a trial decode of the first frame works there, and on the CPU
otherwise; "cuda" requires it (a clear error when unavailable); "none" never tries. Frames come back to host
memory either way: the landmark stage needs them there.

Colour: YUV becomes RGB with the input's matrix and range (`VideoInfo.colour`, see colour.py). A clip whose frame
size changes mid-stream is refused at the first frame of the new size, whatever the decoder and batch size.
"""
from __future__ import annotations

import logging
import os
from typing import Iterator

import av
import numpy as np
from av.video.reformatter import Interpolation

from ..errors import UserError
from ..pipeline.batch import FrameBatch
from . import colour as colours
from .probe import VideoInfo, open_input, probe, video_stream

log = logging.getLogger("sg3stream")

DECODERS = ("pyav", "decord")
HWDEC = ("auto", "cuda", "none")
DEPTHS = ("8", "native")
# Threads per decoder. FFmpeg's own choice is a frame thread per core plus one (up to 16), and each frame thread
# holds a picture or two of its own, outside the chain's frame budget: the chain decodes its input two or three
# times at once, so at 4K on a 16-core machine they would hold about a hundred pictures. Measured on the 2-core
# machine, three 1080p decoders 30 frames in: 36 MB with one thread each, 58 MB with two, 76 MB with FFmpeg's
# choice (3), 95 MB with four; one decoder alone still decoded the 1080p clip at 219 frames/s with two threads.
DECODER_THREADS = 2


def to_8bit(image: np.ndarray, transfer: str = "srgb") -> np.ndarray:
    """A picture of any depth as the models see it: RGB uint8 (float: scene-linear, encoded by `transfer`)."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    encoded = colours.encode_linear(image, transfer)
    return np.clip(np.rint(encoded * 255), 0, 255).astype(np.uint8)


def cuda_present() -> bool:
    """Whether torch sees a CUDA device: hardware decoding is only tried then."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return torch.cuda.is_available()


def packed_pixels(frame: av.VideoFrame) -> np.ndarray:
    """[H,W,3] view of a packed RGB frame's picture (rgb24 or rgb48le), without the copy `to_ndarray` makes (a
    picture a frame less for the heaps; the caller copies it into its batch)."""
    plane = frame.planes[0]
    dtype = np.dtype(np.uint16 if frame.format.name == "rgb48le" else np.uint8)
    rows = np.frombuffer(plane, dtype).reshape(frame.height, plane.line_size // dtype.itemsize)
    return rows[:, :frame.width * 3].reshape(frame.height, frame.width, 3)


def upright(frame: np.ndarray, rotation: int) -> np.ndarray:
    """Apply the display matrix: `rotation` degrees counter-clockwise (as FFmpeg's autorotate does)."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(frame, k)) if k else frame


class FrameReader:
    """Iterate over a video as FrameBatches of `batch_size` frames.

    With `start`/`stop`, only frames start .. stop-1 (positions in presentation order, as `index` numbers them)
    come out: PyAV seeks to the keyframe before `start` and drops the frames before it; decord reads the range
    directly. Index numbers and pts are those of a full read.

    After iteration, `frames_read` says how many frames came out and `complete` whether the stream ended
    normally (False when decoding stopped early on a damaged or truncated file: a warning says so).
    """

    def __init__(self, path: str | os.PathLike, batch_size: int = 8, decoder: str = "pyav", start: int = 0,
                 stop: int | None = None, hwdec: str = "auto", *, fps: float | None = None, allow_gaps: bool = False,
                 depth: str = "8", transfer: str = "srgb"):
        if decoder not in DECODERS:
            raise UserError(f"unknown decoder '{decoder}': use one of {', '.join(DECODERS)}")
        if hwdec not in HWDEC:
            raise UserError(f"unknown hardware decoding mode '{hwdec}': use one of {', '.join(HWDEC)}")
        if start < 0 or (stop is not None and stop <= start):
            raise UserError(f"invalid frame range {start}..{stop}: need 0 <= start < stop")
        self.path = path
        self.batch_size = batch_size
        self.decoder = decoder
        # Optional frame range [start, stop) in presentation order; index numbers stay absolute.
        self.start = start
        self.stop = stop
        self.hwdec = hwdec
        self.hw_decoding: bool | None = None  # decided on first iteration: whether frames come from the GPU decoder
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {DEPTHS}")
        # "8": RGB uint8, what the models see; "native": the input's own depth (uint16 above 8 bits; a sequence's
        # EXR as float32, scene-linear), what the paste writes into so that the output keeps it
        self.depth = depth
        self.transfer = transfer  # an EXR's scene-linear values -> the models' encoding (colour.encode_linear)
        self.info: VideoInfo = probe(path, fps=fps, allow_gaps=allow_gaps)
        self.frames_read = 0
        self.first_pts = self.last_pts = 0
        self.complete = True

    def __iter__(self) -> Iterator[FrameBatch]:
        decoder = self.decoder
        if self.info.sequence is not None:
            decoder = "sequence"  # one picture a file (sequence.py)
        elif decoder == "decord" and self.depth == "native" and self.info.bits > 8:
            decoder = "pyav"  # decord decodes to 8 bits
        if decoder == "decord" and self.info.rotation:
            # decord ignores the display matrix and mis-sizes rotated frames: PyAV gets them right.
            log.warning("%s has rotation metadata, which decord cannot handle: decoding with PyAV", self.path)
            decoder = "pyav"
        if decoder == "decord" and decord_colour(self.info) != self.info.colour:
            # decord converts untagged video with BT.601 and offers no choice; converting its RGB afterwards
            # cannot bring back the colours it clipped.
            log.warning("%s is %s without saying so, which decord would read as BT.601: decoding with PyAV",
                        self.path, self.info.colour["matrix"])
            decoder = "pyav"
        if decoder == "decord" and size_changes(self.path):
            # decord scales every frame to the first one's size: PyAV sees the change and refuses the clip.
            log.warning("%s changes frame size mid-stream, which decord hides: decoding with PyAV", self.path)
            decoder = "pyav"
        frames = {"sequence": self._iter_sequence, "pyav": self._iter_pyav, "decord": self._iter_decord}[decoder]()
        wanted = None if self.stop is None else self.stop - self.start
        # Each picture is copied into its batch as it is decoded, so a batch never exists twice (as a list of
        # pictures and stacked): 200 MB less at 4K, for each of the run's decoders.
        batch: np.ndarray | None = None
        chunk_pts: list[int] = []
        first_shape = None
        for image, pts in frames:
            # Checked frame by frame, so the error names the same frame wherever the batches start.
            first_shape = first_shape or image.shape
            if image.shape != first_shape:
                number = self.start + self.frames_read + len(chunk_pts)
                raise UserError(f"frame {number} is {image.shape[1]}x{image.shape[0]}, frame {self.start} was "
                                f"{first_shape[1]}x{first_shape[0]}: sg3stream needs one frame size per clip "
                                "(cut the clip where the size changes, or scale it to one size first)")
            if batch is None:
                batch = np.empty((self.batch_size,) + image.shape, image.dtype)
            batch[len(chunk_pts)] = image
            chunk_pts.append(pts)
            del image
            if len(chunk_pts) == self.batch_size or self.frames_read + len(chunk_pts) == wanted:
                yield self._batch(batch, chunk_pts)
                batch, chunk_pts = None, []
            if self.frames_read == wanted:
                break
        if chunk_pts:
            yield self._batch(batch, chunk_pts)
        if self.frames_read == 0:
            raise UserError(f"no frames could be decoded from {self.path}")
        if self.complete:
            self._check_length()

    def _check_length(self) -> None:
        """Warn when fewer frames came out than the header announces, or they end well before its duration."""
        info, missing = self.info, None
        if self.stop is not None:
            if self.frames_read < self.stop - self.start:
                missing = f"read {self.frames_read} of the {self.stop - self.start} frames {self.start}..{self.stop - 1}"
        elif self.start > 0:
            if info.frames and self.start + self.frames_read < info.frames:
                missing = (f"read frames {self.start}..{self.start + self.frames_read - 1} of the {info.frames} "
                           "frames its header announces")
        elif info.frames and self.frames_read < info.frames:
            missing = f"read {self.frames_read} of the {info.frames} frames its header announces"
        elif info.duration and info.fps > 0:
            covered = float((self.last_pts - self.first_pts) * info.time_base) + 1 / info.fps
            if covered < info.duration - max(3 / info.fps, 0.05 * info.duration):
                missing = (f"read {self.frames_read} frames covering {covered:.2f} s of the {info.duration:.2f} s "
                           "its header announces")
        if missing:
            self.complete = False
            log.warning("%s: %s (truncated file?)", self.path, missing)

    def _batch(self, frames: np.ndarray, pts: list[int]) -> FrameBatch:
        """The first len(pts) pictures of `frames` (a short last batch is copied out of its buffer)."""
        count = len(pts)
        start = self.frames_read
        self.frames_read += count
        if start == 0:
            self.first_pts = pts[0]
        self.last_pts = pts[-1]
        first = self.start + start
        return FrameBatch(
            frames=frames if count == len(frames) else frames[:count].copy(),
            index=np.arange(first, first + count, dtype=np.int64),
            pts=np.array(pts, dtype=np.int64),
            time_base=self.info.time_base,
        )

    def _stopped_early(self, decoded: int, error: Exception) -> None:
        """A decoding error: fatal before the first frame, a warning after it (keep what was read)."""
        if decoded == 0:
            raise UserError(f"corrupt video stream in {self.path}: no frame could be decoded ({error})") from error
        self.complete = False
        log.warning("%s: decoding stopped after %d frames: %s (damaged or truncated file)", self.path, decoded, error)

    def _iter_pyav(self) -> Iterator[tuple[np.ndarray, int]]:
        if self.start == 0:
            yield from self._decode_pyav()
            return
        all_pts = packet_pts(self.path)
        if self.start >= len(all_pts):
            raise UserError(f"frame {self.start} is past the end of {self.path} ({len(all_pts)} frames)")
        try:
            yield from self._decode_pyav(seek_pts=all_pts[self.start])
        except _SeekFailed:
            # Frames without pts, or a seek that landed past the start: decode from the beginning and count.
            yield from self._decode_pyav(skip=self.start)

    def _decode_pyav(self, seek_pts: int | None = None, skip: int = 0) -> Iterator[tuple[np.ndarray, int]]:
        """Decoded frames and their pts; from the frame whose pts is `seek_pts` (seeking), or after `skip` frames.

        With `seek_pts`, _SeekFailed is raised before anything is yielded if the frames cannot be matched by pts.
        """
        tick = default_tick(self.info)
        matrix, range_ = colours.scaler_args(self.info.colour)  # not the frame's tags: those may be missing
        # FFmpeg's fast YUV->RGB path darkens by about 0.7 code values on average (a pass-through would shift every
        # frame); accurate rounding with full chroma interpolation does not, at some 15 ms a 1080p frame on one core.
        accurate = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
        rgb_format = "rgb48le" if self.depth == "native" and self.info.bits > 8 else "rgb24"
        if rgb_format == "rgb48le":  # swscale's full chroma interpolation garbles 16-bit RGB (FFmpeg 7, PyAV 18)
            accurate = Interpolation.BILINEAR | Interpolation.ACCURATE_RND
        with open_input(self.path, hwaccel=self._pyav_hwaccel()) as container:
            stream = video_stream(container, self.path)
            stream.thread_type = "AUTO"
            stream.thread_count = DECODER_THREADS
            if seek_pts is not None:
                container.seek(seek_pts, stream=stream, backward=True, any_frame=False)
            last_pts = None
            decoded = kept = 0
            try:
                for frame in container.decode(stream):
                    pts = frame.pts
                    decoded += 1
                    if seek_pts is not None and kept == 0:  # drop the frames between the keyframe and the start
                        if pts is not None and pts < seek_pts:
                            continue
                        if pts != seek_pts:  # no pts, or the start frame is not where the demuxer said
                            raise _SeekFailed
                    if pts is None:  # some containers leave pts unset: continue from the last one
                        pts = 0 if last_pts is None else last_pts + tick
                    last_pts = pts
                    if decoded <= skip:
                        continue
                    kept += 1
                    rgb = frame.reformat(format=rgb_format, src_colorspace=matrix, src_color_range=range_,
                                         interpolation=accurate)
                    yield upright(packed_pixels(rgb), self.info.rotation), pts
            except av.error.FFmpegError as e:
                self._stopped_early(kept, e)

    def _iter_sequence(self) -> Iterator[tuple[np.ndarray, int]]:
        """The pictures of an image sequence, one file each; pts counts frames from the first number (a gap
        keeps its place in time)."""
        from .sequence import read_image

        sequence = self.info.sequence
        first = sequence.numbers[0]
        for number in sequence.numbers[self.start:self.stop]:
            image = read_image(sequence.path(number))
            yield (image if self.depth == "native" else to_8bit(image, self.transfer)), number - first

    def _iter_decord(self) -> Iterator[tuple[np.ndarray, int]]:
        try:
            import decord
        except ImportError as e:  # pragma: no cover - decord is a dependency, but has no wheels everywhere
            raise UserError("--decoder decord needs the decord package (pip install decord)") from e
        try:
            reader = self._decord_gpu_reader(decord) or decord.VideoReader(str(self.path), ctx=decord.cpu(0),
                                                                            num_threads=DECODER_THREADS)
        except decord.DECORDError as e:
            raise UserError(f"decord cannot read {self.path}: {str(e).splitlines()[0]}") from e
        pts = packet_pts(self.path)
        if len(pts) != len(reader):
            # decord counts frames differently from the demuxer (rare): fall back to its own timestamps
            tb = self.info.time_base
            pts = [int(round(reader.get_frame_timestamp(i)[0] / tb)) for i in range(len(reader))]
        end = len(reader) if self.stop is None else min(self.stop, len(reader))
        if self.start >= len(reader):
            raise UserError(f"frame {self.start} is past the end of {self.path} ({len(reader)} frames)")
        for start in range(self.start, end, self.batch_size):
            try:
                images = reader.get_batch(list(range(start, min(start + self.batch_size, end)))).asnumpy()
            except decord.DECORDError as e:
                self._stopped_early(start - self.start, e)
                return
            for i, image in enumerate(images):
                yield upright(image, self.info.rotation), pts[start + i]


    # ---- hardware decoding ----------------------------------------------------------------------------------

    def _wants_hardware(self) -> bool:
        if self.hwdec == "none":
            return False
        if not cuda_present():
            if self.hwdec == "cuda":
                raise UserError("--hwdec cuda: no CUDA device is visible (use --hwdec auto or none)")
            return False
        return True

    def _hardware_unavailable(self, what: str, error: Exception) -> None:
        """A failed trial: an error when hardware decoding was required, else a note and the CPU decoder."""
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        if self.hwdec == "cuda":
            raise UserError(f"--hwdec cuda: {what} cannot decode {self.path} ({reason})") from error
        log.info("%s cannot decode %s (%s): decoding on the CPU", what, self.path, reason)
        self.hw_decoding = False

    def _pyav_hwaccel(self):
        """An av HWAccel for NVDEC when wanted and a trial decode of the first frame works with it; else None."""
        if self.hw_decoding is False or not self._wants_hardware():
            self.hw_decoding = False
            return None
        from av.codec.hwaccel import HWAccel

        def nvdec() -> HWAccel:  # a fresh one per container: it holds the device context FFmpeg creates
            # No software fallback inside FFmpeg: the trial must tell whether the GPU decodes this stream.
            return HWAccel("cuda", allow_software_fallback=False)

        if self.hw_decoding is None:
            try:
                with av.open(str(self.path), metadata_errors="ignore", hwaccel=nvdec()) as container:
                    next(container.decode(video_stream(container, self.path))).to_ndarray(format="rgb24")
            except Exception as e:  # no NVDEC in this FFmpeg build or driver, unsupported profile, ...
                self._hardware_unavailable("NVDEC (FFmpeg cuda hwaccel)", e)
                return None
            self.hw_decoding = True
            log.info("decoding %s with NVDEC", self.path)
        return nvdec()

    def _decord_gpu_reader(self, decord):
        """decord's reader on GPU 0 when wanted and decord was built with CUDA (the PyPI wheels are not); else None."""
        if not self._wants_hardware():
            self.hw_decoding = False
            return None
        try:
            reader = decord.VideoReader(str(self.path), ctx=decord.gpu(0))
            reader[0]  # trial decode
        except Exception as e:
            self._hardware_unavailable("decord's GPU decoder", e)
            return None
        self.hw_decoding = True
        log.info("decoding %s with decord on the GPU", self.path)
        return reader


class _SeekFailed(Exception):
    """Seeking could not be matched to frame positions by pts: decode from the beginning instead."""


def decord_colour(info: VideoInfo) -> dict[str, str]:
    """The matrix and range decord converts with: the tags, else BT.601 (whatever the size) and the format's range.

    Matrices with the same weights count as the same (BT.470BG and SMPTE 170M are both BT.601).
    """
    tags, colour = info.colour_tags, info.colour
    matrix = tags["matrix"] if tags["matrix"] in colours.SCALER_MATRICES else "smpte170m"
    if colours.WEIGHTS[matrix] == colours.WEIGHTS[colour["matrix"]]:
        matrix = colour["matrix"]
    range_ = tags["range"] if tags["range"] != "unknown" else colour["range"]
    return {**colour, "matrix": matrix, "range": range_}


def size_changes(path) -> bool:
    """Whether the video's frame size changes mid-stream, from its keyframes (where a new size can start)."""
    with open_input(path) as container:
        stream = video_stream(container, path)
        stream.codec_context.skip_frame = "NONKEY"
        stream.thread_type = "AUTO"
        sizes = set()
        try:
            for frame in container.decode(stream):
                sizes.add((frame.width, frame.height))
                if len(sizes) > 1:
                    return True
        except av.error.FFmpegError:  # damage: the real decode reports it
            pass
    return False


def default_tick(info: VideoInfo) -> int:
    """One frame's duration in time-base units, for frames that carry no pts."""
    if info.fps > 0:
        return max(1, int(round(1 / (info.fps * info.time_base))))
    return 1


def packet_pts(path) -> list[int]:
    """The video packets' presentation timestamps in display order, read by demuxing only (no decoding)."""
    with open_input(path) as container:
        stream = video_stream(container, path)
        return sorted(p.pts for p in container.demux(stream) if p.pts is not None and p.size)

