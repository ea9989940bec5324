"""The two inputs of eval as streams of frames: video files (decoded as `run` decodes them, so colours match) or
sequences of [H, W, 3] uint8 RGB frames."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from ..errors import UserError


@dataclass
class Source:
    role: str  # "REFERENCE" or "EDITED": how messages name it
    label: str  # the path, or "frames"
    frames: Iterator[np.ndarray]
    length: int | None  # frames, when known before reading (a file's header, a sequence's len)
    size: tuple[int, int] | None  # (width, height), when known before reading

    def count_rest(self) -> int:
        """Read what is left and say how many frames that was (for a length-mismatch message)."""
        return sum(1 for _ in self.frames)


def _file_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    from ..video.decode import FrameReader

    # on the CPU: eval needs the pictures in host memory anyway, and the numbers then never depend on the machine
    for batch in FrameReader(path, batch_size=8, hwdec="none"):
        yield from batch.frames


def _checked(frames: Iterable, role: str) -> Iterator[np.ndarray]:
    for i, frame in enumerate(frames):
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise UserError(f"{role} frame {i} is {frame.dtype} {list(frame.shape)}: eval takes [H, W, 3] uint8 RGB")
        yield frame


def open_source(source, role: str) -> Source:
    """A path (str or os.PathLike) to a video, or a sequence/iterable of frames (a [T, H, W, 3] array too)."""
    if isinstance(source, (str, os.PathLike)):
        from ..video.probe import probe

        info = probe(source)
        return Source(role, str(source), _file_frames(source), info.frames, (info.width, info.height))
    length = len(source) if hasattr(source, "__len__") else None
    size = None
    if isinstance(source, np.ndarray) and source.ndim == 4:
        size = (source.shape[2], source.shape[1])
    return Source(role, "frames", _checked(source, role), length, size)


def size_mismatch(reference: Source, edited: Source, ref_size: tuple[int, int],
                  edit_size: tuple[int, int]) -> UserError:
    return UserError(f"REFERENCE {reference.label} is {ref_size[0]}x{ref_size[1]}, EDITED {edited.label} is "
                     f"{edit_size[0]}x{edit_size[1]}: eval compares them pixel by pixel, so they need one size")


def length_mismatch(reference: Source, edited: Source, ref_frames: int, edit_frames: int) -> UserError:
    return UserError(f"REFERENCE {reference.label} has {ref_frames} frames, EDITED {edited.label} has {edit_frames}: "
                     "eval compares them frame by frame, so they need the same length")
