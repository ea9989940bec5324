"""`sg3stream chain`: the chain of stages and the keys each declares, as the builder makes it (no model loads)."""
from __future__ import annotations

import json

import typer

from .app import app
from .common import DEBUG_HELP, reported_errors


def chain_markdown(purpose: str = "run") -> str:
    """The chain as a markdown table: stage, what it reads, what it writes (shape per frame or face), context,
    what goes after it. The README's architecture section is this table (a test keeps it so)."""
    from ..chain import describe_chain

    rows = ["| stage | reads | writes | context (before, after) | dropped after it |", "| --- | --- | --- | --- | --- |"]
    for row in describe_chain(purpose)["stages"]:
        writes = ", ".join(f"`{k}` {shape}" for k, shape in row["writes"].items()) or "—"
        reads = ", ".join(f"`{k}`" for k in row["reads"]) or "—"
        drops = ", ".join(f"`{k}`" for k in row["drops"]) or "—"
        rows.append(f"| {row['stage']} | {reads} | {writes} | {row['context'][0]}, {row['context'][1]} | {drops} |")
    return "\n".join(rows)


@app.command()
def chain(
    purpose: str = typer.Option("run", help="run (on a file: the picture decoded again for the paste), pti "
                                "(PTI's first pass) or segment (a farm segment)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Show the chain of stages with the keys each reads and writes, and where each key is dropped."""
    from ..chain import describe_chain

    with reported_errors(debug=debug):
        described = describe_chain(purpose)
        print(json.dumps(described, indent=2) if as_json else chain_markdown(purpose))
