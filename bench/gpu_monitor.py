"""GPU utilisation and memory while a bench runs, sampled through NVML in a background thread.

torch only knows the memory it allocated itself; NVML also sees how busy the GPU was (the share of time a kernel ran)
and the memory the whole device used (CUDA context, cuDNN/TensorRT workspaces and other processes included).
"""
from __future__ import annotations

import threading
from typing import Callable

Sampler = Callable[[], tuple[float, float]]  # () -> (utilisation in %, used memory in bytes)


def nvml_sampler() -> tuple[Sampler | None, Callable[[], None], str]:
    """A sampler of torch's current CUDA device, the function that shuts NVML down, and why there is no sampler
    (empty when there is one)."""
    try:
        import pynvml
    except ImportError:
        return None, lambda: None, "NVML is not installed (pip install nvidia-ml-py, in the gpu extra)"
    import torch

    if not torch.cuda.is_available():
        return None, lambda: None, "no CUDA device"
    try:
        pynvml.nvmlInit()
    except Exception as e:  # pynvml.NVMLError and friends: no driver library, no permission, ...
        return None, lambda: None, f"NVML did not start: {e}"
    index = torch.cuda.current_device()
    try:
        # NVML numbers every GPU of the machine, CUDA only the visible ones: match them by UUID
        uuid = "GPU-" + str(torch.cuda.get_device_properties(index).uuid)
        handle = pynvml.nvmlDeviceGetHandleByUUID(uuid.encode())
    except Exception:
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception as e:
            pynvml.nvmlShutdown()
            return None, lambda: None, f"NVML does not know CUDA device {index}: {e}"

    def sample() -> tuple[float, float]:
        return (float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                float(pynvml.nvmlDeviceGetMemoryInfo(handle).used))

    return sample, pynvml.nvmlShutdown, ""


class GpuMonitor:
    """`with GpuMonitor() as monitor: ...` (or start() ... stop()) then `monitor.summary()`.

    sample: a function returning (utilisation %, used bytes); default NVML on torch's current CUDA device.
    interval_s: seconds between samples.
    Never raises: without NVML or CUDA the summary says why; a failing sample is counted and skipped.
    """

    def __init__(self, sample: Sampler | None = None, interval_s: float = 0.15):
        self.interval_s = interval_s
        self._sample = sample
        self._shutdown: Callable[[], None] = lambda: None
        self._reason = "not started"
        self._readings: list[tuple[float, float]] = []
        self._errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        if self._sample is None:
            try:
                self._sample, self._shutdown, self._reason = nvml_sampler()
            except Exception as e:  # a bench must not fail because its monitor could not start
                self._sample, self._reason = None, f"NVML failed: {e}"
        if self._sample is not None:
            self._thread = threading.Thread(target=self._loop, name="gpu-monitor", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self._shutdown()
        except Exception:
            pass
        self._shutdown = lambda: None

    def __enter__(self) -> GpuMonitor:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _loop(self) -> None:
        while True:
            try:
                self._readings.append(self._sample())
            except Exception as e:
                self._errors.append(f"{type(e).__name__}: {e}")
            if self._stop.wait(self.interval_s):  # one sample at the start, then one per interval until stopped
                return

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def summary(self) -> dict:
        if self._sample is None:
            return {"available": False, "reason": self._reason}
        if not self._readings:
            why = f"every sample failed ({self._errors[-1]})" if self._errors else "not started"
            return {"available": False, "reason": why}
        utilisation = [u for u, _ in self._readings]
        return {
            "available": True,
            "samples": len(self._readings),
            "failed_samples": len(self._errors),
            "interval_s": self.interval_s,
            "utilisation_mean_percent": sum(utilisation) / len(utilisation),
            "utilisation_max_percent": max(utilisation),
            "memory_max_used_gib": max(m for _, m in self._readings) / 2**30,
        }
