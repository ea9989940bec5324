"""Joining a job's segments: every frame once, in order, with the input's timestamps and audio.

The segments' lossless frames are decoded and encoded once more with the job's codec settings (the same
encoder a single-process run uses, fed the same frames and pts), through VideoWriter: the output is written
beside the target and renamed onto it only when complete, with the input's audio copied.
"""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import UserError
from ..job import RunOptions, uses_demo_model, weights_file
from ..render.label import DEMO_METADATA
from ..pipeline.batch import FrameBatch
from ..video.encode import VideoWriter
from ..video.probe import probe
from .manifest import sha256_file


def segment_batches(video: Path, sidecar: dict, time_base: Fraction, batch_size: int):
    """The segment's frames as FrameBatches with their recorded index numbers and pts."""
    pts = sidecar["pts"]
    first = sidecar["first_frame"]
    frames: list[np.ndarray] = []
    done = 0
    with av.open(str(video)) as container:
        for frame in container.decode(container.streams.video[0]):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == batch_size:
                yield _batch(frames, first + done, pts[done:done + len(frames)], time_base)
                done += len(frames)
                frames = []
    if frames:
        yield _batch(frames, first + done, pts[done:done + len(frames)], time_base)
        done += len(frames)
    if done != len(pts):
        raise UserError(f"{video} holds {done} frames, its record says {len(pts)}")


def _batch(frames, first, pts, time_base) -> FrameBatch:
    if len(pts) != len(frames):
        raise UserError(f"a segment holds more frames than its record lists ({first + len(pts)}..)")
    return FrameBatch(frames=np.stack(frames), index=np.arange(first, first + len(frames), dtype=np.int64),
                      pts=np.array(pts, dtype=np.int64), time_base=time_base)


def demo_metadata(options: RunOptions) -> dict | None:
    """The demo's container tag, as `run` writes it, when the job uses the demo model."""
    if options.passthrough:
        return None
    generator_file = weights_file(options.generator) or weights_file(options.encoder)
    return DEMO_METADATA if uses_demo_model(options, generator_file) else None


def join_segments(options: RunOptions, work_dir: str, segment_files: list[tuple[str, str]]) -> dict:
    """Encode the segments (video file, pts file) in order into options.output; return its frames and sha256."""
    info = probe(options.input)
    folder = Path(work_dir)
    writer = VideoWriter(options.output, time_base=info.time_base, rate=info.fps, audio_from=options.input,
                         codec=options.codec, crf=options.crf, preset=options.preset, colour=info.colour,
                         metadata=demo_metadata(options))
    expected_first = 0
    try:
        for video, pts_file in segment_files:
            sidecar = json.loads((folder / pts_file).read_text())
            if sidecar["first_frame"] != expected_first:
                raise UserError(f"segments do not join: {video} starts at frame {sidecar['first_frame']}, "
                                f"expected {expected_first}")
            for batch in segment_batches(folder / video, sidecar, info.time_base, options.batch_size):
                writer.write(batch)
            expected_first += sidecar["frames"]
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return {"frames": writer.frames_written, "sha256": sha256_file(options.output)}
