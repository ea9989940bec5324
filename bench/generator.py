"""Generator throughput: images per second of StyleGAN3 synthesis per batch size, and our ops vs the naive path.

`bench_synthesis(config, batch_sizes, device, ...)` returns one dict per batch size. "Ours" is the synthesis with
the op implementation `ops_impl` ("auto": the torch reference ops on the CPU; on CUDA, per op the faster of them and
the CUDA kernels, measured at the first pass of each batch size, see sg3stream/ops/choice.py); "naive" is the same
generator with `sg3stream.ops` "naive" (zero-insertion upfirdn2d, per-sample grouped modulated conv: the literal
official reference formulation). Both use the same weights and ws, so `speedup_vs_naive` compares like with like.
A time budget keeps expensive configs (sg3-r-1024 on a CPU) from running for long: a batch size whose estimated
cost exceeds what is left is reported with `skipped` and the reason. No CLI here: the caller wires it.
"""
from __future__ import annotations

import time
from typing import Sequence

import torch

__all__ = ["bench_synthesis"]


def _time_synthesis(G, ws, repeats: int, deadline: float) -> list[float]:
    """Seconds per call (after one warm-up call), at most `repeats` calls, stopping at the deadline."""
    def run():
        start = time.perf_counter()
        with torch.no_grad():
            G.synthesis(ws)
        if ws.device.type == "cuda":
            torch.cuda.synchronize(ws.device)
        return time.perf_counter() - start

    times = [run()]  # warm-up (allocations, oneDNN/cuDNN algorithm choice)
    measured = []
    while len(measured) < repeats and (not measured or time.perf_counter() + min(measured) < deadline):
        measured.append(run())
    return measured or times


def _ops_choice(G, device, batch: int, ops_impl: str) -> dict:
    """What "auto" ran at this batch size: ops_chosen (one line, a column of the table) and, where it measured
    or read the cache, ops_choice (the per-op implementations and times, see sg3stream/ops/choice.py)."""
    from sg3stream.ops.choice import choice_for, report, summary

    if ops_impl != "auto":
        return {}
    chosen = choice_for(G.synthesis, device, batch, G.synthesis.force_fp32)
    if chosen is None:  # the CPU, or the kernels did not load: the torch ops, and why
        return {"ops_chosen": f"torch ({report(device)['reason']})"}
    return {"ops_chosen": f"{summary(chosen.ops)} [{chosen.source}]", "ops_choice": chosen.as_dict()}


def bench_synthesis(config: str = "demo", batch_sizes: Sequence[int] = (1, 8, 32), device: str = "cpu",
                    time_budget_s: float = 120.0, repeats: int = 3, compare_naive: bool = True,
                    ops_impl: str = "auto", force_fp32: bool = False, seed: int = 0) -> list[dict]:
    """Images/s of `G.synthesis` for the generator `config` (a built-in name or a file) at each batch size.

    Returns per batch size: config, device, batch_size, ops, images_per_s (best of the timed calls),
    seconds_per_batch, with ops "auto" ops_chosen (which implementation of each op auto took, and why) and on CUDA
    ops_choice (its details), and with compare_naive also naive_images_per_s and speedup_vs_naive (ours / naive);
    or skipped=True with a reason when the budget would be exceeded.
    """
    from sg3stream.models import load_generator

    deadline = time.perf_counter() + time_budget_s
    G = load_generator(config, device=device, force_fp32=force_fp32)
    G.synthesis.ops_impl = ops_impl
    gen = torch.Generator().manual_seed(seed)
    results = []
    per_image_s: dict[str, float] = {}  # cost estimate per image, from the last measurement of each path
    for batch in batch_sizes:
        row = {"config": config, "device": str(device), "batch_size": int(batch), "ops": ops_impl}
        ws = torch.randn([batch, G.num_ws, G.w_dim], generator=gen).to(device)
        paths = [("ours", ops_impl)] + ([("naive", "naive")] if compare_naive else [])
        for label, impl in paths:
            left = deadline - time.perf_counter()
            # Warm-up plus one timed call: about two calls' worth of time is needed.
            if label in per_image_s and 2 * per_image_s[label] * batch > left:
                row.update(skipped=True, reason=f"{label} path needs ~{2 * per_image_s[label] * batch:.0f} s, "
                                                f"{max(left, 0):.0f} s of the time budget left")
                break
            G.synthesis.ops_impl = impl
            seconds = min(_time_synthesis(G, ws, repeats, deadline))
            per_image_s[label] = seconds / batch
            if label == "ours":
                row.update(images_per_s=batch / seconds, seconds_per_batch=seconds)
                row.update(_ops_choice(G, device, batch, ops_impl))
            else:
                row.update(naive_images_per_s=batch / seconds, speedup_vs_naive=row["images_per_s"] * seconds / batch)
        G.synthesis.ops_impl = ops_impl
        results.append(row)
    return results
