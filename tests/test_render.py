"""Field-of-view expansion and paste-back, on the demo generator and on synthetic frames."""
import numpy as np
import pytest
import torch

from sg3stream.errors import UserError
from sg3stream.models.loading import load_generator
from sg3stream.render.expand import Expansion, make_transform, render_expanded, tile_shifts
from sg3stream.render.paste import paste, render_to_frame


@pytest.fixture(scope="module")
def demo():
    g = load_generator("demo")
    with torch.no_grad():
        ws = g.mapping(torch.randn(2, g.z_dim, generator=torch.Generator().manual_seed(3)), None, truncation_psi=0.7)
    return g, ws


def synthesizer(g, ws):
    def synthesize(repeats, transforms):
        with torch.no_grad():
            return g.synthesis(ws.repeat_interleave(repeats, 0), transform=transforms)
    return synthesize


def test_expansion_parses_and_sizes():
    e = Expansion.parse("10,20,30,40")
    assert e.canvas(256) == (256 + 30 + 40, 256 + 10 + 20)
    assert len(tile_shifts(e, 256)) == 9 and len(tile_shifts(Expansion(5, 0, 0, 0), 256)) == 2
    for bad in ("1,2,3", "a,b,c,d", "-1,0,0,0"):
        with pytest.raises(UserError):
            Expansion.parse(bad)


def test_expanded_render_extends_the_plain_render_without_seams(demo):
    g, ws = demo
    res = g.img_resolution
    rot = torch.from_numpy(np.linalg.inv(make_transform((0.05, -0.02), 12.0))).float()
    transforms = torch.stack([torch.eye(3), rot])
    plain = synthesizer(g, ws)(1, transforms)
    e = Expansion(24, 16, 20, 8)
    big = render_expanded(synthesizer(g, ws), 2, transforms, res, e)
    assert big.shape == (2, 3, res + 28, res + 40)  # exactly the requested pixels
    centre = big[:, :, 20:20 + res, 24:24 + res]
    assert (centre - plain).abs().mean() < 1e-3  # the centre is the plain render
    # no seam: the strip just outside the centre continues it as smoothly as the image varies inside
    inside = (big[:, :, 20:20 + res, 25] - big[:, :, 20:20 + res, 26]).abs().mean()
    across = (big[:, :, 20:20 + res, 23] - big[:, :, 20:20 + res, 24]).abs().mean()
    assert across < 3 * inside + 1e-3


def test_paste_back_changes_only_the_face_region():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    quad = np.array([[100, 60], [100, 180], [220, 180], [220, 60]], np.float64)  # TL BL BR TR, 120 px square
    res = 64
    render = np.full((res, res, 3), 200, np.uint8)
    # landmarks: a ring in the middle of the quad
    a = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    landmarks = np.stack([160 + 30 * np.cos(a), 120 + 35 * np.sin(a)], 1).astype(np.float32)
    out = paste(frame, render, quad, landmarks, res, Expansion(), colour_match=False)
    assert out.shape == frame.shape
    assert np.array_equal(out[:, :80], frame[:, :80]) and np.array_equal(out[200:], frame[200:])
    assert np.abs(out[115:125, 155:165].astype(int) - 200).max() <= 2  # the face centre is the render


def test_render_to_frame_maps_the_crop_onto_its_quad():
    quad = np.array([[10, 20], [10, 120], [110, 120], [110, 20]], np.float64)
    m = render_to_frame(quad, 100, Expansion(10, 0, 5, 0))
    # the centre render's pixel (0,0) centre sits at expanded pixel (10,5) and at the quad's first pixel centre + 0.5
    np.testing.assert_allclose(m @ [10, 5, 1], quad[0] + 0.5, atol=1e-9)
    np.testing.assert_allclose(m @ [109, 104, 1], quad[2] - 0.5, atol=1e-9)


def test_the_face_outline_gives_the_mask_all_landmarks_give():
    """Paste-back blends over the hull of the landmarks: the outline alignment passes on (their hull, 64 points,
    NaN-padded) gives the same pixels as the 478 landmarks, on faces turned and scaled."""
    from sg3stream.align.ffhq import axis_aligned, ffhq_params, params_to_quad
    from sg3stream.align.landmarks import OUTLINE_POINTS, LandmarkDetector, face_outline
    from sg3stream.synthetic import face_frames

    frames = np.stack(list(face_frames(5, 320, 240)))
    detector = LandmarkDetector()
    landmarks, _ = detector.detect_chunk(frames)  # [5, 1, 478, 2]
    detector.close()
    outlines = face_outline(landmarks)
    assert outlines.shape == (5, 1, OUTLINE_POINTS, 2)
    vertices = np.isfinite(outlines).all(axis=-1).sum(axis=-1)
    assert (vertices > 20).all() and (vertices < OUTLINE_POINTS).all()  # room to spare: nothing simplified
    rng = np.random.default_rng(1)
    res = 64
    for frame, lm, outline in zip(frames, landmarks[:, 0], outlines[:, 0]):
        quad = params_to_quad(axis_aligned(ffhq_params(lm)))
        render = rng.integers(0, 255, (res, res, 3), dtype=np.uint8)
        np.testing.assert_array_equal(paste(frame, render, quad, outline, res, Expansion()),
                                      paste(frame, render, quad, lm, res, Expansion()))
    assert np.isnan(face_outline(np.full((2, 478, 2), np.nan))).all()
    many = np.stack([np.cos(np.linspace(0, 6.28, 200)), np.sin(np.linspace(0, 6.28, 200))], 1) * 50  # a circle
    kept = face_outline(many.astype(np.float32))
    kept = kept[np.isfinite(kept).all(axis=1)]
    assert 16 < len(kept) <= OUTLINE_POINTS and np.allclose(np.hypot(*kept.T), 50, atol=1e-3)  # a subset, to fit
