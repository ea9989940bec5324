"""`sg3stream run INPUT -o OUTPUT`: the main job.

Its options are not written here: the command's parameters are built from `RunOptions`'s declaration
(sg3stream/options.py: each field's flag, help text and default), and typer reads them from the function's
`__signature__`. Only --log-format and --debug belong to the command line alone.
"""
from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path

import typer

from ..options import RunOptions, cli_name, flags, option_types, plain_type
from ..report import make_reporter
from .app import app
from .common import DEBUG_HELP, reported_errors

# Parameters of the command line alone (not run options): how to report, and whether to show tracebacks.
CLI_ONLY = {
    "log_format": typer.Option("rich", "--log-format", help="rich (progress bar) or json (JSON lines, for headless "
                               "jobs)."),
    "debug": typer.Option(False, "--debug", help=DEBUG_HELP),
}


def cli_parameter(f: dataclasses.Field, hint) -> inspect.Parameter:
    """The typer parameter of one RunOptions field: its flags, help and default as declared."""
    help = f.metadata["help"]
    if f.name == "input":
        info = typer.Argument(..., help=help)
    elif f.metadata["negate"]:  # --no-demo-label: a flag that sets the field to False
        info, hint = typer.Option(False, *flags(f), help=help), bool
    elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
        info = typer.Option(..., *flags(f), help=help)
    else:
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        info = typer.Option(default, *flags(f), help=help)
    return inspect.Parameter(cli_name(f), inspect.Parameter.KEYWORD_ONLY, default=info, annotation=plain_type(hint))


def cli_signature() -> inspect.Signature:
    hints = option_types()
    parameters = [cli_parameter(f, hints[f.name]) for f in dataclasses.fields(RunOptions)]
    parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info,
                                     annotation=type(info.default)) for name, info in CLI_ONLY.items()]
    return inspect.Signature(parameters, return_annotation=None)


def options_from_cli(params: dict) -> RunOptions:
    """The command line's parameters (named as in `cli_signature`) -> RunOptions."""
    values = {}
    for f in dataclasses.fields(RunOptions):
        value = params[cli_name(f)]
        if f.metadata["negate"]:
            value = not value
        elif typing.get_origin(option_types()[f.name]) is list:
            value = list(value)
        values[f.name] = value
    return RunOptions(**values)


def run(**params) -> None:
    """Invert and edit the face in a video; write the video back with its timing and audio."""
    debug = params.pop("debug")
    # Imported here, not at the top: the landmark workers (spawned) import this command line as their main
    # module, and should not load torch and the models for nothing (~300 MB and a second each).
    with reported_errors(debug=debug):  # SIGTERM while torch loads is an interruption too
        from ..job import run_video

        reporter = make_reporter(params.pop("log_format"))
    options = options_from_cli(params)
    with reported_errors(reporter, debug), reporter.capturing_warnings():
        summary = run_video(options, reporter)
        reporter.finish(summary)


run.__signature__ = cli_signature()
run.__annotations__ = {}  # typer takes the types from the signature above, not from `**params`
app.command(name="run")(run)
