"""`sg3stream bench`: frames/s per stage and end to end, and faces/s where the work is per face, on generated clips and
random weights (no data needed)."""
from __future__ import annotations

import json
import platform

import typer
from rich.console import Console
from rich.table import Table

from .app import app
from .common import DEBUG_HELP, reported_errors

SECTIONS = ("pipeline", "run", "synthesis", "align", "inversion", "pti", "memory", "fidelity", "eval", "reedit")
# The speed benches; fidelity (what the pipeline itself loses, bench/fidelity.py: 15 runs and their scoring) and
# eval (`eval` against `run` on a 720p clip, bench/eval_speed.py) and reedit (`run --from` against a full run,
# bench/reedit.py) are asked for by name.
DEFAULT_SECTIONS = tuple(s for s in SECTIONS if s not in ("fidelity", "eval", "reedit"))


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _run_sections(sections: list[str], frames: int, sizes: tuple[str, ...], batch_size: int, queue_size: int,
                  config: str, engine: str, on_cuda: bool, compile: bool = False) -> dict:
    report: dict = {"device": _device()}
    if "pipeline" in sections:
        from sg3stream.bench.pipeline import bench_pipeline

        report["pipeline"] = bench_pipeline(frames=frames, sizes=sizes, batch_size=batch_size, queue_size=queue_size)
    if "run" in sections:
        from sg3stream.bench.run import bench_run_against_reference

        report["run"] = bench_run_against_reference(frames=frames, size=sizes[0], batch_size=batch_size,
                                                    queue_size=queue_size, engine=engine, compile=compile,
                                                    generator=None if config == "demo" else config)
    if "synthesis" in sections:
        from sg3stream.bench.generator import bench_synthesis

        report["synthesis"] = bench_synthesis(config, batch_sizes=(1, 8, 32) if on_cuda else (1, 8),
                                              device="cuda" if on_cuda else "cpu", time_budget_s=60)
    if "align" in sections:
        from sg3stream.bench.align import bench_align

        report["align"] = bench_align(frames=min(frames, 48), sizes=sizes, batch_size=batch_size)
    if "inversion" in sections:
        from sg3stream.bench.inversion import bench_inversion

        report["inversion"] = bench_inversion("torch", (1, 8, 32) if on_cuda else (1, 4),
                                              "cuda" if on_cuda else "cpu")
    if "pti" in sections:
        from sg3stream.bench.pti import bench_pti

        # on CUDA: the custom kernels against the torch reference ops, at the same configuration
        report["pti"] = bench_pti(config, (1, 4), "cuda" if on_cuda else "cpu",
                                  ops_impl=["cuda", "torch"] if on_cuda else "torch", steps=5 if on_cuda else 2)
    if "memory" in sections:
        from sg3stream.bench.memory import bench_memory
        from sg3stream.bench.pipeline import SIZES

        # the main job at `frames` and 4x `frames` frames, each in a fresh process: the peak should not grow; and
        # 4x `frames` frames with two faces per frame: the peak should stay near the one-face clip's
        width, height = SIZES[sizes[0]]
        report["memory"] = bench_memory((frames, 4 * frames), width, height, batch_size=batch_size,
                                        queue_size=queue_size, generator=None if config == "demo" else config)
    if "fidelity" in sections:
        from sg3stream.bench.fidelity import bench_fidelity

        report["fidelity"] = bench_fidelity(frames=frames)
    if "eval" in sections:
        from sg3stream.bench.eval_speed import bench_eval_speed

        report["eval"] = bench_eval_speed(frames=frames)
    if "reedit" in sections:
        from sg3stream.bench.reedit import bench_reedit

        report["reedit"] = bench_reedit(frames=frames)
    return report


@app.command()
def bench(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables."),
    sections: str = typer.Option(",".join(DEFAULT_SECTIONS), help=f"Which benches: {', '.join(SECTIONS)} (fidelity: "
                                 "the oracle generator's loss per smoothing setting, only when named)."),
    frames: int = typer.Option(48, help="Frames per generated clip."),
    sizes: str = typer.Option("480p,1080p", help="Clip sizes: 480p, 1080p (the run bench uses the first)."),
    config: str = typer.Option(None, help="Generator: demo or sg3-r-1024 (random weights: speed does not depend on "
                               "them); default demo on CPU, sg3-r-1024 on CUDA."),
    engine: str = typer.Option("torch", help="Encoder engine for the run bench: torch, onnx or tensorrt."),
    compile: bool = typer.Option(False, "--compile", help="Run bench: the generator through torch.compile (both "
                                 "modes; compiling takes minutes, use a few hundred --frames)."),
    batch_size: int = typer.Option(8, help="Frames per batch."),
    queue_size: int = typer.Option(4, help="Batches per queue."),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Time each stage and the whole pipeline on generated clips."""
    import torch

    chosen = [s.strip() for s in sections.split(",") if s.strip()]
    size_list = tuple(s.strip() for s in sizes.split(",") if s.strip())
    with reported_errors(debug=debug):
        unknown = set(chosen) - set(SECTIONS) or set(size_list) - {"480p", "1080p"}
        if unknown:
            from ..errors import UserError

            raise UserError(f"unknown bench section or size {sorted(unknown)}; sections: {', '.join(SECTIONS)}")
        on_cuda = torch.cuda.is_available()
        config = config or ("sg3-r-1024" if on_cuda else "demo")
        report = _run_sections(chosen, frames, size_list, batch_size, queue_size, config, engine, on_cuda, compile)
    if as_json:
        print(json.dumps(report, indent=2, default=str))
        return
    print_report(report, Console())


def _stage_table(stages: list[dict]) -> Table:
    """frames/s per stage, and faces/s for the stages that work per face (invert, smooth, edit, render, paste: the
    column only when some stage counts faces, "-" for the others)."""
    faces = any(s.get("faces_per_s") is not None for s in stages)
    table = Table(*(["stage", "frames/s"] + (["faces/s"] if faces else []) + ["busy", "starved", "blocked"]))
    for s in stages:
        per_face = ([f"{s['faces_per_s']:.1f}" if s.get("faces_per_s") is not None else "-"] if faces else [])
        table.add_row(s["name"], f"{s['frames_per_s']:.1f}", *per_face, f"{s['busy_fraction']:.0%}",
                      f"{s['wait_in_fraction']:.0%}", f"{s['wait_out_fraction']:.0%}")
    return table


def print_report(report: dict, console: Console) -> None:
    console.print(f"[bold]device:[/] {report['device']}", highlight=False)
    for clip in report.get("pipeline", []):
        console.print(f"\n[bold]decode -> encode, {clip['clip']}:[/] {clip['end_to_end_fps']:.1f} frames/s end to end",
                      highlight=False)
        console.print(_stage_table(clip["stages"]))
    if "run" in report:
        for mode in ("streaming", "reference"):
            run = report["run"][mode]
            per_face = (f", {run['faces_per_s']:.2f} faces/s ({run['faces_inverted']} faces in {run['frames']} "
                        f"frames)" if run.get("faces_per_s") is not None else "")
            console.print(f"\n[bold]main job, {mode} mode ({run['generator']}, --edit smile), {run['clip']}:[/] "
                          f"{run['end_to_end_fps']:.2f} frames/s{per_face} end to end", highlight=False)
            console.print(_stage_table(run["stages"]))
            used = run.get("acceleration", {})
            console.print("ran with: " + ", ".join(f"{k} {v}" for k, v in used.items()), highlight=False)
            gpu = run.get("gpu", {})
            if gpu.get("available"):
                console.print(f"gpu utilisation: mean {gpu['utilisation_mean_percent']:.0f}%, "
                              f"max {gpu['utilisation_max_percent']:.0f}%, memory {gpu['memory_max_used_gib']:.1f} GiB",
                              highlight=False)
        console.print(f"[bold]speed-up over the reference mode: {report['run']['speedup_vs_reference']:.2f}x",
                      highlight=False)
        if "note" in report["run"]:
            console.print(f"note: {report['run']['note']}", highlight=False)
    if report.get("memory"):
        _print_memory(report["memory"], console)
    if report.get("reedit"):
        r = report["reedit"]
        console.print(f"\n[bold]re-edit from artifacts, {r['clip']}:[/] full run {r['full_s']:.1f} s, `--from` "
                      f"{r['reedit_s']:.1f} s: {r['full_over_reedit']:.1f}x faster; equal to a full run with its "
                      f"edit: {r['reedit_equals_full_run']}", highlight=False)
    if report.get("eval"):
        e = report["eval"]
        console.print(f"\n[bold]eval against run, {e['clip']}:[/] run {e['run_s']:.1f} s; eval {e['eval_s']:.1f} s "
                      f"({e['eval_over_run']:.2f}x the run, identity: {e['eval_identity']}); eval --artifacts without "
                      f"identity {e['eval_from_artifacts_without_identity_s']:.1f} s "
                      f"({e['eval_from_artifacts_over_run']:.2f}x)", highlight=False)
    for name in ("synthesis", "align", "inversion", "pti", "fidelity"):
        rows = report.get(name)
        if not rows:
            continue
        keys = [k for k in rows[0] if not isinstance(rows[0][k], (list, dict))]
        table = Table(*keys, title=name)
        for row in rows:
            table.add_row(*[f"{row.get(k):.3g}" if isinstance(row.get(k), float) else str(row.get(k)) for k in keys])
        console.print(table)


def _print_memory(rows: list[dict], console: Console) -> None:
    table = Table("clip", "faces", "frames", "faces inverted", "most in flight", "peak RSS", "ratio", "worker peak",
                  "ratio", "vs one face", title="peak memory of the main job against the clip's length (ratio: "
                  "against the first row), and with two faces (vs one face: against the one-face clip of its length)")
    for r in rows:
        table.add_row(r["clip"], str(r.get("faces", 1)), str(r["frames"]), str(r.get("faces_inverted")),
                      str(r["frames_in_flight_max"]), f"{r['peak_rss_mib']:.0f} MiB", f"{r['peak_rss_ratio']:.2f}",
                      f"{r['workers_peak_rss_mib']:.0f} MiB", f"{r['workers_peak_rss_ratio']:.2f}",
                      f"{r['peak_rss_vs_one_face']:.2f}" if "peak_rss_vs_one_face" in r else "")
    console.print(table)
    in_flight = max(r["frames_in_flight_max"] for r in rows)
    if rows[0]["frames"] <= in_flight:
        # the pipeline holds up to this many frames: below it, a longer clip means more frames held
        console.print(f"the shortest clip ({rows[0]['frames']} frames) is not longer than the most frames in flight "
                      f"({in_flight}): below the pipeline's bound a longer clip holds more frames at once, so memory "
                      "grows with it; compare longer clips (--frames)", highlight=False)
