"""Bench: the streaming spine alone (decode -> encode) on generated clips, per stage and end to end."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from sg3stream.pipeline.runner import Pipeline
from sg3stream.synthetic import face_frames, write_clip
from sg3stream.video.decode import FrameReader
from sg3stream.video.encode import VideoWriter

SIZES = {"480p": (854, 480), "1080p": (1920, 1080)}


def bench_pipeline(frames: int = 120, sizes: tuple[str, ...] = ("480p", "1080p"), batch_size: int = 8,
                   queue_size: int = 4, decoder: str = "pyav") -> list[dict]:
    """Per clip size: each stage's frames/s and busy/blocked fractions, and end-to-end frames/s."""
    results = []
    with tempfile.TemporaryDirectory(prefix="sg3stream-bench-") as tmp:
        for name in sizes:
            width, height = SIZES[name]
            clip = write_clip(Path(tmp) / f"{name}.mp4", face_frames(frames, width, height), fps=30,
                              options={"preset": "ultrafast"})
            reader = FrameReader(clip, batch_size=batch_size, decoder=decoder)
            writer = VideoWriter(Path(tmp) / f"{name}-out.mp4", time_base=reader.info.time_base, rate=reader.info.fps,
                                 audio_from=clip)
            started = time.perf_counter()
            stats = Pipeline(reader, [], writer.write, queue_size=queue_size).run()
            writer.commit()
            seconds = time.perf_counter() - started
            results.append({
                "clip": f"{name} {width}x{height}",
                "frames": writer.frames_written,
                "end_to_end_fps": writer.frames_written / seconds,
                "stages": [s.to_dict() for s in stats],
            })
    return results
