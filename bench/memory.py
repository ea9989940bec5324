"""Bench: peak memory of the main job against the clip's length. A streaming pipeline holds a bounded number of
frames whatever the clip's length, so once a clip is longer than that bound its peak memory should stop growing.
Beside them, a clip of the longest length with two faces in every frame: twice the faces to invert, render and
paste, and the per-face keys twice as wide, but the same frames in flight, so its peak should stay near the one-face
clip's.

Each length runs in a fresh interpreter (`python -m sg3stream.bench.memory CLIP OUTPUT ...`): the peak resident
set size (ru_maxrss) is a high-water mark of the whole process, so runs sharing a process would hide each other.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from sg3stream.report import Reporter


def _peak_rss_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def _workers_peak_rss_mib() -> float:
    """The largest peak resident set (VmHWM) among this process's live child processes (the landmark workers).

    Not RUSAGE_CHILDREN: a child's ru_maxrss counts the parent's pages it shares between fork and exec, so it
    reports the parent's size at the time the pool started rather than the worker's own."""
    peak = 0.0
    for child in multiprocessing.active_children():
        try:
            with open(f"/proc/{child.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:  # ended meanwhile
            pass
    return peak


def bench_memory(lengths: tuple[int, ...] = (48, 192), width: int = 854, height: int = 480, batch_size: int = 8,
                 queue_size: int = 4, fine_window: int = 60, n_iters: int = 3, edit: str = "smile",
                 generator: str | None = None, device: str = "auto", timeout_s: float = 1800, crop: str = "smooth",
                 align_smoothing: float = 1.0, two_faces: bool = True) -> list[dict]:
    """One row per clip length (one face per frame), each from a fresh process running the main job:
    clip, faces (per frame of the generated clip), frames, faces_inverted (the (frame, face) pairs the job inverted),
    seconds (the job), frames_in_flight_max (most frames decoded but not yet encoded, sampled every 0.25 s: the
    pipeline's bound, reached only by clips longer than it), before_run_mib (the process's peak after the imports),
    peak_rss_mib (the job's process), workers_peak_rss_mib (the largest landmark worker process, read from /proc
    while it runs), and peak_rss_ratio, workers_peak_rss_ratio: against the first length.

    two_faces: then a row for a clip of the longest length with two faces per frame (`faces_frames`), right after
    the one-face row of that length, with one_face_peak_rss_mib (that row's peak) and peak_rss_vs_one_face,
    workers_peak_rss_vs_one_face (its peaks over that row's). Each face is 40% of min(width / 2, height) across
    (faces_inverted says whether both were edited: at 160x120 they are too small, and pass through unchanged).

    batch_size, queue_size, fine_window (the smoothing's look-ahead), crop and align_smoothing (the alignment's
    look-ahead: crop "fixed" drops the crop smoothing's 18 frames) set how many frames are in flight: smaller values
    let shorter clips pass the bound.
    """
    from sg3stream.synthetic import face_frames, faces_frames, write_clip  # here: the landmark workers re-import this

    rows: list[dict] = []
    clips = [(frames, 1) for frames in lengths] + ([(lengths[-1], 2)] if two_faces else [])
    with tempfile.TemporaryDirectory(prefix="sg3stream-bench-") as tmp:
        for frames, faces in clips:
            # the clip is written here, so that the child's peak is the job's alone
            pictures = face_frames(frames, width, height) if faces == 1 else faces_frames(frames, width, height, faces)
            name = f"{faces}-faces-{frames}"
            clip = write_clip(Path(tmp) / f"{name}.mp4", pictures, fps=30, options={"preset": "ultrafast"})
            command = [sys.executable, "-m", "sg3stream.bench.memory", str(clip), str(Path(tmp) / f"out-{name}.mp4"),
                       "--batch-size", str(batch_size), "--queue-size", str(queue_size), "--fine-window",
                       str(fine_window), "--n-iters", str(n_iters), "--edit", edit, "--device", device,
                       "--crop", crop, "--align-smoothing", str(align_smoothing)]
            if generator:
                command += ["--generator", generator]
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
            if done.returncode != 0:
                raise RuntimeError(f"the memory bench's child failed ({done.returncode}):\n{done.stderr[-4000:]}")
            child = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append({"clip": f"{width}x{height}", "faces": faces, **child})
    for row in rows:
        row["peak_rss_ratio"] = row["peak_rss_mib"] / rows[0]["peak_rss_mib"]
        row["workers_peak_rss_ratio"] = row["workers_peak_rss_mib"] / rows[0]["workers_peak_rss_mib"]
    if two_faces:  # the last row, right after the one-face row of its length
        one, two = rows[-2], rows[-1]
        two.update(one_face_peak_rss_mib=one["peak_rss_mib"],
                   peak_rss_vs_one_face=two["peak_rss_mib"] / one["peak_rss_mib"],
                   workers_peak_rss_vs_one_face=two["workers_peak_rss_mib"] / one["workers_peak_rss_mib"])
    return rows


class _InFlight(Reporter):
    """Keeps the most frames seen between the first stage (decode) and the last (encode) at the run's ticks."""

    def __init__(self) -> None:
        super().__init__()
        self.most = 0
        self.workers_peak_mib = 0.0

    def progress(self, done: int, fps: float, stages: list[dict] | None = None) -> None:
        if stages:
            self.most = max(self.most, stages[0]["frames"] - stages[-1]["frames"])
        self.workers_peak_mib = max(self.workers_peak_mib, _workers_peak_rss_mib())


def _child(argv: list[str]) -> dict:
    """The job on one clip, in this process; its peak memory."""
    from sg3stream.job import RunOptions, run_video
    from sg3stream.pipeline.heap import limit_heaps

    limit_heaps()  # as `sg3stream run` does, before any stage thread exists (sg3stream/pipeline/heap.py)

    parser = argparse.ArgumentParser(prog="python -m sg3stream.bench.memory")
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--queue-size", type=int, default=4)
    parser.add_argument("--fine-window", type=int, default=60)
    parser.add_argument("--n-iters", type=int, default=3)
    parser.add_argument("--edit", default="smile")
    parser.add_argument("--generator", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--crop", default="smooth")
    parser.add_argument("--align-smoothing", type=float, default=1.0)
    args = parser.parse_args(argv)
    options = RunOptions(input=args.input, output=args.output, batch_size=args.batch_size, queue_size=args.queue_size,
                         fine_window=args.fine_window, n_iters=args.n_iters, edits=[args.edit] if args.edit else [],
                         generator=args.generator, device=args.device, crop=args.crop,
                         align_smoothing=args.align_smoothing)
    before = _peak_rss_mib(resource.RUSAGE_SELF)
    reporter = _InFlight()
    with reporter.capturing_warnings():
        summary = run_video(options, reporter)
    return {
        "frames": summary["frames"],
        "faces_inverted": summary["faces_inverted"],
        "seconds": summary["seconds"],
        "frames_in_flight_max": reporter.most,
        "before_run_mib": before,
        "peak_rss_mib": _peak_rss_mib(resource.RUSAGE_SELF),
        # the landmark pool's workers, read while they ran (at the progress ticks, every 0.25 s)
        "workers_peak_rss_mib": reporter.workers_peak_mib,
    }


if __name__ == "__main__":  # the guard also keeps the landmark pool's spawned workers from running a job
    print(json.dumps(_child(sys.argv[1:])))
