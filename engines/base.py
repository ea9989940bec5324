"""One interface for the three inference backends: torch (eager, optionally compiled), ONNX Runtime, TensorRT.

An engine wraps a network whose inputs and outputs all have the batch as their first (dynamic) dimension:

    engine = create_engine(module, "onnx", example_inputs=(torch.zeros(1, 6, 256, 256),))
    y = engine(x)                      # torch tensors in, torch tensors out (on engine.device)

`create_engine` is the only entry point the rest of the code needs; the backend modules import their optional
dependencies (onnxruntime, tensorrt) lazily and raise `UserError` with what to install when they are missing.
"""
from __future__ import annotations

import abc
import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from sg3stream.errors import UserError

__all__ = ["ENGINE_KINDS", "Engine", "create_engine", "cache_root", "module_fingerprint", "as_tuple"]

ENGINE_KINDS = ("torch", "onnx", "tensorrt")


def cache_root() -> Path:
    """The sg3stream user cache folder: $SG3STREAM_CACHE, else $XDG_CACHE_HOME/sg3stream, else ~/.cache/sg3stream.

    Models go under `models/`, exported ONNX graphs under `onnx/`, TensorRT engines under `trt/`.
    """
    env = os.environ.get("SG3STREAM_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "sg3stream"


def module_fingerprint(module: nn.Module, extra: str = "") -> str:
    """sha256 (hex, 20 chars) of a module's class, its repr, its state_dict (names, shapes, dtypes, bytes) and `extra`.

    The repr carries configuration that is not in the state dict (sizes, sampling rates, output scale...).
    """
    h = hashlib.sha256()
    h.update(f"{type(module).__module__}.{type(module).__qualname__}|{extra}|{module!r}".encode())
    for k, v in module.state_dict().items():
        h.update(f"{k}|{tuple(v.shape)}|{v.dtype}".encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:20]


def as_tuple(x: Any) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


class Engine(abc.ABC):
    """A compiled or wrapped network: call it with torch tensors (batch first), get torch tensors back.

    Attributes: `kind` ("torch" | "onnx" | "tensorrt"), `device` (where its outputs live), `input_names`,
    `output_names`, `max_batch` (None = unlimited). A single output comes back as a tensor, several as a tuple.
    """

    kind: str = "?"
    device: torch.device = torch.device("cpu")
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    max_batch: int | None = None

    @abc.abstractmethod
    def run(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run one batch; always returns a tuple of outputs."""

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if self.input_names and len(inputs) != len(self.input_names):
            raise UserError(f"{self.kind} engine takes {len(self.input_names)} inputs {list(self.input_names)}, "
                            f"got {len(inputs)}")
        b = inputs[0].shape[0]
        if self.max_batch is not None and b > self.max_batch:
            # split into chunks the engine was built for
            parts = [self.run(*(x[i:i + self.max_batch] for x in inputs)) for i in range(0, b, self.max_batch)]
            outs = tuple(torch.cat([p[j] for p in parts], 0) for j in range(len(parts[0])))
        else:
            outs = self.run(*inputs)
        return outs[0] if len(outs) == 1 else outs

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} kind={self.kind} device={self.device}>"


def create_engine(module: nn.Module, kind: str = "torch", *, example_inputs: Sequence[torch.Tensor] | torch.Tensor,
                  device: str | torch.device = "cpu", input_names: Sequence[str] | None = None,
                  output_names: Sequence[str] | None = None, **options: Any) -> Engine:
    """Wrap `module` in the backend `kind` ("torch" | "onnx" | "tensorrt").

    example_inputs: one tensor or a tuple, batch first; they fix every dimension except the batch.
    options go to the backend: torch (compile, half), onnx (cache, providers, opset, threads),
    tensorrt (fp16, min_batch, opt_batch, max_batch, cache_dir).
    """
    example_inputs = as_tuple(example_inputs)
    names = tuple(input_names) if input_names else tuple(f"input{i}" if i else "input" for i in range(len(example_inputs)))
    outs = tuple(output_names) if output_names else ("output",)
    if kind == "torch":
        from .torch_engine import TorchEngine
        return TorchEngine(module, device=device, input_names=names, output_names=outs, **options)
    if kind == "onnx":
        from .onnx_engine import OnnxEngine
        return OnnxEngine.from_module(module, example_inputs, device=device, input_names=names, output_names=outs,
                                      **options)
    if kind == "tensorrt":
        from .tensorrt_engine import TensorRTEngine
        return TensorRTEngine.from_module(module, example_inputs, device=device, input_names=names,
                                          output_names=outs, **options)
    raise UserError(f"unknown engine {kind!r}; accepted: {', '.join(ENGINE_KINDS)}")
