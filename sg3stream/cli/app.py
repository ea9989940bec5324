"""The typer application every command module registers itself on."""
import typer

app = typer.Typer(
    name="sg3stream",
    help="Streaming StyleGAN3 face inversion and editing for real videos.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
