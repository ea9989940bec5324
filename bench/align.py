"""Bench: face landmarks (one worker vs a process pool) and FFHQ alignment on generated 480p and 1080p clips."""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import time
from fractions import Fraction

import numpy as np

from sg3stream.align.stages import AlignStage, LandmarkStage, available_cores
from sg3stream.pipeline.batch import FrameBatch
from sg3stream.synthetic import face_frames

SIZES = {"480p": (854, 480), "1080p": (1920, 1080)}

_stage: LandmarkStage | None = None  # the landmark stage of a pool worker


def _init(stage: LandmarkStage) -> None:
    global _stage
    _stage = stage
    _stage.setup()


def _warm(batch: FrameBatch) -> bool:
    _stage(batch)  # the first inference of each mediapipe graph is slow: keep it out of the timing
    time.sleep(0.2)  # keeps every worker busy once, so that each of them gets one warm-up batch
    return True


def _call(batch: FrameBatch) -> FrameBatch:
    return _stage(batch)


def _batches(frames: np.ndarray, batch_size: int) -> list[FrameBatch]:
    out = []
    for i in range(0, len(frames), batch_size):
        idx = np.arange(i, min(i + batch_size, len(frames)))
        out.append(FrameBatch(frames=frames[idx[0]:idx[-1] + 1], index=idx, pts=idx, time_base=Fraction(1, 30)))
    return out


def bench_align(frames: int = 48, sizes: tuple[str, ...] = ("480p", "1080p"), batch_size: int = 8,
                workers: int | None = None, crop_size: int = 256) -> list[dict]:
    """Frames/s of the landmark stage with one worker (in this process) and with a pool of `workers` processes
    (default: one per available core; pool start-up excluded), and of the alignment stage, per clip size.

    One dict per measurement: clip, section ("landmarks" or "align"), workers, frames, seconds, frames_per_s,
    and for landmarks the fraction of frames with a face and the fraction with a face found by the small-face
    fallback.
    """
    workers = workers or available_cores()
    results: list[dict] = []
    for name in sizes:
        width, height = SIZES[name]
        clip = np.stack(list(face_frames(frames, width, height, blank=(frames // 2,))))
        batches = _batches(clip, batch_size)
        label = f"{name} {width}x{height}"

        def record(section: str, n_workers: int, seconds: float, extra: dict | None = None) -> None:
            results.append({"clip": label, "section": section, "workers": n_workers, "frames": len(clip),
                            "seconds": seconds, "frames_per_s": len(clip) / seconds, **(extra or {})})

        def face_stats(out: list[FrameBatch]) -> dict:
            src = np.concatenate([b.data["landmark_source"] for b in out])  # [N, F]: per face slot
            return {"face_fraction": float((src > 0).any(axis=1).mean()),
                    "fallback_fraction": float((src == 2).any(axis=1).mean())}

        # Landmarks, one worker in this process (the graphs are built before timing).
        stage = LandmarkStage(workers=1)
        stage.setup()
        stage(batches[0])
        started = time.perf_counter()
        landmarked = [stage(b) for b in batches]
        record("landmarks", 1, time.perf_counter() - started, face_stats(landmarked))
        stage.close()

        # Landmarks, a pool of spawned processes, order kept (what the runner does with executor="process").
        if workers > 1:
            pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                          initializer=_init, initargs=(LandmarkStage(workers=workers),))
            try:
                list(pool.map(_warm, [batches[0]] * workers))
                started = time.perf_counter()
                pooled = list(pool.map(_call, batches))
                record("landmarks", workers, time.perf_counter() - started, face_stats(pooled))
            finally:
                pool.shutdown(wait=True, cancel_futures=True)

        # Alignment (thread stage): quads, smoothing, both warps, transforms.
        align = AlignStage(size=crop_size)
        align.setup()
        started = time.perf_counter()
        for b in landmarked:
            align(b)
        align.flush()
        record("align", 1, time.perf_counter() - started, {"crop_size": crop_size})
    return results
