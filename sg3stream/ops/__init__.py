"""Low-level ops of the generator, with the signatures the official custom CUDA kernels use.

`get_ops(impl, device)` is the runtime decision point between implementations:
  "torch" — the fast pure-torch reference ops (CPU and GPU); the fallback and the oracle for future kernels
  "naive" — a literal transcription of the official reference formulation (slow; for tests and benchmarks)
  "auto"  — the best available for the device; today always "torch" (CUDA kernels will register here)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .bias_act import bias_act
from .filtered_lrelu import filtered_lrelu
from .modulated_conv2d import modulated_conv2d
from .naive import filtered_lrelu_naive, modulated_conv2d_naive, upfirdn2d_naive
from .upfirdn2d import upfirdn2d


@dataclass(frozen=True)
class OpSet:
    """One implementation of every op the generator calls."""
    name: str
    upfirdn2d: Callable
    bias_act: Callable
    filtered_lrelu: Callable
    modulated_conv2d: Callable


TORCH_OPS = OpSet("torch", upfirdn2d, bias_act, filtered_lrelu, modulated_conv2d)
NAIVE_OPS = OpSet("naive", upfirdn2d_naive, bias_act, filtered_lrelu_naive, modulated_conv2d_naive)
IMPLEMENTATIONS = {"torch": TORCH_OPS, "naive": NAIVE_OPS}


def get_ops(impl: str = "auto", device: torch.device | str | None = None) -> OpSet:
    """The op set to use for tensors on `device`; impl is "auto" or a name in IMPLEMENTATIONS."""
    if impl == "auto":
        return TORCH_OPS  # no custom kernels yet: the torch reference ops run on CPU and CUDA alike
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"unknown ops implementation {impl!r}; accepted: auto, {', '.join(IMPLEMENTATIONS)}")
    return IMPLEMENTATIONS[impl]


__all__ = ["OpSet", "get_ops", "IMPLEMENTATIONS", "TORCH_OPS", "NAIVE_OPS", "upfirdn2d", "bias_act", "filtered_lrelu",
           "modulated_conv2d", "upfirdn2d_naive", "filtered_lrelu_naive", "modulated_conv2d_naive"]
