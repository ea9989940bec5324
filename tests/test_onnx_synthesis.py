"""The synthesis network exported to ONNX (opset 17, dynamic batch, the per-frame transform as an input), run with
ONNX Runtime and compared to torch; the render stage using it through an ONNX renderer (models/components.py)."""
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sg3stream.models import load_generator
from sg3stream.models.stylegan3 import Generator, SynthesisWrapper, make_transform

pytest.importorskip("onnxruntime")

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "stylegan3"
# A seeded StyleGAN3-R in miniature (radial 2-D down filters, 1x1 convs): needs no fixture file.
SMALL_R = dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3, channel_base=512, channel_max=32,
               num_layers=6, num_critical=2, margin_size=4, conv_kernel=1, use_radial_filters=True)
REL_TOL = 1e-4


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SG3STREAM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def sample_transforms(n: int) -> torch.Tensor:
    """[n, 3, 3] inverse transforms, all different: the identity, then growing rotations and translations."""
    mats = [np.linalg.inv(make_transform((0.04 * i, -0.03 * i), 13.0 * i)) for i in range(n)]
    return torch.from_numpy(np.stack(mats)).float()


def load(name: str) -> Generator:
    if name == "small-r":
        return Generator(**SMALL_R, seed=5).eval()
    if name == "demo":
        return load_generator("demo")
    if not (FIXTURES / f"{name}.pkl").is_file():
        pytest.skip("reference fixtures (../shared/fixtures) not available")
    return load_generator(FIXTURES / f"{name}.pkl")


@pytest.mark.parametrize("name", ["demo", "sg3r-64", "small-r"])
@torch.no_grad()
def test_onnx_synthesis_matches_torch(name, tmp_path):
    from sg3stream.engines.onnx_engine import OnnxEngine, export_onnx

    G = load(name)
    rng = torch.Generator().manual_seed(0)
    ws = G.mapping(torch.randn(3, G.z_dim, generator=rng), None, truncation_psi=0.7)
    ws[1, 5:] = G.mapping(torch.randn(1, G.z_dim, generator=rng), None)[0, 5:]  # a W+ code, not only W
    transforms = sample_transforms(3)

    started = time.perf_counter()
    # exported with batch 1, run with batch 3 and 2: the batch is dynamic
    path = export_onnx(SynthesisWrapper(G.synthesis), (ws[:1], transforms[:1]), tmp_path / "synthesis.onnx",
                       input_names=("ws", "transform"), output_names=("img",))
    export_s = time.perf_counter() - started
    engine = OnnxEngine(path)
    assert engine.input_names == ("ws", "transform") and engine.output_names == ("img",)
    out = engine(ws, transforms)
    ref = G.synthesis(ws, transform=transforms)
    assert out.shape == ref.shape == (3, G.img_channels, G.img_resolution, G.img_resolution)
    diff = float((out - ref).abs().max())
    rel = diff / float(ref.abs().max())
    print(f"{name}: export {export_s:.1f} s, onnx vs torch max abs diff {diff:.3g}, rel {rel:.3g}")
    assert rel <= REL_TOL
    # each sample got its own transform (the identity row renders as without a transform)
    assert float((out[0] - G.synthesis(ws[:1])[0]).abs().max()) <= REL_TOL * float(ref.abs().max())
    assert float((out[1] - G.synthesis(ws[1:2])[0]).abs().max()) > 1e-2 * float(ref.abs().max())
    two = engine(ws[1:], transforms[1:])
    assert float((two - ref[1:]).abs().max()) <= REL_TOL * float(ref.abs().max())


@torch.no_grad()
def test_onnx_renderer_in_the_render_stage(private_cache, caplog):
    from sg3stream.models.bundle import Models
    from sg3stream.models.components import make_components
    from sg3stream.render.expand import Expansion
    from sg3stream.render.stages import RenderStage

    models = Models(device="cpu")
    _, renderer = make_components(models, engine="onnx")
    _, eager = make_components(models, engine="torch")
    assert renderer.kind == "onnx" and eager.kind == "eager"
    assert len(list((private_cache / "onnx").glob("*.onnx"))) == 2  # the encoder's graph and the synthesis graph
    G = models.generator()
    ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(1)), None, truncation_psi=0.7)
    transforms = sample_transforms(2)

    onnx_stage, torch_stage = RenderStage(renderer, Expansion(left=16)), RenderStage(eager, Expansion(left=16))
    onnx_stage.setup()
    torch_stage.setup()
    ours = onnx_stage._render(ws.numpy(), {}, transforms.numpy())
    ref = torch_stage._render(ws.numpy(), {}, transforms.numpy())
    assert ours.shape == ref.shape == (2, 256, 256 + 16, 3)
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1  # uint8 rounding
    assert renderer.describe() == {"device": "cpu", "compiled": False, "ops": "torch", "engine": "onnx"}

    # StyleSpace offsets need the styles path: the renderer's torch path renders them (said once), not the engine
    def refuse(*args):
        raise AssertionError("the engine renders W codes only")

    engine, renderer.engine = renderer.engine, refuse
    layer = G.synthesis.layer_names[3]
    offsets = {layer: np.full((2, getattr(G.synthesis, layer).in_channels), 0.5, np.float32)}
    with caplog.at_level("WARNING", logger="sg3stream"):
        styled = onnx_stage._render(ws.numpy(), offsets, transforms.numpy())
        onnx_stage._render(ws.numpy(), offsets, transforms.numpy())
    np.testing.assert_array_equal(styled, torch_stage._render(ws.numpy(), offsets, transforms.numpy()))
    assert caplog.text.count("StyleSpace edits render in torch (eager)") == 1
    assert renderer.describe()["stylespace"] == "torch (eager)"  # the run reports it
    renderer.engine = engine


def test_run_with_onnx_engine_matches_torch(tmp_path, private_cache):
    import av
    from typer.testing import CliRunner

    from sg3stream.cli import app
    from sg3stream.synthetic import face_frames, write_clip

    clip = write_clip(tmp_path / "face.mp4", face_frames(6, 320, 240, blank=(4,)), fps=24)

    def run(engine: str) -> np.ndarray:
        out = tmp_path / f"{engine}.mp4"
        result = CliRunner().invoke(app, ["run", str(clip), "-o", str(out), "--engine", engine, "--edit", "smile:8",
                                          "--landmark-workers", "1"])
        assert result.exit_code == 0, result.output
        with av.open(str(out)) as c:
            return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]).astype(int)

    ref, ours = run("torch"), run("onnx")
    assert len(list((private_cache / "onnx").glob("*.onnx"))) == 2  # the encoder's graph and the synthesis graph
    with av.open(str(clip)) as c:
        source = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]).astype(int)
    face = (slice(None), slice(85, 135), slice(100, 160))
    assert np.abs(ref - source)[face].mean() > 8  # the face was re-rendered (not a passthrough)
    diff = np.abs(ours - ref)
    print(f"--engine onnx vs torch: mean abs diff {diff.mean():.3g}, max {diff.max()} (uint8, after encoding)")
    assert diff.mean() < 0.5 and np.percentile(diff, 99.9) <= 8
