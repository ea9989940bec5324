"""Cutting a clip into segments that, run on their own, give the frames a whole-clip run gives.

A segment is a core range [start, stop) of frames it writes, decoded with context frames on both sides:

    decode_start ... start ============ core ============ stop ... decode_stop

The context is what the chain says its windowed stages need, chained (`chain.chain_context`): a frame's smoothed
code depends on the codes of the frames up to the smoothing window away, and each of those on the alignment of
frames up to the alignment's look-ahead away (bridged gaps and quad smoothing). Both decode ends are then moved
out to a multiple of the batch size, so the landmark stage (whose mediapipe tracking restarts at every batch)
sees the same chunks of frames as a single-process run. The last segment decodes to the end of the stream (decode_stop None).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Segment:
    number: int
    start: int  # first frame written
    stop: int | None  # one past the last frame written; None: to the end of the clip
    decode_start: int
    decode_stop: int | None  # None: to the end of the clip

    @property
    def name(self) -> str:
        return f"seg-{self.number:04d}"

    def to_dict(self) -> dict:
        return asdict(self)


def plan_segments(total_frames: int, segment_frames: int | None, context: int, batch_size: int) -> list[Segment]:
    """Cores of `segment_frames` frames (the last one takes the rest), with `context` frames around them."""
    if total_frames < 1:
        return []
    if not segment_frames or segment_frames >= total_frames:
        return [Segment(0, 0, None, 0, None)]
    starts = list(range(0, total_frames, segment_frames))
    if total_frames - starts[-1] < segment_frames // 2 and len(starts) > 1:
        starts.pop()  # fold a short tail into the previous segment rather than run a tiny one
    segments = []
    for number, start in enumerate(starts):
        last = number == len(starts) - 1
        stop = None if last else start + segment_frames
        decode_start = max(0, start - context) // batch_size * batch_size
        decode_stop = None
        if stop is not None:
            decode_stop = -(-(stop + context) // batch_size) * batch_size  # round up to a batch boundary
            if decode_stop >= total_frames:
                decode_stop = None
        segments.append(Segment(number, start, stop, decode_start, decode_stop))
    return segments
