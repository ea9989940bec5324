"""Temporal smoothing of the latents and the per-frame transforms, over a sliding window.

The reference (stylegan3-editing, inversion/video/post_processing.py) does, over the whole clip:
  1. fine layers (W+ index 9 and up) := their mean over the clip;
  2. latents and transforms smoothed with the 5-tap kernel [1/4, 3/4, 1, 3/4, 1/4] / 3, keeping only the
     frames where the whole kernel fits (two frames lost at each end).
Here, so that hour-long clips stream in bounded memory and no frame is lost:
  - the fine-layer mean of frame i is a *windowed mean*: the mean over the frames with a face in i-W .. i+W
    (`fine_window` W, default 60), clamped to the clip. For clips of at most W+1 frames every window holds the
    whole clip, so this is exactly the reference's clip mean; over longer clips it moves by at most 1/(2W+1) of
    a frame's deviation per frame, so it never jitters. Memory: prefix sums over 2W frames. Being local, it lets
    a long clip be cut into segments that overlap by W + the kernel's radius and joined without a seam.
  - the kernel is the reference's 5-tap kernel, convolved with a Gaussian of `sigma` frames when sigma > 0; at
    the clip's ends and next to frames without a face it uses the taps that exist *in pairs* (a tap only where
    its mirror tap exists too), renormalised: a symmetric kernel keeps a steadily moving face where it is, where a
    one-sided one would drag the transform behind it and misplace the render by up to half a frame's motion (with
    the oracle generator, the first and last frames of a moving face fell to 28 dB from 37: README, Fidelity).
  - transforms are smoothed as rotation angle (unwrapped), translation and scale, then rebuilt, not as raw
    matrices (averaging rotation matrices shrinks them).
Results depend on neither the batch size nor the queue size.
"""
from __future__ import annotations

import numpy as np

from ..align.transforms import transform_from_params
from ..pipeline.batch import FrameBatch
from ..pipeline.contract import Key, widen
from ..pipeline.stage import Stage
from ..pipeline.window import Window, one_batch

REFERENCE_KERNEL = np.array([0.25, 0.75, 1.0, 0.75, 0.25]) / 3.0


def temporal_kernel(sigma: float = 0.0) -> np.ndarray:
    """The reference's 5-tap kernel, convolved with a Gaussian of `sigma` frames when sigma > 0."""
    if sigma <= 0:
        return REFERENCE_KERNEL.copy()
    radius = int(np.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1)
    gauss = np.exp(-0.5 * (x / sigma) ** 2)
    kernel = np.convolve(REFERENCE_KERNEL, gauss / gauss.sum())
    return kernel / kernel.sum()


def smooth_valid(values: np.ndarray, valid: np.ndarray, kernel: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Smooth values[T, ...] at positions `centers` with `kernel`, using only valid frames, renormalised.

    Invalid centres stay NaN. Missing taps (ends of the buffer, frames without a face) are left out together with
    their mirror taps, so that the kernel stays symmetric (unbiased on steady motion), and the remaining weights
    rescaled to sum to one, so no frame is lost.
    """
    radius = len(kernel) // 2
    out = np.full((len(centers),) + values.shape[1:], np.nan, dtype=np.float64)
    flat = values.reshape(len(values), -1)
    padded = np.concatenate([np.zeros(radius, bool), np.asarray(valid, bool), np.zeros(radius, bool)])
    for k, c in enumerate(centers):
        if not valid[c]:
            continue
        taps = padded[c:c + 2 * radius + 1]  # frames c - radius .. c + radius; False past the buffer's ends
        w = kernel * (taps & taps[::-1])
        lo = c - radius
        sel = np.flatnonzero(w > 0)
        out[k] = (w[sel, None] * flat[lo + sel]).sum(axis=0).reshape(values.shape[1:]) / w[sel].sum()
    return out


def track_runs(track: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Track ids [T, F] and where a face is [T, F] -> run numbers [T, F]: a new run starts in a slot at each frame
    with a face whose track differs from that of the slot's previous frame with a face; a frame without a face
    belongs to the run before it (it adds nothing to any sum)."""
    runs = np.zeros(track.shape, np.int64)
    for f in range(track.shape[1]):
        seen = track[valid[:, f], f]
        changes = np.zeros(len(track), np.int64)
        at = np.flatnonzero(valid[:, f])[1:][seen[1:] != seen[:-1]]
        changes[at] = 1
        runs[:, f] = np.cumsum(changes)
    return runs


class SmoothStage(Stage):
    """Smooths `latents` [N,F,num_ws,w_dim] and the transform parameters of the faces that have them, each face
    slot over time on its own (two slots never mix).

    Reads: latents (NaN for faces not inverted), has_latents [N,F], rotation_deg [N,F], translation [N,F,2],
    scale [N,F]. The face slots are the axes of `has_latents` after the frame axis.
    Attaches: latents_smoothed [N,F,num_ws,w_dim] float32, transform_smoothed [N,F,3,3] float32 (NaN where no face).
    Holds batches until `context` = max(radius, fine_window) frames past them have arrived (bounded memory).
    tracks: also read `track_id` [N,F] (TrackStage, via AlignStage): the kernel and the fine-layer means of a face
    only reach the frames of its own track, so they restart where a slot's track changes (a cut, a new face in a
    slot). False: each slot is one track.
    """

    name = "smooth"
    writes = (Key("latents_smoothed", ("num_ws", "w_dim"), "float32", doc="codes smoothed over time; NaN where none"),
              Key("transform_smoothed", (3, 3), "float32", doc="transforms smoothed as angle, translation, scale"))

    def __init__(self, sigma: float = 0.0, fine_from: int = 9, fine_window: int = 60, artifacts=None,
                 tracks: bool = False):
        self.kernel = temporal_kernel(sigma)
        self.radius = len(self.kernel) // 2
        self.context = max(self.radius, max(0, fine_window))  # frames needed on either side of a frame
        self.fine_from = fine_from
        self.fine_window = max(0, fine_window)
        self.artifacts = artifacts
        self.tracks = tracks
        self.window = Window(after=self.context)  # the batches held back
        # Per-frame rows from stream position `base` on (the left context plus everything not yet emitted), each
        # with the face slot axis first: latents [F,num_ws,w_dim], valid [F], angle [F], translation [F,2], scale [F],
        # and the running sums of the fine layers of the faces so far, fine_sum [F,...] and fine_count [F].
        self.base = 0
        self.rows: dict[str, list] = {k: [] for k in ("latents", "valid", "track", "angle", "translation", "scale",
                                                        "fine_sum", "fine_count")}
        self.fine_sum = None
        self.fine_count = None
        self.writer = None

    @property
    def reads(self) -> tuple[str, ...]:
        return ("latents", "has_latents", "rotation_deg", "translation", "scale") + (("track_id",) if self.tracks
                                                                                      else ())

    @property
    def context_before(self) -> int:
        return self.context

    @property
    def context_after(self) -> int:
        return self.context

    def setup(self) -> None:
        if self.artifacts is not None:
            # what a re-edit (`run --from`) renders again: the smoothed codes and transforms of every track
            self.writer = (self.artifacts.open_track_streams("latents_smoothed"),
                           self.artifacts.open_track_streams("transforms_smoothed"))

    def __call__(self, batch: FrameBatch) -> FrameBatch | None:
        self._append(batch)
        return one_batch(self._emit(final=False))

    def flush(self) -> list[FrameBatch]:
        return self._emit(final=True)

    # ---------------------------------------------------------------------------------------------------

    def _append(self, batch: FrameBatch) -> None:
        self.window.push(batch)
        valid = np.asarray(batch.data["has_latents"], dtype=bool)
        n = len(batch)
        valid = valid.reshape(n, -1)  # [n, F]
        faces = valid.shape[1]
        latents = np.asarray(batch.data["latents"], dtype=np.float64).reshape((n, faces, -1) + np.shape(
            batch.data["latents"])[-1:])
        angle = np.asarray(batch.data["rotation_deg"], dtype=np.float64).reshape(n, faces)
        translation = np.asarray(batch.data["translation"], dtype=np.float64).reshape(n, faces, 2)
        scale = np.asarray(batch.data["scale"], dtype=np.float64).reshape(n, faces)
        track = (np.asarray(batch.data["track_id"], dtype=np.int64).reshape(n, faces) if self.tracks
                 else np.zeros((n, faces), np.int64))
        if self.fine_sum is None:
            self.fine_sum = np.zeros(latents[0, :, self.fine_from:].shape, dtype=np.float64)
            self.fine_count = np.zeros(faces, dtype=np.int64)
        if faces > len(self.fine_count):
            self._widen(faces)  # a new slot (TrackStage's face axis only grows)
        if faces < len(self.fine_count):  # a narrower batch: its missing slots are empty
            faces = len(self.fine_count)
            valid, track = widen(valid, faces, False), widen(track, faces, -1)
            latents, angle = widen(latents, faces, np.nan), widen(angle, faces, np.nan)
            translation, scale = widen(translation, faces, np.nan), widen(scale, faces, np.nan)
        for i in range(n):
            # a face without latents adds nothing (its NaN codes become 0)
            self.fine_sum = self.fine_sum + np.where(valid[i][:, None, None], latents[i, :, self.fine_from:], 0.0)
            self.fine_count = self.fine_count + valid[i]
            self.rows["latents"].append(latents[i])
            self.rows["valid"].append(valid[i])
            self.rows["track"].append(track[i])
            self.rows["angle"].append(angle[i])
            self.rows["translation"].append(translation[i])
            self.rows["scale"].append(scale[i])
            self.rows["fine_sum"].append(self.fine_sum)
            self.rows["fine_count"].append(self.fine_count)

    def _widen(self, faces: int) -> None:
        """Give every held row and the running sums `faces` slots; the new slots are empty (no face) so far."""
        fills = {"latents": np.nan, "valid": False, "track": -1, "angle": np.nan, "translation": np.nan,
                 "scale": np.nan, "fine_sum": 0.0, "fine_count": 0}
        for key, fill in fills.items():
            self.rows[key] = [widen(row[None], faces, fill)[0] for row in self.rows[key]]
        self.fine_sum = widen(self.fine_sum[None], faces, 0.0)[0]
        self.fine_count = widen(self.fine_count[None], faces, 0)[0]

    def _emit(self, final: bool) -> list[FrameBatch]:
        """Smooth and release the held batches that have `context` frames past them (all of them when `final`)."""
        position = self.window.released  # stream position of the first released frame
        out = []
        for batch in self.window.take(final):
            out.append(self._smoothed(batch, position))
            position += len(batch)
        if out:
            self._drop_before(position - self.context - 1)
        return out

    def _smoothed(self, batch: FrameBatch, position: int) -> FrameBatch:
        valid = np.stack(self.rows["valid"])  # [T, F]
        latents = np.stack(self.rows["latents"])  # [T, F, num_ws, w_dim]
        angle = np.stack(self.rows["angle"])
        translation = np.stack(self.rows["translation"])
        scale = np.stack(self.rows["scale"])
        centers = np.arange(position, position + len(batch)) - self.base
        faces = valid.shape[1]
        smoothed = np.full((len(batch),) + latents.shape[1:], np.nan)
        transforms = np.full((len(batch), faces, 3, 3), np.nan)
        runs = track_runs(np.stack(self.rows["track"]), valid)  # [T, F]
        for f in range(faces):  # each slot over time on its own, each track in it on its own
            for run in np.unique(runs[centers, f]):
                own = valid[:, f] & (runs[:, f] == run)
                mine = runs[centers, f] == run
                smoothed[mine, f] = smooth_valid(latents[:, f], own, self.kernel, centers[mine])
            # fine layers: mean over the frames with a face in c-W .. c+W (and in its track's run), from the running
            # (prefix) sums
            for k, c in enumerate(centers):
                if not valid[c, f]:
                    continue
                rows = np.flatnonzero(runs[:, f] == runs[c, f])  # the run's rows: consecutive
                hi = min(c + self.fine_window, rows[-1])
                # the prefix sum just before the window; < 0 only while nothing dropped
                lo = c - self.fine_window - 1 if rows[0] <= c - self.fine_window else rows[0] - 1
                total = self.rows["fine_sum"][hi][f] - (self.rows["fine_sum"][lo][f] if lo >= 0 else 0.0)
                count = self.rows["fine_count"][hi][f] - (self.rows["fine_count"][lo][f] if lo >= 0 else 0)
                smoothed[k, f, self.fine_from:] = total / count
            angles = np.degrees(np.unwrap(np.radians(np.nan_to_num(angle[:, f]))))
            params = np.concatenate([angles[:, None], translation[:, f], scale[:, f, None]], axis=1)
            p = np.full((len(centers), 4), np.nan)
            for run in np.unique(runs[centers, f]):
                mine = runs[centers, f] == run
                p[mine] = smooth_valid(params, valid[:, f] & (runs[:, f] == run), self.kernel, centers[mine])
            transforms[:, f] = transform_from_params(p[:, 0], p[:, 1:3], p[:, 3])
        slots = np.shape(batch.data["has_latents"])  # the face axes as they came in
        faces = int(np.prod(slots[1:]))
        smoothed, transforms = smoothed[:, :faces], transforms[:, :faces]  # a batch from before the axis grew
        out = batch.replace()
        out.data["latents_smoothed"] = smoothed.astype(np.float32).reshape(slots + latents.shape[2:])
        out.data["transform_smoothed"] = transforms.astype(np.float32).reshape(slots + (3, 3))
        if self.writer is not None:
            # latents_smoothed_track<ID>.npy; without tracks, each slot is one track, numbered by its slot
            has = np.asarray(batch.data["has_latents"], bool).reshape(len(batch), faces)
            track = (np.asarray(batch.data["track_id"]).reshape(len(batch), faces) if self.tracks
                     else np.where(has, np.arange(faces)[None, :], -1))
            self.writer[0].write(batch.index, track, smoothed.astype(np.float32))
            self.writer[1].write(batch.index, track, transforms.astype(np.float32))
        return out

    def _drop_before(self, frame: int) -> None:
        """Forget rows older than `frame` (the left context the next batch still needs is kept)."""
        drop = frame - self.base
        if drop <= 0:
            return
        for key in self.rows:
            del self.rows[key][:drop]
        self.base = frame
