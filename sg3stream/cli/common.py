"""What every command shares: turning errors into one clear line and an exit code."""
from __future__ import annotations

import contextlib
import sys
import traceback
from typing import Iterator

import typer

from ..errors import StageError, UserError
from ..pipeline.runner import Interrupted
from ..report import Reporter

# Exit codes, for headless jobs: 1 bad input or a failed stage, 130 interrupted (as shells report Ctrl-C).
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

DEBUG_HELP = "Show the full traceback of an error."


@contextlib.contextmanager
def reported_errors(reporter: Reporter | None = None, debug: bool = False) -> Iterator[None]:
    """Report UserError, StageError and interruptions as one line (a traceback only with --debug)."""
    reporter = reporter or Reporter()
    try:
        yield
    except (UserError, StageError, Interrupted, KeyboardInterrupt) as e:
        reporter.close()
        if debug:
            traceback.print_exc(file=sys.stderr)
        if isinstance(e, (Interrupted, KeyboardInterrupt)):
            reporter.error("interrupted; nothing was written to the output path")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        reporter.error(str(e))
        raise typer.Exit(EXIT_ERROR) from None
