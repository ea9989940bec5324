"""Bench: the whole main job (`sg3stream run --edit smile`) on a generated face clip, per stage and end to end."""
from __future__ import annotations

import tempfile
from pathlib import Path

from sg3stream.job import RunOptions, run_video
from sg3stream.report import Reporter
from sg3stream.synthetic import face_frames, write_clip

from .pipeline import SIZES


def bench_run(frames: int = 48, size: str = "480p", batch_size: int = 8, queue_size: int = 4, device: str = "auto",
              edit: str = "smile", encoder: str | None = None, generator: str | None = None) -> dict:
    """One run of the main job; returns clip, frames, end_to_end_fps and the per-stage statistics."""
    width, height = SIZES[size]
    with tempfile.TemporaryDirectory(prefix="sg3stream-bench-") as tmp:
        clip = write_clip(Path(tmp) / "face.mp4", face_frames(frames, width, height), fps=30,
                          options={"preset": "ultrafast"})
        options = RunOptions(input=clip, output=Path(tmp) / "out.mp4", batch_size=batch_size, queue_size=queue_size,
                             device=device, edits=[edit] if edit else [], encoder=encoder, generator=generator)
        reporter = Reporter()
        with reporter.capturing_warnings():
            summary = run_video(options, reporter)
    return {"clip": f"{size} {width}x{height}", "frames": summary["frames"], "end_to_end_fps": summary["fps"],
            "stages": summary["stages"]}
