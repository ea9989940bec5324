"""`sg3stream run INPUT -o OUTPUT`: the main job."""
from __future__ import annotations

from pathlib import Path

import typer

from ..job import RunOptions, run_video
from ..report import make_reporter
from .app import app
from .common import DEBUG_HELP, reported_errors


@app.command()
def run(
    input: Path = typer.Argument(..., help="Video to process."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the result (.mp4, .mkv, .mov)."),
    decoder: str = typer.Option("pyav", help="Decoder: pyav or decord."),
    batch_size: int = typer.Option(8, help="Frames per batch flowing between stages."),
    queue_size: int = typer.Option(4, help="Batches each queue between two stages may hold."),
    codec: str = typer.Option("libx264", help="Output video codec (FFmpeg encoder name)."),
    crf: int = typer.Option(18, help="Quality for libx264/libx265 (lower is better)."),
    preset: str = typer.Option("fast", help="Encoder speed preset for libx264/libx265."),
    artifacts: Path = typer.Option(None, help="Folder for run.json and the stages' artifacts."),
    log_format: str = typer.Option("rich", help="rich (progress bar) or json (JSON lines, for headless jobs)."),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Process a video: decode, run the stages, encode with the input's timing and audio."""
    with reported_errors(debug=debug):
        reporter = make_reporter(log_format)
    options = RunOptions(input=input, output=output, decoder=decoder, batch_size=batch_size, queue_size=queue_size,
                         codec=codec, crf=crf, preset=preset, artifacts=artifacts)
    with reported_errors(reporter, debug), reporter.capturing_warnings():
        summary = run_video(options, reporter)
        reporter.finish(summary)
