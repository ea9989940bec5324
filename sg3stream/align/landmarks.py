"""Face landmarks with mediapipe 0.10.21 face mesh (478 points with refine_landmarks).

Coordinates: every landmark array in sg3stream.align is in *source-frame pixel coordinates* with OpenCV's
convention: the centre of pixel (row r, column c) is at (x=c, y=r); x right, y down. Mediapipe returns
coordinates normalised to the image edges ([0, 1] spans the full width), so x_px = x_norm * W - 0.5.

Mesh indices used for the FFHQ recipe (mediapipe's canonical face mesh; "right"/"left" are the *subject's*
sides, as in mediapipe's FACEMESH_RIGHT_EYE / FACEMESH_LEFT_EYE connection sets):

* RIGHT_EYE_CONTOUR (subject's right eye = the eye on the image's left for a face looking at the camera):
  the 16 points of FACEMESH_RIGHT_EYE, corners 33 (outer) and 133 (inner), lower lid 7 163 144 145 153 154 155,
  upper lid 173 157 158 159 160 161 246. This plays the part of dlib's 36-41 ("eye_left" in the FFHQ script).
* LEFT_EYE_CONTOUR (subject's left eye, image right): the 16 points of FACEMESH_LEFT_EYE, corners 263 (outer)
  and 362 (inner), lower lid 249 390 373 374 380 381 382, upper lid 398 384 385 386 387 388 466.
  This plays the part of dlib's 42-47 ("eye_right").
* MOUTH_LEFT_CORNER = 61 (outer lip corner on the image's left; dlib 48) and MOUTH_RIGHT_CORNER = 291
  (outer lip corner on the image's right; dlib 54).

The eye centre is the mean of the 16 contour points (the FFHQ recipe takes the mean of dlib's 6 contour points).
The iris centres 468/473 exist with refine_landmarks but are not used: the recipe is defined on eye contours, and
irises move with gaze, which would make the crop follow the eyes' direction.

Small faces: the mesh's own detector is mediapipe's short-range model, which misses faces smaller than ~10% of
the frame. When the mesh finds nothing, `LandmarkDetector` falls back to the full-range face detector
(model_selection=1) on the whole frame and then on overlapping square tiles (or, when the previous frame was found
this way, to the region around the previous frame's landmarks), crops that region with a margin, upscales it, runs a static mesh on it and maps the
points back to the frame.
"""
from __future__ import annotations

import numpy as np

NUM_LANDMARKS = 478

RIGHT_EYE_CONTOUR = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE_CONTOUR = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
MOUTH_LEFT_CORNER = 61
MOUTH_RIGHT_CORNER = 291

# landmark_source values
SOURCE_NONE = 0
SOURCE_MESH = 1  # the tracking face mesh on the full frame
SOURCE_FALLBACK = 2  # full-range detector (or previous landmarks) -> crop -> static mesh

_FALLBACK_MARGIN = 2.2  # crop side = margin * face box side (the mesh wants the face at ~half the crop)
_FALLBACK_MIN_SIDE = 256  # upscale the crop to at least this many pixels


def _landmarks_to_array(face_landmarks, width: int, height: int) -> np.ndarray:
    pts = np.array([(p.x, p.y) for p in face_landmarks.landmark], dtype=np.float64)
    pts[:, 0] = pts[:, 0] * width - 0.5
    pts[:, 1] = pts[:, 1] * height - 0.5
    return pts.astype(np.float32)


class LandmarkDetector:
    """Mediapipe graphs of one worker: a tracking face mesh, a static mesh and the full-range detector.

    `detect_chunk(frames)` runs the mesh in tracking mode over contiguous frames (the tracker is reset at the start
    of every chunk, so a chunk's result never depends on the chunks before it). The mesh looks for up to
    `search_faces` faces (default `max_faces`) and the `max_faces` largest are kept, largest first; the fallback, for
    frames where it finds none, finds one.
    """

    def __init__(self, min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 fallback: bool = True, fallback_tiles: bool = True, max_faces: int = 1,
                 search_faces: int | None = None):
        import mediapipe as mp

        self.max_faces = max_faces
        search_faces = max(max_faces, search_faces or max_faces)
        self.fallback = fallback
        self.fallback_tiles = fallback_tiles
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False, max_num_faces=search_faces, refine_landmarks=True,
            min_detection_confidence=min_detection_confidence, min_tracking_confidence=min_tracking_confidence)
        self._static_mesh = None
        self._detector = None
        if fallback:
            self._static_mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                min_detection_confidence=min_detection_confidence)
            self._detector = mp.solutions.face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=min_detection_confidence)

    def close(self) -> None:
        for g in (self._mesh, self._static_mesh, self._detector):
            if g is not None:
                g.close()

    def detect_chunk(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """frames [N,H,W,3] uint8 RGB -> (landmarks [N,F,478,2] float32 pixels, NaN where none; source [N,F] uint8),
        F = `max_faces` slots."""
        n, h, w = frames.shape[:3]
        out = np.full((n, self.max_faces, NUM_LANDMARKS, 2), np.nan, dtype=np.float32)
        source = np.zeros((n, self.max_faces), dtype=np.uint8)
        self._mesh.reset()
        prev_fallback: np.ndarray | None = None
        for i in range(n):
            img = np.ascontiguousarray(frames[i])
            res = self._mesh.process(img)
            if res.multi_face_landmarks:
                faces = [_landmarks_to_array(face, w, h) for face in res.multi_face_landmarks]
                faces.sort(key=lambda pts: -np.ptp(pts, axis=0).prod())  # largest landmark box first
                for k, pts in enumerate(faces[:self.max_faces]):
                    out[i, k] = pts
                    source[i, k] = SOURCE_MESH
                prev_fallback = None
                continue
            if not self.fallback:
                continue
            pts = self._fallback(img, prev_fallback)
            if pts is None and prev_fallback is not None:
                pts = self._fallback(img, None)
            if pts is not None:
                out[i, 0] = pts
                source[i, 0] = SOURCE_FALLBACK
            prev_fallback = pts
        return out, source

    def _detect_box(self, img: np.ndarray) -> tuple[float, float, float, float] | None:
        """A full-range detection box (x0, y0, x1, y1): the most confident one of the first region that has any,
        trying the whole frame, then overlapping square tiles (the detector sees its input at 192x192, so a small
        face in a large frame is often only found at tile resolution)."""
        h, w = img.shape[:2]
        regions = [(0, 0, w, h)] + ([(x, y, s, s) for x, y, s in _tiles(w, h)] if self.fallback_tiles else [])
        for rx, ry, rw, rh in regions:
            sub = img if (rw, rh) == (w, h) else np.ascontiguousarray(img[ry:ry + rh, rx:rx + rw])
            res = self._detector.process(sub)
            if res.detections:
                best = max(res.detections, key=lambda d: d.score[0])
                box = best.location_data.relative_bounding_box
                x0, y0 = rx + box.xmin * rw, ry + box.ymin * rh
                return x0, y0, x0 + box.width * rw, y0 + box.height * rh
        return None

    def _fallback(self, img: np.ndarray, prev: np.ndarray | None) -> np.ndarray | None:
        import cv2

        h, w = img.shape[:2]
        if prev is not None:
            x0, y0 = prev.min(axis=0)
            x1, y1 = prev.max(axis=0)
        else:
            box = self._detect_box(img)
            if box is None:
                return None
            x0, y0, x1, y1 = box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        side = max(x1 - x0, y1 - y0) * _FALLBACK_MARGIN
        if side < 8:
            return None
        scale = max(1.0, _FALLBACK_MIN_SIDE / side)
        out_side = int(round(side * scale))
        # dst pixel j (centre convention) <- src pixel (cx - side/2 - 0.5 + (j + 0.5) / scale)
        m = np.array([[1 / scale, 0, cx - side / 2 - 0.5 + 0.5 / scale],
                      [0, 1 / scale, cy - side / 2 - 0.5 + 0.5 / scale]], dtype=np.float64)
        crop = cv2.warpAffine(img, m, (out_side, out_side), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        res = self._static_mesh.process(crop)
        if not res.multi_face_landmarks:
            return None
        pts = _landmarks_to_array(res.multi_face_landmarks[0], out_side, out_side).astype(np.float64)
        pts = pts @ m[:, :2].T + m[:, 2]
        return pts.astype(np.float32)


def _tiles(w: int, h: int) -> list[tuple[int, int, int]]:
    """Overlapping square tiles (x, y, side) covering a frame, 60% of its short side each."""
    side = max(64, int(min(w, h) * 0.6))
    if side >= max(w, h):
        return []
    step = int(side * 0.75)
    xs = list(range(0, max(w - side, 0) + 1, step))
    ys = list(range(0, max(h - side, 0) + 1, step))
    if xs[-1] + side < w:
        xs.append(w - side)
    if ys[-1] + side < h:
        ys.append(h - side)
    return [(x, y, side) for y in ys for x in xs]


# Points of a face outline: the convex hull of the 478 landmarks has 37-40 vertices on the bundled face photo,
# turned and scaled (a few cheek points besides the face oval's 36).
OUTLINE_POINTS = 64


def face_outline(landmarks: np.ndarray, points: int = OUTLINE_POINTS) -> np.ndarray:
    """[..., 478, 2] landmarks -> [..., points, 2] float32: each face's convex hull, NaN-padded (all NaN for a face
    without landmarks). What paste-back makes its blend mask of (the hull of the hull is the hull: the same mask as
    from all 478 points, for 13% of their bytes). A hull with more than `points` vertices, which no face here has
    had, keeps a subset of them (cv2.approxPolyDP): a slightly smaller mask, which the mask's dilation covers."""
    import cv2

    lm = np.asarray(landmarks, dtype=np.float32)
    lead = lm.shape[:-2]
    out = np.full(lead + (points, 2), np.nan, dtype=np.float32)
    for position in np.ndindex(*lead):
        pts = lm[position][np.isfinite(lm[position]).all(axis=1)]
        if len(pts) < 3:
            continue
        hull = cv2.convexHull(pts).reshape(-1, 2)
        tolerance = 0.25  # pixels
        while len(hull) > points:
            hull = cv2.approxPolyDP(hull[:, None], tolerance, closed=True).reshape(-1, 2)
            tolerance *= 2
        out[position][:len(hull)] = hull
    return out


def eye_mouth_points(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """[..., 478, 2] -> eye centres and mouth corners [..., 2] in the FFHQ script's naming (image left/right)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return {
        "eye_left": lm[..., RIGHT_EYE_CONTOUR, :].mean(axis=-2),
        "eye_right": lm[..., LEFT_EYE_CONTOUR, :].mean(axis=-2),
        "mouth_left": lm[..., MOUTH_LEFT_CORNER, :],
        "mouth_right": lm[..., MOUTH_RIGHT_CORNER, :],
    }
