"""What inverts and what renders a run, chosen once from `--engine` and `--compile` and handed to the stages.

    inverter, renderer = make_components(Models(...), engine="onnx", compile=False)
    images = renderer.render(ws, transforms)            # W+ [B, num_ws, w_dim], [B, 3, 3] -> [B, 3, R, R]
    images = renderer.render(ws, transforms, offsets)   # plus StyleSpace offsets {layer: [B, C]}
    codes = inverter.invert(aligned, n_iters=3)         # [B, 3, 256, 256] in [-1, 1] -> W+

Renderer kinds:
  eager     the generator's synthesis network in torch;
  compiled  the same through torch.compile at fixed batch shapes (compiled.py; falls back to eager with a warning);
  onnx      the synthesis network exported to ONNX and run by ONNX Runtime;
  tensorrt  the same graph built into a TensorRT engine (NVIDIA GPU only).
The exported graphs take W+ codes only, so an engine renderer renders StyleSpace offsets with a torch renderer of
its own (eager, or compiled with --compile): a separate, named path, warned about once and reported by
`describe()`. `with_generator(G)` makes a renderer of the same kind from other weights (PTI's tuned generator).

The inverter is the ReStyle encoder (its network in torch, or ONNX / TensorRT with those engines) whose
reconstructions between iterations are rendered by the run's renderer, except TensorRT's: it builds fp16 engines,
and ReStyle renders its reconstructions in float32 (the reference's force_fp32), so those stay in torch.
"""
from __future__ import annotations

import copy
import logging
import threading

import torch

log = logging.getLogger("sg3stream")

RENDERER_KINDS = ("eager", "compiled", "onnx", "tensorrt")

_MODEL_CALL_LOCKS: dict[str, threading.RLock] = {}
_MODEL_CALL_LOCKS_GUARD = threading.Lock()


def model_call_lock(device) -> threading.RLock:
    """One model call at a time on `device`, for the stages that call the inverter and the renderer from their own
    threads. Two calls at once do not run faster (on a CPU each already uses every core; on a GPU they share one
    stream), but their working memory adds up: about 180 MB each at batch 8 on the demo model's 256² layers."""
    key = str(torch.device(device))
    with _MODEL_CALL_LOCKS_GUARD:
        return _MODEL_CALL_LOCKS.setdefault(key, threading.RLock())


def renderer_kind(engine: str, compile: bool) -> str:
    """The renderer `--engine` and `--compile` ask for (with an engine, --compile applies to its torch path)."""
    if engine == "torch":
        return "compiled" if compile else "eager"
    return engine


class Renderer:
    """Renders W+ codes with per-image transforms: `render(ws, transforms, offsets=None)` -> [B, 3, R, R] on `device`.

    generator: the torch generator whose weights render (also what StyleSpace needs: `synthesis.styles`).
    resolution: the side of the rendered images. kind: one of RENDERER_KINDS.
    """

    kind = "?"

    def __init__(self, generator, device: torch.device):
        self.generator = generator
        self.device = torch.device(device)
        self.resolution = int(generator.img_resolution)

    def render(self, ws: torch.Tensor, transforms: torch.Tensor, offsets: dict | None = None) -> torch.Tensor:
        raise NotImplementedError

    def reconstruct(self, ws, transform=None, force_fp32=None) -> torch.Tensor:
        """ReStyle's reconstructions: the signature of `synthesis` that `ReStyleEncoder.render_aligned` calls."""
        raise NotImplementedError

    def describe(self) -> dict:
        """What ran: device, ops (the op implementation), compiled (torch.compile still on), engine."""
        raise NotImplementedError

    def with_generator(self, generator) -> "Renderer":
        """A renderer of the same kind for other weights (PTI's tuned generator)."""
        raise NotImplementedError


class TorchRenderer(Renderer):
    """The synthesis network in torch: eager, or through torch.compile (`CompiledSynthesis`) with compile=True."""

    def __init__(self, generator, device, compile: bool = False, compile_rows: int = 8):
        super().__init__(generator, device)
        self.compile, self.compile_rows = compile, compile_rows
        self.kind = "compiled" if compile else "eager"
        self.synthesis = generator.synthesis
        if compile:
            from .compiled import CompiledSynthesis

            # A wrapper of its own per generator: it shares the parameters of the network it wraps.
            self.synthesis = CompiledSynthesis(generator.synthesis, min_rows=compile_rows)

    def render(self, ws, transforms, offsets=None):
        if not offsets:
            return self.synthesis(ws, transform=transforms)
        styles = self.synthesis.styles(ws)
        for layer, offset in offsets.items():
            styles[layer] = styles[layer] + offset
        return self.synthesis(styles=styles, transform=transforms)

    def reconstruct(self, ws, transform=None, force_fp32=None):
        return self.synthesis(ws, transform=transform, force_fp32=force_fp32)

    def describe(self) -> dict:
        from ..ops import get_ops

        compiled = bool(getattr(self.synthesis, "compiled", False))  # False too once a failed compile fell back
        # The compiled wrapper (and its eager fallback) runs the torch reference ops; eager runs what ops_impl picks.
        ops = "torch" if self.compile else get_ops(self.generator.synthesis.ops_impl, self.device).name
        return {"device": str(self.device), "compiled": compiled, "ops": ops, "engine": "torch"}

    def with_generator(self, generator):
        return TorchRenderer(generator, self.device, compile=self.compile, compile_rows=self.compile_rows)


class EngineRenderer(Renderer):
    """The synthesis network exported to ONNX and run by ONNX Runtime or TensorRT (kind "onnx" or "tensorrt").

    W+ codes render through the engine. StyleSpace offsets render through `styles_renderer` (a TorchRenderer of the
    same generator): the graph takes codes, not styles. `cache`: keep the exported graph in the cache (off for
    tuned weights, which no other run will ask for).
    """

    def __init__(self, generator, device, kind: str, styles_renderer: TorchRenderer, cache: bool = True):
        super().__init__(generator, device)
        from sg3stream.engines.base import create_engine

        from .stylegan3 import SynthesisWrapper

        self.kind = kind
        self.styles_renderer = styles_renderer
        self.styles_in_torch = False  # set once StyleSpace offsets have rendered through styles_renderer
        self.cache = cache
        # Export a CPU copy: exporting moves the module, and the encoder may be using the generator meanwhile.
        synthesis = copy.deepcopy(generator.synthesis).cpu()
        synthesis.ops_impl = "torch"  # the graph is traced from the torch ops, never from custom kernels
        # Tracing example: w_avg for every layer (values do not matter, shapes do; the batch stays dynamic).
        ws = generator.mapping.w_avg.detach().float().cpu().reshape(1, 1, -1).repeat(1, generator.num_ws, 1)
        options = {"cache": cache} if kind == "onnx" else {}
        self.engine = create_engine(SynthesisWrapper(synthesis), kind, example_inputs=(ws, torch.eye(3)[None]),
                                    device=self.device, input_names=("ws", "transform"), output_names=("img",),
                                    **options)

    def render(self, ws, transforms, offsets=None):
        if offsets:
            return self._render_styles(ws, transforms, offsets)
        return self.engine(ws, transforms).to(self.device)

    def _render_styles(self, ws, transforms, offsets):
        """StyleSpace edits: the torch path, said once in the log and in `describe()`."""
        if not self.styles_in_torch:
            log.warning("StyleSpace edits render in torch (%s): the %s graph takes W+ codes, not styles",
                        self.styles_renderer.kind, self.kind)
            self.styles_in_torch = True
        return self.styles_renderer.render(ws, transforms, offsets)

    def reconstruct(self, ws, transform=None, force_fp32=None):
        if self.kind == "tensorrt":  # fp16 engines: ReStyle's float32 reconstructions stay in torch
            return self.styles_renderer.reconstruct(ws, transform, force_fp32)
        if transform is None:
            transform = torch.eye(3, device=ws.device)
        transform = torch.as_tensor(transform, dtype=torch.float32, device=ws.device).expand(ws.shape[0], 3, 3)
        return self.engine(ws, transform).to(ws.device)

    def describe(self) -> dict:
        # The graph is traced from the torch reference ops; the engine runs it as it compiles it.
        used = {"device": str(self.device), "compiled": False, "ops": "torch", "engine": self.kind}
        if self.styles_in_torch:
            used["stylespace"] = f"torch ({self.styles_renderer.kind})"
        return used

    def with_generator(self, generator):
        return EngineRenderer(generator, self.device, self.kind, self.styles_renderer.with_generator(generator),
                              cache=False)


def make_renderer(generator, device, engine: str = "torch", compile: bool = False,
                  compile_rows: int = 8) -> Renderer:
    """The renderer `engine` ("torch", "onnx", "tensorrt") and `compile` ask for, over `generator`."""
    torch_renderer = TorchRenderer(generator, device, compile=compile, compile_rows=compile_rows)
    if engine == "torch":
        return torch_renderer
    return EngineRenderer(generator, device, engine, torch_renderer)


class Inverter:
    """ReStyle inversion of aligned faces: `invert(images, n_iters, batch_size)` -> W+ codes on `device`.

    The encoder network runs as its engine says (torch, ONNX, TensorRT); its reconstructions between iterations
    render through `renderer` (see the module's docstring).
    """

    def __init__(self, encoder, renderer: Renderer):
        self.encoder = encoder
        self.renderer = renderer
        self.device = renderer.device
        encoder.set_render_synthesis(renderer.reconstruct)

    @property
    def generator(self):
        """The generator the codes belong to (its num_ws and w_dim shape them)."""
        return self.encoder.generator

    def invert(self, images: torch.Tensor, n_iters: int = 3, batch_size: int | None = None) -> torch.Tensor:
        return self.encoder.invert(images, n_iters=n_iters, batch_size=batch_size)

    def describe(self) -> dict:
        """The encoder network's engine and the renderer of its reconstructions."""
        reconstructions = self.renderer.kind
        if reconstructions == "tensorrt":
            reconstructions = self.renderer.styles_renderer.kind
        return {"encoder": self.encoder.engine, "reconstructions": reconstructions}


def make_components(models, engine: str = "torch", compile: bool = False,
                    compile_rows: int = 8) -> tuple[Inverter, Renderer]:
    """The run's inverter and renderer over `models` (a `Models`: loads the encoder and generator now), built
    before any frame is decoded: an ONNX export or a TensorRT build happens here, not mid-run."""
    encoder = models.encoder()
    renderer = make_renderer(models.generator(), models.device, engine=engine, compile=compile,
                             compile_rows=compile_rows)
    encoder.set_engine(engine, device=models.device)  # "torch": the encoder network itself
    return Inverter(encoder, renderer), renderer
