"""Bench: a re-edit from a run's artifacts (`run --from`) against the full run of the same clip (issue 17's target:
at least 3x faster on the CPU demo). Both are timed end to end in one process, one after the other, models and
mediapipe loading included, as a user runs them; the re-edit's output is checked equal to a full run with its edit."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from sg3stream.job import RunOptions, run_video
from sg3stream.report import Reporter
from sg3stream.synthetic import face_frames, write_clip


def _decoded(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


def bench_reedit(frames: int = 48, width: int = 854, height: int = 480, fps: int = 25) -> dict:
    """`run --edit smile --artifacts A`, then `run --from A --edit age:-2` and `run --edit age:-2`: their times,
    the ratio, and whether the re-edit equals the full run with its edit."""
    with tempfile.TemporaryDirectory(prefix="sg3stream-bench-") as tmp:
        tmp = Path(tmp)
        clip = write_clip(tmp / "face.mp4", face_frames(frames, width, height, cycle=96), fps=fps,
                          options={"preset": "ultrafast"})
        times = {}
        for name, extra in (("full", dict(edits=["smile"], artifacts=tmp / "art")),
                            ("reedit", dict(edits=["age:-2"], from_artifacts=tmp / "art")),
                            ("full_same_edit", dict(edits=["age:-2"]))):
            options = RunOptions(input=clip, output=tmp / f"{name}.mp4", demo_label=False, **extra)
            reporter = Reporter()
            started = time.perf_counter()
            with reporter.capturing_warnings():
                run_video(options, reporter)
            times[name] = time.perf_counter() - started
        equal = bool(np.array_equal(_decoded(tmp / "reedit.mp4"), _decoded(tmp / "full_same_edit.mp4")))
    return {"clip": f"{width}x{height}, {frames} frames", "full_s": times["full"], "reedit_s": times["reedit"],
            "full_over_reedit": times["full"] / times["reedit"], "reedit_equals_full_run": equal}
