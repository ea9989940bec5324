"""`--matte PATH`: the paste's blend mask, frame by frame, aligned with the output (same frames, same timestamps).

Where the matte is 0 the output's pixel is the input's; where it is 1 the pixel is the edited face's; between, the
blend. Every face of the frame is in it (the union: the largest of their masks). It is written losslessly with FFV1
(`.mkv` or `.mov`), grey, 16 bits (`gray16le`, 0-65535) or 8 bits (`gray`, 0-255), `--matte-depth`; like the output
it appears only when the run succeeds.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import UserError
from .encode import temporary_path

MATTE_SUFFIXES = (".mkv", ".mov")
DEPTHS = {8: "gray", 16: "gray16le"}


def check_matte(path: str | os.PathLike, depth: int, output: str | os.PathLike) -> None:
    """The matte's path and depth, before any model loads."""
    from .sequence import is_sequence_name, parse_name

    path = Path(path)
    if is_sequence_name(path):  # matte/%04d.png: one grey picture a frame
        if parse_name(path).codec == "dpx" or not parse_name(path).folder.is_dir():
            raise UserError(f"--matte {path}: a matte sequence is PNG, TIFF or EXR, into an existing folder")
        if path.resolve() == Path(output).resolve():
            raise UserError("--matte must not be the output")
        return
    if path.suffix.lower() not in MATTE_SUFFIXES:
        raise UserError(f"--matte {path}: the matte is written with FFV1 into {' or '.join(MATTE_SUFFIXES)}, or as "
                        "a sequence (matte/%04d.png)")
    if depth not in DEPTHS:
        raise UserError(f"--matte-depth must be 8 or 16 (got {depth})")
    if path.resolve() == Path(output).resolve():
        raise UserError("--matte must not be the output file")
    if not path.parent.is_dir():
        raise UserError(f"--matte {path}: folder not found: {path.parent}")


def open_matte(path: str | os.PathLike, *, time_base: Fraction, rate: float, depth: int = 16,
               numbers: list[int] | None = None):
    """The matte's writer: a video (MatteWriter) or a sequence numbered as the output's (MatteSequence)."""
    from .sequence import is_sequence_name

    if is_sequence_name(path):
        return MatteSequence(path, depth=depth, numbers=numbers)
    return MatteWriter(path, time_base=time_base, rate=rate, depth=depth)


class MatteSequence:
    """The matte as numbered grey pictures (8 or 16 bit; EXR: half floats, 0-1), committed with the output."""

    def __init__(self, path: str | os.PathLike, *, depth: int = 16, numbers: list[int] | None = None):
        from .sequence import SequenceWriter

        self.path = Path(path)
        self.depth = depth
        self.pictures = SequenceWriter(path, numbers=numbers)

    def write(self, matte: np.ndarray, pts: np.ndarray, time_base: Fraction, index: np.ndarray) -> None:
        from ..pipeline.batch import FrameBatch

        if self.pictures.sequence.codec == "exr":
            values = matte.astype(np.float32) / 65535
        else:
            values = matte if self.depth == 16 else ((matte.astype(np.uint32) + 128) // 257).astype(np.uint8)
        self.pictures.write(FrameBatch(values, index, pts, time_base))

    def commit(self) -> None:
        self.pictures.commit()

    def abort(self) -> None:
        self.pictures.discard()

    def remove(self) -> None:
        """Take back a committed matte (the output failed after it: both or neither)."""
        for name in self.pictures.written:
            (self.pictures.sequence.folder / name).unlink(missing_ok=True)


class MatteWriter:
    """Writes `matte` [N, H, W] uint16 (0-65535, PasteStage's) with the frames' pts; `commit()` or `abort()` as
    VideoWriter does."""

    def __init__(self, path: str | os.PathLike, *, time_base: Fraction, rate: float, depth: int = 16):
        self.path = Path(path)
        self.tmp = temporary_path(self.path)
        self.time_base = time_base
        self.rate = Fraction(rate).limit_denominator(100000) if rate else Fraction(25)
        self.depth = depth
        self.container = None
        self.stream = None

    def write(self, matte: np.ndarray, pts: np.ndarray, time_base: Fraction, index=None) -> None:
        if self.container is None:
            self.container = av.open(str(self.tmp), mode="w")
            self.stream = self.container.add_stream("ffv1", rate=self.rate)
            self.stream.height, self.stream.width = matte.shape[1:3]
            self.stream.pix_fmt = DEPTHS[self.depth]
            self.stream.time_base = self.time_base
        # 65535 -> 255: divide by 257, rounded
        values = matte if self.depth == 16 else ((matte.astype(np.uint32) + 128) // 257).astype(np.uint8)
        for plane, t in zip(values, pts):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(plane), format=DEPTHS[self.depth])
            frame.pts = int(t)
            frame.time_base = time_base
            for packet in self.stream.encode(frame):
                self.container.mux(packet)

    def commit(self) -> None:
        try:
            if self.container is not None:
                for packet in self.stream.encode(None):
                    self.container.mux(packet)
                self.container.close()
                self.container = None
                os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def remove(self) -> None:
        """Take back a committed matte (the output failed after it: both or neither)."""
        self.path.unlink(missing_ok=True)

    def abort(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            except Exception:
                pass
            self.container = None
        self.tmp.unlink(missing_ok=True)
