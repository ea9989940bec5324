"""Where eval measures: the face (what the pipeline edits), the band on its edge (where a paste seam shows) and the
outside (what an edit must leave alone), frame by frame.

The face region is the region paste-back blends into (render/paste.py `face_mask`): the convex hull of the
reference's landmarks, dilated by 8% and feathered by 4% of the face size (computed here the faster way that
`paste_weight` says). Eval reads that blend weight w as:
face where w >= 0.5 (the dilated hull), outside where w < 1/510 (no paste can move a code value there by half a
step, so nothing may change), and neither in between. A caller can give the regions directly (`face_masks`):
a bool mask is the face and its complement the outside; a float mask in [0, 1] is read as a blend weight.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# render/paste.py face_mask's defaults, which `run` uses: dilation and feather, fractions of the face size
PASTE_DILATE, PASTE_FEATHER = 0.08, 0.04
FACE_WEIGHT = 0.5
OUTSIDE_WEIGHT = 1 / 510
# The seam band reaches this fraction of the face size each side of the face's edge: the middle of paste's feather
# (sigma 4%), where a misregistered render blends half and half with the frame and a step or a ghost shows most.
BAND_FRACTION = 0.02
MIN_BAND = 2  # pixels
MIN_FACE_PIXELS = 16  # a smaller face region is no face


@dataclass
class Regions:
    """One frame's regions. Everything but the outside lies inside `box`; the masks are box-sized."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) in frame pixels
    face: np.ndarray  # [h, w] bool
    near: np.ndarray  # [h, w] bool: not outside (the face, and where a paste could still change something)
    band: np.ndarray  # [h, w] bool: within `band_radius` of the face's edge, on either side
    face_box: tuple[int, int, int, int]  # the face's own bounding box x0, y0, x1, y1 (exclusive), frame pixels
    band_radius: int  # pixels

    @property
    def size(self) -> int:
        """The longer side of the face's bounding box, pixels."""
        x0, y0, x1, y1 = self.face_box
        return max(x1 - x0, y1 - y0)

    @property
    def slices(self) -> tuple[slice, slice]:
        x0, y0, x1, y1 = self.box
        return slice(y0, y1), slice(x0, x1)

    def around_face(self, pad: int = 8) -> tuple[slice, slice]:
        """Box-local slices of the face's bounding box grown by the band and `pad` pixels: all that SSIM (its
        window reads up to 5 pixels out) and the seam band need, a smaller area than the box."""
        x0, y0, x1, y1 = self.face_box
        grow = self.band_radius + pad
        bx, by = self.box[:2]
        h, w = self.face.shape
        return (slice(max(0, y0 - by - grow), min(h, y1 - by + grow)),
                slice(max(0, x0 - bx - grow), min(w, x1 - bx + grow)))


def _bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    x, y, w, h = cv2.boundingRect(np.ascontiguousarray(mask).view(np.uint8))
    return x, y, x + w, y + h


def _regions(face: np.ndarray, near: np.ndarray, box: tuple[int, int, int, int]) -> Regions | None:
    """Regions from box-sized face and near masks: the band is drawn around the face's edge."""
    if np.count_nonzero(face) < MIN_FACE_PIXELS:
        return None
    fx0, fy0, fx1, fy1 = _bounding_box(face)
    r = max(MIN_BAND, int(round(BAND_FRACTION * max(fx1 - fx0, fy1 - fy0))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    f = face.view(np.uint8)
    # the erosion treats what lies beyond the box as face: a face cut by the frame's edge has no seam there
    band = (cv2.dilate(f, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0) & ~(cv2.erode(f, kernel) > 0)
    bx, by = box[:2]
    return Regions(box=box, face=face, near=near | face, band=band,
                   face_box=(bx + fx0, by + fy0, bx + fx1, by + fy1), band_radius=r)


def regions_from_mask(mask: np.ndarray) -> Regions | None:
    """[H, W] bool (the face; outside = the rest) or float in [0, 1] (a blend weight, read as the module says)."""
    mask = np.asarray(mask)
    if mask.dtype == bool:
        face_full = near_full = mask
    else:
        face_full, near_full = mask >= FACE_WEIGHT, mask >= OUTSIDE_WEIGHT
    if np.count_nonzero(face_full) < MIN_FACE_PIXELS:
        return None
    fx0, fy0, fx1, fy1 = _bounding_box(face_full)
    # room for the band, the SSIM window and the near zone around the face
    pad = max(MIN_BAND, int(round(BAND_FRACTION * max(fx1 - fx0, fy1 - fy0)))) + 8
    nx0, ny0, nx1, ny1 = _bounding_box(near_full)
    h, w = mask.shape[:2]
    x0, y0, x1, y1 = max(0, nx0 - pad), max(0, ny0 - pad), min(w, nx1 + pad), min(h, ny1 + pad)
    return _regions(face_full[y0:y1, x0:x1].copy(), near_full[y0:y1, x0:x1].copy(), (x0, y0, x1, y1))


def paste_weight(shape: tuple[int, int], outline: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """The blend weight paste-back gives the face with this outline (landmarks or their hull, [K, 2] source pixels,
    NaN rows ignored), computed in a box around it: (weight [h, w] float32, box). None without a face.

    paste's recipe (render/paste.py `face_mask`: the hull, dilated by PASTE_DILATE and feathered by PASTE_FEATHER
    of the face size), drawn faster: the dilation as the hull's outline drawn thick, the feather blurred at a
    lower resolution. paste's float dilation by an elliptic kernel and its full-size blur cost 0.1 s (720p) to
    several seconds (a 4K close-up) a face on a CPU; this, a few ms. The weights differ by a few hundredths on
    the edge's pixels, the regions by less than a pixel (tests/test_eval.py compares the two).
    """
    pts = outline[np.isfinite(outline).all(axis=1)].astype(np.float32)
    if len(pts) < 3:
        return None
    size = float(np.ptp(pts, axis=0).max())
    radius = max(1, int(round(size * PASTE_DILATE)))
    sigma = max(0.5, size * PASTE_FEATHER)
    margin = radius + int(math.ceil(4 * sigma)) + 2  # beyond 4 sigmas of the feather the weight is below 1/510
    h, w = shape
    x0, y0 = np.floor(pts.min(axis=0)).astype(int) - margin
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 1 + margin
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        return None
    hull = np.round(cv2.convexHull((pts - (x0, y0)).astype(np.float32)).reshape(-1, 2) * 16).astype(np.int32)
    dilated = np.zeros((y1 - y0, x1 - x0), np.float32)
    cv2.fillConvexPoly(dilated, hull, 1.0, lineType=cv2.LINE_AA, shift=4)
    # the hull grown by a disc of `radius`: its outline drawn that thick (OpenCV rounds the joints)
    cv2.polylines(dilated, [hull], True, 1.0, thickness=2 * radius, lineType=cv2.LINE_AA, shift=4)
    return wide_gaussian_blur(dilated, sigma), (int(x0), int(y0), int(x1), int(y1))


def wide_gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """cv2.GaussianBlur of a [h, w] float32 image, for the large sigmas of a face's feather (10 to 40 pixels) at a
    fraction of the cost: blurred at 1/f of the resolution (f = sigma // 4) and brought back linearly.

    The area reduction and the linear enlargement blur too (variances (f^2 - 1) / 12 and (f^2 - 1) / 6 pixels^2),
    so the small image gets what is left of sigma^2. The image is padded with zeros to a multiple of f.
    """
    f = int(sigma // 4)
    if f < 2:
        return cv2.GaussianBlur(image, (0, 0), sigma)
    h, w = image.shape
    hp, wp = -(-h // f) * f, -(-w // f) * f
    padded = np.zeros((hp, wp), np.float32)
    padded[:h, :w] = image
    small = cv2.resize(padded, (wp // f, hp // f), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), math.sqrt(sigma ** 2 - (f * f - 1) / 4) / f)
    # cv2.resize's pixel-centre mapping puts small pixel j at f * j + (f - 1) / 2: where the area reduction took it
    return cv2.resize(small, (wp, hp), interpolation=cv2.INTER_LINEAR)[:h, :w]


def regions_from_outline(shape: tuple[int, int], outline: np.ndarray) -> Regions | None:
    """A frame's regions from the face outline (landmarks), as paste-back would blend that face."""
    weighted = paste_weight(shape, outline)
    if weighted is None:
        return None
    weight, box = weighted
    return _regions(weight >= FACE_WEIGHT, weight >= OUTSIDE_WEIGHT, box)
