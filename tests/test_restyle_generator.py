"""ReStyle with the real StyleGAN3 generator: checkpoint decoders, the demo encoder, generator/encoder fit."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sg3stream.errors import UserError
from sg3stream.models.loading import load_generator
from sg3stream.models.restyle import ReStyleEncoder, build_demo_encoder, load_encoder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_restyle import fill_state_dict, rel_err, tiny_encoder  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
RESTYLE = SHARED / "restyle"
SG3 = SHARED / "stylegan3"


@pytest.fixture(scope="module")
def demo_g():
    return load_generator("demo")


@pytest.mark.skipif(not (RESTYLE / "keys.json").is_file(), reason="restyle fixtures not present")
def test_checkpoint_with_decoder_matches_reference(tmp_path, demo_g):
    meta = json.loads((RESTYLE / "keys.json").read_text())
    exp = np.load(RESTYLE / "expected.npz")
    sd = {"encoder." + k: v for k, v in fill_state_dict(meta["psp"]["keys"], meta["salt"]).items()}
    sd.update({"decoder." + k: v for k, v in demo_g.state_dict().items()})
    sd["decoder.synthesis.input.transform"] = torch.eye(3)  # official state dicts carry it; it is ignored
    torch.save({"state_dict": sd, "latent_avg": demo_g.mapping.w_avg.clone(),
                "opts": {"encoder_type": "BackboneEncoder", "input_nc": 6}}, tmp_path / "psp.pt")
    enc = load_encoder(tmp_path / "psp.pt")
    assert type(enc.generator).__name__ == "Generator" and enc.generator.img_resolution == 256
    with torch.no_grad():
        out = enc.encode(torch.from_numpy(exp["psp_input"])).numpy()
        for k, v in demo_g.state_dict().items():
            assert torch.equal(enc.generator.state_dict()[k], v), k
    assert rel_err(out, exp["psp_output"]) <= 1e-4
    # the average image is the decoder's aligned render of latent_avg
    with torch.no_grad():
        ref_avg = demo_g.synthesis(demo_g.mapping.w_avg.repeat(16, 1)[None], force_fp32=True)[0]
    torch.testing.assert_close(enc.average_image(), ref_avg, rtol=1e-5, atol=1e-5)


def test_generator_argument_overrides_decoder(tmp_path, demo_g):
    net = tiny_encoder()
    sd = {"encoder." + k: v for k, v in net.state_dict().items()}
    torch.save({"state_dict": sd, "latent_avg": torch.zeros(512),
                "opts": {"encoder_type": "ResNetProgressiveBackboneEncoder"}}, tmp_path / "e.pt")
    enc = load_encoder(tmp_path / "e.pt", generator=demo_g)
    assert enc.generator is demo_g
    enc2 = load_encoder(tmp_path / "e.pt", generator="demo")  # a name for load_generator
    assert enc2.generator.img_resolution == 256


@pytest.mark.skipif(not (SG3 / "sg3t-64.pkl").is_file(), reason="stylegan3 fixtures not present")
def test_generator_that_does_not_fit_real(tmp_path):
    small = load_generator(SG3 / "sg3t-64.pkl")  # w_dim 64
    with pytest.raises(UserError, match="w_dim=64"):
        ReStyleEncoder(tiny_encoder(), small, torch.zeros(512), "ResNetProgressiveBackboneEncoder")
    net = tiny_encoder()
    sd = {"encoder." + k: v for k, v in net.state_dict().items()}
    sd.update({"decoder." + k: v for k, v in small.state_dict().items()})
    torch.save({"state_dict": sd, "opts": {"encoder_type": "ResNetProgressiveBackboneEncoder"}}, tmp_path / "m.pt")
    with pytest.raises(UserError, match="do not fit"):
        load_encoder(tmp_path / "m.pt")


def test_demo_encoder(demo_g):
    enc = load_encoder("demo", generator=demo_g)
    assert enc.generator is demo_g and "not a real inversion" in (build_demo_encoder.__doc__ or "").lower()
    images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ws = enc.invert(images, n_iters=3)
    assert ws.shape == (2, 16, 512) and ws.dtype == torch.float32 and torch.isfinite(ws).all()
    # near latent_avg, input-dependent, deterministic
    d = (ws - demo_g.mapping.w_avg).abs()
    assert float(d.max()) < 0.5 and float(d.mean()) > 1e-4
    assert not torch.allclose(ws[0], ws[1])
    torch.testing.assert_close(load_encoder("demo", generator=demo_g).invert(images, 3), ws)
    with torch.no_grad():
        img = demo_g.synthesis(ws)
    assert torch.isfinite(img).all() and float(img.abs().max()) < 3
