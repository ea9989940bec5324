"""`sg3stream farm run|status JOBS.yaml`: many jobs and long clips on a Ray cluster (sg3stream/farm/).

Exit codes of `farm run`: 0 every job done (now or before), 1 a bad job file or input (nothing was started),
2 some jobs failed (after retries; the others finished, and a new run resumes the failed ones), 130 interrupted.
`farm status` exits 0 whatever the jobs' states (1 for a bad job file).
"""
from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..report import LOG_FORMATS, make_reporter
from .app import app
from .common import DEBUG_HELP, reported_errors

EXIT_JOBS_FAILED = 2

farm_app = typer.Typer(help="Run job files on a Ray cluster: many jobs, long clips in segments, resumable.",
                       no_args_is_help=True)
app.add_typer(farm_app, name="farm")


@farm_app.command("run")
def farm_run(
    jobs_file: Path = typer.Argument(..., help="YAML job file (see sg3stream/farm/jobs.py)."),
    address: str = typer.Option("local", help="local (start Ray on this machine), auto (a running cluster) or "
                                "ray://HOST:PORT."),
    retries: int = typer.Option(2, help="How many times a segment whose worker died is run again."),
    log_format: str = typer.Option("rich", help=f"{' or '.join(LOG_FORMATS)} (JSON lines on stdout)."),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Run every job of JOBS_FILE; finished jobs and segments of an earlier run are skipped."""
    from ..farm.jobs import load_job_file
    from ..farm.runner import run_farm

    with reported_errors(debug=debug):
        reporter = make_reporter(log_format)
    with reported_errors(reporter, debug), reporter.capturing_warnings():
        jobs = load_job_file(jobs_file)
        summary = run_farm(jobs, address=address, reporter=reporter, retries=retries)
    if summary["failed"]:
        raise typer.Exit(EXIT_JOBS_FAILED)


@farm_app.command("status")
def farm_status(
    jobs_file: Path = typer.Argument(..., help="YAML job file."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object with a list of jobs on stdout."),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Per job: done, partial or pending, and segments done of total, from the manifests beside the outputs."""
    from ..farm.jobs import load_job_file
    from ..farm.status import job_status

    with reported_errors(debug=debug):
        statuses = [job_status(job) for job in load_job_file(jobs_file)]
    if as_json:
        print(json.dumps({"jobs": statuses}, indent=1))
        return
    table = Table("job", "state", "segments", "note")
    for s in statuses:
        segments = f"{s['segments_done']}/{s['segments']}" if s["segments"] is not None else "-"
        if s["segments_failed"]:
            segments += f" ({s['segments_failed']} failed)"
        table.add_row(s["job"], s["state"], segments, s["error"] or "")
    Console().print(table)
