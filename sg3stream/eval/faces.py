"""Where the face is in each frame of the REFERENCE: from masks the caller gives, from a run's alignment.npz, or
from mediapipe landmarks found here (as `run` finds them). Each gives, per frame, the Regions eval measures in and
the FaceGeometry the identity crops use (None: no face)."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import UserError
from .identity import FaceGeometry, geometry_from_box, geometry_from_landmarks
from .regions import Regions, regions_from_mask, regions_from_outline

Face = tuple[Regions | None, FaceGeometry | None]


class MaskFaces:
    """`face_masks` [T, H, W]: bool (the face) or float in [0, 1] (a blend weight). No landmarks: the identity
    crops use the face's box."""

    description = "face_masks"

    def __init__(self, masks):
        self.masks = masks
        shape = getattr(masks, "shape", None)
        dtype = getattr(masks, "dtype", None)
        if shape is None or len(shape) != 3 or not (dtype == bool or np.issubdtype(dtype, np.floating)):
            raise UserError(f"face_masks must be a [T, H, W] bool or float array (got {dtype} {shape})")
        self.length = shape[0]

    def check(self, size: tuple[int, int]) -> None:
        if tuple(self.masks.shape[1:]) != (size[1], size[0]):
            raise UserError(f"face_masks are {self.masks.shape[2]}x{self.masks.shape[1]}, the frames "
                            f"{size[0]}x{size[1]}")

    def chunk(self, start: int, frames: list[np.ndarray]) -> list[Face]:
        if start + len(frames) > self.length:
            raise UserError(f"face_masks has {self.length} frames, the videos more")
        out = []
        for i in range(start, start + len(frames)):
            regions = regions_from_mask(np.asarray(self.masks[i]))
            out.append((regions, geometry_from_box(regions.face_box) if regions is not None else None))
        return out

    def finish(self, frames: int) -> list[str]:
        if self.length != frames:
            raise UserError(f"face_masks has {self.length} frames, the videos {frames}")
        return []

    def close(self) -> None: ...


def _from_landmarks(shape: tuple[int, int], landmarks: np.ndarray) -> Face:
    """[F, 478, 2] landmarks of a frame's face slots (NaN: none) -> regions of all faces, geometry of slot 0."""
    parts = [regions_from_outline(shape, lm) for lm in landmarks if np.isfinite(lm).all()]
    parts = [p for p in parts if p is not None]
    if not parts:
        return None, None
    regions = parts[0] if len(parts) == 1 else _union(parts)
    return regions, geometry_from_landmarks(landmarks[0])


def _union(parts: list[Regions]) -> Regions:
    """Several faces in one frame: one box around all, each mask the union of theirs."""
    x0, y0 = min(p.box[0] for p in parts), min(p.box[1] for p in parts)
    x1, y1 = max(p.box[2] for p in parts), max(p.box[3] for p in parts)
    masks = {k: np.zeros((y1 - y0, x1 - x0), bool) for k in ("face", "near", "band")}
    for p in parts:
        sl = slice(p.box[1] - y0, p.box[3] - y0), slice(p.box[0] - x0, p.box[2] - x0)
        for k, m in masks.items():
            m[sl] |= getattr(p, k)
    face_box = (min(p.face_box[0] for p in parts), min(p.face_box[1] for p in parts),
                max(p.face_box[2] for p in parts), max(p.face_box[3] for p in parts))
    return Regions(box=(x0, y0, x1, y1), face_box=face_box, band_radius=max(p.band_radius for p in parts), **masks)


class AlignmentFaces:
    """A run's alignment.npz (`--artifacts DIR`): its landmarks, frame by frame (rows by frame_index)."""

    description = "alignment.npz"

    def __init__(self, folder: str | Path):
        path = Path(folder) / "alignment.npz"
        if Path(folder).suffix == ".npz":
            path = Path(folder)
        if not path.is_file():
            raise UserError(f"--artifacts {folder}: no alignment.npz there (`sg3stream run --artifacts DIR` "
                            "writes it)")
        try:
            with np.load(path) as data:
                landmarks = np.asarray(data["landmarks"], dtype=np.float32)
                index = np.asarray(data["frame_index"], dtype=np.int64)
        except (OSError, KeyError, ValueError) as e:
            raise UserError(f"{path}: not a readable alignment.npz ({type(e).__name__}: {e})") from None
        if landmarks.ndim == 3:  # the one-face format: no face axis
            landmarks = landmarks[:, None]
        if landmarks.ndim != 4 or landmarks.shape[-2:] != (478, 2) or len(index) != len(landmarks):
            raise UserError(f"{path}: landmarks of shape {list(landmarks.shape)}, expected [N, (F,) 478, 2]")
        self.path = path
        self.rows = {int(i): k for k, i in enumerate(index)}
        self.landmarks = landmarks
        self.length = int(index.max()) + 1 if len(index) else 0
        self.missing = 0
        self.shape: tuple[int, int] | None = None

    def check(self, size: tuple[int, int]) -> None:
        self.shape = (size[1], size[0])

    def chunk(self, start: int, frames: list[np.ndarray]) -> list[Face]:
        out = []
        for i in range(start, start + len(frames)):
            row = self.rows.get(i)
            if row is None:
                self.missing += 1
                out.append((None, None))
                continue
            out.append(_from_landmarks(self.shape, self.landmarks[row]))
        return out

    def finish(self, frames: int) -> list[str]:
        if self.length > frames:
            raise UserError(f"{self.path} covers {self.length} frames, the videos have {frames}: not these videos' "
                            "artifacts?")
        if self.missing:
            return [f"alignment.npz has no row for {self.missing} of the {frames} frames (no face there)"]
        return []

    def close(self) -> None: ...


@contextlib.contextmanager
def native_logs_silenced() -> Iterator[None]:
    """mediapipe's C++ side writes several lines per graph and chunk to fd 2. `run` keeps them in its landmark
    worker processes; eval runs mediapipe in the user's process, so fd 2 goes to /dev/null while it works
    (its failures still arrive as Python exceptions)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class MediapipeFaces:
    """Mediapipe face mesh on the REFERENCE, chunk by chunk (the tracker restarts at each, as in LandmarkStage)."""

    description = "mediapipe landmarks"
    length = None

    def __init__(self):
        from ..align.landmarks import LandmarkDetector
        from ..align.stages import quiet_native_logs

        quiet_native_logs()
        with native_logs_silenced():
            self.detector = LandmarkDetector(max_faces=1)
            # the graphs open in their own threads and log as they do: let them finish here, on a blank picture
            self.detector.detect_chunk(np.zeros((1, 64, 64, 3), np.uint8))
        self.shape: tuple[int, int] | None = None

    def check(self, size: tuple[int, int]) -> None:
        self.shape = (size[1], size[0])

    def chunk(self, start: int, frames: list[np.ndarray]) -> list[Face]:
        with native_logs_silenced():
            landmarks, _ = self.detector.detect_chunk(np.stack(frames))
        return [_from_landmarks(self.shape, lm) for lm in landmarks]

    def finish(self, frames: int) -> list[str]:
        return []

    def close(self) -> None:
        with native_logs_silenced():
            self.detector.close()


def face_source(face_masks=None, artifacts: str | Path | None = None):
    """Masks when given, else the run's alignment.npz when given, else mediapipe."""
    if face_masks is not None:
        return MaskFaces(face_masks)
    if artifacts is not None:
        return AlignmentFaces(artifacts)
    return MediapipeFaces()
