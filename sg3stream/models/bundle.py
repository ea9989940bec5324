"""The models of one run: the encoder and the generator, loaded once, on first use."""
from __future__ import annotations

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
    """The encoder and generator of a run (torch modules), loaded once, on first use.

    encoder: checkpoint path or name, or None for the demo encoder.
    generator: path or name overriding the encoder checkpoint's decoder; None keeps the checkpoint's (or the demo).
    What runs them (eager, compiled, ONNX, TensorRT) is chosen once in components.py (`make_components`).
    """

    def __init__(self, encoder: str | None = None, generator: str | None = None, device: str = "auto"):
        self.encoder_spec = encoder
        self.generator_spec = generator
        self.device = pick_device(device)
        self._lock = threading.Lock()
        self._encoder = None
        self._generator = None

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
                                   warn_demo=not self.is_demo)
            encoder.eval()
            self._generator = encoder.generator.eval()
            self._encoder = encoder

    def encoder(self):
        self._load()
        return self._encoder

    def generator(self):
        self._load()
        return self._generator
