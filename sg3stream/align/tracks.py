"""Face tracks: link per-frame face detections into tracks, and keep each track in one slot of the face axis.

(track.py, beside this module, holds the temporal helpers that run *within* one track: gap bridging, smoothing.)

Detections are [F, P, 2] point arrays per frame in source-frame pixels: mediapipe landmarks (P = 478, from
LandmarkDetector.detect_chunk), FFHQ quads (P = 4) or box corners (P = 2). A row with any NaN is an empty slot.
Each detection is summarised by its centre (the mean of its points) and its size (twice the RMS distance of the
points from the centre: rotation-invariant, about 0.8 x the face width for a mediapipe mesh).

Matching, frame by frame (`Tracker.push`): the live tracks and the frame's detections are paired by
scipy's `linear_sum_assignment` over a geometric cost

    cost = |centre - predicted centre| / track size + size_weight * |log(size / track size)|

where the predicted centre extrapolates the track's velocity (constant-velocity model) over the frames since its
last detection: two faces that cross paths keep their identities because each keeps moving the way it moved.
A pair whose cost exceeds `max_cost` is not matched (gating): the detection starts a new track.

Track lifetime:
* A track survives up to `max_gap` consecutive frames without a detection (the same default as AlignStage's gap
  bridging, so a bridged gap never joins two tracks); after a longer gap it has ended, and a face found again
  starts a new track.
* A cut (`cut_before=True`, from ShotDetector) ends every track; faces after it start new tracks.
* Ids are ints 0, 1, 2, ... in order of appearance (faces appearing in the same frame: left to right); an id is
  never reused.

Slots (for arrays [N, S, ...] downstream, S = `slots`, by default the detections' F): each track is given a slot
when it starts and keeps it for its whole life, so the same face is in the same slot in every frame of its track,
and the per-slot stages (gap bridging, smoothing) only see one face between track changes. A slot is reused only
after its track ended: the lowest free slot is taken. When a new face finds every slot held, the track whose last
detection is oldest (it is in a gap: detections never outnumber the slots) is ended early to free its slot.
Downstream must still treat a change of `track_id` within a slot as a boundary (it happens at a cut, or when a
slot is reused right after its previous track ended): never smooth or bridge across it.

    tracker = Tracker(max_gap=12)
    ids = tracker.push_chunk(landmarks, first_index, cuts)       # [n, F] track id per detection row, -1 empty
    order, track_id = slot_order(ids, tracker.slot_of, tracker.slots)
    landmarks = take_slots(landmarks, order, np.nan)              # [n, S, 478, 2]: one track per slot
    source = take_slots(source, order, 0)                         # any other per-row array the same way
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DEFAULT_MAX_GAP = 12  # AlignStage's default max_gap
DEFAULT_MAX_COST = 1.0  # about one face size of unexplained motion between two detections
DEFAULT_SIZE_WEIGHT = 1.0
_VELOCITY_MEMORY = 0.5  # weight of the previous velocity when a new detection updates it (damps landmark jitter)
_UNMATCHABLE = 1e6


@dataclass
class Track:
    """One face's track. `first`/`last`: frames of its first and latest detection; `frames`: how many frames had a
    detection; `ended`: it can no longer be continued (gap, cut or slot taken)."""

    id: int
    slot: int
    first: int
    last: int
    centre: np.ndarray
    size: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    frames: int = 1
    ended: bool = False

    def predict(self, frame: int) -> np.ndarray:
        return self.centre + self.velocity * (frame - self.last)


def centres_and_sizes(detections: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[F, P, 2] points -> (valid [F] bool, centre [F, 2], size [F]); rows with any NaN are not valid."""
    det = np.asarray(detections, dtype=np.float64)
    valid = np.isfinite(det).all(axis=(1, 2))
    centre = np.full((len(det), 2), np.nan)
    size = np.full(len(det), np.nan)
    if valid.any():
        pts = det[valid]
        c = pts.mean(axis=1)
        centre[valid] = c
        # floor of one pixel: a degenerate detection (all points equal) must not divide by zero
        size[valid] = np.maximum(2 * np.sqrt(((pts - c[:, None]) ** 2).sum(axis=2).mean(axis=1)), 1.0)
    return valid, centre, size


class Tracker:
    """Streaming multi-face tracker: call `push` for every frame in increasing order (or `push_chunk`)."""

    def __init__(self, max_gap: int = DEFAULT_MAX_GAP, max_cost: float = DEFAULT_MAX_COST,
                 size_weight: float = DEFAULT_SIZE_WEIGHT, slots: int | None = None):
        if max_gap < 0:
            raise ValueError(f"max_gap must be 0 or more frames, got {max_gap}")
        self.max_gap = int(max_gap)
        self.max_cost = float(max_cost)
        self.size_weight = float(size_weight)
        self.slots = slots  # set from the first detections when None
        self.tracks: dict[int, Track] = {}  # every track so far, by id
        self.slot_of: dict[int, int] = {}  # track id -> its slot, for slot_order
        self._live: list[Track] = []
        self._last_frame: int | None = None

    def push(self, frame_index: int, detections: np.ndarray, cut_before: bool = False) -> np.ndarray:
        """One frame's detections [F, P, 2] (NaN rows: empty) -> [F] int track id per row, -1 for empty rows.

        cut_before: a new shot starts at this frame; every track ends before matching."""
        if self._last_frame is not None and frame_index <= self._last_frame:
            raise ValueError(f"frames must come in increasing order: {frame_index} after {self._last_frame}")
        self._last_frame = frame_index
        if self.slots is None:
            self.slots = len(detections)
        if cut_before:
            self._end([t for t in self._live])
        self._end([t for t in self._live if frame_index - t.last - 1 > self.max_gap])

        valid, centre, size = centres_and_sizes(detections)
        ids = np.full(len(valid), -1, dtype=np.int64)
        rows = np.flatnonzero(valid)
        matched = self._match(frame_index, centre[rows], size[rows])
        for r, track in zip(rows, matched):
            if track is not None:
                self._update(track, frame_index, centre[r], size[r])
                ids[r] = track.id
        # New tracks, left to right (then top to bottom), so that ids of faces appearing together are predictable.
        new_rows = [r for r, track in zip(rows, matched) if track is None]
        for r in sorted(new_rows, key=lambda r: (centre[r, 0], centre[r, 1])):
            track = self._start(frame_index, centre[r], size[r])
            ids[r] = -1 if track is None else track.id
        return ids

    def push_chunk(self, detections: np.ndarray, first_index: int, cuts=()) -> np.ndarray:
        """Detections [n, F, P, 2] of frames first_index .. first_index+n-1 -> ids [n, F]; `cuts`: indices of
        frames that start a new shot (ShotDetector's output; others are ignored)."""
        cuts = set(int(c) for c in cuts)
        out = np.full(np.shape(detections)[:2], -1, dtype=np.int64)
        for k in range(len(detections)):
            index = first_index + k
            out[k] = self.push(index, detections[k], cut_before=index in cuts)
        return out

    def finish(self) -> None:
        """End every live track (the stream ended)."""
        self._end(list(self._live))

    def _match(self, frame: int, centre: np.ndarray, size: np.ndarray) -> list[Track | None]:
        """The live track matched to each detection, or None."""
        from scipy.optimize import linear_sum_assignment

        result: list[Track | None] = [None] * len(centre)
        if not self._live or not len(centre):
            return result
        cost = np.array([[self._cost(t, frame, c, s) for c, s in zip(centre, size)] for t in self._live])
        gated = np.where(cost <= self.max_cost, cost, _UNMATCHABLE)
        for i, j in zip(*linear_sum_assignment(gated)):
            if gated[i, j] < _UNMATCHABLE:
                result[j] = self._live[i]
        return result

    def _cost(self, track: Track, frame: int, centre: np.ndarray, size: float) -> float:
        # from where its motion predicts it or from where it was, whichever is nearer: a head that stops or turns
        # back is as much the same face as one that keeps moving
        distance = min(np.hypot(*(centre - track.predict(frame))), np.hypot(*(centre - track.centre))) / track.size
        return float(distance + self.size_weight * abs(np.log(size / track.size)))

    def _update(self, track: Track, frame: int, centre: np.ndarray, size: float) -> None:
        step = (centre - track.centre) / (frame - track.last)
        # The first step sets the velocity; later ones average with it (damps jitter, follows acceleration).
        if track.frames > 1:
            step = _VELOCITY_MEMORY * track.velocity + (1 - _VELOCITY_MEMORY) * step
        track.velocity = step
        track.centre = centre
        track.size = float(size)
        track.last = frame
        track.frames += 1

    def _start(self, frame: int, centre: np.ndarray, size: float) -> Track | None:
        slot = self._free_slot(frame)
        if slot is None:
            return None
        track = Track(id=len(self.tracks), slot=slot, first=frame, last=frame, centre=centre, size=float(size))
        self.tracks[track.id] = track
        self.slot_of[track.id] = slot
        self._live.append(track)
        return track

    def _free_slot(self, frame: int) -> int | None:
        held = {t.slot for t in self._live}
        for slot in range(self.slots):
            if slot not in held:
                return slot
        # Every slot is held: end the track unseen for longest (it is in a gap) and take its slot. None (the face is
        # not tracked) only when there are more faces in this frame than slots.
        unseen = [t for t in self._live if t.last < frame]
        if not unseen:
            return None
        oldest = min(unseen, key=lambda t: (t.last, t.id))
        self._end([oldest])
        return oldest.slot

    def _end(self, tracks: list[Track]) -> None:
        for t in tracks:
            t.ended = True
        self._live = [t for t in self._live if not t.ended]


def slot_order(ids: np.ndarray, slot_of: dict[int, int], slots: int) -> tuple[np.ndarray, np.ndarray]:
    """Track ids per detection row [n, F] -> (order [n, slots]: the row each slot takes, -1 for none;
    track_id [n, slots]: the track in each slot, -1 for none)."""
    ids = np.asarray(ids)
    order = np.full((len(ids), slots), -1, dtype=np.int64)
    track_id = np.full((len(ids), slots), -1, dtype=np.int64)
    for i, row in enumerate(ids):
        for k, tid in enumerate(row):
            if tid >= 0:
                slot = slot_of[int(tid)]
                order[i, slot] = k
                track_id[i, slot] = tid
    return order, track_id


def take_slots(values: np.ndarray, order: np.ndarray, fill) -> np.ndarray:
    """Per-row values [n, F, ...] -> per-slot values [n, slots, ...] (slots without a row get `fill`)."""
    values = np.asarray(values)
    out = np.full(order.shape + values.shape[2:], fill, dtype=values.dtype)
    i, s = np.nonzero(order >= 0)
    out[i, s] = values[i, order[i, s]]
    return out
