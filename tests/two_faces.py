"""A clip with two faces per frame and their landmarks known exactly, for the tests of the face axis (F = 2).

The bundled photo is placed twice in every frame by known similarities (slot 0 smaller on the left, slot 1 larger
on the right, both drifting right); each face's landmarks are the photo's own mediapipe landmarks moved by the same
similarity, so the chain's results can be checked against known positions. `TwoFaceLandmarks` stands in for
LandmarkStage (which finds one face today) and writes what it writes, with two slots.
"""
from fractions import Fraction

import cv2
import numpy as np

from sg3stream.align.landmarks import LandmarkDetector
from sg3stream.align.stages import LandmarkStage
from sg3stream.pipeline.batch import FrameBatch
from sg3stream.pipeline.stage import Stage
from sg3stream.synthetic import face_photo

W, H = 360, 240
# (centre x, centre y, scale of the 400 px photo, angle in degrees) of each slot's face in frame 0
PLACES = ((90.0, 120.0, 0.28, 5.0), (270.0, 115.0, 0.38, -8.0))
DRIFT = 2.0  # pixels to the right per frame


def placement(slot: int, frame: int) -> np.ndarray:
    """2x3 similarity: photo pixels -> frame pixels of `slot`'s face in `frame`."""
    cx, cy, scale, angle = PLACES[slot]
    m = cv2.getRotationMatrix2D((200.0, 200.0), angle, scale)
    m[:, 2] += (cx + DRIFT * frame - 200.0, cy - 200.0)
    return m


def apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ m[:, :2].T + m[:, 2]


def photo_landmarks() -> np.ndarray:
    """[478, 2] mediapipe landmarks of the photo, in photo pixels."""
    detector = LandmarkDetector()
    try:
        landmarks, _ = detector.detect_chunk(face_photo()[None])
    finally:
        detector.close()
    return landmarks[0, 0]


def two_face_clip(frames: int, photo_lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frames [N,H,W,3] uint8, landmarks [N,2,478,2] float32): both faces in every frame."""
    photo = face_photo()
    pictures, landmarks = [], []
    for i in range(frames):
        picture = np.full((H, W, 3), 90, np.uint8)
        for slot in range(len(PLACES)):
            m = placement(slot, i)
            face = cv2.warpAffine(photo, m, (W, H), flags=cv2.INTER_LINEAR)
            cover = cv2.warpAffine(np.ones(photo.shape[:2], np.float32), m, (W, H), flags=cv2.INTER_LINEAR)
            picture = np.rint(picture * (1 - cover[..., None]) + face * cover[..., None]).astype(np.uint8)
        pictures.append(picture)
        landmarks.append([apply(placement(slot, i), photo_lm) for slot in range(len(PLACES))])
    return np.stack(pictures), np.asarray(landmarks, np.float32)


def batches(frames: np.ndarray, size: int) -> list[FrameBatch]:
    out = []
    for start in range(0, len(frames), size):
        idx = np.arange(start, min(start + size, len(frames)))
        out.append(FrameBatch(frames=frames[idx], index=idx, pts=idx * 1000, time_base=Fraction(1, 25000)))
    return out


class TwoFaceLandmarks(Stage):
    """Stands in for LandmarkStage: the known landmarks of each frame's faces (NaN rows: that face is missing)."""

    name = "landmarks"
    reads = LandmarkStage.reads
    writes = LandmarkStage.writes

    def __init__(self, landmarks: np.ndarray):
        self.landmarks = landmarks  # [frames, F, 478, 2]

    def __call__(self, batch: FrameBatch) -> FrameBatch:
        landmarks = self.landmarks[batch.index]
        detected = np.isfinite(landmarks).all(axis=(2, 3))
        out = batch.replace()
        out.data.update(landmarks=landmarks, detected=detected, landmark_source=detected.astype(np.uint8))
        return out
