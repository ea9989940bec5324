"""Which faces are inverted and which pass through unchanged: too small, too turned away, too short-lived.

The encoder and the generator were trained on large, near-frontal faces (FFHQ); a 30-pixel face upscaled to 256,
a profile, or a face seen for three frames gives an edit that is worse than no edit. Such a face keeps its
landmarks, quads and track (so the summary can count it) but is not inverted, rendered or pasted.

Reasons, as the `passthrough` key stores them ([N, F] uint8) and run.json's `faces` names them:

  0  -           the face is edited
  1  small       the aligned quad's side is below `min_face` source pixels
  2  profile     the estimated yaw is above `max_yaw` degrees
  3  short       its track has fewer than `min_track_frames` detections in the window around the frame

The yaw is estimated from the 2-D landmarks alone: a weak-perspective (scaled orthographic) fit of a 3-D face
model to them, whose rotation's forward axis gives the turn. The model (`data/face_model_3d.npy`, 478 x 3) is
mediapipe's own 3-D mesh of the bundled face photo (`data/face.png`, frontal), centred and scaled to unit mean
radius; mediapipe's landmarks are that kind of mesh, projected, so the fit is close on any face it tracks. It reads
what mediapipe's mesh says, and the mesh under-reads a strong turn: this photo's face drawn turned by 30, 45 and 55
degrees reads 27, 35 and 41 (tests/two_faces.turned_photo), hence the default threshold of 45.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

REASONS = ("", "small", "profile", "short")  # index = the code in `passthrough`
SMALL, PROFILE, SHORT = 1, 2, 3


@functools.lru_cache(maxsize=1)
def face_model() -> np.ndarray:
    """[478, 3] float64: the 3-D face mesh the yaw fit uses (x right, y down, z away from the camera)."""
    with resources.files("sg3stream").joinpath("data/face_model_3d.npy").open("rb") as f:
        return np.load(f).astype(np.float64)


@functools.lru_cache(maxsize=1)
def _model_pinv() -> np.ndarray:
    """The centred model's pseudo-inverse, [3, 478]: the least-squares fit of any landmarks is one product with it."""
    model = face_model()
    return np.linalg.pinv(model - model.mean(axis=0))


def yaw_degrees(landmarks: np.ndarray) -> np.ndarray:
    """Landmarks [..., 478, 2] -> how far each face is turned from frontal, [...] degrees in [0, 90]; NaN where
    the landmarks are NaN. Roll and scale do not change it (the fit absorbs them)."""
    lm = np.asarray(landmarks, np.float64)
    flat = lm.reshape(-1, lm.shape[-2], 2)
    out = np.full(len(flat), np.nan)
    ok = np.isfinite(flat).all(axis=(1, 2))
    if ok.any():
        # pts - mean = centred_model @ m, m [3, 2]: its columns are the scaled first two rows of the head's rotation
        pinv = _model_pinv()  # [3, 478]
        pts = flat[ok] - flat[ok].mean(axis=1, keepdims=True)
        m = pinv @ pts  # [n, 3, 2]
        r1 = m[..., 0] / np.linalg.norm(m[..., 0], axis=-1, keepdims=True)
        r2 = m[..., 1] - np.sum(m[..., 1] * r1, axis=-1, keepdims=True) * r1
        r2 = r2 / np.linalg.norm(r2, axis=-1, keepdims=True)
        forward = np.cross(r1, r2)  # the rotation's third row: the face's normal in camera coordinates
        out[ok] = np.degrees(np.arcsin(np.minimum(1.0, np.abs(forward[:, 0]))))
    return out.reshape(lm.shape[:-2])


@dataclass(frozen=True)
class FaceGate:
    """The thresholds (the run options --min-face, --max-yaw, --min-track-frames); 0 turns the first two off."""

    min_face: float = 48.0
    max_yaw: float = 45.0
    min_track_frames: int = 3

    def reasons(self, quad_side: np.ndarray, landmarks: np.ndarray, track_frames: np.ndarray,
                reach_frames: np.ndarray | None = None) -> np.ndarray:
        """Per face [N, F]: quad_side (source pixels, NaN: no quad), landmarks [N, F, 478, 2], track_frames (the
        face's track's detections in the window around the frame); per frame [N]: reach_frames, the frames the
        stream has in that window (a face cannot be seen longer than the clip: a shorter one lowers the bar).
        -> the reason codes, 0 where the face is edited. Small wins over profile, profile over short."""
        codes = np.zeros(np.shape(quad_side), np.uint8)
        least = self.min_track_frames if reach_frames is None else np.minimum(self.min_track_frames,
                                                                              np.asarray(reach_frames))[:, None]
        short = np.asarray(track_frames) < least
        codes[short] = SHORT
        if self.max_yaw > 0:
            has = np.isfinite(np.asarray(landmarks)).all(axis=(-2, -1))
            yaw = np.full(codes.shape, np.nan)
            if has.any():
                yaw[has] = yaw_degrees(np.asarray(landmarks)[has])
            codes[yaw > self.max_yaw] = PROFILE
        if self.min_face > 0:
            codes[np.asarray(quad_side) < self.min_face] = SMALL
        return codes
