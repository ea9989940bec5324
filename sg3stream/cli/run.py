"""`sg3stream run INPUT -o OUTPUT`: the main job."""
from __future__ import annotations

from pathlib import Path

import typer

from ..report import make_reporter
from .app import app
from .common import DEBUG_HELP, reported_errors


@app.command()
def run(
    input: Path = typer.Argument(..., help="Video to process."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the result (.mp4, .mkv, .mov)."),
    edit: list[str] = typer.Option([], "--edit", help="NAME[:STRENGTH], repeatable: a named direction of the "
                                   "generator, a .npy (W) or .npz (StyleSpace) file, or s:LAYER:CHANNEL."),
    edit_ramp: bool = typer.Option(False, "--edit-ramp", help="Ramp the edits' strength from 0 to full over the clip."),
    expand: str = typer.Option(None, help="Field-of-view expansion LEFT,RIGHT,TOP,BOTTOM in generator pixels."),
    output_mode: str = typer.Option("full", help="full (the edited frame), crop (the edited crop) or side-by-side "
                                    "(input | reconstruction | edit)."),
    encoder: str = typer.Option(None, help="ReStyle encoder checkpoint (path or cached name); default: demo."),
    generator: str = typer.Option(None, help="Generator overriding the encoder's (path, cached name or demo)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda[:N]."),
    engine: str = typer.Option("torch", help="Engine for inversion and rendering: torch, onnx or tensorrt."),
    compile: bool = typer.Option(False, "--compile", help="Run the generator through torch.compile at fixed batch "
                                 "shapes (CUDA graphs on CUDA). Compiling takes minutes: for long clips."),
    n_iters: int = typer.Option(3, help="ReStyle iterations per frame."),
    crop: str = typer.Option("smooth", help="Crop of the frame: smooth (follows the head) or fixed (first frame's)."),
    align_smoothing: float = typer.Option(1.0, help="Gaussian sigma (frames) smoothing the aligned quads; 0 = off."),
    landmark_workers: int = typer.Option(None, help="Landmark processes (default: half the cores, at most 4)."),
    smooth_sigma: float = typer.Option(0.0, help="Extra Gaussian smoothing (frames) of codes and transforms."),
    fine_layers: int = typer.Option(9, help="W+ index from which layers are replaced by their running clip mean."),
    no_demo_label: bool = typer.Option(False, "--no-demo-label", help="Do not burn the 'demo model' caption into "
                                       "outputs made with the demo model (the file's metadata still says so)."),
    passthrough: bool = typer.Option(False, "--passthrough", help="Only decode and encode (no face processing)."),
    reference_mode: bool = typer.Option(False, "--reference-mode", help="Process like the paper's code: one frame "
                                        "per model call, no two stages at work together (for speed comparisons)."),
    decoder: str = typer.Option("pyav", help="Decoder: pyav or decord."),
    hwdec: str = typer.Option("auto", help="GPU decoding: auto (NVDEC when a CUDA GPU decodes the clip), cuda "
                              "(required) or none."),
    batch_size: int = typer.Option(8, help="Frames per batch flowing between stages."),
    queue_size: int = typer.Option(4, help="Batches each queue between two stages may hold."),
    stall_timeout: float = typer.Option(600.0, min=0, help="Fail the run when a stage holds work without progress for "
                                        "this many seconds (a hung worker); 0 = off."),
    codec: str = typer.Option("libx264", help="Output video codec (FFmpeg encoder name), or auto: h264_nvenc on an "
                              "NVIDIA GPU, libx264 elsewhere."),
    crf: int = typer.Option(18, help="Quality for libx264/libx265 (lower is better)."),
    preset: str = typer.Option("fast", help="Encoder speed preset for libx264/libx265."),
    artifacts: Path = typer.Option(None, help="Folder for run.json and the stages' artifacts."),
    pti_steps: int = typer.Option(0, help="Pivotal tuning of the generator on the clip, steps (0 = off; the "
                                  "reference uses 8000). Adds a first pass over the clip."),
    pti_lr: float = typer.Option(3e-4, help="PTI learning rate (Adam)."),
    pti_frames: int = typer.Option(64, help="PTI training frames, evenly spread over the clip's faces."),
    pti_batch: int = typer.Option(1, help="PTI frames per step."),
    pti_seed: int = typer.Option(0, help="PTI seed (sample order, regularisation)."),
    pti_reg_every: int = typer.Option(1, help="PTI locality regularisation every N steps (0 = off)."),
    pti_checkpoint_every: int = typer.Option(500, help="PTI checkpoint every N steps (0 = only at the end)."),
    pti_checkpoint_dir: Path = typer.Option(None, help="PTI checkpoint folder (default: ARTIFACTS/pti, else "
                                            ".OUTPUT.pti beside the output)."),
    resume: bool = typer.Option(False, "--resume", help="Continue PTI from its last checkpoint."),
    save_generator: Path = typer.Option(None, help="Write the PTI-tuned generator here (.safetensors; reuse it "
                                        "with --generator)."),
    lpips_weights: Path = typer.Option(None, help="LPIPS linear heads (lpips' weights/v0.1/vgg.pth or alex.pth) "
                                       "for PTI; the backbone comes from the torch hub cache. Default: MS-SSIM."),
    log_format: str = typer.Option("rich", help="rich (progress bar) or json (JSON lines, for headless jobs)."),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Invert and edit the face in a video; write the video back with its timing and audio."""
    # Imported here, not at the top: the landmark workers (spawned) import this command line as their main
    # module, and should not load torch and the models for nothing (~300 MB and a second each).
    with reported_errors(debug=debug):  # SIGTERM while torch loads is an interruption too
        from ..job import RunOptions, run_video

        reporter = make_reporter(log_format)
    options = RunOptions(input=input, output=output, decoder=decoder, hwdec=hwdec, batch_size=batch_size,
                         queue_size=queue_size, codec=codec, crf=crf, preset=preset, artifacts=artifacts,
                         stall_timeout=stall_timeout,
                         encoder=encoder, generator=generator, device=device, engine=engine, compile=compile,
                         n_iters=n_iters, crop=crop, align_smoothing=align_smoothing,
                         landmark_workers=landmark_workers, smooth_sigma=smooth_sigma, fine_layers=fine_layers,
                         edits=list(edit), edit_ramp=edit_ramp, expand=expand, output_mode=output_mode,
                         demo_label=not no_demo_label,
                         passthrough=passthrough, reference_mode=reference_mode, pti_steps=pti_steps, pti_lr=pti_lr,
                         pti_frames=pti_frames, pti_batch=pti_batch, pti_seed=pti_seed, pti_reg_every=pti_reg_every,
                         pti_checkpoint_every=pti_checkpoint_every, pti_checkpoint_dir=pti_checkpoint_dir,
                         resume=resume, save_generator=save_generator, lpips_weights=lpips_weights)
    with reported_errors(reporter, debug), reporter.capturing_warnings():
        summary = run_video(options, reporter)
        reporter.finish(summary)
