"""Low-level ops of the generator, with the signatures the official custom CUDA kernels use.

`get_ops(impl, device)` is the runtime decision point between implementations:
  "torch" — the fast pure-torch reference ops (CPU and GPU); the fallback and the oracle for future kernels
  "naive" — a literal transcription of the official reference formulation (slow; for tests and benchmarks)
  "auto"  — the best available for the device: on CUDA, when pycuda is installed and the custom kernels of
            sg3stream.kernels build, load and pass their self-test, per op the faster of the kernels and the torch
            ops, measured on the synthesis network's own calls at its first forward pass and cached (choice.py);
            when the kernels do not load, "torch" (warning once; a kernel failing later at run time also falls
            back, see sg3stream.kernels); on other devices "torch"
  "cuda"  — the custom kernels, or an error saying why they are unavailable (e.g. KernelSelfTestError)
An OpSet given as `impl` is used as it is (choice.py records a forward pass through one).
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


def get_ops(impl: str | OpSet = "auto", device: torch.device | str | None = None, *, synthesis=None,
            batch_size: int | None = None, force_fp32: bool = False) -> OpSet:
    """The op set to use for tensors on `device`; impl is "auto", "cuda", a name in IMPLEMENTATIONS or an OpSet.

    synthesis, batch_size, force_fp32: the forward pass asking (SynthesisNetwork.forward), which "auto" on CUDA
    measures the kernels on at its first call (see choice.py); without them, auto on CUDA hands out the latest
    choice made on the device, else the kernels."""
    if isinstance(impl, OpSet):
        return impl
    if impl == "auto":
        if device is None or torch.device(device).type != "cuda":
            return TORCH_OPS
        kernels = _cuda_kernels_or_torch(device)
        if kernels is TORCH_OPS:
            return TORCH_OPS  # the kernels did not load: nothing to measure
        from .choice import auto_op_set

        return auto_op_set(kernels, TORCH_OPS, device, synthesis, batch_size, force_fp32)
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
            _note_no_trial(device, "pycuda is not installed")
            return TORCH_OPS  # the gpu extra is not installed: the torch ops are the normal path, no warning
        return cuda_op_set(device)
    except Exception as e:
        _note_no_trial(device, f"kernels unavailable ({type(e).__name__})")
        if not _KERNELS_WARNED:
            _KERNELS_WARNED = True
            logging.getLogger("sg3stream").warning(
                "CUDA kernels unavailable (%s: %s); using the torch ops", type(e).__name__, str(e).splitlines()[0]
                if str(e) else "")
        return TORCH_OPS


def _note_no_trial(device, reason: str) -> None:
    """For run.json: why auto runs the torch ops on `device` without measuring."""
    from .choice import no_trial

    try:
        no_trial(device, reason)
    except Exception:  # "cuda" without an index on a machine without CUDA: nothing to report it for
        pass


__all__ = ["OpSet", "get_ops", "IMPLEMENTATIONS", "TORCH_OPS", "NAIVE_OPS", "upfirdn2d", "bias_act", "filtered_lrelu",
           "modulated_conv2d", "upfirdn2d_naive", "filtered_lrelu_naive", "modulated_conv2d_naive"]
