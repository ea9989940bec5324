"""Closed-form StyleGAN3 input transforms between the unaligned crop and the aligned image: the transform's
decomposition into angle, translation and scale (`generator_transforms`) and its recomposition
(`transform_from_params`, after smoothing), in one place. Numpy only: the landmark workers import this module.

Conventions
-----------
Normalised image coordinates p = (px, py): the output image spans [-0.5, 0.5] in both axes, centre 0, x right,
y down (the grid StyleGAN3's SynthesisInput evaluates its Fourier features on, restricted to the output image).

A quad Q (TL, BL, BR, TR; centre c, half-axes x = ((TR-TL)+(BR-BL))/4, y = ((BL-TL)+(BR-TR))/4, in source
pixels) is the image of the normalised square under

    M_Q = [[2x, 2y, c], [0, 0, 1]]      (columns; source_pixel = c + 2 px x + 2 py y),

so TL = M_Q(-0.5, -0.5), BL = M_Q(-0.5, 0.5), BR = M_Q(0.5, 0.5), TR = M_Q(0.5, -0.5). The pixel-centre
convention cancels out below because both quads are in the same frame's coordinates.

The generator renders I_T(p) = I_identity(T p), where T is the 3x3 `synthesis.input.transform` buffer and
I_identity is (approximately) the aligned image. To render the unaligned crop C we need C(p) = A(T p) for every
crop point p, i.e. T maps crop coordinates to aligned coordinates through the source frame:

    T = M_A^-1 @ M_C          (crop-normalised -> source pixels -> aligned-normalised)

Both quads are squares, so T is a similarity. stylegan3-editing stores T as `inv(make_transform(t, a))` with
make_transform(t, a) = [[cos a, sin a, tx], [-sin a, cos a, ty], [0, 0, 1]] (a in degrees), so we report

    inv(T) = M_C^-1 @ M_A = [[s cos a, s sin a, tx], [-s sin a, s cos a, ty], [0, 0, 1]]

  rotation_deg = a = atan2(inv(T)[0,1], inv(T)[0,0]) in (-180, 180]: with y down, positive a is a
      counter-clockwise rotation on screen of the face in the crop relative to the upright aligned face
      (the reference's get_rotation_from_eyes returns the same angle in [0, 360)).
  translation = (tx, ty): where the aligned image's centre lies in the crop, in normalised crop units (the
      reference divides its eye offset by the image size: the same units).
  scale = s: the aligned quad's size over the crop quad's (1 when the crop is the aligned quad made axis-aligned;
      the reference assumes 1, make_transform has no scale; T keeps it so the generator renders the crop exactly).
"""
from __future__ import annotations

import numpy as np


def make_transform(translate=(0.0, 0.0), angle: float = 0.0) -> np.ndarray:
    """Rotation (degrees) + translation matrix as the reference gen_images.py builds it.

    The synthesis transform is an inverse transform: render with `np.linalg.inv(make_transform(t, a))` to rotate
    the image by `a` degrees and translate it by `t`, exactly like gen_images.py --rotate/--translate.
    """
    a = np.deg2rad(angle)
    return np.array([[np.cos(a), np.sin(a), translate[0]],
                     [-np.sin(a), np.cos(a), translate[1]],
                     [0.0, 0.0, 1.0]])


def quad_matrix(quads: np.ndarray) -> np.ndarray:
    """[..., 4, 2] quads -> [..., 3, 3] M_Q (normalised image coordinates -> source pixels)."""
    q = np.asarray(quads, dtype=np.float64)
    c = q.mean(axis=-2)
    x = ((q[..., 3, :] - q[..., 0, :]) + (q[..., 2, :] - q[..., 1, :])) / 4
    y = ((q[..., 1, :] - q[..., 0, :]) + (q[..., 2, :] - q[..., 3, :])) / 4
    m = np.zeros(q.shape[:-2] + (3, 3), dtype=np.float64)
    m[..., 0:2, 0] = 2 * x
    m[..., 0:2, 1] = 2 * y
    m[..., 0:2, 2] = c
    m[..., 2, 2] = 1.0
    return m


def generator_transforms(aligned_quads: np.ndarray, crop_quads: np.ndarray) -> dict[str, np.ndarray]:
    """Per-face generator transform T = M_A^-1 M_C and its reference-style decomposition
    (`transform_from_params` recomposes it).

    aligned_quads, crop_quads: [..., 4, 2] (frames, or frames x face slots). NaN quads give NaN outputs.
    Returns transform [...,3,3], rotation_deg [...], translation [...,2], scale [...] (float32).
    """
    lead = np.shape(aligned_quads)[:-2]
    m_a = quad_matrix(np.reshape(aligned_quads, (-1, 4, 2)))
    m_c = quad_matrix(np.reshape(crop_quads, (-1, 4, 2)))
    n = m_a.shape[0]
    ok = np.isfinite(m_a).all(axis=(1, 2)) & np.isfinite(m_c).all(axis=(1, 2))
    ok &= np.abs(np.linalg.det(np.where(ok[:, None, None], m_a, np.eye(3)))) > 1e-12
    t = np.full((n, 3, 3), np.nan)
    inv_t = np.full((n, 3, 3), np.nan)
    if ok.any():
        t[ok] = np.linalg.solve(m_a[ok], m_c[ok])  # M_A^-1 M_C
        inv_t[ok] = np.linalg.solve(m_c[ok], m_a[ok])  # M_C^-1 M_A
    rotation = np.degrees(np.arctan2(inv_t[:, 0, 1], inv_t[:, 0, 0]))
    scale = np.hypot(inv_t[:, 0, 0], inv_t[:, 0, 1])
    translation = inv_t[:, 0:2, 2]
    return {
        "transform": t.astype(np.float32).reshape(lead + (3, 3)),
        "rotation_deg": rotation.astype(np.float32).reshape(lead),
        "translation": translation.astype(np.float32).reshape(lead + (2,)),
        "scale": scale.astype(np.float32).reshape(lead),
    }


def transform_from_params(rotation_deg: np.ndarray, translation: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Inverse of `generator_transforms`' decomposition: T = inv([[s cos a, s sin a, tx], [-s sin a, s cos a, ty],
    [0, 0, 1]]), batched ([...], [...,2], [...] -> [...,3,3]); NaN parameters give a NaN transform."""
    a = np.deg2rad(np.asarray(rotation_deg, dtype=np.float64))
    s = np.asarray(scale, dtype=np.float64)
    m = np.zeros(a.shape + (3, 3))
    m[..., 0, 0] = m[..., 1, 1] = s * np.cos(a)
    m[..., 0, 1] = s * np.sin(a)
    m[..., 1, 0] = -s * np.sin(a)
    m[..., 0:2, 2] = translation
    m[..., 2, 2] = 1.0
    ok = np.isfinite(m).all(axis=(-2, -1))
    out = np.full_like(m, np.nan)
    out[ok] = np.linalg.inv(m[ok])
    return out


def render_with_transform(image: np.ndarray, transform: np.ndarray, size: int | None = None) -> np.ndarray:
    """What a generator whose identity rendering is `image` renders with `transform`: out(p) = image(T p).

    image [S,S,C]; p and T p in normalised coordinates; points outside `image` come out black. A stand-in for the
    generator in tests and previews.
    """
    import cv2

    s_in = image.shape[0]
    s_out = size or s_in
    t = np.asarray(transform, dtype=np.float64)
    # dst pixel j -> p = (j + 0.5)/S_out - 0.5 -> q = T p -> src pixel (q + 0.5) S_in - 0.5
    a = np.array([[1 / s_out, 0, 0.5 / s_out - 0.5], [0, 1 / s_out, 0.5 / s_out - 0.5], [0, 0, 1]])
    b = np.array([[s_in, 0, 0.5 * s_in - 0.5], [0, s_in, 0.5 * s_in - 0.5], [0, 0, 1]])
    m = (b @ t @ a)[:2]
    return cv2.warpAffine(image, m, (s_out, s_out), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
