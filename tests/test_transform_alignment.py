"""The closed-form landmark transform drives the real generator: a face rendered with it lines up with the crop.

align/transforms.py computes T from the aligned and crop quads, assuming the generator renders I_T(p) = I_id(T p).
Here a generator renders with that T and is compared with its identity render warped by T (what the crop shows).
StyleGAN3-T is equivariant to translation only, StyleGAN3-R to rotation too: the demo (a T config) is checked on a
shift, the reference fixture's R generator on a rotation.
"""
import numpy as np
import pytest
import torch

from sg3stream.align.transforms import generator_transforms, render_with_transform, transform_from_params
from sg3stream.models.loading import load_generator


def square_quad(centre, half, angle_deg):
    """FFHQ corner order TL, BL, BR, TR of a square rotated by angle (degrees, counter-clockwise on screen)."""
    a = np.deg2rad(angle_deg)
    x = half * np.array([np.cos(a), -np.sin(a)])
    y = half * np.array([np.sin(a), np.cos(a)])
    c = np.asarray(centre, float)
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def misalignment(g, aligned_quad, crop_quad, seed=5):
    """Mean |render with T - identity render warped by T| where T p lies inside the aligned image, and the same
    for the identity render (what no transform would give)."""
    res = g.img_resolution
    with torch.no_grad():
        ws = g.mapping(torch.randn(2, g.z_dim, generator=torch.Generator().manual_seed(seed)), None,
                       truncation_psi=0.7)
        aligned = g.synthesis(ws)
    t = generator_transforms(aligned_quad[None], crop_quad[None])
    with torch.no_grad():
        rendered = g.synthesis(ws, transform=torch.from_numpy(t["transform"][0]))
    ys, xs = np.mgrid[0:res, 0:res]
    p = np.stack([(xs + 0.5) / res - 0.5, (ys + 0.5) / res - 0.5, np.ones_like(xs, float)], -1) @ t["transform"][0].T
    inside = (np.abs(p[..., 0]) < 0.4) & (np.abs(p[..., 1]) < 0.4)
    with_t, without = [], []
    for k in range(2):
        img = aligned[k].permute(1, 2, 0).numpy()
        expected = render_with_transform(img, t["transform"][0])
        with_t.append(np.abs(rendered[k].permute(1, 2, 0).numpy() - expected)[inside].mean())
        without.append(np.abs(img - expected)[inside].mean())
    return float(np.mean(with_t)), float(np.mean(without)), t


def test_demo_generator_shifts_the_face_where_the_crop_has_it():
    g = load_generator("demo")
    # the face 30 px right and 20 px down of the crop's centre (a 256 px crop of a 256 px face)
    err, err_identity, t = misalignment(g, square_quad((230, 220), 128, 0.0), square_quad((200, 200), 128, 0.0))
    np.testing.assert_allclose(t["translation"][0], [30 / 256, 20 / 256], atol=1e-6)
    assert err < 0.02 * err_identity, (err, err_identity)  # measured: 1.7e-4 vs 0.12


def test_rotation_equivariant_generator_turns_the_face_as_the_crop_shows_it(fixtures_dir):
    g = load_generator(fixtures_dir / "stylegan3" / "sg3r-64.pkl")
    err, err_identity, t = misalignment(g, square_quad((105, 95), 100, 20.0), square_quad((100, 100), 100, 0.0))
    assert t["rotation_deg"][0] == pytest.approx(20.0, abs=1e-3)
    assert err < 0.05 * err_identity, (err, err_identity)  # measured: 2.7e-5 vs 2.3e-3


def test_the_decomposition_and_the_recomposition_are_inverses_on_any_leading_shape():
    """align decomposes T into angle, translation and scale; smoothing rebuilds T from them (one module)."""
    rng = np.random.default_rng(0)
    aligned = np.stack([[square_quad(rng.uniform(80, 120, 2), rng.uniform(40, 60), rng.uniform(-170, 170))
                         for _ in range(2)] for _ in range(3)])  # 3 frames x 2 face slots
    crop = np.stack([[square_quad(rng.uniform(80, 120, 2), rng.uniform(40, 60), 0.0) for _ in range(2)]
                     for _ in range(3)])
    aligned[1, 1] = np.nan  # an empty slot
    t = generator_transforms(aligned, crop)
    assert t["transform"].shape == (3, 2, 3, 3) and t["rotation_deg"].shape == (3, 2)
    assert t["translation"].shape == (3, 2, 2) and t["scale"].shape == (3, 2)
    rebuilt = transform_from_params(t["rotation_deg"], t["translation"], t["scale"])
    np.testing.assert_allclose(rebuilt, t["transform"], atol=1e-5)
    assert np.isnan(rebuilt[1, 1]).all() and np.isfinite(rebuilt[0]).all()
    # per slot, the same as one slot at a time
    single = generator_transforms(aligned[:, 0], crop[:, 0])
    np.testing.assert_array_equal(single["transform"], t["transform"][:, 0])
