"""Bench: `sg3stream eval` against `sg3stream run` on the same generated clip (issue 15's target: scoring a result
takes less time than making it). Both are timed end to end in one process, one after the other, models and
mediapipe loading included, as a user runs them."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from sg3stream.eval import evaluate
from sg3stream.job import RunOptions, run_video
from sg3stream.report import Reporter
from sg3stream.synthetic import face_frames, write_clip


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench_eval_speed(frames: int = 300, width: int = 1280, height: int = 720, fps: int = 30) -> dict:
    """`run --edit smile` (demo model), then `eval` of its output: with the face region from mediapipe and the
    default recogniser (dlib when installed), and from the run's alignment.npz without identity; their times and
    ratios to the run's."""
    with tempfile.TemporaryDirectory(prefix="sg3stream-bench-") as tmp:
        tmp = Path(tmp)
        clip = write_clip(tmp / "face.mp4", face_frames(frames, width, height), fps=fps,
                          options={"preset": "ultrafast"})
        output, artifacts = tmp / "out.mp4", tmp / "art"
        options = RunOptions(input=clip, output=output, edits=["smile"], artifacts=artifacts, demo_label=False)
        reporter = Reporter()
        with reporter.capturing_warnings():
            run_s = _timed(lambda: run_video(options, reporter))
        scored: dict = {}
        eval_s = _timed(lambda: scored.update(full=evaluate(clip, output)))
        pixels_s = _timed(lambda: scored.update(pixels=evaluate(clip, output, artifacts=artifacts, id_model=False)))
    identity = scored["full"].summary["tl_id"] is not None
    return {"clip": f"{width}x{height}, {frames} frames at {fps} fps", "run_s": run_s,
            "eval_s": eval_s, "eval_identity": "dlib or --id-model" if identity else "none installed",
            "eval_from_artifacts_without_identity_s": pixels_s,
            "eval_over_run": eval_s / run_s, "eval_from_artifacts_over_run": pixels_s / run_s}
