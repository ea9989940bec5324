"""Bench: the whole main job (`sg3stream run --edit smile`) on a generated face clip, per stage and end to end,
in our streaming mode and in the reference mode (one frame per model call, stages one after the other)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from sg3stream.job import RunOptions, run_video
from sg3stream.report import Reporter
from sg3stream.synthetic import face_frames, write_clip

from .gpu_monitor import GpuMonitor
from .pipeline import SIZES


class _MonitoredReporter(Reporter):
    """Runs the GPU monitor from the pipeline's start to its end (run_video calls start() right before the pipeline
    and close() right after it), so that loading models and building engines stay out of the GPU figures as they
    stay out of end_to_end_fps."""

    def __init__(self, monitor: GpuMonitor):
        super().__init__()
        self.monitor = monitor

    def start(self, total: int | None, description: str) -> None:
        self.monitor.start()

    def close(self) -> None:
        self.monitor.stop()


def bench_run(frames: int = 48, size: str = "480p", batch_size: int = 8, queue_size: int = 4, device: str = "auto",
              edit: str = "smile", encoder: str | None = None, generator: str | None = None,
              engine: str = "torch", reference_mode: bool = False, clip: Path | None = None, compile: bool = False,
              codec: str = "auto") -> dict:
    """One run of the main job; returns clip, mode, frames, end_to_end_fps, the per-stage statistics, the GPU's
    utilisation and used memory during the run ("gpu", see GpuMonitor) and, on CUDA, torch's peak GPU memory."""
    width, height = SIZES[size]
    with tempfile.TemporaryDirectory(prefix="sg3stream-bench-") as tmp:
        if clip is None:
            clip = write_clip(Path(tmp) / "face.mp4", face_frames(frames, width, height), fps=30,
                              options={"preset": "ultrafast"})
        options = RunOptions(input=clip, output=Path(tmp) / "out.mp4", batch_size=batch_size, queue_size=queue_size,
                             device=device, edits=[edit] if edit else [], encoder=encoder, generator=generator,
                             engine=engine, reference_mode=reference_mode, compile=compile, codec=codec,
                             demo_label=False)  # the pipeline's own work: no demo caption stage
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        monitor = GpuMonitor()
        reporter = _MonitoredReporter(monitor)
        with reporter.capturing_warnings():
            summary = run_video(options, reporter)
    result = {"clip": f"{size} {width}x{height}", "mode": "reference" if reference_mode else "streaming",
              "generator": generator or "demo", "acceleration": summary["acceleration"],
              "frames": summary["frames"], "end_to_end_fps": summary["fps"],
              "stages": summary["stages"], "gpu": monitor.summary()}
    if torch.cuda.is_available():
        result["gpu_peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def bench_run_against_reference(frames: int = 48, size: str = "480p", **kwargs) -> dict:
    """Both modes on the same generated clip, same models, same machine, in one call; and their ratio."""
    width, height = SIZES[size]
    with tempfile.TemporaryDirectory(prefix="sg3stream-bench-") as tmp:
        clip = write_clip(Path(tmp) / "face.mp4", face_frames(frames, width, height), fps=30,
                          options={"preset": "ultrafast"})
        ours = bench_run(frames, size, clip=clip, **kwargs)
        reference = bench_run(frames, size, clip=clip, reference_mode=True, **kwargs)
    result = {"streaming": ours, "reference": reference,
              "speedup_vs_reference": ours["end_to_end_fps"] / reference["end_to_end_fps"]}
    held = held_back_frames()
    if frames < 4 * held:
        result["note"] = (f"short clip: alignment and smoothing hold up to {held} frames back before the first "
                          f"render, so for much of {frames} frames rendering cannot overlap inversion; use "
                          f"--frames {4 * held} or more for the ratio")
    return result


def held_back_frames() -> int:
    """Frames the streaming mode must have inverted past a frame before it can render it: the chain's look-ahead
    (the alignment's plus the smoothing's ±fine_window mean of the fine layers)."""
    from sg3stream.chain import plan_chain

    return plan_chain(RunOptions(input=Path(), output=Path())).context[1]
