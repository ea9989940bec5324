"""`sg3stream probe INPUT`: what a video file holds."""
from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..video.probe import probe as probe_video
from .app import app
from .common import DEBUG_HELP, reported_errors


@app.command()
def probe(
    input: Path = typer.Argument(..., help="Video file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Print the streams, codec, size, fps, frame count, duration and rotation of a video."""
    with reported_errors(debug=debug):
        info = probe_video(input)
    if as_json:
        print(json.dumps(info.to_dict(), indent=2))
        return
    console = Console()
    console.print(f"[bold]{info.path}[/] ({info.format})", highlight=False)
    console.print(f"video: {info.codec} {info.width}x{info.height}, {info.fps:.3f} fps, "
                  f"{info.frames if info.frames is not None else '?'} frames, "
                  f"{info.duration if info.duration is not None else '?'} s, rotation {info.rotation}°, "
                  f"time base {info.time_base}", highlight=False)
    table = Table("#", "type", "codec", "details")
    for s in info.streams:
        table.add_row(str(s.index), s.type, s.codec, ", ".join(f"{k}={v}" for k, v in s.extra.items()))
    console.print(table)
