"""`sg3stream models list|download|convert`: the official weights and the project's own generator format."""
from __future__ import annotations

import json
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from .app import app
from .common import DEBUG_HELP, reported_errors

models_app = typer.Typer(help="Official weights: list, download; convert generators to the project's format.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def list_models(
    as_json: bool = typer.Option(False, "--json", help="Every field (full sha256, URLs, cache paths) as JSON."),
) -> None:
    """The names --generator/--encoder accept: built-ins and official checkpoints, with size, sha256, source and
    whether they are in the cache."""
    from ..models.download import describe_models, models_dir

    rows = describe_models()
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    # Fits 80 columns: URLs are in --json; the source column names the host.
    table = Table("name", "kind", "size", "sha256", "source", "cached", box=box.SIMPLE_HEAD, pad_edge=False,
                  show_edge=False)
    for row in rows:
        if row["kind"] == "built-in":
            table.add_row(row["name"], "built-in", "-", "-", "none", "-")
            continue
        sha = row["sha256"][:10] + ("" if row["sha256_from"] == "registry" else "*") if row["sha256"] else "?"
        table.add_row(row["name"], row["kind"], _size(row["size"]), sha, _source(row["url"]),
                      "yes" if row["cached"] else "")
    console = Console()
    console.print(table)
    console.print("built-in: no file, weights from a fixed seed (demo: for trying the pipeline, not real results; "
                  "sg3-*-1024: benchmarks). ?: not recorded. *: sha256 computed when downloaded (no official sum "
                  "recorded). Full sums and URLs: --json. Get one: sg3stream models download NAME", highlight=False)
    console.print(f"cache: {models_dir()}", highlight=False)


def _size(size: int | None) -> str:
    if size is None:
        return "?"
    if size >= 2 ** 30:
        return f"{size / 2 ** 30:.1f} GiB"
    return f"{size / 2 ** 20:.0f} MiB" if size >= 2 ** 20 else f"{size / 2 ** 10:.0f} KiB"


def _source(url: str | None) -> str:
    if url is None:
        return "by hand"
    host = url.split("/")[2]
    return "NGC" if host.endswith("nvidia.com") else "Drive" if "google" in host else host[:12]


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
