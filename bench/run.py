"""Bench: the whole main job (`sg3stream run --edit smile`) on a generated face clip, per stage and end to end,
in our streaming mode and in the reference mode (one frame per model call, stages one after the other)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from sg3stream.job import RunOptions, run_video
from sg3stream.report import Reporter
from sg3stream.synthetic import face_frames, faces_frames, write_clip

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


def bench_clip(path: Path, frames: int, width: int, height: int, faces: int = 1) -> Path:
    """The generated clip the benches run on: the face photo moving (`face_frames`), or with faces > 1 that many
    copies of it in every frame, each on its own path (`faces_frames`)."""
    pictures = face_frames(frames, width, height) if faces == 1 else faces_frames(frames, width, height, faces)
    return write_clip(path, pictures, fps=30, options={"preset": "ultrafast"})


def clip_label(size: str, faces: int = 1) -> str:
    width, height = SIZES[size]
    return f"{size} {width}x{height}" + (f", {faces} faces" if faces > 1 else "")


def bench_run(frames: int = 48, size: str = "480p", batch_size: int = 8, queue_size: int = 4, device: str = "auto",
              edit: str = "smile", encoder: str | None = None, generator: str | None = None,
              engine: str = "torch", reference_mode: bool = False, clip: Path | None = None, compile: bool = False,
              codec: str = "auto", faces: int = 1) -> dict:
    """One run of the main job; returns clip, mode, frames, end_to_end_fps, faces_inverted (the (frame, face) pairs
    inverted, edited, rendered and pasted) and faces_per_s, the per-stage statistics (frames/s, and faces/s for the
    stages that work per face), the GPU's utilisation and used memory during the run ("gpu", see GpuMonitor) and,
    on CUDA, torch's peak GPU memory. faces: faces per frame of the generated clip (when no `clip` is given)."""
    width, height = SIZES[size]
    with tempfile.TemporaryDirectory(prefix="sg3stream-bench-") as tmp:
        if clip is None:
            clip = bench_clip(Path(tmp) / "face.mp4", frames, width, height, faces)
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
    result = {"clip": clip_label(size, faces), "mode": "reference" if reference_mode else "streaming",
              "generator": generator or "demo", "acceleration": summary["acceleration"],
              "frames": summary["frames"], "end_to_end_fps": summary["fps"],
              "faces_inverted": summary["faces_inverted"], "faces_per_s": summary["faces_per_s"],
              "stages": summary["stages"], "gpu": monitor.summary()}
    if torch.cuda.is_available():
        result["gpu_peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def bench_run_against_reference(frames: int = 48, size: str = "480p", faces: int = 1, **kwargs) -> dict:
    """Both modes on the same generated clip (`faces` faces per frame), same models, same machine, in one call; and
    their ratio."""
    width, height = SIZES[size]
    with tempfile.TemporaryDirectory(prefix="sg3stream-bench-") as tmp:
        clip = bench_clip(Path(tmp) / "face.mp4", frames, width, height, faces)
        ours = bench_run(frames, size, clip=clip, faces=faces, **kwargs)
        reference = bench_run(frames, size, clip=clip, reference_mode=True, faces=faces, **kwargs)
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
