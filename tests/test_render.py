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
