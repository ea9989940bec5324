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


def turned_photo(degrees: float, photo_lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The photo's face turned `degrees` about the vertical axis: (picture [400, 400, 3] uint8, cover [400, 400]
    float32, 1 where the face is drawn), in photo pixels, to place with a similarity as the photo is.

    The face is the 3-D mesh of sg3stream's yaw fit (mediapipe's mesh of this photo) fitted to the photo's landmarks,
    textured by the photo, turned and drawn triangle by triangle, far ones first (the hair and ears are not part of
    the mesh: a turned face is the face alone). mediapipe finds it and reads it as turned (about 27 degrees for 30).
    """
    from scipy.spatial import Delaunay

    from sg3stream.align.gate import face_model

    model = face_model()
    # the model in photo pixels: the scale and offset that put its x, y on the photo's landmarks
    scale = np.sum((photo_lm - photo_lm.mean(0)) * (model[:, :2] - model[:, :2].mean(0))) / np.sum(
        (model[:, :2] - model[:, :2].mean(0)) ** 2)
    points = (model - model.mean(0)) * scale
    source = points[:, :2] + photo_lm.mean(0)
    t = np.radians(degrees)
    rotation = np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])
    moved = points @ rotation.T
    target = moved[:, :2] + photo_lm.mean(0)
    photo = face_photo()
    picture = np.zeros_like(photo)
    cover = np.zeros(photo.shape[:2], np.float32)
    triangles = Delaunay(source).simplices
    for k in np.argsort(-moved[triangles, 2].mean(axis=1)):  # far first: the near side is drawn over it
        src, dst = source[triangles[k]].astype(np.float32), target[triangles[k]].astype(np.float32)
        if np.cross(dst[1] - dst[0], dst[2] - dst[0]) * np.cross(src[1] - src[0], src[2] - src[0]) <= 0:
            continue  # turned away from the camera
        x0, y0 = np.floor(dst.min(axis=0)).astype(int)
        x1, y1 = np.ceil(dst.max(axis=0)).astype(int) + 1
        m = cv2.getAffineTransform(src, (dst - (x0, y0)).astype(np.float32))
        patch = cv2.warpAffine(photo, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillConvexPoly(mask, np.round(dst - (x0, y0)).astype(np.int32), 1)
        region = (slice(y0, y1), slice(x0, x1))
        picture[region][mask > 0] = patch[mask > 0]
        cover[region][mask > 0] = 1.0
    return picture, cover
