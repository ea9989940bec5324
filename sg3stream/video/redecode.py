"""The input decoded again where the picture is needed next, so that it need not wait in a window meanwhile.

The chain needs the picture three times: for the landmarks, for cutting the faces out once their smoothed quads
are known (the alignment window looks about 30 frames ahead), and for the paste (after the smoothing window's
60 frames). Carrying the pictures through those windows holds 100+ full frames: 2.5 GB at 4K. Decoding the file
again, in step with the batches that reach the stage after it, costs one more decode per frame and lets the chain
drop the pictures after the landmarks (the contract plans it: see `Chain._plan_drops`). A decode of the same file
with the same decoder gives the same pixels.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np

from ..pipeline.batch import FrameBatch
from ..pipeline.contract import FRAMES
from ..pipeline.stage import Stage


class RedecodeStage(Stage):
    """Attaches the decoded picture again, from `open_reader()`: a reader of the same input, range and batching."""

    name = "redecode"
    writes = (FRAMES,)

    def __init__(self, open_reader: Callable[[], Iterable[FrameBatch]], name: str = "redecode"):
        self.open_reader = open_reader
        self.name = name  # the chain decodes twice more: for the crops ("redecode-crop") and for the paste
        self.batches: Iterator[FrameBatch] | None = None
        self.pending: FrameBatch | None = None  # decoded frames not yet matched (batches may be split downstream)

    def setup(self) -> None:
        self.batches = iter(self.open_reader())

    def _frames_for(self, index: np.ndarray) -> np.ndarray:
        """The decoded frames with exactly these (consecutive) index numbers."""
        parts, wanted = [], list(index)
        while wanted:
            if self.pending is None or len(self.pending) == 0:
                self.pending = next(self.batches, None)
                if self.pending is None:
                    raise RuntimeError(f"the second decode ended before frame {wanted[0]}")
            first = int(self.pending.index[0])
            if first != wanted[0]:
                raise RuntimeError(f"the second decode gave frame {first} where frame {wanted[0]} was expected")
            take = min(len(wanted), len(self.pending))
            parts.append(self.pending.frames[:take])
            self.pending = self.pending.replace(frames=self.pending.frames[take:], index=self.pending.index[take:],
                                                pts=self.pending.pts[take:])
            wanted = wanted[take:]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def __call__(self, batch: FrameBatch) -> FrameBatch:
        return batch.replace(frames=self._frames_for(batch.index))

    def close(self) -> None:
        close = getattr(self.batches, "close", None)
        if close is not None:
            close()
        self.batches = self.pending = None
