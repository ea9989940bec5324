"""`sg3stream bench`: frames/s per stage and end to end, on generated clips (no data needed)."""
from __future__ import annotations

import json
import platform

import typer
from rich.console import Console
from rich.table import Table

from .app import app
from .common import DEBUG_HELP, reported_errors


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


@app.command()
def bench(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables."),
    frames: int = typer.Option(120, help="Frames per generated clip."),
    sizes: str = typer.Option("480p,1080p", help="Clip sizes for the pipeline bench: 480p, 1080p."),
    batch_size: int = typer.Option(8, help="Frames per batch."),
    queue_size: int = typer.Option(4, help="Batches per queue."),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Time each stage and the whole pipeline on generated clips."""
    from sg3stream.bench.pipeline import bench_pipeline

    with reported_errors(debug=debug):
        report = {
            "device": _device(),
            "pipeline": bench_pipeline(frames=frames, sizes=tuple(s.strip() for s in sizes.split(",") if s.strip()),
                                       batch_size=batch_size, queue_size=queue_size),
        }
    if as_json:
        print(json.dumps(report, indent=2))
        return
    console = Console()
    console.print(f"[bold]device:[/] {report['device']}", highlight=False)
    for clip in report["pipeline"]:
        console.print(f"\n[bold]pipeline, {clip['clip']}:[/] {clip['end_to_end_fps']:.1f} frames/s end to end",
                      highlight=False)
        table = Table("stage", "frames/s", "busy", "starved", "blocked")
        for s in clip["stages"]:
            table.add_row(s["name"], f"{s['frames_per_s']:.1f}", f"{s['busy_fraction']:.0%}",
                          f"{s['wait_in_fraction']:.0%}", f"{s['wait_out_fraction']:.0%}")
        console.print(table)
