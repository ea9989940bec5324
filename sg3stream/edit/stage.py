"""The edit stage: smoothed codes plus the chosen edits, with the strength ramped over the clip if asked."""
from __future__ import annotations

import numpy as np

from ..pipeline.batch import FrameBatch
from ..pipeline.contract import Key
from ..pipeline.stage import Stage
from .directions import Edit


class EditStage(Stage):
    """Adds `strength * direction` for every edit, in W (to `latents_smoothed`) or in S (as style offsets).

    ramp: the strength grows linearly from 0 at the first frame to its full value at frame `total_frames - 1`.
    Attaches ws_edit [N,F,num_ws,w_dim] float32 and style_offsets {layer: [N,F,channels]} (empty without S edits):
    every face slot of a frame gets the frame's strength, or, for an edit that names a track (`smile@1`), only the
    slots holding that track (then `track_id` [N,F] is read).
    """

    name = "edit"
    writes = (Key("ws_edit", ("num_ws", "w_dim"), "float32", doc="the smoothed codes with the W edits"),
              Key("style_offsets", ("channels",), "float32", doc="StyleSpace edits: {layer: [N, F, channels]}"))

    def __init__(self, edits: list[Edit], ramp: bool = False, total_frames: int | None = None):
        self.edits = edits
        self.ramp = ramp
        self.total_frames = total_frames

    @property
    def reads(self) -> tuple[str, ...]:
        return ("latents_smoothed",) + (("track_id",) if any(e.track is not None for e in self.edits) else ())

    def strengths(self, index: np.ndarray, strength: float) -> np.ndarray:
        if not self.ramp:
            return np.full(len(index), strength, np.float32)
        last = max((self.total_frames or 1) - 1, 1)
        return (strength * np.clip(index / last, 0.0, 1.0)).astype(np.float32)

    def __call__(self, batch: FrameBatch) -> FrameBatch:
        ws = np.array(batch.data["latents_smoothed"], dtype=np.float32, copy=True)
        faces = ws.shape[:-2]  # frames, face slots
        offsets: dict[str, np.ndarray] = {}
        for edit in self.edits:
            # one strength per frame, the same for each of its faces
            k = self.strengths(batch.index, edit.strength).reshape((-1,) + (1,) * (len(faces) - 1))
            if edit.track is not None:  # only the faces of that track
                k = k * (np.asarray(batch.data["track_id"]).reshape(faces) == edit.track)
            if edit.direction.w is not None:
                ws += k[..., None, None] * edit.direction.w
            for layer, d in edit.direction.s.items():
                offsets[layer] = offsets.get(layer, np.zeros(faces + d.shape, np.float32)) + k[..., None] * d
        out = batch.replace()
        out.data["ws_edit"] = ws
        out.data["style_offsets"] = offsets
        return out
