"""Custom CUDA kernels of the generator's ops, launched through pycuda (the `gpu` extra).

    upfirdn2d.cu       upsample / pad / FIR / downsample, one pass (forward; the backward is the same kernel)
    bias_act.cu        bias + activation + gain + clamp, forward and backward
    filtered_lrelu.cu  fused bias -> upsample -> leaky ReLU + clamp -> downsample (forward)
    common.cuh         float/half helpers
All in float32 and float16, on torch tensors, ordered with torch's current stream (see backends.CudaBackend).

`cuda_op_set(device)` compiles (build.py: nvcc to cubins cached on disk), loads and returns the op set;
`sg3stream.ops.get_ops("auto", cuda_device)` calls it and falls back to the torch reference ops, warning once,
when it fails. Process-wide state, on purpose: `_LOADED` caches the loaded kernels per device (a failure too, so
a broken build is tried once per process, not once per forward pass), and `pycuda_available` its answer.
"""
from __future__ import annotations

import threading
from functools import lru_cache

import torch

from .build import SOURCES, KernelBuildError, compile_cubin

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


def _load(device: torch.device):
    import pycuda.driver  # noqa: F401  (ImportError: the gpu extra is not installed)

    from .backends import CudaBackend
    from .ops import KernelOps

    major, minor = torch.cuda.get_device_capability(device)
    arch = f"{major}{minor}"
    cubins = {source: compile_cubin(source, arch).read_bytes() for source in SOURCES}
    return KernelOps(CudaBackend(device, cubins)).op_set("cuda")


__all__ = ["cuda_op_set", "pycuda_available", "SOURCES", "KernelBuildError", "compile_cubin"]
