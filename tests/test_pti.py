"""PTI (sg3stream/pti) on the CPU with the demo generator: it lowers the reconstruction error of the unaligned
crops, a resumed run equals an uninterrupted one, the tuned generator saves and loads back, and
`sg3stream run --pti-steps N` lowers the output's error in the face region."""
import logging

import av
import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sg3stream.cli import app
from sg3stream.errors import UserError
from sg3stream.models.loading import load_generator
from sg3stream.pti import PTIConfig, PTISamples, PTITrainer, train_pti
from sg3stream.pti.clip import FrameCollector
from sg3stream.pti.losses import LPIPS, MSSSIMLoss, ReconstructionLoss, load_lpips, ms_ssim, perceptual_loss
from sg3stream.pti.save import save_generator
from sg3stream.pipeline.batch import FrameBatch
from sg3stream.synthetic import face_frames, face_photo, write_clip
from sg3stream.pti.train import to_images


@pytest.fixture(scope="module")
def demo():
    return load_generator("demo")


@pytest.fixture(scope="module")
def samples(demo):
    """Two unaligned face crops (shifted, rotated), pivots near the mean, their transforms."""
    photo = cv2.resize(face_photo(), (256, 256), interpolation=cv2.INTER_AREA)
    rotated = cv2.warpAffine(photo, cv2.getRotationMatrix2D((128, 128), 6, 1.0), (256, 256),
                             borderMode=cv2.BORDER_REFLECT)
    crops = np.stack([np.roll(photo, 10, axis=1), rotated])
    z = torch.randn(2, demo.z_dim, generator=torch.Generator().manual_seed(0))
    latents = demo.mapping(z, truncation_psi=0.5).numpy()
    a = np.deg2rad(6)
    transforms = np.stack([np.array([[1, 0, -0.04], [0, 1, 0], [0, 0, 1]]),
                           np.array([[np.cos(a), np.sin(a), 0], [-np.sin(a), np.cos(a), 0], [0, 0, 1]])])
    return PTISamples(crops=crops, latents=latents, transforms=transforms.astype(np.float32), frames=np.arange(2))


def reconstruction_error(G, samples):
    with torch.no_grad():
        out = G.synthesis(torch.from_numpy(samples.latents), transform=torch.from_numpy(samples.transforms))
        return float((out - to_images(samples.crops, "cpu")).square().mean())


def fast_loss():
    return ReconstructionLoss(MSSSIMLoss())


@pytest.fixture(scope="module")
def before_tuning(demo, samples):
    """The demo generator's weights and reconstruction error, taken before `tuned` trains from it."""
    return {k: v.clone() for k, v in demo.state_dict().items()}, reconstruction_error(demo, samples)


@pytest.fixture(scope="module")
def tuned(demo, samples, before_tuning):
    config = PTIConfig(steps=4, lr=3e-3, batch=2, reg_interval=0)
    return train_pti(demo, samples, config, loss=fast_loss())


def test_pti_lowers_the_reconstruction_error_of_the_unaligned_crops(demo, samples, before_tuning, tuned):
    weights, before = before_tuning
    after = reconstruction_error(tuned, samples)
    print(f"MSE of the unaligned crops: before {before:.4f}, after 4 PTI steps {after:.4f}")
    assert after < 0.9 * before
    # the original is left as it was: its weights and its error as they were before the tuning
    assert reconstruction_error(demo, samples) == before
    assert demo.state_dict().keys() == weights.keys()
    assert all(torch.equal(v, weights[k]) for k, v in demo.state_dict().items())


def test_resume_gives_the_same_generator_as_an_uninterrupted_run(demo, samples, tmp_path):
    # 2 steps vs 1 step + resume + 1 step; the regulariser draws from the RNG on both sides of the checkpoint.
    config = dict(lr=3e-3, reg_interval=1, reg_perceptual_lambda=0.0, checkpoint_every=1, seed=5)
    whole = train_pti(demo, samples, PTIConfig(steps=2, **config), loss=fast_loss())
    train_pti(demo, samples, PTIConfig(steps=1, **config), loss=fast_loss(), checkpoint_dir=tmp_path)
    resumed = train_pti(demo, samples, PTIConfig(steps=2, **config), loss=fast_loss(), checkpoint_dir=tmp_path,
                        resume=True)
    a, b = whole.state_dict(), resumed.state_dict()
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    print(f"max |uninterrupted - resumed| over all weights: {diff:g}")
    assert diff == 0.0
    assert any(not torch.equal(a[k], demo.state_dict()[k]) for k in a)  # it did train


def test_a_checkpoint_of_another_setting_is_refused(demo, samples, tmp_path):
    PTITrainer(demo, samples, PTIConfig(steps=1, seed=1), loss=fast_loss(), checkpoint_dir=tmp_path).save_checkpoint()
    other = PTITrainer(demo, samples, PTIConfig(steps=1, seed=2), loss=fast_loss(), checkpoint_dir=tmp_path)
    with pytest.raises(UserError, match="another clip"):
        other.load_checkpoint()


def test_bad_pti_options_are_user_errors():
    for config in (PTIConfig(steps=-1), PTIConfig(steps=1, lr=0), PTIConfig(steps=1, batch=0)):
        with pytest.raises(UserError):
            config.check()


def test_saved_generator_loads_back_and_renders_the_same(tuned, samples, tmp_path):
    path = save_generator(tuned, tmp_path / "tuned.safetensors", tuned_from="demo")
    loaded = load_generator(path)
    ws = torch.from_numpy(samples.latents)
    t = torch.from_numpy(samples.transforms)
    with torch.no_grad():
        assert torch.equal(loaded.synthesis(ws, transform=t), tuned.synthesis(ws, transform=t))
    with pytest.raises(UserError, match="safetensors"):
        save_generator(tuned, tmp_path / "tuned.pt")


def test_without_lpips_weights_the_loss_is_ms_ssim_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="sg3stream"):
        loss = perceptual_loss(None)
    assert isinstance(loss, MSSSIMLoss)
    assert "MS-SSIM" in caplog.text
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.allclose(ms_ssim(x, x), torch.ones(2), atol=1e-5)
    assert float(loss(x, x.flip(3))) > 0.05


def test_lpips_network_shapes_and_weight_loading(tmp_path, monkeypatch):
    """Random weights: checks the plumbing (shapes, key names, loading from the hub cache), not the values."""
    torch.manual_seed(0)
    model = LPIPS("alex")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save({f"features.{k}": v for k, v in model.features.state_dict().items()} | {"classifier.1.weight": torch.zeros(1)},
               tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    heads = {k: v.abs() for k, v in model.state_dict().items() if k.startswith("lin")}
    torch.save(heads, tmp_path / "alex.pth")
    loaded = load_lpips(tmp_path / "alex.pth")
    assert sorted(heads) == [f"lin{k}.model.1.weight" for k in range(5)]
    x = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    y = torch.rand(2, 3, 64, 64) * 2 - 1
    d = loaded(x, y)
    assert d.shape == () and float(d.detach()) > 0 and float(loaded(y, y)) == 0
    d.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert LPIPS("vgg")(y[:1], y[:1]).shape == ()
    with pytest.raises(UserError):
        load_lpips(tmp_path / "missing.pth")


def test_collector_keeps_a_bounded_evenly_spread_subset():
    collector = FrameCollector(max_frames=8)
    n = 1000
    for start in range(0, n, 10):
        idx = np.arange(start, start + 10)
        has = idx % 7 != 3  # some frames without a face
        batch = FrameBatch(frames=np.zeros((10, 1, 1, 3), np.uint8), index=idx, pts=idx, time_base=None, data={
            "has_latents": has, "crop": np.zeros((10, 4, 4, 3), np.uint8) + (idx % 256).astype(np.uint8)[:, None, None, None],
            "latents_smoothed": np.zeros((10, 16, 8), np.float32),
            "transform_smoothed": np.repeat(np.eye(3, dtype=np.float32)[None], 10, axis=0)})
        collector(batch)
        assert len(collector.kept) < 16
    s = collector.samples()
    assert len(s) == 8
    gaps = np.diff(s.frames)
    assert s.frames[0] < 50 and s.frames[-1] > 850 and gaps.min() > 50 and gaps.max() < 2.5 * gaps.min()
    assert all(f % 7 != 3 for f in s.frames)


# ---------------------------------------------------------------------------------------------------------------
# End to end

def decode(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(np.float64)


def test_run_with_pti_lowers_the_output_error_in_the_face_region(tmp_path):
    clip = write_clip(tmp_path / "face.mp4", face_frames(4, 320, 240), fps=24)
    common = ["--landmark-workers", "1", "--log-format", "json"]
    for name, extra in (("plain", []), ("pti", ["--pti-steps", "2", "--pti-lr", "3e-3", "--save-generator",
                                                 str(tmp_path / "tuned.safetensors"), "--artifacts",
                                                 str(tmp_path / "art")])):
        result = CliRunner().invoke(app, ["run", str(clip), "-o", str(tmp_path / f"{name}.mp4"), *common, *extra])
        assert result.exit_code == 0, result.output
    src = decode(clip)
    ys, xs = slice(85, 135), slice(100, 160)  # inside the moving face (see test_main_job.face_box)
    plain = np.square(decode(tmp_path / "plain.mp4") - src)[:, ys, xs].mean()
    tuned = np.square(decode(tmp_path / "pti.mp4") - src)[:, ys, xs].mean()
    print(f"face-region MSE of the decoded output: --pti-steps 0 {plain:.1f}, --pti-steps 2 {tuned:.1f}")
    assert tuned < 0.85 * plain
    assert (tmp_path / "art" / "pti" / "pti_checkpoint.pt").is_file()
    assert load_generator(tmp_path / "tuned.safetensors").img_resolution == 256
    # the tuned generator is reused with --generator and keeps the demo's named edits
    result = CliRunner().invoke(app, ["run", str(clip), "-o", str(tmp_path / "reuse.mp4"), *common, "--generator",
                                      str(tmp_path / "tuned.safetensors"), "--edit", "smile"])
    assert result.exit_code == 0, result.output
    assert len(decode(tmp_path / "reuse.mp4")) == len(src)


def test_save_generator_without_pti_is_refused(tmp_path):
    clip = write_clip(tmp_path / "face.mp4", face_frames(2, 160, 120), fps=24)
    result = CliRunner().invoke(app, ["run", str(clip), "-o", str(tmp_path / "o.mp4"), "--save-generator",
                                      str(tmp_path / "g.safetensors"), "--passthrough"])
    assert result.exit_code == 1 and "--pti-steps" in result.output


def test_pti_collects_its_targets_at_the_generators_resolution(tmp_path):
    # The encoder keeps its 256 aligned input; the unaligned crops PTI trains on come at the generator's resolution
    # (here the chain is told 512), so a 1024 generator is supervised at 1024, not at the encoder's 256.
    from sg3stream.chain import ChainParts
    from sg3stream.job import RunOptions
    from sg3stream.models.bundle import Models
    from sg3stream.models.components import make_components
    from sg3stream.pti.clip import collect_samples

    clip = write_clip(tmp_path / "face.mp4", face_frames(3, 320, 240, cycle=48), fps=24, audio=None)
    options = RunOptions(input=clip, output=tmp_path / "o.mp4", landmark_workers=1, pti_frames=2)
    inverter, renderer = make_components(Models(device="cpu"))
    samples = collect_samples(options, ChainParts(inverter=inverter, renderer=renderer, resolution=512))
    assert samples.crops.shape[1:] == (512, 512, 3)
    assert len(samples) == 2


# ---------------------------------------------------------------------------------------------------------------
# The run's engine kept through PTI

def test_pti_with_onnx_renders_the_tuned_generator_through_onnx(tmp_path, monkeypatch):
    """`--engine onnx --pti-steps 2`: the tuned weights are exported again and the render stage renders them through
    ONNX (not torch); run.json says onnx; the tuned graph is not kept in the cache."""
    pytest.importorskip("onnxruntime")
    import json

    import sg3stream.pti.clip as clip_module

    monkeypatch.setenv("SG3STREAM_CACHE", str(tmp_path / "cache"))
    seen = {"engine_calls": 0}
    real_tune = clip_module.tune_generator

    def tune_and_count(options, parts, reporter=None):
        tuned = real_tune(options, parts, reporter)
        seen["original"], seen["tuned"] = parts.renderer, tuned
        engine = seen["engine"] = tuned.engine

        def counting(*inputs):
            seen["engine_calls"] += 1
            return engine(*inputs)

        tuned.engine = counting
        return tuned

    monkeypatch.setattr(clip_module, "tune_generator", tune_and_count)
    clip = write_clip(tmp_path / "face.mp4", face_frames(4, 320, 240), fps=24)
    result = CliRunner().invoke(app, ["run", str(clip), "-o", str(tmp_path / "out.mp4"), "--engine", "onnx",
                                      "--pti-steps", "2", "--pti-lr", "3e-3", "--landmark-workers", "1",
                                      "--artifacts", str(tmp_path / "art"), "--log-format", "json"])
    assert result.exit_code == 0, result.output
    original, tuned = seen["original"], seen["tuned"]
    assert original.kind == tuned.kind == "onnx" and tuned.generator is not original.generator
    assert seen["engine_calls"] > 0  # the render stage rendered through the tuned ONNX graph
    used = json.loads((tmp_path / "art" / "run.json").read_text())["acceleration"]
    assert used["engine"] == "onnx" and used == {"hw_decoding": False, "codec": "libx264", **tuned.describe(),
                                                 "ops_choice": {"ops": {"upfirdn2d": "torch", "bias_act": "torch",
                                                                        "filtered_lrelu": "torch"}, "reason": "cpu"}}
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 2  # the encoder's and the original's graphs

    # What the ONNX renderer renders is the tuned generator's torch render (within ONNX's tolerance), not the
    # original's.
    G = tuned.generator
    ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(3)), None, truncation_psi=0.7)
    t = torch.eye(3).repeat(2, 1, 1)
    t[:, 0, 2] = torch.tensor([0.05, -0.05])
    tuned.engine = seen["engine"]  # without the counter
    with torch.no_grad():
        ours, tuned_torch = tuned.render(ws, t), G.synthesis(ws, transform=t)
        untuned = original.generator.synthesis(ws, transform=t)
    scale = float(tuned_torch.abs().max())
    error, tuning = float((ours - tuned_torch).abs().max()) / scale, float((tuned_torch - untuned).abs().max()) / scale
    print(f"tuned ONNX vs tuned torch: rel {error:.2g}; tuned vs untuned torch: rel {tuning:.2g}")
    assert error <= 1e-4 and tuning > 100 * error


def test_tensorrt_with_pti_is_refused_before_any_model_loads(tmp_path, monkeypatch):
    from sg3stream.engines.tensorrt_engine import tensorrt_available
    from sg3stream.models import bundle

    if tensorrt_available()[0]:
        pytest.skip("TensorRT can run here: the tuned engine can be built")

    def refuse(self):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr(bundle.Models, "_load", refuse)
    clip = write_clip(tmp_path / "face.mp4", face_frames(2, 160, 120), fps=24)
    result = CliRunner().invoke(app, ["run", str(clip), "-o", str(tmp_path / "o.mp4"), "--engine", "tensorrt",
                                      "--pti-steps", "2"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("error: --engine tensorrt with --pti-steps") and "--engine onnx" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.mp4"]
