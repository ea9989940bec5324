"""The typer application every command module registers itself on."""
import typer

from .. import __version__

app = typer.Typer(
    name="sg3stream",
    help="Streaming StyleGAN3 face inversion and editing for real videos.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"sg3stream {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    """Streaming StyleGAN3 face inversion and editing for real videos."""
