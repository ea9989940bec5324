"""The hold-back window of the stages that need frames after a frame before they can finish it (alignment,
smoothing): one helper, so that each of them says how far it looks ahead instead of counting frames itself."""
from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from .batch import FrameBatch


class Window:
    """Batches held back until `after` frames past their last frame have arrived.

    `push(batch)` holds a batch and returns the stream position of its first frame; `take()` returns the held
    batches that may go, oldest first, and `take(final=True)` (at the end of the stream) all of them. Positions
    count frames in the order they arrived, from 0, so a stream may start at any frame number (a farm segment).
    """

    def __init__(self, after: int):
        if after < 0:
            raise ValueError(f"a window looks ahead 0 or more frames (got {after})")
        self.after = int(after)
        self._held: deque[FrameBatch] = deque()
        self.arrived = 0  # frames pushed so far
        self.released = 0  # frames taken so far: the position of the first held frame

    def push(self, batch: FrameBatch) -> int:
        start = self.arrived
        self._held.append(batch)
        self.arrived += len(batch)
        return start

    def take(self, final: bool = False) -> list[FrameBatch]:
        out = []
        while self._held:
            last = self.released + len(self._held[0]) - 1  # position of the oldest batch's last frame
            if not final and last + self.after >= self.arrived:
                break
            batch = self._held.popleft()
            self.released += len(batch)
            out.append(batch)
        return out

    @property
    def frames_held(self) -> int:
        """Frames pushed and not yet taken."""
        return self.arrived - self.released

    @property
    def batches_held(self) -> int:
        return len(self._held)


def one_batch(batches: list[FrameBatch]) -> FrameBatch | None:
    """What a stage's `__call__` returns for the batches it releases: None, the batch, or consecutive batches
    as one (when one incoming batch lets more than one go)."""
    if not batches:
        return None
    if len(batches) == 1:
        return batches[0]
    return FrameBatch(frames=np.concatenate([b.frames for b in batches]),
                      index=np.concatenate([b.index for b in batches]),
                      pts=np.concatenate([b.pts for b in batches]),
                      time_base=batches[0].time_base,
                      data={key: _concat([b.data[key] for b in batches], [len(b) for b in batches])
                            for key in batches[0].data})


def _concat(values: list[Any], lengths: list[int]) -> Any:
    """Per-frame arrays (and dicts of them) joined along the frame axis; anything else is the first batch's."""
    first = values[0]
    if isinstance(first, np.ndarray) and first.ndim >= 1 and first.shape[0] == lengths[0]:
        return np.concatenate(values)
    if isinstance(first, dict):
        return {k: _concat([v[k] for v in values], lengths) for k in first}
    return first
