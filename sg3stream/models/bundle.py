"""The models of one run: the encoder and the generator, loaded once, on first use, by whichever stage needs them."""
from __future__ import annotations

import copy
import logging
import threading

import torch

log = logging.getLogger("sg3stream")

DEMO_NOTICE = ("using the built-in demo model (weights from a fixed seed): the output shows the pipeline at work, "
               "not a real edit. For real results give --encoder and --generator official checkpoints "
               "(see `sg3stream models list`).")


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Models:
    """Lazily loaded encoder + generator shared by the invert, render (and PTI) stages.

    encoder: checkpoint path or name, or None for the demo encoder.
    generator: path or name overriding the encoder checkpoint's decoder; None keeps the checkpoint's (or the demo).
    compile: render (the encoder's reconstructions and the render stage's images) through torch.compile at fixed
             batch shapes of at least `compile_rows` rows (see compiled.py).
    """

    def __init__(self, encoder: str | None = None, generator: str | None = None, device: str = "auto",
                 engine: str = "torch", compile: bool = False, compile_rows: int = 8):
        self.encoder_spec = encoder
        self.generator_spec = generator
        self.device = pick_device(device)
        self.engine = engine
        self.compile = compile
        self.compile_rows = compile_rows
        self._lock = threading.Lock()
        self._encoder = None
        self._generator = None
        self._synthesis = None
        self._synthesis_engine = None

    @property
    def is_demo(self) -> bool:
        return self.encoder_spec is None and self.generator_spec in (None, "demo")

    def _load(self) -> None:
        with self._lock:
            if self._encoder is not None:
                return
            from .loading import load_generator
            from .restyle import load_encoder

            # One demo warning per run: this notice (which names the run's options), or else the loaders' own
            # warning when only one of the two models is the demo.
            if self.is_demo:
                log.warning(DEMO_NOTICE)
            generator = None
            if self.generator_spec is not None:
                generator = load_generator(self.generator_spec, device=str(self.device), warn_demo=not self.is_demo)
            encoder = load_encoder(self.encoder_spec or "demo", generator=generator, device=self.device,
                                   engine=self.engine, warn_demo=not self.is_demo)
            encoder.eval()
            self._generator = encoder.generator.eval()
            self._synthesis = self._generator.synthesis
            if self.compile:
                from .compiled import CompiledSynthesis

                self._synthesis = CompiledSynthesis(self._generator.synthesis, min_rows=self.compile_rows)
                encoder.set_render_synthesis(self._synthesis)
            self._encoder = encoder

    def encoder(self):
        self._load()
        return self._encoder

    def generator(self):
        self._load()
        return self._generator

    def synthesis(self):
        """The generator's synthesis network, or its compiled stand-in (same call signature) with `compile`."""
        self._load()
        return self._synthesis

    def synthesis_engine(self):
        """The generator's synthesis network behind `engine` ("onnx", "tensorrt"), built on first use; None for torch.

        Called as `engine(ws [B, num_ws, w_dim], transform [B, 3, 3])` -> images [B, 3, R, R] on `device`. It renders
        W+ codes only: StyleSpace edits need `G.synthesis(styles=...)`, which stays in torch.
        """
        if self.engine == "torch":
            return None
        generator = self.generator()
        with self._lock:
            if self._synthesis_engine is None:
                from sg3stream.engines.base import create_engine

                from .stylegan3 import SynthesisWrapper

                # Export a CPU copy: exporting moves the module, and the encoder may be using the generator meanwhile.
                synthesis = copy.deepcopy(generator.synthesis).cpu()
                synthesis.ops_impl = "torch"  # the graph is traced from the torch ops, never from custom kernels
                # Tracing example: w_avg for every layer (values do not matter, shapes do; the batch stays dynamic).
                ws = generator.mapping.w_avg.detach().float().cpu().reshape(1, 1, -1).repeat(1, generator.num_ws, 1)
                self._synthesis_engine = create_engine(
                    SynthesisWrapper(synthesis), self.engine, example_inputs=(ws, torch.eye(3)[None]),
                    device=self.device, input_names=("ws", "transform"), output_names=("img",))
        return self._synthesis_engine
