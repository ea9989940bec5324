"""The per-frame measures of `sg3stream eval`, one small function each (numpy and OpenCV only).

Images are [h, w, 3] uint8 RGB unless said; masks are [h, w] bool of the same size. Code values are 0..255.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

PSNR_CAP_DB = 100.0  # what identical images score (their PSNR is infinite)
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5  # Wang et al. 2004
SSIM_C1, SSIM_C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
# forward-backward consistency (Sundaram et al. 2010, as in Ruder et al. 2016 and Lai et al. 2018): a pixel is
# occluded when |f + b|^2 > FB_ALPHA * (|f|^2 + |b|^2) + FB_BETA
FB_ALPHA, FB_BETA = 0.01, 0.5


def squared_error(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, int]:
    """(sum of squared differences over the masked pixels and all channels, number of values summed)."""
    if mask is None:
        return float(cv2.norm(a, b, cv2.NORM_L2SQR)), a.size
    m = mask.astype(np.uint8)
    return float(cv2.norm(a, b, cv2.NORM_L2SQR, mask=m)), int(np.count_nonzero(m)) * a.shape[-1]


def psnr(sse: float, count: int) -> float | None:
    """PSNR in dB of a mean squared error sse / count (code values), capped at 100 dB; None without values."""
    if count <= 0:
        return None
    mse = sse / count
    if mse <= 0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * math.log10(255.0 ** 2 / mse))


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean over `mask` of the SSIM map (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, each RGB channel, then
    their mean). Give the face's box with a few pixels around it: the window reads the neighbours of edge pixels."""
    if not mask.any():
        return None
    x, y = a.astype(np.float32), b.astype(np.float32)

    def blur(img):
        return cv2.GaussianBlur(img, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x * mu_x
    syy = blur(y * y) - mu_y * mu_y
    sxy = blur(x * y) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + SSIM_C1) * (2 * sxy + SSIM_C2)) / ((mu_x ** 2 + mu_y ** 2 + SSIM_C1)
                                                              * (sxx + syy + SSIM_C2))
    return float(s.mean(axis=2)[mask].mean())


def reference_flow(prev: np.ndarray, cur: np.ndarray, dis) -> tuple[np.ndarray, np.ndarray]:
    """Optical flow from `cur` back to `prev` (grey uint8, same size) and where it can be trusted.

    Returns (flow [h,w,2]: cur pixel x shows what prev shows at x + flow(x); valid [h,w] bool: the forward flow
    at x + flow(x) leads back to x (forward-backward check; the rest is occluded or unreliable) and x + flow(x)
    lies inside the image). `dis` is a cv2.DISOpticalFlow.
    """
    back = dis.calc(cur, prev, None)
    fwd = dis.calc(prev, cur, None)
    h, w = cur.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    bx, by = cv2.split(back)  # contiguous planes: numpy is several times faster on them than on [..., 2]
    map_x, map_y = gx + bx, gy + by
    fx, fy = cv2.split(cv2.remap(fwd, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
    loop = np.square(bx + fx) + np.square(by + fy)
    valid = loop <= FB_ALPHA * (np.square(bx) + np.square(by) + np.square(fx) + np.square(fy)) + FB_BETA
    valid &= (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    return back, valid


def warp_error(prev: np.ndarray, cur: np.ndarray, flow: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean absolute difference, in [0, 1] units (code value / 255) averaged over RGB, between `cur` and `prev`
    warped onto it by `flow` (from reference_flow), over the pixels of `mask` (face and valid flow)."""
    if not mask.any():
        return None
    h, w = mask.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    warped = cv2.remap(prev, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    per_channel = cv2.mean(cv2.absdiff(cur, warped), mask=mask.astype(np.uint8))[:3]
    return float(np.mean(per_channel) / 255.0)


def gradient_energy(image: np.ndarray, band: np.ndarray) -> float:
    """Sum over the `band` pixels of the squared gradient magnitude (3x3 Sobel, in code values per pixel; the mean
    over RGB). Squared, so that one sharp step (a seam) outweighs the texture around it."""
    h = image.shape[0]
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8).reshape(h, -1)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8).reshape(h, -1)
    energy = (gx * gx + gy * gy).reshape(image.shape)
    return float(energy[band].sum() / image.shape[2])


def _ratios(sim_edit: np.ndarray, sim_ref: np.ndarray) -> np.ndarray:
    """EDITED's similarities over REFERENCE's, pair by pair; pairs whose REFERENCE similarity is not positive are
    left out (their ratio means nothing)."""
    keep = sim_ref > 0
    return sim_edit[keep] / sim_ref[keep]


def tl_id(edit: np.ndarray, ref: np.ndarray, present: np.ndarray) -> float | None:
    """TL-ID (Tzaban et al. 2022): over adjacent frames t-1, t that both have a face, the mean of
    cos(EDITED t-1, EDITED t) / cos(REFERENCE t-1, REFERENCE t). Embeddings [T, D] of unit length; 1 = as
    consistent as the input."""
    t = np.flatnonzero(present[1:] & present[:-1]) + 1
    if len(t) == 0:
        return None
    ratios = _ratios((edit[t - 1] * edit[t]).sum(axis=1), (ref[t - 1] * ref[t]).sum(axis=1))
    return float(ratios.mean()) if len(ratios) else None


def tg_id(edit: np.ndarray, ref: np.ndarray, present: np.ndarray, max_frames: int = 2000) -> float | None:
    """TG-ID: the same over all pairs of distinct frames with a face (at most `max_frames` of them, evenly spread:
    an hour of video stays two million pairs)."""
    frames = np.flatnonzero(present)
    if len(frames) > max_frames:
        frames = frames[np.linspace(0, len(frames) - 1, max_frames).round().astype(int)]
    if len(frames) < 2:
        return None
    e, r = edit[frames].astype(np.float64), ref[frames].astype(np.float64)
    i, j = np.triu_indices(len(frames), k=1)
    ratios = _ratios((e @ e.T)[i, j], (r @ r.T)[i, j])
    return float(ratios.mean()) if len(ratios) else None
