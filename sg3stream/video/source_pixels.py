"""Lossless outputs: every pixel outside the face leaves exactly as it came in, in the input's own pixel format.

The chain works on RGB pictures. A YUV input decoded to RGB and encoded back is not the input any more, even at
16 bits: the chroma is interpolated up and filtered down again, and colours outside RGB are clipped (on a 10-bit
4:2:0 clip, a few percent of the samples move, some by tens of codes). So for a lossless output in the input's own
pixel format (FFV1 by default keeps it), the writer decodes the input once more, in step with the output, without
any conversion, and copies its samples wherever the paste's matte is 0: luma sample by sample, a chroma sample where
every picture pixel it covers is 0. Only the face and its feathered edge are the converted RGB's.
"""
from __future__ import annotations

import os
from typing import Iterator

import av
import numpy as np

# Encoders whose output decodes to exactly what they were given
LOSSLESS_CODECS = ("ffv1", "ffvhuff", "huffyuv", "utvideo")


def restorable(pix_fmt: str) -> bool:
    """A planar format, one component a plane, at most 16 bits, no palette, no alpha: samples can be copied."""
    fmt = av.VideoFormat(pix_fmt)
    planes = [c.plane for c in fmt.components]
    floating = "f16" in pix_fmt or "f32" in pix_fmt
    return (not fmt.has_palette and not floating and len(planes) == 3 and len(set(planes)) == 3
            and all(c.bits <= 16 for c in fmt.components))


def plane_samples(plane, bits: int) -> np.ndarray:
    """A frame plane's samples as a writable [height, width] view (not a copy)."""
    dtype = np.uint16 if bits > 8 else np.uint8
    rows = np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // np.dtype(dtype).itemsize)
    return rows[:, :plane.width]


def copy_outside(out: av.VideoFrame, source: av.VideoFrame, matte: np.ndarray) -> None:
    """Copy `source`'s samples into `out` (same size and format) wherever `matte` [H,W] is 0."""
    keep = matte == 0
    height, width = keep.shape
    bits = out.format.components[0].bits
    for out_plane, source_plane in zip(out.planes, source.planes):
        ph, pw = out_plane.height, out_plane.width
        sy, sx = -(-height // ph), -(-width // pw)
        kept = keep
        if (sy, sx) != (1, 1):  # a subsampled plane: a sample is kept where all the pixels it covers are
            padded = np.ones((ph * sy, pw * sx), bool)
            padded[:height, :width] = keep
            kept = padded.reshape(ph, sy, pw, sx).all(axis=(1, 3))
        target = plane_samples(out_plane, bits)
        target[kept] = plane_samples(source_plane, bits)[kept]


class SourceFrames:
    """The input's frames as decoded, unconverted, fetched by index in increasing order (the writer's)."""

    def __init__(self, path: str | os.PathLike):
        from .probe import open_input

        self.container = open_input(path)
        self.frames: Iterator[av.VideoFrame] = self.container.decode(video=0)
        self.next_index = 0

    def frame(self, index: int) -> av.VideoFrame | None:
        """Frame `index`, or None when the input ends before it."""
        for frame in self.frames:
            self.next_index += 1
            if self.next_index - 1 == index:
                return frame
        return None

    def close(self) -> None:
        self.container.close()
