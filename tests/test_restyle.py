"""ReStyle encoders: parity with the reference (fixtures), checkpoint loading, the iterative inversion, bad input."""
from __future__ import annotations

import argparse
import json
import pathlib
import pickle
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sg3stream.errors import UserError
from sg3stream.models.checkpoints import safe_torch_load
from sg3stream.models.encoders import (BackboneEncoder, ProgressiveBackboneEncoder, ResNetBackboneEncoder,
                                       ResNetProgressiveBackboneEncoder)
from sg3stream.models.restyle import (ReStyleEncoder, detect_encoder_type, load_encoder)

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "restyle"
needs_fixtures = pytest.mark.skipif(not (FIXTURES / "keys.json").is_file(), reason="restyle fixtures not present")
CLASSES = {"e4e": ProgressiveBackboneEncoder, "psp": BackboneEncoder}


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def fill_state_dict(keys, salt):
    """The fixture's deterministic weight-fill rule."""
    sd = {}
    for key, shape, _ in keys:
        rng = np.random.default_rng(zlib.crc32((salt + key).encode()))
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.zeros(shape, dtype=torch.int64)
            continue
        if key.endswith("running_var"):
            a = rng.uniform(0.5, 1.5, shape)
        elif key.endswith("running_mean") or key.endswith("bias"):
            a = rng.normal(0.0, 0.1, shape)
        elif len(shape) == 1:
            a = rng.uniform(0.1, 1.0, shape)
        else:
            a = rng.normal(0.0, 1.0, shape) * np.sqrt(1 / np.prod(shape[1:]))
        sd[key] = torch.from_numpy(np.asarray(a, dtype=np.float32))
    return sd


@pytest.fixture(scope="module")
def fx():
    if not (FIXTURES / "keys.json").is_file():
        pytest.skip("restyle fixtures not present")
    meta = json.loads((FIXTURES / "keys.json").read_text())
    exp = np.load(FIXTURES / "expected.npz")
    sds = {name: fill_state_dict(meta[name]["keys"], meta["salt"]) for name in ("e4e", "psp")}
    return meta, exp, sds


class StubSynthesis(nn.Module):
    """Deterministic, cheap stand-in for G.synthesis: a fixed projection of the mean code, upsampled."""

    def __init__(self, w_dim, res):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("proj", torch.randn(w_dim, 3 * 8 * 8, generator=g) / w_dim ** 0.5)
        self.register_buffer("per_ws", torch.randn(16, 1, generator=g))
        self.res = res
        self.calls = []

    def forward(self, ws, transform=None):
        self.calls.append((ws.clone(), transform))
        x = (ws * self.per_ws[: ws.shape[1]]).mean(1) @ self.proj
        x = torch.tanh(x.reshape(-1, 3, 8, 8))
        return nn.functional.interpolate(x, size=(self.res, self.res), mode="bilinear", align_corners=False)


class StubGenerator(nn.Module):
    def __init__(self, num_ws=16, w_dim=512, res=64):
        super().__init__()
        self.num_ws, self.w_dim, self.img_resolution = num_ws, w_dim, res
        self.synthesis = StubSynthesis(w_dim, res)
        self.mapping = nn.Module()
        self.mapping.register_buffer("w_avg", torch.randn(w_dim, generator=torch.Generator().manual_seed(1)))


def tiny_encoder(progressive=True, seed=0):
    torch.manual_seed(seed)
    cls = ResNetProgressiveBackboneEncoder if progressive else ResNetBackboneEncoder
    return cls(n_styles=16, input_nc=6, widths=(8, 8, 8, 16), style_mid=16).eval()


# ---------------------------------------------------------------- parity with the reference
@needs_fixtures
@pytest.mark.parametrize("name", ["psp", "e4e"])
def test_encoder_matches_reference(fx, name):
    meta, exp, sds = fx
    enc = CLASSES[name](50, "ir_se", n_styles=16, input_nc=6).eval()
    assert [k for k in enc.state_dict()] == [k for k, _, _ in meta[name]["keys"]]
    assert all(tuple(enc.state_dict()[k].shape) == tuple(s) for k, s, _ in meta[name]["keys"])
    enc.load_state_dict(sds[name], strict=True)
    with torch.no_grad():
        out = enc(torch.from_numpy(exp[f"{name}_input"])).numpy()
    assert out.shape == (2, 16, 512)
    err = rel_err(out, exp[f"{name}_output"])
    print(f"{name} parity rel err {err:.3g}")
    assert err <= 1e-4


@needs_fixtures
@pytest.mark.parametrize("opts_style", ["dict", "namespace", "keys_only"])
def test_checkpoint_roundtrip_matches_reference(fx, tmp_path, opts_style):
    meta, exp, sds = fx
    name = "e4e"
    opts = {"encoder_type": "ProgressiveBackboneEncoder", "input_nc": 6, "n_iters_per_batch": 3,
            "checkpoint_path": pathlib.PurePosixPath("/exp/checkpoints/best_model.pt"),
            "stylegan_weights": pathlib.PurePosixPath("pretrained_models/sg3-r-ffhq-1024.pt"),
            "output_path": pathlib.PureWindowsPath(r"C:\exp\out")}
    if opts_style == "namespace":
        opts = argparse.Namespace(**opts)
    elif opts_style == "keys_only":  # no encoder_type: backbone from the keys, e4e from e4e-only options
        opts = {"w_discriminator_lambda": 0.1, "progressive_steps": None}
    ckpt = {"state_dict": {"encoder." + k: v for k, v in sds[name].items()},
            "latent_avg": torch.randn(512), "opts": opts}
    path = tmp_path / "restyle.pt"
    torch.save(ckpt, path)
    enc = load_encoder(path, generator=StubGenerator(res=64))
    assert enc.encoder_type == "ProgressiveBackboneEncoder" and (enc.method, enc.backbone) == ("e4e", "ir_se50")
    with torch.no_grad():
        out = enc.encode(torch.from_numpy(exp[f"{name}_input"])).numpy()
    assert rel_err(out, exp[f"{name}_output"]) <= 1e-4


def test_detect_encoder_type_from_keys():
    res = {"encoder.conv1.weight": torch.zeros(64, 6, 7, 7)}
    irse = {"encoder.input_layer.0.weight": torch.zeros(64, 6, 3, 3)}
    assert detect_encoder_type(res, {"learning_rate": 1e-4}) == "ResNetBackboneEncoder"
    assert detect_encoder_type(res, {"use_w_pool": True}) == "ResNetProgressiveBackboneEncoder"
    assert detect_encoder_type(irse, {"lpips_lambda": 0.8}) == "BackboneEncoder"
    assert detect_encoder_type(irse, {"encoder_type": "ProgressiveBackboneEncoder"}) == "ProgressiveBackboneEncoder"
    with pytest.raises(UserError, match="e4e or ReStyle-pSp"):
        detect_encoder_type(irse, {})
    with pytest.raises(UserError, match="accepted"):
        detect_encoder_type(irse, {"encoder_type": "GradualStyleEncoder"})


def test_resnet34_layout_matches_torchvision_names():
    sd = ResNetBackboneEncoder(n_styles=16, input_nc=6).state_dict()
    assert tuple(sd["conv1.weight"].shape) == (64, 6, 7, 7)
    assert "bn1.running_var" in sd and tuple(sd["relu.weight"].shape) == (64,)
    assert tuple(sd["body.0.conv1.weight"].shape) == (64, 64, 3, 3)
    assert tuple(sd["body.3.downsample.0.weight"].shape) == (128, 64, 1, 1)  # first block of layer2
    assert tuple(sd["body.15.conv2.weight"].shape) == (512, 512, 3, 3)     # 3+4+6+3 = 16 blocks
    assert "body.16.conv1.weight" not in sd
    assert tuple(sd["styles.15.linear.weight"].shape) == (512, 512)


def test_resnet_checkpoint_loads_and_runs(tmp_path):
    enc = ResNetProgressiveBackboneEncoder(n_styles=16, input_nc=6).eval()
    ckpt = {"state_dict": {"encoder." + k: v for k, v in enc.state_dict().items()},
            "latent_avg": torch.zeros(16, 512), "opts": {"encoder_type": "ResNetProgressiveBackboneEncoder"}}
    torch.save(ckpt, tmp_path / "r.pt")
    loaded = load_encoder(tmp_path / "r.pt", generator=StubGenerator())
    x = torch.rand(1, 6, 256, 256) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), enc(x))
    assert loaded.encode(x).shape == (1, 16, 512)


# ---------------------------------------------------------------- the iterative inversion
def reference_loop(encoder, gen, latent_avg, images, n_iters):
    """The reference's run_on_batch + get_average_image, written out plainly."""
    pool = nn.AdaptiveAvgPool2d((256, 256))
    la = latent_avg if latent_avg.ndim == 2 else latent_avg.repeat(16, 1)
    avg = pool(gen.synthesis(la.unsqueeze(0)))[0]
    latent, y_hat, out = None, None, []
    for it in range(n_iters):
        x = torch.cat([images, avg.unsqueeze(0).repeat(images.shape[0], 1, 1, 1) if it == 0 else y_hat], 1)
        codes = encoder(x)
        codes = codes + (latent if latent is not None else latent_avg.repeat(codes.shape[0], 1, 1))
        latent = codes
        y_hat = pool(gen.synthesis(codes))
        out.append(codes)
    return out


@pytest.mark.parametrize("progressive", [True, False])
@pytest.mark.parametrize("la_shape", [(512,), (16, 512)])
def test_invert_follows_reference_loop(progressive, la_shape):
    gen = StubGenerator(res=64)
    la = torch.randn(*la_shape, generator=torch.Generator().manual_seed(3))
    enc_net = tiny_encoder(progressive)
    et = "ResNetProgressiveBackboneEncoder" if progressive else "ResNetBackboneEncoder"
    enc = ReStyleEncoder(enc_net, gen, la, et)
    images = torch.rand(3, 3, 256, 256, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.no_grad():
        ref = reference_loop(enc_net, gen, la, images, 3)
    gen.synthesis.calls.clear()
    steps = enc.invert(images, n_iters=3, return_steps=True)
    assert len(steps) == 3 and steps[-1].shape == (3, 16, 512) and steps[-1].dtype == torch.float32
    for a, b in zip(steps, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(enc.invert(images, n_iters=3), ref[-1], rtol=1e-5, atol=1e-5)
    # rendered aligned (identity transform) and the average image is cached
    assert all(t is None for _, t in gen.synthesis.calls)
    n_calls = len(gen.synthesis.calls)
    enc.invert(images, n_iters=2)
    assert len(gen.synthesis.calls) - n_calls == 1  # one reconstruction between 2 iterations, no new average
    # batching over frames gives the same codes
    torch.testing.assert_close(enc.invert(images, 3, batch_size=2), ref[-1], rtol=1e-5, atol=1e-5)


def test_invert_one_iteration_is_average_plus_delta():
    gen = StubGenerator(res=256)
    enc = ReStyleEncoder(tiny_encoder(), gen, None, "ResNetProgressiveBackboneEncoder")  # latent_avg from w_avg
    images = torch.zeros(1, 3, 256, 256)
    with torch.no_grad():
        avg = gen.synthesis(gen.mapping.w_avg.repeat(16, 1)[None])
        expect = enc.encoder(torch.cat([images, avg], 1)) + gen.mapping.w_avg
    torch.testing.assert_close(enc.invert(images, n_iters=1), expect)


# ---------------------------------------------------------------- bad input
def make_enc():
    return ReStyleEncoder(tiny_encoder(), StubGenerator(), torch.zeros(512), "ResNetProgressiveBackboneEncoder")


@pytest.mark.parametrize("images, match", [
    (torch.zeros(1, 3, 128, 128), "256, 256"),
    (torch.zeros(1, 256, 256, 3), "channels-last"),
    (torch.zeros(2, 4, 256, 256), r"\[B, 3, 256, 256\]"),
    (torch.full((1, 3, 256, 256), 200.0), "0..255"),
    (torch.zeros(1, 3, 256, 256, dtype=torch.uint8), "uint8"),
    (torch.full((1, 3, 256, 256), float("nan")), "NaN"),
    (torch.zeros(0, 3, 256, 256), "empty"),
])
def test_bad_images(images, match):
    with pytest.raises(UserError, match=match):
        make_enc().invert(images)


def test_bad_n_iters():
    with pytest.raises(UserError, match="n_iters"):
        make_enc().invert(torch.zeros(1, 3, 256, 256), n_iters=0)


@pytest.mark.parametrize("kw, match", [
    (dict(num_ws=14), "num_ws=14"),
    (dict(w_dim=256), "w_dim=256"),
])
def test_generator_that_does_not_fit(kw, match):
    with pytest.raises(UserError, match=match):
        ReStyleEncoder(tiny_encoder(), StubGenerator(**kw), torch.zeros(512), "ResNetProgressiveBackboneEncoder")
    enc = make_enc()
    with pytest.raises(UserError, match=match):
        enc.generator = StubGenerator(**kw)


def test_bad_latent_avg():
    with pytest.raises(UserError, match="latent_avg has shape"):
        ReStyleEncoder(tiny_encoder(), StubGenerator(), torch.zeros(18, 512), "ResNetProgressiveBackboneEncoder")


class NotAllowed:
    pass


def test_wrong_checkpoints(tmp_path):
    gen = StubGenerator()
    cases = {
        "random_dict.pt": ({"weights": torch.zeros(3), "step": 5}, "no encoder"),
        "generator.pt": ({"G_ema": {"synthesis.b16.weight": torch.zeros(1)}}, "generator checkpoint"),
        "sg_state.pt": ({"state_dict": {"synthesis.input.weight": torch.zeros(1)}}, "generator checkpoint"),
        "tensor.pt": (torch.zeros(3), "holds a Tensor"),
        "bad_shapes.pt": ({"state_dict": {"encoder.conv1.weight": torch.zeros(64, 6, 7, 7),
                                          "encoder.styles.0.linear.weight": torch.zeros(512, 512)},
                           "opts": {"encoder_type": "ResNetBackboneEncoder"}}, "incomplete"),
        "three_channels.pt": ({"state_dict": {"encoder.input_layer.0.weight": torch.zeros(64, 3, 3, 3)},
                               "opts": {"encoder_type": "BackboneEncoder"}}, "6"),
    }
    for fname, (obj, match) in cases.items():
        torch.save(obj, tmp_path / fname)
        with pytest.raises(UserError, match=match):
            load_encoder(tmp_path / fname, generator=gen)
    # an NVlabs-style network pickle (plain pickle with classes) is refused, not executed
    with open(tmp_path / "network.pkl", "wb") as f:
        pickle.dump({"G_ema": NotAllowed()}, f)
    with pytest.raises(UserError, match="cannot be read safely|not a readable"):
        load_encoder(tmp_path / "network.pkl", generator=gen)
    with pytest.raises(UserError, match="not found"):
        load_encoder(tmp_path / "missing.pt", generator=gen)
    # no decoder and no generator
    enc = tiny_encoder()
    torch.save({"state_dict": {"encoder." + k: v for k, v in enc.state_dict().items()},
                "opts": {"encoder_type": "ResNetProgressiveBackboneEncoder"}}, tmp_path / "nodec.pt")
    with pytest.raises(UserError, match="decoder"):
        load_encoder(tmp_path / "nodec.pt")


# ---------------------------------------------------------------- safe loading
def test_safe_load_allows_paths_and_namespace(tmp_path):
    obj = {"a": pathlib.PosixPath("/x/y.pt"), "n": argparse.Namespace(p=pathlib.PurePosixPath("z"), k=3),
           "t": torch.ones(2)}
    torch.save(obj, tmp_path / "ok.pt")
    got = safe_torch_load(tmp_path / "ok.pt")
    assert str(got["a"]) == "/x/y.pt" and isinstance(got["a"], pathlib.PurePath)
    assert isinstance(got["n"], argparse.Namespace) and got["n"].k == 3


class SavedOnWindows:
    """Pickles as pathlib.WindowsPath(...), as a checkpoint written on Windows does."""

    def __reduce__(self):
        return (pathlib.WindowsPath, ("C:\\exp\\best_model.pt",))


def test_safe_load_windows_path_on_any_os(tmp_path):
    torch.save({"opts": {"checkpoint_path": SavedOnWindows()}}, tmp_path / "win.pt")
    got = safe_torch_load(tmp_path / "win.pt")["opts"]["checkpoint_path"]
    assert isinstance(got, pathlib.PureWindowsPath) and got.name == "best_model.pt"


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("obj", [Evil(), NotAllowed(), {"opts": {"f": pathlib.Path.home}}])
def test_safe_load_refuses_everything_else(tmp_path, obj, capsys):
    torch.save({"x": obj}, tmp_path / "bad.pt")
    with pytest.raises(UserError, match="cannot be read safely"):
        safe_torch_load(tmp_path / "bad.pt")
    assert "must never run" not in capsys.readouterr().out
