"""The FFHQ alignment recipe: landmarks -> oriented quad -> aligned crop, with vectorised OpenCV warps.

Quads are [..., 4, 2] arrays in source-frame pixel coordinates (OpenCV convention: pixel centres at integers),
corners in the FFHQ order: top-left, bottom-left, bottom-right, top-right *of the output image*
(quad = [c - x - y, c - x + y, c + x + y, c + x - y]). A quad is also carried as 4 parameters
(cx, cy, xx, xy): centre c and x half-axis; the y half-axis is always y = flipud(x) * [-1, 1] = (-xy, xx),
so every quad here is a square and averaging/interpolating parameters keeps it a square.

The warp follows the FFHQ dataset's recreate_aligned_images (and stylegan3-editing's crop_face_by_transform):
shrink by an integer factor when the quad is much larger than the output, crop to the quad plus a border,
reflect-pad with blur and a fade to the median colour where the quad leaves the frame, then sample the quad.
The reference samples straight to the output size with bilinear filtering (after the shrink, the quad can still
be up to ~4x the output); FFHQ itself samples at 4096 and downsizes with an antialiasing filter. We do the latter
in a bounded way: sample at k * size (k = ceil(quad size / size), at most `max_supersample`) and area-resize.
"""
from __future__ import annotations

import math

import numpy as np

from .landmarks import eye_mouth_points


def ffhq_params(landmarks: np.ndarray) -> np.ndarray:
    """[..., 478, 2] mediapipe landmarks -> [..., 4] quad parameters (cx, cy, xx, xy) of the FFHQ recipe.

    NaN landmarks give NaN parameters.
    """
    p = eye_mouth_points(landmarks)
    eye_avg = (p["eye_left"] + p["eye_right"]) * 0.5
    eye_to_eye = p["eye_right"] - p["eye_left"]
    mouth_avg = (p["mouth_left"] + p["mouth_right"]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    # x = eye_to_eye - flipud(eye_to_mouth) * [-1, 1];  flipud([a, b]) * [-1, 1] = [-b, a]
    x = eye_to_eye - np.stack([-eye_to_mouth[..., 1], eye_to_mouth[..., 0]], axis=-1)
    x = x / np.hypot(x[..., 0], x[..., 1])[..., None]
    scale = np.maximum(np.hypot(eye_to_eye[..., 0], eye_to_eye[..., 1]) * 2.0,
                       np.hypot(eye_to_mouth[..., 0], eye_to_mouth[..., 1]) * 1.8)
    x = x * scale[..., None]
    c = eye_avg + eye_to_mouth * 0.1
    return np.concatenate([c, x], axis=-1)


def params_to_quad(params: np.ndarray) -> np.ndarray:
    """[..., 4] (cx, cy, xx, xy) -> [..., 4, 2] quad (TL, BL, BR, TR)."""
    params = np.asarray(params, dtype=np.float64)
    c = params[..., 0:2]
    x = params[..., 2:4]
    y = np.stack([-x[..., 1], x[..., 0]], axis=-1)
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y], axis=-2)


def quad_to_params(quad: np.ndarray) -> np.ndarray:
    """[..., 4, 2] quad -> [..., 4] (cx, cy, xx, xy) (least squares for a quad that is not exactly a square)."""
    q = np.asarray(quad, dtype=np.float64)
    c = q.mean(axis=-2)
    x = ((q[..., 3, :] - q[..., 0, :]) + (q[..., 2, :] - q[..., 1, :])) / 4
    y = ((q[..., 1, :] - q[..., 0, :]) + (q[..., 2, :] - q[..., 3, :])) / 4
    # x and rot(-90)(y) both estimate the x half-axis
    x = (x + np.stack([y[..., 1], -y[..., 0]], axis=-1)) / 2
    return np.concatenate([c, x], axis=-1)


def axis_aligned(params: np.ndarray) -> np.ndarray:
    """The same quad without rotation (stylegan3-editing's get_fixed_cropping_transformation): centre c,
    half-size |x| along the frame's axes."""
    params = np.asarray(params, dtype=np.float64)
    out = np.zeros_like(params)
    out[..., 0:2] = params[..., 0:2]
    out[..., 2] = np.hypot(params[..., 2], params[..., 3])
    return out


def warp_quad(img: np.ndarray, quad: np.ndarray, size: int, enable_padding: bool = True,
              max_supersample: int = 4) -> np.ndarray:
    """Sample `quad` (source pixels, TL/BL/BR/TR) of `img` [H,W,3] uint8 into a [size, size, 3] uint8 image."""
    import cv2

    # Edge coordinates (pixel i covers [i, i+1)), the convention of PIL's QUAD transform and of the reference's
    # `quad + 0.5`.
    quad = np.asarray(quad, dtype=np.float64) + 0.5
    h_img, w_img = img.shape[:2]
    x_axis = ((quad[3] - quad[0]) + (quad[2] - quad[1])) / 4
    qsize = float(np.hypot(*x_axis) * 2)

    # Shrink (the recipe's integer factor); we crop to the region first so a 1080p frame is never resized whole.
    shrink = int(math.floor(qsize / size * 0.5))
    s = shrink if shrink > 1 else 1
    border = max(int(np.rint(qsize / s * 0.1)), 3)
    lo = np.floor(quad.min(axis=0)).astype(int) - border * s
    hi = np.ceil(quad.max(axis=0)).astype(int) + border * s
    x0 = int(np.clip(lo[0], 0, w_img - 1))
    y0 = int(np.clip(lo[1], 0, h_img - 1))
    x1 = int(np.clip(hi[0], x0 + 1, w_img))
    y1 = int(np.clip(hi[1], y0 + 1, h_img))
    roi = img[y0:y1, x0:x1]
    quad = quad - (x0, y0)
    if s > 1:
        nw = max(1, int(np.rint((x1 - x0) / s)))
        nh = max(1, int(np.rint((y1 - y0) / s)))
        roi = cv2.resize(roi, (nw, nh), interpolation=cv2.INTER_AREA)
        quad = quad * (nw / (x1 - x0), nh / (y1 - y0))
        qsize = qsize * nw / (x1 - x0)

    # Pad: reflect, blur the padding (sigma 2% of the quad) and fade it to the median colour (the recipe).
    h, w = roi.shape[:2]
    qmin = np.floor(quad.min(axis=0)).astype(int)
    qmax = np.ceil(quad.max(axis=0)).astype(int)
    pad = np.array([max(-qmin[0] + border, 0), max(-qmin[1] + border, 0),
                    max(qmax[0] - w + border, 0), max(qmax[1] - h + border, 0)])
    if enable_padding and pad.max() > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        pad = np.maximum(pad, 1)
        padded = cv2.copyMakeBorder(np.ascontiguousarray(roi), int(pad[1]), int(pad[3]), int(pad[0]), int(pad[2]),
                                    cv2.BORDER_REFLECT_101).astype(np.float32)
        ph, pw = padded.shape[:2]
        xs = np.arange(pw, dtype=np.float32)
        ys = np.arange(ph, dtype=np.float32)
        mx = 1.0 - np.minimum(xs / pad[0], (pw - 1 - xs) / pad[2])
        my = 1.0 - np.minimum(ys / pad[1], (ph - 1 - ys) / pad[3])
        mask = np.maximum(mx[None, :], my[:, None])[..., None]
        blur = qsize * 0.02
        if blur > 0.1:
            blurred = cv2.GaussianBlur(padded, (0, 0), sigmaX=blur, sigmaY=blur, borderType=cv2.BORDER_REFLECT)
            padded += (blurred - padded) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        padded += (np.median(padded, axis=(0, 1)) - padded) * np.clip(mask, 0.0, 1.0)
        roi = np.clip(np.rint(padded), 0, 255).astype(np.uint8)
        quad = quad + pad[:2]

    # Transform: output edge coords u in [0, T] map bilinearly onto the quad; for a parallelogram this is affine.
    k = int(np.clip(math.ceil(qsize / size), 1, max_supersample))
    tsize = size * k
    c = quad.mean(axis=0)
    xa = ((quad[3] - quad[0]) + (quad[2] - quad[1])) / 4
    ya = ((quad[1] - quad[0]) + (quad[2] - quad[3])) / 4
    # dst pixel j (centre at j + 0.5 in edge coords) -> src edge coords c + 2x((j+.5)/T - .5) + 2y(...),
    # -> src pixel-centre coords (minus 0.5), which is what warpAffine's inverse map expects.
    m = np.empty((2, 3), dtype=np.float64)
    m[:, 0] = 2 * xa / tsize
    m[:, 1] = 2 * ya / tsize
    m[:, 2] = c + (xa + ya) / tsize - xa - ya - 0.5
    out = cv2.warpAffine(np.ascontiguousarray(roi), m, (tsize, tsize),
                         flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101)
    if k > 1:
        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)
    return out


def warp_quads(frames: np.ndarray, quads: np.ndarray, size: int, valid: np.ndarray | None = None,
               enable_padding: bool = True) -> np.ndarray:
    """[N,H,W,3] frames, [N,...,4,2] quads (one per frame, or per frame and face slot) -> [N,...,size,size,3]
    uint8; quads that are not valid come out black."""
    quads = np.asarray(quads)
    lead = quads.shape[:-2]
    out = np.zeros(lead + (size, size, 3), dtype=np.uint8)
    for position in np.ndindex(*lead):
        if valid is not None and not valid[position]:
            continue
        if not np.all(np.isfinite(quads[position])):
            continue
        out[position] = warp_quad(frames[position[0]], quads[position], size, enable_padding=enable_padding)
    return out
