"""Paste-back: the rendered (edited, maybe expanded) crop warped into the original frame.

The crop quad (TL, BL, BR, TR in source pixels, align/stages.py) is the square the generator renders with the
frame's transform. A pixel (u, v) of the expanded render (centre render starting at (left, top)) sits at
normalised crop coordinates p = ((u - left + 0.5) / res - 0.5, (v - top + 0.5) / res - 0.5), and at source
pixel M_C p (align/transforms.py: quad_matrix), pixel centres at integers. That affine map warps the render into
the frame; only the bounding box of the warped render is touched.

Blending: a mask of the face region — the convex hull of the landmarks (or of the face's outline, their hull:
align/landmarks.py `face_outline`, the same hull), dilated by `dilate` of the face size —
feathered with a Gaussian of `feather` of the face size, and limited to where the render lands. Colour: the
render's per-channel mean and spread in the mask are matched to the frame's (ratio of spreads clipped to
[0.5, 2]), so that lighting the generator does not reproduce does not show as a patch.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..align.transforms import quad_matrix
from ..video.colour import decode_linear, encode_linear
from .expand import Expansion


# Pictures of any depth: the render (uint8) is blended in the frame's own units, uint8 0-255 or uint16 0-65535,
# or for a float (scene-linear EXR) frame in its display encoding (0-1, `transfer`: colour.encode_linear), decoded
# back where the face lands. Outside the blend mask nothing is written: those pixels leave as they came, bit for bit.

MATTE_ZERO = 0.5 / 65535  # weights below it are 0 in the 16-bit matte (--matte): no pixel there is written


def render_scale(dtype) -> float:
    """The factor from the render's 0-255 to the frame's units."""
    dtype = np.dtype(dtype)
    return 1 / 255 if dtype.kind == "f" else (np.iinfo(dtype).max / 255)


def working_values(pixels: np.ndarray, transfer: str = "srgb") -> np.ndarray:
    """A frame's pixels as float32 in the units the blend works in (see above)."""
    if pixels.dtype.kind == "f":
        return encode_linear(pixels, transfer)
    return pixels.astype(np.float32)


def stored_values(values: np.ndarray, dtype, transfer: str = "srgb") -> np.ndarray:
    """The inverse of `working_values`, rounded and clipped for integer pictures."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return decode_linear(values, transfer).astype(dtype)
    return np.clip(np.rint(values), 0, np.iinfo(dtype).max).astype(dtype)


def render_to_frame(crop_quad: np.ndarray, res: int, expansion: Expansion) -> np.ndarray:
    """2x3 affine from expanded-render pixels to source-frame pixels."""
    to_norm = np.array([[1 / res, 0, (0.5 - expansion.left) / res - 0.5],
                        [0, 1 / res, (0.5 - expansion.top) / res - 0.5],
                        [0, 0, 1]])
    return (quad_matrix(crop_quad) @ to_norm)[:2]


def face_mask(shape: tuple[int, int], outline: np.ndarray, dilate: float = 0.08, feather: float = 0.04,
              ) -> np.ndarray:
    """[H,W] float32 in [0,1]: the convex hull of the outline points (landmarks, or their hull; NaN rows are left
    out), dilated and feathered (fractions of the face size)."""
    mask = np.zeros(shape, np.float32)
    pts = outline[np.isfinite(outline).all(axis=1)]
    if len(pts) < 3:
        return mask
    hull = cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2)
    size = float(np.ptp(pts, axis=0).max())
    cv2.fillConvexPoly(mask, np.round(hull * 16).astype(np.int32), 1.0, lineType=cv2.LINE_AA, shift=4)
    k = max(1, int(round(size * dilate)))
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    sigma = max(0.5, size * feather)
    return cv2.GaussianBlur(mask, (0, 0), sigma)


def match_colour(render: np.ndarray, frame: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Shift and scale each channel of `render` so its weighted mean/spread match `frame`'s (float32 in, out)."""
    w = weight[..., None]
    total = float(w.sum())
    if total < 16:
        return render
    mean_r = (render * w).sum(axis=(0, 1)) / total
    mean_f = (frame * w).sum(axis=(0, 1)) / total
    std_r = np.sqrt(((render - mean_r) ** 2 * w).sum(axis=(0, 1)) / total) + 1e-3
    std_f = np.sqrt(((frame - mean_f) ** 2 * w).sum(axis=(0, 1)) / total) + 1e-3
    ratio = np.clip(std_f / std_r, 0.5, 2.0)
    return (render - mean_r) * ratio + mean_f


def paste(frame: np.ndarray, render: np.ndarray, crop_quad: np.ndarray, outline: np.ndarray, res: int,
          expansion: Expansion, colour_match: bool = True, dilate: float = 0.08, feather: float = 0.04,
          out: np.ndarray | None = None, matte: np.ndarray | None = None, transfer: str = "srgb") -> np.ndarray:
    """Blend `render` [h,w,3] uint8 into a copy of `frame` [H,W,3] (uint8, uint16 or float: see `render_scale`;
    into `out` when given, which may be `frame` itself: no copy of the picture); pixels outside the face mask
    (around the outline [K,2]: the face's landmarks or their hull) are untouched. `matte` [H,W] uint16: where the
    blend's weight is written (0-65535), kept where it is larger already (another face's)."""
    layer = face_layer(frame, render, crop_quad, outline, res, expansion, colour_match, dilate, feather, transfer)
    if out is None:
        out = frame.copy()
    elif out is not frame:
        out[...] = frame
    if layer is None:
        return out
    region, face, alpha = layer
    if matte is not None:
        np.maximum(matte[region], np.rint(alpha * 65535).astype(np.uint16), out=matte[region])
    blend_into(out, frame, region, face, alpha, transfer)
    return out


def blend_into(out: np.ndarray, frame: np.ndarray, region, face: np.ndarray, alpha: np.ndarray,
               transfer: str = "srgb") -> None:
    """out[region] = frame[region] blended towards `face` by `alpha` (a `face_layer`), in the frame's dtype;
    where alpha is 0 in the 16-bit matte nothing is written. `out` may be `frame`."""
    roi = working_values(frame[region], transfer)
    blended = stored_values(roi + (face - roi) * alpha[..., None], out.dtype, transfer)
    np.copyto(out[region], blended, where=alpha[..., None] >= MATTE_ZERO)


def face_layer(frame: np.ndarray, render: np.ndarray, crop_quad: np.ndarray, outline: np.ndarray, res: int,
               expansion: Expansion, colour_match: bool = True, dilate: float = 0.08, feather: float = 0.04,
               transfer: str = "srgb"):
    """What paste blends: (the region of the frame it covers (a pair of slices), the render warped there and
    colour-matched to `frame` [h,w,3] float32 in the blend's units (`working_values`), its weight [h,w] float32 in
    [0, 1]); None where it lands outside."""
    height, width = frame.shape[:2]
    affine = render_to_frame(crop_quad, res, expansion)
    rh, rw = render.shape[:2]
    corners = np.array([[-0.5, -0.5, 1], [rw - 0.5, -0.5, 1], [-0.5, rh - 0.5, 1], [rw - 0.5, rh - 0.5, 1]]) @ affine.T
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 1, (width, height))
    if x1 <= x0 or y1 <= y0:
        return None
    shifted = affine.copy()
    shifted[:, 2] -= (x0, y0)
    size = (int(x1 - x0), int(y1 - y0))
    warped = cv2.warpAffine(render, shifted, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    # where the render lands, eroded by a pixel so its black border never bleeds in
    coverage = cv2.warpAffine(np.ones((rh, rw), np.float32), shifted, size, flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)
    coverage = cv2.erode(coverage, np.ones((3, 3), np.uint8))
    local = outline - (x0, y0)
    alpha = face_mask((size[1], size[0]), local, dilate, feather) * coverage
    region = (slice(y0, y1), slice(x0, x1))
    scale = np.float32(render_scale(frame.dtype))
    face = warped.astype(np.float32) * scale
    if colour_match:
        # matched colours may overshoot black or white: clipped here, so that the full output and the layer
        # (premultiplied, which cannot hold a negative colour) blend the same face
        face = np.clip(match_colour(face, working_values(frame[region], transfer), alpha), 0,
                       None if frame.dtype.kind == "f" else 255 * scale)
    return region, face, alpha
