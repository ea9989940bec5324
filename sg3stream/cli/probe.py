"""`sg3stream probe INPUT`: what a video file (or an image sequence) holds."""
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
    input: Path = typer.Argument(..., help="Video file, or an image sequence (shot/%04d.png, a folder)."),
    fps: float = typer.Option(None, "--fps", help="An image sequence's frame rate."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Print the streams, codec, size, fps, frame count, duration, rotation, pixel format and depth of a video."""
    with reported_errors(debug=debug):
        info = probe_video(input, fps=fps)
    if as_json:
        print(json.dumps(info.to_dict(), indent=2))
        return
    console = Console()
    console.print(f"[bold]{info.path}[/] ({info.format})", highlight=False)
    console.print(f"video: {info.codec} {info.width}x{info.height}, {info.fps:.3f} fps, "
                  f"{info.frames if info.frames is not None else '?'} frames, "
                  f"{info.duration if info.duration is not None else '?'} s, rotation {info.rotation}°, "
                  f"time base {info.time_base}, {info.pix_fmt} ({info.bits} bits)"
                  + (f", timecode {info.timecode}" if info.timecode else ""), highlight=False)
    table = Table("#", "type", "codec", "details")
    for s in info.streams:
        table.add_row(str(s.index), s.type, s.codec, ", ".join(f"{k}={v}" for k, v in s.extra.items()))
    console.print(table)
