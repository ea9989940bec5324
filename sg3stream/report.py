"""How a run talks to its user: a rich progress bar on a terminal, or JSON lines for headless jobs.

Warnings from anywhere in the package go through the `sg3stream` logger; while a run is reported, a
handler forwards them here, so they show up in the chosen format and in run.json.
"""
from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from typing import Any, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .errors import UserError

log = logging.getLogger("sg3stream")
LOG_FORMATS = ("rich", "json")


class Reporter:
    """Collects warnings; subclasses show progress and the summary."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def start(self, total: int | None, description: str) -> None: ...

    def progress(self, done: int, fps: float, stages: list[dict] | None = None) -> None:
        """`stages`: per-stage figures (name, busy_fraction, …) of the run so far."""

    def warning(self, message: str) -> None:
        self.warnings.append(message)

    def info(self, message: str) -> None: ...

    def finish(self, summary: dict[str, Any]) -> None: ...

    def error(self, message: str) -> None:
        print(f"error: {message}", file=sys.stderr, flush=True)

    def close(self) -> None: ...

    @contextlib.contextmanager
    def capturing_warnings(self) -> Iterator[None]:
        handler = _ForwardWarnings(self)
        log.addHandler(handler)
        propagate, log.propagate = log.propagate, False
        try:
            yield
        finally:
            log.removeHandler(handler)
            log.propagate = propagate


class _ForwardWarnings(logging.Handler):
    def __init__(self, reporter: Reporter):
        super().__init__(logging.INFO)
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.reporter.warning(record.getMessage())
        else:
            self.reporter.info(record.getMessage())


class RichReporter(Reporter):
    """Progress bar with fps and ETA on stderr (rich turns animation off when stderr is not a terminal)."""

    def __init__(self) -> None:
        super().__init__()
        self.console = Console(stderr=True)
        self.bar: Progress | None = None
        self.task = None

    def start(self, total, description):
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[fps]:.1f} fps"), TimeElapsedColumn(), TextColumn("ETA"),
                            TimeRemainingColumn(), TextColumn("{task.fields[busiest]}"), console=self.console,
                            transient=False)
        self.bar.start()
        self.task = self.bar.add_task(description, total=total, fps=0.0, busiest="")

    def progress(self, done, fps, stages=None):
        if self.bar is not None:
            self.bar.update(self.task, completed=done, fps=fps, busiest=busiest_stage(stages))

    def warning(self, message):
        super().warning(message)
        self.console.print(f"[yellow]warning:[/] {message}", highlight=False)

    def info(self, message):
        self.console.print(message, highlight=False)

    def finish(self, summary):
        self.close()
        self.console.print(f"[green]wrote[/] {summary['output']}: {summary['frames']} frames in "
                           f"{summary['seconds']:.1f} s ({summary['fps']:.1f} fps)", highlight=False)
        if summary.get("faces"):
            self.console.print(faces_line(summary), highlight=False)

    def close(self):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


class JsonReporter(Reporter):
    """One JSON object per line on stdout: progress (at most every `interval_s`), warnings, summary, error."""

    def __init__(self, interval_s: float = 1.0, stream=None) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.stream = stream or sys.stdout
        self.total = None
        self.last = 0.0

    def emit(self, event: str, **fields: Any) -> None:
        print(json.dumps({"event": event, "time": time.time(), **fields}, default=str), file=self.stream, flush=True)

    def start(self, total, description):
        self.total = total
        self.emit("start", description=description, total=total)

    def progress(self, done, fps, stages=None):
        now = time.perf_counter()
        if now - self.last < self.interval_s:
            return
        self.last = now
        eta = (self.total - done) / fps if self.total and fps > 0 else None
        busy = {s["name"]: round(s["busy_fraction"], 3) for s in stages or []}
        self.emit("progress", frames=done, total=self.total, fps=fps, eta_s=eta, busy=busy)

    def warning(self, message):
        super().warning(message)
        self.emit("warning", message=message)

    def info(self, message):
        self.emit("info", message=message)

    def finish(self, summary):
        self.emit("summary", **summary)

    def error(self, message):
        self.emit("error", message=message)
        super().error(message)


def faces_line(summary: dict) -> str:
    """'faces: 2 tracks, 310 face-frames edited; passed through: 12 small, 3 profile, 0 short'."""
    edited = sum(t["frames_edited"] for t in summary["faces"])
    passed = summary.get("passed_through") or {}
    line = f"faces: {len(summary['faces'])} tracks, {edited} face-frames edited"
    if any(passed.values()):
        line += "; passed through: " + ", ".join(f"{n} {reason}" for reason, n in passed.items())
    return line


def busiest_stage(stages: list[dict] | None) -> str:
    """'busiest: invert 93%' — the stage that limits the run, for the progress bar."""
    if not stages:
        return ""
    top = max(stages, key=lambda s: s["busy_fraction"])
    return f"busiest: {top['name']} {top['busy_fraction']:.0%}"


def make_reporter(log_format: str) -> Reporter:
    if log_format == "json":
        return JsonReporter()
    if log_format == "rich":
        return RichReporter()
    raise UserError(f"--log-format must be one of {', '.join(LOG_FORMATS)} (got {log_format!r})")
