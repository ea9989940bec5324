"""Face-recognition embeddings for TL-ID and TG-ID: an ArcFace ONNX model (`--id-model`) or dlib's ResNet model.

Both videos' faces are cut with the REFERENCE's geometry (its landmarks, or the face region's box when there are
none), so that identical videos give identical embeddings and only the pictures' content differs.

ArcFace: the standard preprocessing of insightface's recognition models: a similarity transform of five points
(eye centres, nose tip, mouth corners) onto the 112x112 ArcFace template, RGB, (x - 127.5) / 127.5, NCHW.
dlib: `dlib_face_recognition_resnet_model_v1` of the face-recognition-models package, on the chip dlib aligns with
its own 5-point shape predictor inside the face's box (the `face_recognition` package's recipe).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import UserError

# insightface's arcface_dst: left eye, right eye, nose tip, left and right mouth corner (image sides), 112x112
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                             [70.7299, 92.2041]], dtype=np.float64)
NOSE_TIP = 1  # mediapipe face mesh


@dataclass
class FaceGeometry:
    """Where a frame's face is: five points (ARCFACE_TEMPLATE's order, frame pixels) and a box x0, y0, x1, y1."""

    points: np.ndarray
    box: tuple[int, int, int, int]


def geometry_from_landmarks(landmarks: np.ndarray) -> FaceGeometry | None:
    """[478, 2] mediapipe landmarks (NaN: no face) -> the face's geometry."""
    from ..align.landmarks import eye_mouth_points

    if not np.isfinite(landmarks).all():
        return None
    p = eye_mouth_points(landmarks)
    points = np.stack([p["eye_left"], p["eye_right"], landmarks[NOSE_TIP], p["mouth_left"], p["mouth_right"]])
    x0, y0 = np.floor(landmarks.min(axis=0)).astype(int)
    x1, y1 = np.ceil(landmarks.max(axis=0)).astype(int) + 1
    return FaceGeometry(points.astype(np.float64), (int(x0), int(y0), int(x1), int(y1)))


def geometry_from_box(box: tuple[int, int, int, int]) -> FaceGeometry:
    """Without landmarks: the ArcFace template laid over the square around the face's box."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    return FaceGeometry(centre + (ARCFACE_TEMPLATE / 112 - 0.5) * side, box)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity (rotation, uniform scale, translation) taking src [N,2] to dst (Umeyama)."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    u, sv, vt = np.linalg.svd(d.T @ s / len(src))
    flip = np.diag([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rotation = u @ flip @ vt
    scale = (sv * np.diag(flip)).sum() / (s ** 2).sum(axis=1).mean()
    return np.hstack([scale * rotation, (mu_d - scale * rotation @ mu_s)[:, None]])


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class ArcFaceOnnx:
    """An ArcFace-style ONNX recogniser: input [N or 1, 3, S, S] (S = 112 for the insightface models)."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise UserError(f"--id-model {path}: no such file (an ArcFace ONNX model, e.g. insightface's "
                            "w600k_r50.onnx)")
        try:
            import onnxruntime
        except ImportError:
            raise UserError("--id-model needs onnxruntime (pip install 'sg3stream[onnx]')") from None
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types for a bad file
            reason = " ".join(str(e).split())[:200]
            raise UserError(f"--id-model {path}: not a loadable ONNX model ({reason})") from None
        spec = self.session.get_inputs()[0]
        shape = spec.shape
        if len(shape) != 4 or shape[1] != 3:
            raise UserError(f"--id-model {path}: input {spec.name} has shape {shape}; an ArcFace model takes "
                            "[N, 3, 112, 112]")
        self.input = spec.name
        self.size = shape[2] if isinstance(shape[2], int) else 112
        self.one_at_a_time = shape[0] == 1
        self.name = f"ArcFace ONNX ({path.name})"

    def embed(self, images: list[np.ndarray], face: FaceGeometry) -> np.ndarray:
        """[len(images), D] unit embeddings of the face at `face` in each image."""
        m = similarity_transform(face.points, ARCFACE_TEMPLATE * self.size / 112)
        crops = np.stack([cv2.warpAffine(img, m, (self.size, self.size), flags=cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_CONSTANT) for img in images])
        x = ((crops.astype(np.float32) - 127.5) / 127.5).transpose(0, 3, 1, 2)
        batches = [x[i:i + 1] for i in range(len(x))] if self.one_at_a_time else [x]
        return _unit(np.concatenate([self.session.run(None, {self.input: b})[0] for b in batches]))


def dlib_model_folder() -> Path | None:
    """The face-recognition-models package's model folder (found without importing it: it needs pkg_resources,
    which recent setuptools no longer ship)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    return folder if (folder / "dlib_face_recognition_resnet_model_v1.dat").is_file() else None


class DlibResNet:
    """dlib's ResNet face recogniser (128-D, the face_recognition package's model)."""

    name = "dlib ResNet (dlib_face_recognition_resnet_model_v1)"

    def __init__(self, folder: Path):
        import dlib

        self.dlib = dlib
        self.shapes = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
        self.net = dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat"))

    def embed(self, images: list[np.ndarray], face: FaceGeometry) -> np.ndarray:
        rect = self.dlib.rectangle(*face.box)
        shape = self.shapes(np.ascontiguousarray(images[0]), rect)  # the first (REFERENCE) image's chip for all
        return _unit(np.stack([np.array(self.net.compute_face_descriptor(np.ascontiguousarray(img), shape))
                               for img in images]))


def find_recogniser(id_model: str | Path | None | bool):
    """(recogniser or None, note saying why there is none or None): the ArcFace model when given, else dlib's;
    False: none (dlib's model takes about 0.2 s a face on a CPU without BLAS, two faces a frame)."""
    if id_model is False:
        return None, "tl_id, tg_id: not asked for (id_model=False)"
    if id_model is not None:
        return ArcFaceOnnx(id_model), None
    folder = dlib_model_folder()
    if folder is None or importlib.util.find_spec("dlib") is None:
        return None, ("tl_id, tg_id: no face recogniser (pip install 'sg3stream[eval]' for dlib's model, or give "
                      "--id-model ARCFACE.onnx)")
    return DlibResNet(folder), None
