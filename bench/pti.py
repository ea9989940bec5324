"""PTI throughput: training steps per second and peak GPU memory, with the CUDA kernels and with the torch ops.

`bench_pti(config, batch_sizes, device, ops_impl, steps)` trains the generator `config` (a built-in name such as
"sg3-r-1024" with random weights, or a file) on random targets at the generator's resolution with the PTI loop
of sg3stream.pti.train (MS-SSIM + L2, locality regularisation every step, mixed precision on CUDA) and returns one
dict per (ops, batch size): config, device, ops, ops_used (the op set get_ops actually picked), batch_size, steps,
steps_per_s, seconds_per_step and, on CUDA, peak_memory_gib. ops_impl may be one name or a list, e.g.
["cuda", "torch"] to compare the kernels with the reference ops. The first step is a warm-up and is not timed.
On a CPU use the demo configuration; a time budget skips what would not fit. No CLI here: the caller wires it.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch

__all__ = ["bench_pti"]


def _samples(G, batch: int, seed: int):
    from sg3stream.pti.train import PTISamples

    rng = np.random.default_rng(seed)
    res = G.img_resolution
    count = max(batch, 2)
    with torch.no_grad():
        z = torch.from_numpy(rng.standard_normal((count, G.z_dim)).astype(np.float32)).to(G.mapping.w_avg.device)
        latents = G.mapping(z, truncation_psi=0.7).cpu().numpy()
    return PTISamples(crops=rng.integers(0, 256, (count, res, res, 3), dtype=np.uint8), latents=latents,
                      transforms=np.repeat(np.eye(3, dtype=np.float32)[None], count, axis=0),
                      frames=np.arange(count))


def bench_pti(config: str = "demo", batch_sizes: Sequence[int] = (1, 4), device: str = "cpu",
              ops_impl: str | Sequence[str] = "auto", steps: int = 5, time_budget_s: float = 300.0,
              seed: int = 0) -> list[dict]:
    from sg3stream.models import load_generator
    from sg3stream.ops import get_ops
    from sg3stream.pti.losses import MSSSIMLoss, ReconstructionLoss
    from sg3stream.pti.train import PTIConfig, PTITrainer

    impls = [ops_impl] if isinstance(ops_impl, str) else list(ops_impl)
    deadline = time.perf_counter() + time_budget_s
    dev = torch.device(device)
    results = []
    for impl in impls:
        for batch in batch_sizes:
            row = {"config": config, "device": str(dev), "ops": impl, "batch_size": int(batch), "steps": int(steps)}
            results.append(row)
            if time.perf_counter() > deadline:
                row.update(skipped=True, reason="time budget spent")
                continue
            try:
                row["ops_used"] = get_ops(impl, dev).name
            except Exception as e:  # "cuda" without a GPU or pycuda
                row.update(skipped=True, reason=f"{type(e).__name__}: {e}")
                continue
            G = load_generator(config, device=str(dev))
            G.synthesis.ops_impl = impl
            if dev.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(dev)
            trainer = PTITrainer(G, _samples(G, batch, seed), PTIConfig(steps=steps + 1, batch=batch, seed=seed),
                                 loss=ReconstructionLoss(MSSSIMLoss()), device=dev)
            trainer.tuned.synthesis.ops_impl = impl
            trainer.train_step()  # warm-up: allocations, kernel loading, cuDNN algorithm choice
            _sync(dev)
            start = time.perf_counter()
            done = 0
            while done < steps and (done == 0 or time.perf_counter() + (time.perf_counter() - start) / done < deadline):
                trainer.train_step()
                done += 1
            _sync(dev)
            seconds = (time.perf_counter() - start) / done
            row.update(steps=done, seconds_per_step=seconds, steps_per_s=1.0 / seconds)
            if dev.type == "cuda":
                row["peak_memory_gib"] = torch.cuda.max_memory_allocated(dev) / 2 ** 30
            del trainer, G
    return results


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
