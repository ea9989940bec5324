"""Cutting a clip into segments that, run on their own, give the frames a whole-clip run gives.

A segment is a core range [start, stop) of frames it writes, decoded with context frames on both sides:

    decode_start ... start ============ core ============ stop ... decode_stop

The context is what the chain says its windowed stages need, chained (`chain.chain_context`): a frame's smoothed
code depends on the codes of the frames up to the smoothing window away, and each of those on the alignment of
frames up to the alignment's look-ahead away (bridged gaps and quad smoothing). Both decode ends are then moved
out to a multiple of the batch size, so the landmark stage (whose mediapipe tracking restarts at every batch)
sees the same chunks of frames as a single-process run. The last segment decodes to the end of the stream (decode_stop None).

Shot boundaries: the chain ends every face track, alignment and smoothing window at a cut, so no frame depends on a
frame across a cut except through the shot stage itself, which must see a few frames around the cut to find it
(its context_before / context_after). Given the clip's cuts (`find_cuts`), `plan_segments` moves each boundary
to a cut within a quarter of a segment; a segment that starts at a cut then decodes only the shot stage's
context_before frames before it, and one that stops at a cut only its context_after frames after it (both still
moved out to batch boundaries), instead of the whole chain's context.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from ..video.decode import FrameReader
from ..video.shots import ShotDetector, ShotStage


@dataclass(frozen=True)
class Segment:
    number: int
    start: int  # first frame written
    stop: int | None  # one past the last frame written; None: to the end of the clip
    decode_start: int
    decode_stop: int | None  # None: to the end of the clip
    start_at_cut: bool = False  # a new shot starts at `start`: little context is decoded before it
    stop_at_cut: bool = False  # a new shot starts at `stop`: little context is decoded after it

    @property
    def name(self) -> str:
        return f"seg-{self.number:04d}"

    def to_dict(self) -> dict:
        return asdict(self)


def shot_context() -> tuple[int, int]:
    """Frames the chain's shot stage needs before and after a cut to find it: (context_before, context_after)."""
    stage = ShotStage()
    return stage.context_before, stage.context_after


def find_cuts(path, *, batch_size: int = 16, decoder: str = "pyav", hwdec: str = "auto", **detector) -> list[int]:
    """The clip's cuts (index of the first frame of each new shot), as the chain's shot stage finds them in a
    whole-clip run: `detector` are ShotStage's `detector_args` (its defaults when empty).

    Cost, in the planning process before any segment runs: one decode of the whole clip at its own resolution
    (at most `batch_size` frames held), plus ShotDetector's scoring of each frame downscaled to ~256 px, 1-2 ms a
    frame (measured on 720p: 0.3 s for 200 frames, beside 4 s to decode them on one shared core). No model is
    loaded. The detector is fed frame by frame, so its answer does not depend on `batch_size`.
    """
    shots = ShotDetector(**(detector or ShotStage().detector_args))
    cuts: list[int] = []
    for batch in FrameReader(path, batch_size=batch_size, decoder=decoder, hwdec=hwdec):
        cuts += shots.push(batch.frames, int(batch.index[0]))
    return sorted(cuts + shots.finish())


def plan_segments(total_frames: int, segment_frames: int | None, context: int, batch_size: int,
                  cuts: Sequence[int] = (), cut_context: tuple[int, int] | None = None) -> list[Segment]:
    """Cores of `segment_frames` frames (the last one takes the rest), with `context` frames around them.

    cuts: the clip's cuts (`find_cuts`). A boundary with a cut within a quarter of a segment moves to the nearest
    one (a quarter on either side keeps every core at least half a segment long, and distinct), and decodes only
    `cut_context` (the shot stage's, `shot_context()` by default) around it. Boundaries with no cut near stay put.
    """
    if total_frames < 1:
        return []
    if not segment_frames or segment_frames >= total_frames:
        return [Segment(0, 0, None, 0, None)]
    starts = list(range(0, total_frames, segment_frames))
    if total_frames - starts[-1] < segment_frames // 2 and len(starts) > 1:
        starts.pop()  # fold a short tail into the previous segment rather than run a tiny one
    tolerance = segment_frames // 4
    at_cut = set()
    for k in range(1, len(starts)):
        nominal = starts[k]
        near = [c for c in cuts if abs(c - nominal) <= tolerance]
        if near:
            starts[k] = min(near, key=lambda c: (abs(c - nominal), c))  # the nearest; the earlier on a tie
            at_cut.add(starts[k])
    # Nothing after a cut depends on what is before it but the shot stage finding it (the chain's own context
    # never asks less, but passthrough's 0 is less still).
    before, after = cut_context or shot_context()
    before, after = min(before, context), min(after, context)
    segments = []
    for number, start in enumerate(starts):
        last = number == len(starts) - 1
        stop = None if last else starts[number + 1]
        decode_start = max(0, start - (before if start in at_cut else context)) // batch_size * batch_size
        decode_stop = None
        if stop is not None:
            needed = stop + (after if stop in at_cut else context)
            decode_stop = -(-needed // batch_size) * batch_size  # round up to a batch boundary
            if decode_stop >= total_frames:
                decode_stop = None
        segments.append(Segment(number, start, stop, decode_start, decode_stop,
                                start_at_cut=start in at_cut, stop_at_cut=stop in at_cut))
    return segments
