"""--compile: the synthesis network through torch.compile at fixed batch shapes.

Inductor takes minutes to compile the generator on this CPU, so these tests compile with backends that trace with
dynamo and run the captured graphs as they are: what is checked is the wrapper (padding, one graph per kind of
call, same images as eager, fallback) and its use by the encoder and the render stage, not inductor's code."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import sg3stream.models.compiled as compiled_module
from sg3stream.models import load_generator
from sg3stream.models.compiled import CompiledSynthesis, bucket_rows


class CountingBackend:
    """A torch.compile backend that runs the captured graph as it is and counts the graphs it was given."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


@pytest.fixture(scope="module")
def generator():
    return load_generator("demo", device="cpu")


def transforms(rows: int, shift: float) -> torch.Tensor:
    t = torch.eye(3).repeat(rows, 1, 1)
    t[:, 0, 2] = torch.linspace(-shift, shift, rows)
    return t


def test_bucket_rows():
    assert [bucket_rows(n, 8) for n in (1, 5, 8, 9, 24)] == [8, 8, 8, 16, 32]
    assert [bucket_rows(n, 1) for n in (1, 2, 3)] == [1, 2, 4]


def test_same_images_as_eager_and_one_graph_whatever_the_batch(generator):
    torch._dynamo.reset()
    backend = CountingBackend()
    synthesis = CompiledSynthesis(generator.synthesis, min_rows=8, backend=backend)
    g = torch.Generator().manual_seed(0)
    graphs_after_first = None
    for rows, shift in [(8, 0.1), (3, 0.2), (5, 0.05), (8, 0.3)]:
        ws = torch.randn([rows, generator.num_ws, generator.w_dim], generator=g)
        with torch.no_grad():
            expected = generator.synthesis(ws, transform=transforms(rows, shift))
            got = synthesis(ws, transform=transforms(rows, shift))
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        if graphs_after_first is None:
            graphs_after_first = backend.graphs
            assert graphs_after_first >= 1
    assert synthesis.compiled
    assert backend.graphs == graphs_after_first  # short batches were padded: nothing recompiled


def test_stylespace_calls_and_the_encoders_identity_render(generator):
    torch._dynamo.reset()
    synthesis = CompiledSynthesis(generator.synthesis, min_rows=4, backend=CountingBackend())
    ws = torch.randn([3, generator.num_ws, generator.w_dim], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        styles = synthesis.styles(ws)
        styles = {k: v * 1.1 if k != "input" else v for k, v in styles.items()}
        torch.testing.assert_close(synthesis(styles=styles, transform=transforms(3, 0.1)),
                                   generator.synthesis(styles=styles, transform=transforms(3, 0.1)),
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(synthesis(ws, transform=None, force_fp32=True),
                                   generator.synthesis(ws, transform=None, force_fp32=True), rtol=1e-5, atol=1e-5)
    assert synthesis.img_resolution == generator.synthesis.img_resolution  # attributes pass through
    assert generator.synthesis.ops_impl == "auto"  # the compiled copy's op choice did not leak into the network


def test_a_compiler_failure_warns_once_and_runs_eager(generator, caplog):
    torch._dynamo.reset()

    def broken_backend(gm, example_inputs):
        raise RuntimeError("no C compiler")

    synthesis = CompiledSynthesis(generator.synthesis, min_rows=2, backend=broken_backend)
    ws = torch.randn([2, generator.num_ws, generator.w_dim], generator=torch.Generator().manual_seed(2))
    with caplog.at_level(logging.WARNING, logger="sg3stream"), torch.no_grad():
        first = synthesis(ws, transform=transforms(2, 0.1))
        second = synthesis(ws, transform=transforms(2, 0.1))
        expected = generator.synthesis(ws, transform=transforms(2, 0.1))
    assert not synthesis.compiled
    torch.testing.assert_close(first, expected)
    torch.testing.assert_close(second, expected)
    assert caplog.text.count("torch.compile of the synthesis network failed") == 1


def test_run_with_compile_renders_and_inverts_through_the_compiled_network(tmp_path, monkeypatch):
    from sg3stream.job import RunOptions, run_video
    from sg3stream.report import Reporter
    from sg3stream.synthetic import face_frames, write_clip

    torch._dynamo.reset()
    calls: dict[str, int] = {}

    class Traced(CompiledSynthesis):  # dynamo tracing without inductor, and a record of who renders through it
        def __init__(self, synthesis, min_rows=8):
            super().__init__(synthesis, min_rows=min_rows, backend=CountingBackend())

        def __call__(self, ws=None, transform=None, **kwargs):
            kind = "aligned" if transform is None else "render"
            calls[kind] = calls.get(kind, 0) + 1
            return super().__call__(ws, transform, **kwargs)

    monkeypatch.setattr(compiled_module, "CompiledSynthesis", Traced)
    clip = write_clip(tmp_path / "in.mp4", face_frames(6, 160, 120), fps=25, audio=None)

    def run(name: str, compile: bool) -> tuple[np.ndarray, dict]:
        options = RunOptions(input=clip, output=tmp_path / f"{name}.mp4", edits=["smile"], batch_size=4,
                             compile=compile, artifacts=tmp_path / name, landmark_workers=1)
        summary = run_video(options, Reporter())
        return np.load(Path(tmp_path / name / "latents_track0.npy")), summary["acceleration"]

    eager, used = run("eager", compile=False)
    assert not calls and not used["compiled"]
    traced, used = run("traced", compile=True)
    assert calls.get("aligned", 0) > 0 and calls.get("render", 0) > 0  # the encoder and the render stage use it
    assert used["compiled"] and used["ops"] == "torch"  # the run says what it ran
    np.testing.assert_allclose(traced, eager, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (inductor + CUDA graphs)")
def test_cuda_graphs_render_the_eager_images():
    G = load_generator("demo", device="cuda")
    synthesis = CompiledSynthesis(G.synthesis, min_rows=4)  # mode reduce-overhead: CUDA graphs
    ws = torch.randn([4, G.num_ws, G.w_dim], device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    with torch.no_grad():
        first = synthesis(ws, transform=transforms(4, 0.1).cuda())
        second = synthesis(ws[:3], transform=transforms(3, 0.2).cuda())  # a replay must not overwrite `first`
        torch.testing.assert_close(first, G.synthesis(ws, transform=transforms(4, 0.1).cuda()), rtol=2e-2, atol=2e-2)
        torch.testing.assert_close(second, G.synthesis(ws[:3], transform=transforms(3, 0.2).cuda()),
                                   rtol=2e-2, atol=2e-2)
    assert synthesis.compiled
