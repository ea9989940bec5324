"""The run's inverter and renderer (sg3stream/models/components.py): chosen once from --engine and --compile, one
interface for every kind, a renderer of the same kind for other weights (PTI), and ReStyle's reconstructions
rendered by the run's renderer."""
from __future__ import annotations

import copy

import pytest
import torch
from test_compiled_synthesis import CountingBackend

from sg3stream.models.bundle import Models
from sg3stream.models.components import EngineRenderer, Inverter, make_components, make_renderer, renderer_kind


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SG3STREAM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def models():
    return Models(device="cpu")


@pytest.fixture(scope="module")
def codes(models):
    G = models.generator()
    ws = G.mapping(torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(0)), None, truncation_psi=0.7)
    transforms = torch.eye(3).repeat(3, 1, 1)
    transforms[:, 0, 2] = torch.tensor([0.0, 0.05, -0.1])
    return ws, transforms


def perturbed(G):
    """A copy of G with other synthesis weights: a stand-in for PTI's tuned generator."""
    other = copy.deepcopy(G)
    with torch.no_grad():
        for p in other.synthesis.parameters():
            p.mul_(1.05)
    return other


def test_kinds_from_the_options():
    assert [renderer_kind(e, c) for e, c in [("torch", False), ("torch", True), ("onnx", False),
                                            ("tensorrt", True)]] == ["eager", "compiled", "onnx", "tensorrt"]


@torch.no_grad()
def test_eager_and_compiled_renderers_render_the_generator_and_say_what_ran(models, codes, monkeypatch):
    import sg3stream.models.compiled as compiled_module

    torch._dynamo.reset()
    backend = CountingBackend()  # dynamo tracing without inductor (minutes on this CPU)
    real = compiled_module.CompiledSynthesis
    monkeypatch.setattr(compiled_module, "CompiledSynthesis",
                        lambda synthesis, min_rows=8: real(synthesis, min_rows=min_rows, backend=backend))
    G = models.generator()
    ws, transforms = codes
    expected = G.synthesis(ws, transform=transforms)
    eager = make_renderer(G, "cpu")
    compiled = make_renderer(G, "cpu", compile=True, compile_rows=4)
    assert (eager.kind, compiled.kind) == ("eager", "compiled")
    assert eager.resolution == compiled.resolution == G.img_resolution and eager.device == torch.device("cpu")
    torch.testing.assert_close(eager.render(ws, transforms), expected)
    torch.testing.assert_close(compiled.render(ws, transforms), expected, rtol=1e-5, atol=1e-5)
    assert backend.graphs >= 1
    assert eager.describe() == {"device": "cpu", "compiled": False, "ops": "torch", "engine": "torch"}
    assert compiled.describe() == {"device": "cpu", "compiled": True, "ops": "torch", "engine": "torch"}

    # StyleSpace offsets: added to the styles of the codes
    layer = G.synthesis.layer_names[2]
    offsets = {layer: torch.full((3, getattr(G.synthesis, layer).in_channels), 0.3)}
    styles = G.synthesis.styles(ws)
    styles[layer] = styles[layer] + offsets[layer]
    torch.testing.assert_close(eager.render(ws, transforms, offsets),
                               G.synthesis(styles=styles, transform=transforms))

    # other weights, same kind: what PTI hands the render stage
    other = perturbed(G)
    for renderer in (eager, compiled):
        tuned = renderer.with_generator(other)
        assert tuned.kind == renderer.kind and tuned.generator is other
        torch.testing.assert_close(tuned.render(ws, transforms), other.synthesis(ws, transform=transforms),
                                   rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_onnx_renderer_for_other_weights_exports_them_and_keeps_no_copy(models, codes, private_cache):
    pytest.importorskip("onnxruntime")
    G = models.generator()
    ws, transforms = codes
    renderer = make_renderer(G, "cpu", engine="onnx")
    tuned = renderer.with_generator(perturbed(G))
    assert tuned.kind == "onnx" and tuned.describe()["engine"] == "onnx"
    assert len(list((private_cache / "onnx").glob("*.onnx"))) == 1  # the original's graph only: no tuned copy
    ours, expected = tuned.render(ws, transforms), tuned.generator.synthesis(ws, transform=transforms)
    untuned = G.synthesis(ws, transform=transforms)
    scale = float(expected.abs().max())
    error = float((ours - expected).abs().max()) / scale
    assert error <= 1e-5 and float((expected - untuned).abs().max()) / scale > 100 * error


@torch.no_grad()
def test_the_inverter_renders_its_reconstructions_with_the_runs_renderer(models, codes):
    pytest.importorskip("onnxruntime")
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(4)) * 2 - 1
    inverter, renderer = make_components(models, engine="torch")
    assert inverter.describe() == {"encoder": "torch", "reconstructions": "eager"}
    expected = inverter.invert(x, n_iters=3)

    inverter, renderer = make_components(models, engine="onnx")
    assert inverter.describe() == {"encoder": "onnx", "reconstructions": "onnx"}
    calls = [0]
    engine = renderer.engine

    def counting(*inputs):
        calls[0] += 1
        return engine(*inputs)

    renderer.engine = counting
    codes_onnx = inverter.invert(x, n_iters=3)
    assert calls[0] == 3  # the average image (iteration 0's input), then the reconstructions of iterations 1, 2
    torch.testing.assert_close(codes_onnx, expected, rtol=1e-4, atol=1e-5)
    assert inverter.generator is models.generator() and inverter.device == torch.device("cpu")
    make_components(models, engine="torch")  # the shared encoder's network runs in torch again


@torch.no_grad()
def test_tensorrt_reconstructions_stay_in_float32_torch(models, codes, monkeypatch):
    """TensorRT builds fp16 engines; ReStyle renders its reconstructions in float32 as the reference: in torch."""
    import sg3stream.engines.base as engines

    class FakeTensorRT:
        kind = "tensorrt"

        def __call__(self, ws, transform):
            raise AssertionError("reconstructions must not go through the fp16 engine")

    monkeypatch.setattr(engines, "create_engine", lambda *args, **kwargs: FakeTensorRT())
    G = models.generator()
    renderer = make_renderer(G, "cpu", engine="tensorrt")
    assert isinstance(renderer, EngineRenderer) and renderer.kind == "tensorrt"
    encoder = copy.copy(models.encoder())  # its own render synthesis, the shared encoder is left as it is
    inverter = Inverter(encoder, renderer)
    assert inverter.describe()["reconstructions"] == "eager"
    ws, _ = codes
    torch.testing.assert_close(renderer.reconstruct(ws, None, force_fp32=True),
                               G.synthesis(ws, transform=None, force_fp32=True))
    assert renderer.describe() == {"device": "cpu", "compiled": False, "ops": "torch", "engine": "tensorrt"}
