"""Custom CUDA kernels of the generator's ops, launched through pycuda (the `gpu` extra).

    upfirdn2d.cu       upsample / pad / FIR / downsample, one pass (forward; the backward is the same kernel)
    bias_act.cu        bias + activation + gain + clamp, forward and backward
    filtered_lrelu.cu  fused bias -> upsample -> leaky ReLU + clamp -> downsample (forward)
    common.cuh         float/half helpers
All in float32 and float16, on torch tensors, ordered with torch's current stream (see backends.CudaBackend).

`cuda_op_set(device)` compiles (build.py: nvcc to cubins cached on disk), loads, self-tests and returns the op set;
`sg3stream.ops.get_ops("auto", cuda_device)` calls it and falls back to the torch reference ops, warning once,
when it fails; `get_ops("cuda", ...)` raises the error instead. Process-wide state, on purpose: `_LOADED` caches
the loaded kernels per device (a failure too, so a broken build is tried once per process, not once per forward
pass), and `pycuda_available` its answer.

The kernels have to fail safe: when one cannot be compiled, loaded or trusted, the run warns once and goes on with
the torch ops; it never hangs (nvcc runs with a time limit) nor crashes.
- Self-test at load time (selftest.py): before the op set is handed out, every op (upfirdn2d up and down, bias_act
  lrelu + clamp, filtered_lrelu up=2 down=2), forward and input gradient, float32 and float16, runs on tiny inputs
  against the torch reference ops (a few milliseconds). A mismatch, a NaN or an exception raises
  `KernelSelfTestError` naming the op, dtype and max error, and is cached as any other load failure.
- Run-time failures (ops.GuardedBackend): a launch that raises later (a pycuda LaunchError, out of resources for a
  shape the self-test did not cover) logs one warning, "CUDA kernel <op> failed at run time (...); using the torch
  ops from now on"; that call completes in torch and every later call of that op set goes to the torch ops. Errors
  about the caller's arguments (ValueError) and CUDA out-of-memory still raise. A launch error that corrupts the
  CUDA context (an illegal address) cannot be recovered from in-process: torch fails too after it.
"""
from __future__ import annotations

import threading
from functools import lru_cache

import torch

from .build import SOURCES, KernelBuildError, compile_cubin
from .selftest import KernelSelfTestError, self_test

_LOADED: dict[int, object] = {}   # device index -> OpSet, or the exception that prevented loading
_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def pycuda_available() -> bool:
    try:
        import pycuda.driver  # noqa: F401
    except Exception:
        return False
    return True


def cuda_op_set(device):
    """The kernels' OpSet for a CUDA device; raises (ImportError, KernelBuildError, pycuda errors) when unavailable."""
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError("the CUDA kernels run on CUDA devices only")
    if device.index is None:
        _require_a_device()
    index = device.index if device.index is not None else torch.cuda.current_device()
    with _LOCK:
        if index not in _LOADED:
            try:
                _LOADED[index] = _load(torch.device("cuda", index))
            except Exception as e:
                _LOADED[index] = e
        loaded = _LOADED[index]
    if isinstance(loaded, Exception):
        raise loaded
    return loaded


def _require_a_device() -> None:
    if not torch.cuda.is_available():
        why = "this torch is a CPU-only build" if torch.version.cuda is None else "torch sees no CUDA device"
        raise RuntimeError(f"the CUDA kernels need a CUDA device: {why}")


def _load(device: torch.device):
    _require_a_device()
    import pycuda.driver  # noqa: F401  (ImportError: the gpu extra is not installed)

    from .backends import CudaBackend

    major, minor = torch.cuda.get_device_capability(device)
    arch = f"{major}{minor}"
    cubins = {source: compile_cubin(source, arch).read_bytes() for source in SOURCES}
    return checked_op_set(CudaBackend(device, cubins), device)


def checked_op_set(backend, device):
    """The OpSet of `backend` once it passes the self-test on `device` (KernelSelfTestError otherwise), guarded
    against run-time failures."""
    from .ops import GuardedBackend, KernelOps

    self_test(KernelOps(backend), device)  # unguarded: a wrong kernel must fail here, not fall back unnoticed
    return KernelOps(GuardedBackend(backend)).op_set(backend.name)


__all__ = ["cuda_op_set", "checked_op_set", "pycuda_available", "self_test", "SOURCES", "KernelBuildError",
           "KernelSelfTestError", "compile_cubin"]
