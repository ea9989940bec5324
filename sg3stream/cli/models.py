"""`sg3stream models list|download|convert`: the official weights and the project's own generator format."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from .app import app
from .common import DEBUG_HELP, reported_errors

models_app = typer.Typer(help="Official weights: list, download; convert generators to the project's format.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def list_models() -> None:
    """The known official checkpoints: source, size, sha256, and whether they are in the cache."""
    from ..models.download import cached_path, models_dir
    from ..models.registry import REGISTRY

    table = Table("name", "kind", "cached", "size", "sha256", "source")
    for name, entry in REGISTRY.items():
        cached = "yes" if cached_path(name).exists() else ""
        size = f"{entry.size / 2**20:.0f} MiB" if entry.size else "?"
        table.add_row(name, entry.kind, cached, size, (entry.sha256 or "unknown")[:16], entry.url or entry.page)
    console = Console()
    console.print(table)
    console.print(f"cache: {models_dir()}", highlight=False)


@models_app.command("download")
def download(
    name: str = typer.Argument(..., help="A name from `sg3stream models list`."),
    force: bool = typer.Option(False, help="Download again even if cached."),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Download an official checkpoint into the cache (resumable, checksum-verified where the sum is known)."""
    from ..models.download import download_model

    with reported_errors(debug=debug), Progress(
            "[bold]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True)) as bar:
        task = bar.add_task(name, total=None)
        path = download_model(name, force=force,
                              progress=lambda done, total: bar.update(task, completed=done, total=total))
    Console().print(f"{name}: {path}", highlight=False)


@models_app.command("convert")
def convert(
    source: Path = typer.Argument(..., help="A generator: official pickle, state-dict .pt, or the project's format."),
    target: Path = typer.Argument(..., help="Where to write the project's format (safetensors + JSON config)."),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Convert a generator to the project's own format (safe to load, no pickle)."""
    from ..models.loading import convert_generator

    with reported_errors(debug=debug):
        written = convert_generator(source, target)
    Console().print(f"wrote {written}", highlight=False)
