"""What every command shares: turning errors into one clear line and an exit code."""
from __future__ import annotations

import contextlib
import os
import sys
import traceback
from typing import Iterator

import typer

from ..errors import StageError, UserError
from ..pipeline.runner import Interrupted, interrupt_on_signals, threads_left_running
from ..report import Reporter

# Exit codes, for headless jobs: 1 bad input or a failed stage, 130 interrupted (as shells report Ctrl-C).
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

DEBUG_HELP = "Show the full traceback of an error."

# typer's exits and usage errors (exit 2) are already what they should be. The base of its usage errors is not
# exported (typer vendors click), so it is found through one that is.
_TYPER_EXITS = (typer.Exit, typer.Abort,
                next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"))


@contextlib.contextmanager
def reported_errors(reporter: Reporter | None = None, debug: bool = False) -> Iterator[None]:
    """Report any error as one line and exit 1, an interruption (Ctrl-C or SIGTERM) as one line and exit 130.

    A traceback only with --debug. SIGTERM acts as Ctrl-C for the whole block, so that whatever runs (the pipeline,
    the final write) cleans up on the way out; a second signal does not interrupt that cleanup.
    """
    reporter = reporter or Reporter()
    restore = interrupt_on_signals()
    try:
        yield
    except _TYPER_EXITS:
        raise
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every failure ends as one line
        reporter.close()
        if debug:
            traceback.print_exc(file=sys.stderr)
        if isinstance(e, (Interrupted, KeyboardInterrupt)):
            code, message = EXIT_INTERRUPTED, "interrupted; nothing was written to the output path"
        elif isinstance(e, (UserError, StageError)):
            code, message = EXIT_ERROR, str(e)
        else:  # not one of ours (a full disk, out of memory, a bug): still one line
            text = " ".join(str(e).split())
            code, message = EXIT_ERROR, f"{type(e).__name__}: {text}" if text else type(e).__name__
            if not debug:
                message += " (--debug shows the traceback)"
        reporter.error(message)
        _exit_now_if_threads_left(code)
        raise typer.Exit(code) from None
    finally:
        restore()


def _exit_now_if_threads_left(code: int) -> None:
    """A pipeline worker still inside a native call (torch) when the run gave up on it: a normal exit would run
    libtorch's static destructors under it and abort (exit 134). The output is already removed: end right here."""
    if threads_left_running():
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed pipe must not stop the exit
                stream.flush()
        os._exit(code)
