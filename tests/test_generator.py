"""Generator: parity with the NVlabs reference outputs, per-sample transforms, StyleSpace, built-in configs."""
from pathlib import Path

import numpy as np
import pytest
import torch

from sg3stream.models import load_generator
from sg3stream.models.stylegan3 import Generator, make_transform

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "stylegan3"
PARITY = ["sg3t-64", "sg3r-64"]


def _rel_err(ours, ref):
    ref = torch.as_tensor(ref)
    return float((ours - ref).abs().max() / ref.abs().max())


@pytest.fixture(scope="module", params=PARITY)
def reference(request):
    if not (FIXTURES / f"{request.param}.pkl").is_file():
        pytest.skip("reference fixtures (../shared/fixtures) not available")
    G = load_generator(FIXTURES / f"{request.param}.pkl")
    return G, dict(np.load(FIXTURES / f"{request.param}_expected.npz"))


@torch.no_grad()
def test_parity_with_reference(reference):
    G, ref = reference
    z = torch.from_numpy(ref["z"]).float()
    assert _rel_err(G.mapping(z, None, truncation_psi=0.7), ref["ws"]) <= 1e-4
    assert _rel_err(G(z, None, truncation_psi=0.7), ref["img_id"]) <= 1e-4
    transform = torch.from_numpy(ref["transform"]).float()
    assert _rel_err(G(z, None, truncation_psi=0.7, transform=transform), ref["img_rt"]) <= 1e-4
    assert _rel_err(G.synthesis(torch.from_numpy(ref["ws_plus"]).float()), ref["img_wplus"]) <= 1e-4


@torch.no_grad()
def test_reference_transform_is_gen_images_make_transform(reference):
    _, ref = reference
    np.testing.assert_allclose(np.linalg.inv(make_transform((0.1, -0.05), 17.0)), ref["transform"], atol=1e-6)


@torch.no_grad()
def test_naive_ops_give_the_same_images(reference):
    G, ref = reference
    ws = torch.from_numpy(ref["ws_plus"][:2]).float()
    fast = G.synthesis(ws)
    G.synthesis.ops_impl = "naive"
    try:
        assert _rel_err(G.synthesis(ws), fast) <= 1e-5
    finally:
        G.synthesis.ops_impl = "auto"


@torch.no_grad()
def test_per_sample_transforms_equal_single_renders(reference):
    G, ref = reference
    ws = torch.from_numpy(ref["ws"]).float()
    transforms = torch.stack([torch.from_numpy(np.linalg.inv(make_transform((0.03 * i, -0.02 * i), 11.0 * i)))
                              for i in range(len(ws))]).float()
    batch = G.synthesis(ws, transform=transforms)
    for i in range(len(ws)):
        alone = G.synthesis(ws[i:i + 1], transform=transforms[i])
        assert _rel_err(batch[i:i + 1], alone) <= 1e-5
    assert _rel_err(batch[1], batch[2]) > 1e-2  # the transforms differ, so do the images
    # A [3, 3] transform is shared by the batch; None is the identity.
    shared = G.synthesis(ws, transform=transforms[1])
    assert _rel_err(shared[1], batch[1]) <= 1e-5
    torch.testing.assert_close(G.synthesis(ws, transform=torch.eye(3)), G.synthesis(ws))
    with pytest.raises(ValueError, match="transform must be"):
        G.synthesis(ws, transform=torch.eye(3).expand(2, 3, 3))


@torch.no_grad()
def test_style_space_roundtrip(reference):
    G, ref = reference
    ws = torch.from_numpy(ref["ws_plus"]).float()
    styles = G.synthesis.styles(ws)
    assert list(styles) == G.synthesis.style_names
    assert styles["input"].shape == (len(ws), 4)
    first = getattr(G.synthesis, G.synthesis.layer_names[0])
    assert styles[G.synthesis.layer_names[0]].shape == (len(ws), first.in_channels)
    transform = torch.from_numpy(ref["transform"]).float()
    torch.testing.assert_close(G.synthesis(styles=styles, transform=transform), G.synthesis(ws, transform=transform))
    # Editing one style channel changes the image.
    edited = dict(styles)
    edited[G.synthesis.layer_names[3]] = styles[G.synthesis.layer_names[3]] + 5.0
    assert not torch.allclose(G.synthesis(styles=edited), G.synthesis(styles=styles))
    with pytest.raises(ValueError, match="exactly one"):
        G.synthesis(ws, styles=styles)


@torch.no_grad()
def test_truncation_cutoff(reference):
    G, ref = reference
    z = torch.from_numpy(ref["z"]).float()
    full = G.mapping(z, None)
    cut = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=4)
    torch.testing.assert_close(cut[:, 4:], full[:, 4:])
    torch.testing.assert_close(cut[:, :4], G.mapping.w_avg.lerp(full[:, :4], 0.5))


def test_generator_from_seed_is_deterministic_and_small_configs_run():
    kwargs = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3, channel_base=256, channel_max=16,
                  num_layers=4, num_critical=1, margin_size=4)
    a, b = Generator(**kwargs, seed=3), Generator(**kwargs, seed=3)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    with torch.no_grad():
        img = a(torch.randn(2, 16), None, truncation_psi=0.5)
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()


@torch.no_grad()
def test_demo_config():
    G = load_generator("demo")
    assert (G.img_resolution, G.z_dim, G.w_dim, G.num_ws) == (256, 512, 512, 16)
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    img = G(torch.from_numpy(np.random.RandomState(0).randn(2, 512)).float(), None, truncation_psi=0.7)
    assert img.shape == (2, 3, 256, 256)
    assert 0.05 < float(img.std()) < 2.0  # not blank, not saturated
    again = load_generator("demo")
    for (k, va), vb in zip(G.state_dict().items(), again.state_dict().values()):
        assert torch.equal(va, vb), k
