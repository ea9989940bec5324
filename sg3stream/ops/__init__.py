"""Low-level ops of the generator, with the signatures the official custom CUDA kernels use.

`get_ops(impl, device)` is the runtime decision point between implementations:
  "torch" — the fast pure-torch reference ops (CPU and GPU); the fallback and the oracle for future kernels
  "naive" — a literal transcription of the official reference formulation (slow; for tests and benchmarks)
  "auto"  — the best available for the device: on CUDA, the custom kernels of sg3stream.kernels when pycuda is
            installed and they build, load and pass their self-test (warning once and falling back to "torch"
            otherwise; a kernel failing later at run time also falls back, see sg3stream.kernels); else "torch"
  "cuda"  — the custom kernels, or an error saying why they are unavailable (e.g. KernelSelfTestError)
"""
from __future__ import annotations

import logging
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

# Process-wide, on purpose: the CUDA kernels' failure is reported once per process, not once per forward pass.
_KERNELS_WARNED = False


def get_ops(impl: str = "auto", device: torch.device | str | None = None) -> OpSet:
    """The op set to use for tensors on `device`; impl is "auto", "cuda" or a name in IMPLEMENTATIONS."""
    if impl == "auto":
        if device is None or torch.device(device).type != "cuda":
            return TORCH_OPS
        return _cuda_kernels_or_torch(device)
    if impl == "cuda":
        from sg3stream.kernels import cuda_op_set

        return cuda_op_set(device if device is not None else "cuda")
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"unknown ops implementation {impl!r}; accepted: auto, cuda, {', '.join(IMPLEMENTATIONS)}")
    return IMPLEMENTATIONS[impl]


def _cuda_kernels_or_torch(device) -> OpSet:
    """The custom kernels when pycuda is installed and they load; else the torch ops (warning once on failure)."""
    global _KERNELS_WARNED
    try:
        from sg3stream.kernels import cuda_op_set, pycuda_available

        if not pycuda_available():
            return TORCH_OPS  # the gpu extra is not installed: the torch ops are the normal path, no warning
        return cuda_op_set(device)
    except Exception as e:
        if not _KERNELS_WARNED:
            _KERNELS_WARNED = True
            logging.getLogger("sg3stream").warning(
                "CUDA kernels unavailable (%s: %s); using the torch ops", type(e).__name__, str(e).splitlines()[0]
                if str(e) else "")
        return TORCH_OPS


__all__ = ["OpSet", "get_ops", "IMPLEMENTATIONS", "TORCH_OPS", "NAIVE_OPS", "upfirdn2d", "bias_act", "filtered_lrelu",
           "modulated_conv2d", "upfirdn2d_naive", "filtered_lrelu_naive", "modulated_conv2d_naive"]
