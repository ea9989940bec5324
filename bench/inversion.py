"""Inversion throughput: frames per second of ReStyle inversion per engine and batch size.

`bench_inversion(engine, batch_sizes, device, ...)` returns one dict per batch size. By default it measures the
full-size encoder (IR-SE50 ReStyle-e4e, random weights: speed does not depend on them) with a cheap stand-in
generator, so the numbers are the encoder's cost; pass `encoder=` (a ReStyleEncoder, e.g. from
`load_encoder(...)`) to measure a real encoder together with its generator's reconstructions.
No CLI here: the caller wires it.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import torch
from torch import nn

__all__ = ["bench_inversion", "available_engines"]


class _NullGenerator(nn.Module):
    """A generator stand-in that costs ~nothing: a constant 256x256 image (so only the encoder is timed)."""

    num_ws, w_dim, img_resolution = 16, 512, 256

    def __init__(self):
        super().__init__()
        self.register_buffer("img", torch.zeros(1, 3, 256, 256))
        self.synthesis = self._synthesis

    def _synthesis(self, ws: torch.Tensor, transform: Any = None) -> torch.Tensor:
        return self.img.to(ws.device).expand(ws.shape[0], -1, -1, -1)


def available_engines(device: str | torch.device = "cpu") -> list[str]:
    """The engines that can run on `device` here."""
    out = ["torch"]
    try:
        import onnxruntime  # noqa: F401
        out.append("onnx")
    except ImportError:
        pass
    if torch.device(device).type == "cuda":
        from sg3stream.engines.tensorrt_engine import tensorrt_available

        if tensorrt_available()[0]:
            out.append("tensorrt")
    return out


def bench_inversion(engine: str, batch_sizes: Sequence[int] = (1, 4), device: str | torch.device = "cpu", *,
                    n_iters: int = 2, repeats: int = 2, warmup: int = 1, encoder: Any = None,
                    encoder_type: str = "ProgressiveBackboneEncoder", threads: int | None = None,
                    **engine_options: Any) -> list[dict]:
    """Time `encoder.invert` for each batch size with `engine` ("torch" | "onnx" | "tensorrt").

    Returns [{"engine", "device", "encoder", "batch", "n_iters", "seconds_per_batch", "fps"}...], where
    seconds_per_batch is the best of `repeats` timed runs after `warmup` untimed ones (building/exporting the
    engine happens before and is reported once as "setup_seconds"). On the CPU keep it short: batch 1 and 4,
    one or two iterations.
    """
    from sg3stream.models.encoders import ENCODER_CLASSES
    from sg3stream.models.restyle import ReStyleEncoder

    if threads:
        torch.set_num_threads(int(threads))
    device = torch.device(device)
    t0 = time.perf_counter()
    if encoder is None:
        cls = ENCODER_CLASSES[encoder_type]
        torch.manual_seed(0)
        net = cls(50, "ir_se", n_styles=16, input_nc=6) if "ResNet" not in encoder_type else cls(n_styles=16)
        encoder = ReStyleEncoder(net.eval(), _NullGenerator(), torch.zeros(512), encoder_type,
                                 description="benchmark: random weights, stand-in generator")
    encoder = encoder.to(device)
    encoder.set_engine(engine, device=device, **engine_options)
    setup = time.perf_counter() - t0
    results = []
    for b in batch_sizes:
        x = (torch.rand(b, 3, 256, 256, generator=torch.Generator().manual_seed(b)) * 2 - 1).to(device)
        for _ in range(warmup):
            encoder.invert(x, n_iters)
        times = []
        for _ in range(max(1, repeats)):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t = time.perf_counter()
            encoder.invert(x, n_iters)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t)
        best = min(times)
        results.append({"engine": engine, "device": str(device), "encoder": encoder.encoder_type, "batch": int(b),
                        "n_iters": int(n_iters), "seconds_per_batch": best, "fps": b / best,
                        "setup_seconds": setup})
    return results
