"""The unit of work that flows between stages: a batch of consecutive frames and what stages attached."""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np


@dataclass
class FrameBatch:
    """Consecutive frames of one clip.

    frames: [N, H, W, 3] uint8 RGB (the decoded picture, rotation already applied).
    index:  [N] int64 frame numbers in presentation order, starting at 0.
    pts:    [N] int64 presentation timestamps in `time_base` units (never renumbered).
    data:   what stages attached, keyed by name; arrays have N as their first dimension.
    """

    frames: np.ndarray
    index: np.ndarray
    pts: np.ndarray
    time_base: Fraction
    data: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def frame_range(self) -> tuple[int, int]:
        """First and last frame numbers (inclusive), for error messages and logs."""
        if len(self.index) == 0:
            return (-1, -1)
        return int(self.index[0]), int(self.index[-1])

    def replace(self, **changes: Any) -> "FrameBatch":
        """A copy with some fields replaced; `data` is copied shallowly so stages never share dicts."""
        fields = dict(frames=self.frames, index=self.index, pts=self.pts, time_base=self.time_base, data=dict(self.data))
        fields.update(changes)
        return FrameBatch(**fields)
