"""`sg3stream eval REFERENCE EDITED`: how good an edited video is against its source."""
from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..report import RichReporter
from .app import app
from .common import DEBUG_HELP, reported_errors

# (key, label, format, how to read it) of the table without --json
ROWS = (
    ("psnr_face", "PSNR face", "{:.2f} dB", "higher is closer; 100 = identical"),
    ("ssim_face", "SSIM face", "{:.4f}", "1 = identical"),
    ("psnr_outside", "PSNR outside", "{:.2f} dB", "what the edit must leave alone: 100 = untouched"),
    ("warp_error", "warp error", "{:.4f}", "flicker of EDITED (mean |diff|, 0..1)"),
    ("warp_error_reference", "warp error ref.", "{:.4f}", "the same of REFERENCE: the floor"),
    ("tl_id", "TL-ID", "{:.4f}", "identity, adjacent frames; 1 = as steady as the input"),
    ("tg_id", "TG-ID", "{:.4f}", "identity, all pairs of frames; 1 = as steady as the input"),
    ("seam", "seam", "{:.3f}", "edge gradient against the input's; 1 = no seam"),
    ("lpips_face", "LPIPS face", "{:.4f}", "lower is closer; 0 = identical"),
)


@app.command("eval")
def eval_command(
    reference: Path = typer.Argument(..., help="The source video."),
    edited: Path = typer.Argument(..., help="The edited video (same size and length)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    plot: Path | None = typer.Option(None, "--plot", help="Draw the per-frame curves into this PNG."),
    artifacts: Path | None = typer.Option(None, "--artifacts", help="The run's artifacts folder: the face region "
                                          "from its alignment.npz instead of mediapipe."),
    id_model: Path | None = typer.Option(None, "--id-model", help="An ArcFace ONNX model for TL-ID/TG-ID "
                                         "(default: dlib's model when the eval extra is installed)."),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Score an edited video against its source: fidelity, flicker, identity, seam.

    Frame by frame and overall: PSNR and SSIM in the face, PSNR outside it, the warping error of each against
    the source's own, identity consistency (TL-ID, TG-ID), how visible the paste seam is, LPIPS when its weights
    are at hand. The face region comes from the source's landmarks (mediapipe, or the run's alignment.npz)."""
    reporter = RichReporter()
    with reported_errors(reporter, debug=debug), reporter.capturing_warnings():
        from ..eval import evaluate
        from ..eval.plot import plot_per_frame

        started = time.perf_counter()

        def progress(done: int, total: int | None) -> None:
            if reporter.bar is None:
                reporter.start(total, "eval")
            reporter.progress(done, done / max(time.perf_counter() - started, 1e-6))

        result = evaluate(reference, edited, artifacts=artifacts, id_model=id_model, progress=progress)
        reporter.close()
        if plot is not None:
            plot_per_frame(result, plot)
    if as_json:
        print(result.to_json())
        return
    _print_table(result, plot)


def _print_table(result, plot: Path | None) -> None:
    s = result.summary
    console = Console()
    console.print(f"[bold]{result.edited}[/] against [bold]{result.reference}[/]: {s['frames']} frames, "
                  f"{s['frames_with_face']} with a face (region: {result.face_source}), {result.seconds:.1f} s",
                  highlight=False)
    table = Table("measure", "value", "reading")
    for key, label, fmt, reading in ROWS:
        value = s[key]
        table.add_row(label, "n/a" if value is None else fmt.format(value), reading)
    console.print(table)
    for note in s["notes"]:
        console.print(f"note: {note}", highlight=False)
    if plot is not None:
        console.print(f"plot: {plot}", highlight=False)
