"""Image sequences: numbered pictures (`shot/%04d.png`, `plate.%06d.exr`, or a folder of them) as a clip.

An input or output whose name holds a printf number (`%04d`, `%d`) and an image extension, or an input that is a
folder of numbered images, is a sequence. Each frame is its own file, read and written one at a time:
- PNG (8/16 bit), TIFF (8/16 bit) and DPX (8/10/12/16 bit) through FFmpeg's image codecs in PyAV;
- OpenEXR (half or float) through the format's own Python bindings (`OpenEXR`, the ASWF's, released with every
  OpenEXR version; a 1.7 MB wheel that gives each channel's HALF/FLOAT type), rather than OpenImageIO (an 8.4 MB
  wheel, also the ASWF's, with its own copy of OpenEXR under a general image layer we would use for one format:
  PNG, TIFF and DPX already go through FFmpeg).

Frames keep their numbers: frame i of the clip is the i-th file present; its pts is its number minus the first, in
units of 1/fps (`--fps`: a sequence carries no rate). A number missing between the first and the last is an error
that names it, or with `--allow-gaps` a gap: the frames around it are read as neighbours and the output has the
same gap (an output sequence is numbered by the input's numbers, or from 0 for a video input).

Pictures come out as RGB arrays at their own depth: uint8, uint16 (anything deeper than 8 bits, scaled to the full
16-bit range as FFmpeg does), or float32 for EXR (scene-linear, as the file holds it).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import UserError

# extension -> FFmpeg's image codec ("exr": the OpenEXR bindings)
EXTENSIONS = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".dpx": "dpx", ".exr": "exr"}
PRINTF = re.compile(r"%(0?)(\d*)d")
# What each format is written as, by the depth of the frames: (8-bit, deep)
WRITE_FORMATS = {"png": ("rgb24", "rgb48be"), "tiff": ("rgb24", "rgb48le"), "dpx": ("rgb24", "rgb48le")}


def is_sequence_name(path: str | os.PathLike) -> bool:
    """A printf-numbered image name: `shot/%04d.png`."""
    name = Path(path).name
    return PRINTF.search(name) is not None and Path(name).suffix.lower() in EXTENSIONS


def is_sequence(path: str | os.PathLike) -> bool:
    """An input read as a sequence: a printf-numbered image name or a folder."""
    return is_sequence_name(path) or Path(path).is_dir()


@dataclass
class Sequence:
    """The files of a numbered sequence: `folder/prefix{number:0{digits}d}suffix` for each of `numbers`."""

    folder: Path
    prefix: str
    suffix: str
    digits: int                 # zero padding; 0: none
    numbers: list[int] = field(default_factory=list)

    @property
    def codec(self) -> str:
        return EXTENSIONS[self.suffix.lower()]

    @property
    def pattern(self) -> str:
        return str(self.folder / f"{self.prefix}%{'0' + str(self.digits) if self.digits else ''}d{self.suffix}")

    def path(self, number: int) -> Path:
        return self.folder / f"{self.prefix}{number:0{self.digits}d}{self.suffix}"

    def missing(self) -> list[int]:
        if not self.numbers:
            return []
        present = set(self.numbers)
        return [n for n in range(self.numbers[0], self.numbers[-1] + 1) if n not in present]


def parse_name(path: str | os.PathLike) -> Sequence:
    """The sequence a printf name describes, without looking for its files."""
    path = Path(path)
    match = PRINTF.search(path.name)
    if match is None or path.suffix.lower() not in EXTENSIONS:
        raise UserError(f"not an image sequence name (like shot/%04d.png, with {', '.join(EXTENSIONS)}): {path}")
    digits = int(match.group(2)) if match.group(1) and match.group(2) else 0
    return Sequence(path.parent if str(path.parent) else Path("."), path.name[:match.start()],
                    path.name[match.end():], digits)


def find_sequence(path: str | os.PathLike) -> Sequence:
    """The numbered files of an input sequence (a printf name, or a folder: its largest sequence), sorted."""
    path = Path(path)
    if path.is_dir():
        sequence, names = None, re.compile(r"^(.*?)(\d+)(\.[A-Za-z]+)$")
    else:
        sequence = parse_name(path)
        if not sequence.folder.is_dir():
            raise UserError(f"input not found: {path} (no folder {sequence.folder})")
        digits = rf"(\d{{{sequence.digits},}})" if sequence.digits else r"(\d+)"
        names = re.compile("^(" + re.escape(sequence.prefix) + ")" + digits + "(" + re.escape(sequence.suffix) + ")$")
    groups: dict[tuple[str, str], dict[int, str]] = {}
    for entry in os.scandir(path if sequence is None else sequence.folder):
        m = names.match(entry.name)
        if m and m.group(3).lower() in EXTENSIONS:
            groups.setdefault((m.group(1), m.group(3)), {})[int(m.group(2))] = m.group(2)
    if not groups:
        raise UserError(f"input not found: no numbered images ({', '.join(EXTENSIONS)}) in the folder {path}"
                        if sequence is None else f"input not found: no file matches {path}")
    (prefix, suffix), found = max(groups.items(), key=lambda kv: len(kv[1]))
    widths = {len(text) for text in found.values()}
    # zero-padded when every number has the same width and one of them starts with a zero
    digits = widths.pop() if len(widths) == 1 and any(t.startswith("0") for t in found.values()) else 0
    return Sequence(path if sequence is None else sequence.folder, prefix, suffix,
                    digits if sequence is None else sequence.digits, sorted(found))


def ranges(numbers: list[int]) -> str:
    """1003, 1004, 1005, 1010 -> "1003-1005, 1010"."""
    parts, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            parts.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ", ".join(parts)


def check_gaps(sequence: Sequence, allow_gaps: bool) -> None:
    missing = sequence.missing()
    if missing and not allow_gaps:
        shown = ranges(missing[:200]) + (" ..." if len(missing) > 200 else "")
        raise UserError(f"{sequence.pattern}: {len(missing)} frame(s) missing between {sequence.numbers[0]} and "
                        f"{sequence.numbers[-1]}: {shown} (--allow-gaps reads the frames around them as "
                        "neighbours and leaves the same gaps in an output sequence)")


# ---------------------------------------------------------------------------------------------------------------
# One picture

def read_image(path: str | os.PathLike) -> np.ndarray:
    """[H,W,3] RGB: uint8, uint16 (any depth above 8 bits), or float32 (EXR, as the file holds it)."""
    path = Path(path)
    if path.suffix.lower() == ".exr":
        return _read_exr(path)
    frame = _decode_picture(path)
    deep = max(c.bits for c in frame.format.components) > 8
    return frame.to_ndarray(format="rgb48le" if deep else "rgb24")


def image_format(path: str | os.PathLike) -> str:
    """The picture's own pixel format as FFmpeg names it: "gbrp10le" for a 10-bit DPX, "gbrpf16le" for a half
    EXR, "gbrpf32le" for a float one."""
    if Path(path).suffix.lower() != ".exr":
        return _decode_picture(Path(path)).format.name
    import OpenEXR

    try:
        with OpenEXR.File(str(path), separate_channels=True) as f:
            channels = f.channels()
            half = all(c.type() == OpenEXR.HALF for c in channels.values())
    except Exception as e:
        raise UserError(f"not a readable EXR image: {path} ({e})") from e
    return "gbrpf16le" if half else "gbrpf32le"


def _decode_picture(path: Path) -> av.VideoFrame:
    try:
        with av.open(str(path)) as container:
            return next(container.decode(video=0))
    except (av.error.FFmpegError, StopIteration) as e:
        raise UserError(f"not a readable image: {path} ({e})") from e


def _read_exr(path: Path) -> np.ndarray:
    import OpenEXR

    try:
        with OpenEXR.File(str(path), separate_channels=True) as f:
            channels = f.channels()
            if not {"R", "G", "B"} <= channels.keys():
                gray = channels.get("Y")
                if gray is None:
                    raise UserError(f"{path}: an EXR with R, G, B (or Y) channels is needed; it has "
                                    f"{', '.join(sorted(channels))}")
                return np.repeat(gray.pixels.astype(np.float32)[..., None], 3, axis=2)
            return np.stack([channels[c].pixels.astype(np.float32) for c in "RGB"], axis=-1)
    except UserError:
        raise
    except Exception as e:  # the bindings raise RuntimeError for damaged or truncated files
        raise UserError(f"not a readable EXR image: {path} ({e})") from e


def write_image(path: str | os.PathLike, image: np.ndarray, *, half: bool = True,
                alpha: np.ndarray | None = None, pix_fmt: str | None = None) -> None:
    """Write [H,W,3] RGB or [H,W] grey (uint8, uint16, or float for EXR: half, or float with half=False) to `path`,
    by its extension; `alpha` [H,W] (same scale as the image) adds an alpha channel (premultiplied colour).
    `pix_fmt`: the file's pixel format where the codec takes it (a 10-bit DPX as "gbrp10le"); else 8 or 16 bits."""
    path = Path(path)
    codec = EXTENSIONS[path.suffix.lower()]
    if codec == "exr":
        import OpenEXR

        dtype = np.float16 if half else np.float32
        if image.ndim == 2:
            channels = {"Y": np.ascontiguousarray(image, dtype=dtype)}
        else:
            channels = {c: np.ascontiguousarray(image[..., i], dtype=dtype) for i, c in enumerate("RGB")}
        if alpha is not None:
            channels["A"] = np.ascontiguousarray(alpha, dtype=dtype)
        header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
        with OpenEXR.File(header, channels) as f:
            f.write(str(path))
        return
    deep = image.dtype == np.uint16
    if image.ndim == 2:  # grey (a matte)
        source = "gray16le" if deep else "gray"
        target = ("gray", "gray16be" if codec == "png" else "gray16le")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=source)
    elif alpha is not None:
        rgba = np.concatenate([image, alpha.astype(image.dtype)[..., None]], axis=2)
        source = "rgba64le" if deep else "rgba"
        target = {"png": ("rgba", "rgba64be"), "tiff": ("rgba", "rgba64le"), "dpx": ("rgba", "rgba64le")}[codec]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgba), format=source)
    else:
        source, target = ("rgb48le" if deep else "rgb24"), WRITE_FORMATS[codec]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=source)
    context = av.CodecContext.create(codec, "w")
    context.width, context.height = image.shape[1], image.shape[0]
    context.pix_fmt = target[1] if deep else target[0]
    if pix_fmt is not None and alpha is None and image.ndim == 3 and pix_fmt in [
            f.name for f in av.Codec(codec, "w").video_formats or []]:
        context.pix_fmt = pix_fmt
    context.time_base = Fraction(1, 25)
    frame = frame.reformat(format=context.pix_fmt)
    data = b"".join(bytes(p) for p in context.encode(frame)) + b"".join(bytes(p) for p in context.encode(None))
    path.write_bytes(data)


# ---------------------------------------------------------------------------------------------------------------
# Writing a sequence

def check_sequence_pixel_format(output: str | os.PathLike, pix_fmt: str) -> None:
    """--pix-fmt for an output sequence: one its image codec writes (EXR: gbrpf16le, half, or gbrpf32le)."""
    codec = parse_name(output).codec
    accepted = ["gbrpf16le", "gbrpf32le"] if codec == "exr" else [
        f.name for f in av.Codec(codec, "w").video_formats or []]
    if pix_fmt not in accepted:
        raise UserError(f"--pix-fmt {pix_fmt}: {codec} pictures are written as {', '.join(accepted)}")


class SequenceWriter:
    """Write frames as numbered pictures (`out/%04d.png`), then `commit()` or `abort()`, as VideoWriter does.

    The pictures go into a hidden folder beside the output's and are moved into place by `commit()`, so a run that
    fails leaves no partial sequence. Frame i is numbered `numbers[i]` (the input sequence's: its first number and
    its gaps are kept) or `first + i`. Pictures keep their depth (uint8, uint16); float (scene-linear) pictures go
    to EXR as they are, or to an integer format display-encoded by `transfer`; an integer picture goes to EXR
    decoded to linear by it. EXR is written in half floats, or float with `pix_fmt` "gbrpf32le". `alpha`: the
    batches carry `matte` [N,H,W] uint16 (the layer mode's), written as the pictures' alpha channel.
    """

    def __init__(self, output: str | os.PathLike, *, numbers: list[int] | None = None, first: int = 0,
                 alpha: bool = False, pix_fmt: str | None = None, transfer: str = "srgb"):
        self.output = Path(output)
        self.sequence = parse_name(output)
        self.tmp = self.sequence.folder / f".{self.sequence.prefix or 'frames'}partial-{os.getpid()}"
        self.numbers, self.first = numbers, first
        self.alpha, self.transfer = alpha, transfer
        self.half = pix_fmt != "gbrpf32le"
        self.pix_fmt = pix_fmt  # PNG/TIFF/DPX: the pictures' format where the codec takes it (write_image)
        self.written: list[str] = []
        self.frames_written = 0

    def write(self, batch) -> None:
        from .colour import decode_linear, encode_linear

        self.tmp.mkdir(exist_ok=True)
        exr = self.sequence.codec == "exr"
        alphas = batch.data["matte"] if self.alpha else [None] * len(batch)
        for image, alpha, index in zip(batch.frames, alphas, batch.index):
            number = self.numbers[int(index)] if self.numbers is not None else self.first + int(index)
            name = self.sequence.path(number).name
            if exr and image.dtype.kind != "f":
                image = decode_linear(image.astype(np.float32) / np.iinfo(image.dtype).max, self.transfer)
            elif not exr and image.dtype.kind == "f":
                image = np.clip(np.rint(encode_linear(image, self.transfer) * 65535), 0, 65535).astype(np.uint16)
            if alpha is not None:
                alpha = alpha.astype(np.float32) / 65535 if exr else \
                    alpha if image.dtype == np.uint16 else ((alpha.astype(np.uint32) + 128) // 257).astype(np.uint8)
            try:
                write_image(self.tmp / name, image, half=self.half, alpha=alpha, pix_fmt=self.pix_fmt)
            except OSError as e:
                raise UserError(f"cannot write {self.sequence.folder / name}: {e.strerror or e}") from e
            self.written.append(name)
            self.frames_written += 1

    def commit(self) -> None:
        for name in self.written:
            os.replace(self.tmp / name, self.sequence.folder / name)
        self.discard()

    def discard(self) -> None:
        """Remove what was written and not committed."""
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)

    abort = discard
