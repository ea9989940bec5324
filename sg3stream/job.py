"""`sg3stream run`: one video in, one video out, through the chain of stages.

`RunOptions` holds what the user asked for; `run_video` checks it, builds the stages, runs the pipeline,
commits the output atomically and returns the summary that also goes into run.json.
"""
from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import __version__
from .artifacts import Artifacts
from .errors import UserError
from .pipeline.runner import Pipeline
from .pipeline.stage import Stage
from .report import Reporter
from .video.decode import FrameReader
from .video.encode import VideoWriter, check_codec, check_output_path


@dataclass
class RunOptions:
    input: Path
    output: Path
    decoder: str = "pyav"
    batch_size: int = 8
    queue_size: int = 4
    codec: str = "libx264"
    crf: int = 18
    preset: str = "fast"
    artifacts: Path | None = None
    extra: dict = field(default_factory=dict)  # options of later stages, recorded in run.json

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def build_stages(options: RunOptions) -> list[Stage]:
    """The stages between decode and encode. Until the model stages land, none: frames pass unchanged."""
    return []


def run_video(options: RunOptions, reporter: Reporter) -> dict:
    if options.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    output = check_output_path(options.output, options.input)
    check_codec(options.codec)
    reader = FrameReader(options.input, batch_size=options.batch_size, decoder=options.decoder)
    artifacts = Artifacts(options.artifacts) if options.artifacts else None
    stages = build_stages(options)
    info = reader.info
    writer = VideoWriter(output, time_base=info.time_base, rate=info.fps, audio_from=options.input,
                         codec=options.codec, crf=options.crf, preset=options.preset)
    pipeline = Pipeline(reader, stages, writer.write, queue_size=options.queue_size)
    started = time.perf_counter()

    def tick(p: Pipeline) -> None:
        elapsed = time.perf_counter() - started
        reporter.progress(p.frames_done, p.frames_done / elapsed if elapsed > 0 else 0.0)

    reporter.start(info.frames, f"{Path(options.input).name}")
    try:
        stats = pipeline.run(on_tick=tick)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    finally:
        reporter.close()
    seconds = time.perf_counter() - started
    summary = {
        "input": str(options.input),
        "output": str(output),
        "frames": writer.frames_written,
        "frames_announced": info.frames,
        "complete": reader.complete,
        "seconds": seconds,
        "fps": writer.frames_written / seconds if seconds > 0 else 0.0,
        "stages": [s.to_dict() for s in stats],
    }
    if artifacts is not None:
        artifacts.write_json("run.json", {
            **summary,
            "options": options.to_dict(),
            "video": info.to_dict(),
            "warnings": list(reporter.warnings),
            "versions": {"sg3stream": __version__, "python": platform.python_version()},
        })
    return summary
