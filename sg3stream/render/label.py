"""The demo label: a small caption burned into every frame of an output made with the demo model.

The demo model has fixed-seed random weights, so its "edited face" is a blurred oval. Someone handed only the
video should see at once that it shows the pipeline, not a result (`--no-demo-label` leaves the frames alone;
the container's metadata says it either way).
"""
from __future__ import annotations

import cv2
import numpy as np

from ..pipeline.batch import FrameBatch
from ..pipeline.contract import FRAMES
from ..pipeline.stage import Stage

DEMO_LABEL = "sg3stream demo model (random weights): not a real edit"
DEMO_METADATA = {"comment": "made by sg3stream with its demo model (fixed-seed random weights): the face shows "
                            "the pipeline at work, not a real edit",
                 "sg3stream_demo": "1"}


def label_box(height: int, width: int, text: str = DEMO_LABEL) -> tuple[int, int, int, int, float, int]:
    """Where the caption goes (x0, y0, x1, y1: bottom-left corner), its font scale and stroke width."""
    scale = max(0.25, min(1.0, height / 1080 * 0.8))
    thickness = max(1, round(scale * 2))
    (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    scale *= min(1.0, (width - 8) / max(tw, 1))  # fit narrow frames
    (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(2, th // 3)
    return 0, height - th - baseline - 2 * pad, min(width, tw + 2 * pad), height, scale, thickness


def draw_label(frame: np.ndarray, text: str = DEMO_LABEL, in_place: bool = False) -> np.ndarray:
    """`frame` with the caption in white on black in its bottom-left corner (a copy, or `frame` itself)."""
    out = frame if in_place else np.array(frame)
    h, w = out.shape[:2]
    x0, y0, x1, y1, scale, thickness = label_box(h, w, text)
    out[y0:y1, x0:x1] = 0
    pad = max(2, (y1 - y0) // 6)
    white = 1.0 if out.dtype.kind == "f" else float(np.iinfo(out.dtype).max)  # deep pictures: their own white
    cv2.putText(out, text, (x0 + pad, y1 - pad - (y1 - y0) // 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (white,) * 3,
                thickness, cv2.LINE_AA)
    return out


class DemoLabelStage(Stage):
    """Burns the demo caption into every output frame (after paste: whatever the output mode). With `matte`, the
    caption's box is marked in the paste's `matte` too: there the output is not the input."""

    name = "label"
    writes = (FRAMES,)

    def __init__(self, text: str = DEMO_LABEL, in_place: bool = False, matte: bool = False):
        self.text = text
        self.in_place = in_place  # into the batch's own pictures (the chain's, after paste: nobody else holds them)
        self.matte = matte

    @property
    def reads(self) -> tuple[str, ...]:
        return ("frames", "matte") if self.matte else ("frames",)

    def __call__(self, batch: FrameBatch) -> FrameBatch:
        if self.in_place:
            for frame in batch.frames:
                draw_label(frame, self.text, in_place=True)
            out = batch.replace()
        else:
            out = batch.replace(frames=np.stack([draw_label(f, self.text) for f in batch.frames]))
        if self.matte:
            x0, y0, x1, y1, _, _ = label_box(*batch.frames.shape[1:3], self.text)
            out.data["matte"][:, y0:y1, x0:x1] = 65535
        return out
