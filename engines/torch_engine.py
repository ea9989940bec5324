"""The torch backend: the module itself in eval/inference mode, optionally through torch.compile."""
from __future__ import annotations

import logging
import warnings
from typing import Sequence

import torch
from torch import nn

from .base import Engine

log = logging.getLogger(__name__)


class TorchEngine(Engine):
    """Eager PyTorch.

    compile: None = automatic (on for CUDA, off on the CPU, where compile time dominates short clips),
             True/False to force. If compilation fails at the first call the engine falls back to eager
             with a warning rather than failing the run.
    half:    run in float16 (CUDA only; inputs are cast, outputs come back as float32).
    """

    kind = "torch"

    def __init__(self, module: nn.Module, *, device: str | torch.device = "cpu", compile: bool | None = None,
                 half: bool = False, input_names: Sequence[str] = ("input",), output_names: Sequence[str] = ("output",)):
        self.device = torch.device(device)
        self.input_names = tuple(input_names)
        self.output_names = tuple(output_names)
        self.half = bool(half) and self.device.type == "cuda"
        self.module = module.to(self.device).eval()
        if self.half:
            self.module = self.module.half()
        if compile is None:
            compile = self.device.type == "cuda"
        self._eager = self.module
        self._fn = torch.compile(self.module, dynamic=True) if compile else self.module
        self.compiled = bool(compile)
        self._first = True

    def run(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        dtype = torch.float16 if self.half else None
        xs = [x.to(self.device, dtype=dtype if x.is_floating_point() else None) for x in inputs]
        with torch.no_grad():
            if self._first and self.compiled:
                try:
                    out = self._fn(*xs)
                except Exception as e:  # compile toolchains missing (no triton, no C compiler, ...)
                    warnings.warn(f"torch.compile failed ({type(e).__name__}: {e}); running eager instead")
                    self._fn, self.compiled = self._eager, False
                    out = self._fn(*xs)
            else:
                out = self._fn(*xs)
        self._first = False
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return tuple(o.float() if self.half and o.is_floating_point() else o for o in outs)
