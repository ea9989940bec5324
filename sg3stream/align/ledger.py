"""run.json's `faces`: one entry per face track, counted as the frames leave the alignment.

    {"id": 0, "first_frame": 12, "last_frame": 140, "frames": 129, "frames_detected": 125,
     "frames_edited": 120, "passed_through": {"small": 0, "profile": 5, "short": 0}, "mean_size": 212.4}

frames: from the track's first to its last frame (bridged gaps included); frames_detected: frames with landmarks;
frames_edited: frames inverted, rendered and pasted (detected and not passed through); passed_through: the detected
frames left unchanged, by reason (gate.py); mean_size: the aligned quad's mean side in source pixels.
"""
from __future__ import annotations

import threading

import numpy as np

from .gate import REASONS


class FaceLedger:
    """Counts per track; `add` is called by the alignment stage with each batch it releases, in frame order."""

    def __init__(self):
        self.tracks: dict[int, dict] = {}
        self._lock = threading.Lock()  # written by the alignment thread, read by the job at the end

    def add(self, index: np.ndarray, track_id: np.ndarray, detected: np.ndarray, has_quad: np.ndarray,
            passthrough: np.ndarray, aligned_quad: np.ndarray) -> None:
        """index [N]; the rest per face [N, F] (aligned_quad [N, F, 4, 2])."""
        side = np.linalg.norm(aligned_quad[..., 3, :] - aligned_quad[..., 0, :], axis=-1)
        with self._lock:
            for i, k in zip(*np.nonzero(has_quad & (track_id >= 0))):
                t = self.tracks.setdefault(int(track_id[i, k]), {
                    "id": int(track_id[i, k]), "first_frame": int(index[i]), "last_frame": int(index[i]),
                    "frames": 0, "frames_detected": 0, "frames_edited": 0,
                    "passed_through": {r: 0 for r in REASONS[1:]}, "size_sum": 0.0})
                t["last_frame"] = int(index[i])
                t["frames"] += 1
                if detected[i, k]:
                    t["frames_detected"] += 1
                    t["size_sum"] += float(side[i, k])
                    if passthrough[i, k]:
                        t["passed_through"][REASONS[passthrough[i, k]]] += 1
                    else:
                        t["frames_edited"] += 1

    def summary(self) -> list[dict]:
        """The tracks by id, each with its `mean_size`."""
        with self._lock:
            out = []
            for tid in sorted(self.tracks):
                t = dict(self.tracks[tid])
                total = t.pop("size_sum")
                t["passed_through"] = dict(t["passed_through"])
                t["mean_size"] = round(total / t["frames_detected"], 1) if t["frames_detected"] else None
                out.append(t)
            return out

    def passed_through(self) -> dict[str, int]:
        """Detected face-frames left unchanged, by reason, over every track."""
        totals = {r: 0 for r in REASONS[1:]}
        for t in self.summary():
            for reason, n in t["passed_through"].items():
                totals[reason] += n
        return totals
