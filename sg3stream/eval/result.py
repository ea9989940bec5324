"""What `sg3stream eval` returns: the overall scores (the JSON document) and the per-frame curves."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

# The JSON document's keys, in order (`notes` last: why any of them is null).
SUMMARY_KEYS = ("frames", "frames_with_face", "psnr_face", "ssim_face", "psnr_outside", "warp_error",
                "warp_error_reference", "tl_id", "tg_id", "seam", "lpips_face")
PER_FRAME_KEYS = ("psnr_face", "ssim_face", "psnr_outside", "warp_error", "warp_error_reference", "seam")


def _plain(value):
    """JSON has no NaN: anything not finite is null."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class EvalResult:
    """summary: SUMMARY_KEYS (int or float, None where not computable) and "notes" (list[str], why).
    per_frame: PER_FRAME_KEYS, one value or None per frame.
    reference, edited: what was compared (paths, or "frames"); face_source: where the face region came from;
    seconds: how long the evaluation took."""

    summary: dict
    per_frame: dict[str, list]
    reference: str = "REFERENCE"
    edited: str = "EDITED"
    face_source: str = ""
    seconds: float = 0.0

    def to_json(self) -> str:
        doc = {k: _plain(self.summary.get(k)) for k in SUMMARY_KEYS}
        doc["notes"] = list(self.summary.get("notes", []))
        return json.dumps(doc, indent=2)
