"""The run options, declared once: `RunOptions`'s fields with their help text, flag and accepted values.

The command line (`sg3stream run`, cli/run.py), the farm's job files (farm/jobs.py) and the Python API
(`sg3stream.Editor`, api.py) are all derived from this declaration, so an option added here is reachable from each.
Each field's metadata (see `option`):

    help     the help text of the flag (and of the Python API's documentation)
    flags    the command line's names for it: by default `--field-name`
    choices  the accepted values (check_options in job.py refuses others before any model loads)
    low      the least value accepted (same)
    negate   the flag sets the field to False (`--no-demo-label` for demo_label)

This module imports nothing heavy: the command line reads it at start-up, and so do the landmark workers (spawned
processes import the command line as their main module).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import UserError

# Accepted values of the options with a fixed set (tests/test_options.py checks them against the modules that
# implement each: video/decode.py, engines/base.py, render/stages.py).
DECODERS = ("pyav", "decord")
HWDEC = ("auto", "cuda", "none")
ENGINES = ("torch", "onnx", "tensorrt")
OUTPUT_MODES = ("full", "crop", "side-by-side", "layer")
CROPS = ("smooth", "fixed")
REDECODE = ("auto", "on", "off")
LINEAR_TRANSFERS = ("srgb", "bt709", "none")  # colour.py: an EXR's scene-linear values to the models' encoding

MAX_FACES = 4  # --faces all: face slots per frame (each costs an inversion and a render per frame)


def face_slots(faces: str) -> int:
    """--faces -> face slots per frame (F of the per-face keys): all, largest (1) or a positive number."""
    value = str(faces).strip().lower()
    if value == "all":
        return MAX_FACES
    if value == "largest":
        return 1
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise UserError(f"--faces must be all, largest or a number of faces from 1 (got {faces!r})")


# What the models are built from: fixed for an `Editor`'s life (its models are loaded once), per run otherwise.
MODEL_OPTIONS = ("encoder", "generator", "device", "engine", "compile")


def option(default=dataclasses.MISSING, help: str = "", *, flags: tuple[str, ...] = (), choices=None, low=None,
           negate: bool = False, factory=dataclasses.MISSING):
    """A RunOptions field with what the command line, the job files and the API need to know about it."""
    metadata = {"help": help, "flags": flags, "choices": choices, "low": low, "negate": negate}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class RunOptions:
    input: Path = option(help="Video to process, or an image sequence: shot/%04d.png (PNG, TIFF, DPX, EXR) or a "
                         "folder of numbered images.")
    output: Path = option(help="Where to write the result (.mp4, .mkv, .mov), or an image sequence: out/%04d.png "
                          "(numbered as the input sequence, from 0 for a video).", flags=("-o", "--output"))
    fps: float | None = option(None, "Frame rate of an image-sequence input (required for one; 24, 23.976, 30000/1001 "
                               "is written 29.97).")
    allow_gaps: bool = option(False, "Read an input sequence with missing numbers: the frames around a gap are read as "
                              "neighbours and an output sequence keeps the same gaps (else: an error naming them).")
    pix_fmt: str | None = option(None, "Output pixel format (FFmpeg's name, e.g. yuv422p10le, gbrp16le); default: the "
                                 "input's depth kept where the codec can hold it.")
    linear_transfer: str = option("srgb", "How an EXR input's scene-linear values are encoded for the models (and "
                                  "decoded back): srgb (the sRGB curve), bt709 (BT.709's) or none (values already "
                                  "display-referred, 0-1).", choices=LINEAR_TRANSFERS)
    # smoothing and edits
    edits: list[str] = option(help="NAME[:STRENGTH], repeatable: a named direction of the generator, a .npy (W) or "
                              ".npz (StyleSpace) file, or s:LAYER:CHANNEL.", flags=("--edit",), factory=list)
    edit_ramp: bool = option(False, "Ramp the edits' strength from 0 to full over the clip.")
    # rendering and output
    expand: str | None = option(None, "Field-of-view expansion LEFT,RIGHT,TOP,BOTTOM in generator pixels.")
    output_mode: str = option("full", "full (the edited frame), crop (the edited crop), side-by-side "
                              "(input | reconstruction | edit) or layer (the edited faces alone, premultiplied, with "
                              "alpha: ProRes 4444 in .mov or FFV1 RGBA in .mkv, to comp over the input).",
                              choices=OUTPUT_MODES)
    # models
    encoder: str | None = option(None, "ReStyle encoder checkpoint (path or cached name); default: demo.")
    generator: str | None = option(None, "Generator overriding the encoder's (path, cached name or demo).")
    device: str = option("auto", "auto, cpu or cuda[:N].")
    engine: str = option("torch", "Engine for inversion and rendering: torch, onnx or tensorrt.", choices=ENGINES)
    # the synthesis network through torch.compile at fixed shapes (CUDA graphs on CUDA)
    compile: bool = option(False, "Run the generator through torch.compile at fixed batch shapes (CUDA graphs on "
                           "CUDA). Compiling takes minutes: for long clips.")
    n_iters: int = option(3, "ReStyle iterations per frame.", low=1)
    # alignment
    crop: str = option("smooth", "Crop of the frame: smooth (follows the head) or fixed (first frame's).",
                       choices=CROPS)
    align_smoothing: float = option(1.0, "Gaussian sigma (frames) smoothing the aligned quads; 0 = off.", low=0)
    faces: str = option("all", f"Faces edited per frame: all (at most {MAX_FACES}), largest (one face) or a number "
                        "N (the N largest).")
    # faces passed through unchanged (counted per track in run.json's `faces`)
    min_face: float = option(48.0, "Faces smaller than this (the aligned quad's side, source pixels) pass through "
                             "unchanged.", low=0)
    max_yaw: float = option(45.0, "Faces turned further than this from frontal (degrees, estimated from the "
                            "landmarks) pass through unchanged.", low=0)
    min_track_frames: int = option(3, "Faces of a track detected in fewer frames than this around a frame (the "
                                   "alignment window) pass through unchanged.", low=1)
    track: int | None = option(None, "The face track the crop and side-by-side outputs show (default: the largest "
                               "face in each frame).", low=0)
    landmark_workers: int | None = option(None, "Landmark processes (default: half the cores, at most 4).", low=1)
    smooth_sigma: float = option(0.0, "Extra Gaussian smoothing (frames) of codes and transforms.", low=0)
    fine_layers: int = option(9, "W+ index from which layers are replaced by their running clip mean.", low=1)
    fine_window: int = option(60, "Frames on either side of a frame over which the fine layers take their mean.",
                              low=0)
    demo_label: bool = option(True, "Do not burn the 'demo model' caption into outputs made with the demo model "
                              "(the file's metadata still says so).", flags=("--no-demo-label",), negate=True)
    passthrough: bool = option(False, "Only decode and encode (no face processing).")
    # the paper's way: one frame per model call, stages one after the other
    reference_mode: bool = option(False, "Process like the paper's code: one frame per model call, no two stages at "
                                  "work together (for speed comparisons).")
    # video in and out, and the pipeline's shape
    decoder: str = option("pyav", "Decoder: pyav or decord.", choices=DECODERS)
    hwdec: str = option("auto", "GPU decoding: auto (NVDEC when a CUDA GPU decodes the clip), cuda (required) or "
                        "none.", choices=HWDEC)
    batch_size: int = option(8, "Frames per batch flowing between stages.", low=1)
    queue_size: int = option(4, "Batches each queue between two stages may hold.", low=1)
    stall_timeout: float = option(600.0, "Fail the run when a stage holds work without progress for this many "
                                  "seconds (a hung worker); 0 = off.", low=0)
    max_frames_in_flight: int = option(0, "Frames held between decode and encode; 0 = what the chain needs (its "
                                       "windows plus a batch per stage).", low=0)
    redecode: str = option("auto", "Decode the input a second time for the paste instead of holding the frames "
                           "through the smoothing window: on, off or auto (on for a file; frames handed to the Python API "
                           "always ride).", choices=REDECODE)
    codec: str = option("libx264", "Output video codec (FFmpeg encoder name), or auto: h264_nvenc on an NVIDIA GPU, "
                        "libx264 elsewhere.")
    crf: int = option(18, "Quality for libx264/libx265 (lower is better).")
    preset: str = option("fast", "Encoder speed preset for libx264/libx265.")
    artifacts: Path | None = option(None, "Folder for run.json and the stages' artifacts.")
    matte: Path | None = option(None, "Also write the paste's blend mask, frame by frame, aligned with the output "
                                "(.mkv or .mov, lossless FFV1, grey): 0 where the output is the input, 1 where it is "
                                "the edited face.")
    matte_depth: int = option(16, "Bits of the matte: 16 or 8.", choices=(16, 8))
    from_artifacts: Path | None = option(None, "Re-edit: reuse the faces (alignment, smoothed codes) of an earlier "
                                         "run's --artifacts folder on this same input, and run only edit, render, "
                                         "paste and encode.", flags=("--from", "--from-artifacts"))
    # pivotal tuning of the generator on the clip (sg3stream/pti; a first pass when pti_steps > 0)
    pti_steps: int = option(0, "Pivotal tuning of the generator on the clip, steps (0 = off; the reference uses "
                            "8000). Adds a first pass over the clip.", low=0)
    pti_lr: float = option(3e-4, "PTI learning rate (Adam).")
    pti_frames: int = option(64, "PTI training frames, evenly spread over the clip's faces.", low=1)
    pti_batch: int = option(1, "PTI frames per step.", low=1)
    pti_track: int | None = option(None, "Tune PTI on this face track only (default: every track's faces).", low=0)
    pti_seed: int = option(0, "PTI seed (sample order, regularisation).")
    pti_reg_every: int = option(1, "PTI locality regularisation every N steps (0 = off).", low=0)
    pti_checkpoint_every: int = option(500, "PTI checkpoint every N steps (0 = only at the end).", low=0)
    pti_checkpoint_dir: Path | None = option(None, "PTI checkpoint folder (default: ARTIFACTS/pti, else "
                                             ".OUTPUT.pti beside the output).")
    resume: bool = option(False, "Continue PTI from its last checkpoint.")
    save_generator: Path | None = option(None, "Write the PTI-tuned generator here (.safetensors; reuse it with "
                                         "--generator).")
    lpips_weights: Path | None = option(None, "LPIPS linear heads (lpips' weights/v0.1/vgg.pth or alex.pth) for "
                                        "PTI; the backbone comes from the torch hub cache. Default: MS-SSIM.")

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def option_fields() -> list[dataclasses.Field]:
    """Every option but the input and the output, in declaration order."""
    return [f for f in dataclasses.fields(RunOptions) if f.name not in ("input", "output")]


def option_types() -> dict[str, type]:
    """Each field's type, resolved (`str | None` stays a union; see `plain_type`)."""
    return typing.get_type_hints(RunOptions)


def plain_type(hint) -> type:
    """`X | None` -> X: the type a value given on the command line is read as."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args and typing.get_origin(hint) is not list else hint


def flags(f: dataclasses.Field) -> tuple[str, ...]:
    return f.metadata.get("flags") or ("--" + f.name.replace("_", "-"),)


def cli_name(f: dataclasses.Field) -> str:
    """The name of the command line's parameter for a field (the Python name of its long flag: `edit`,
    `no_demo_label`)."""
    return flags(f)[-1].lstrip("-").replace("-", "_")


def aliases() -> dict[str, str]:
    """Other names a job file may use for a field: the command line's (`edit` for `edits`), where it means the
    same value (not for negated flags)."""
    return {cli_name(f): f.name for f in option_fields() if cli_name(f) != f.name and not f.metadata["negate"]}


def checked_value(key: str, value, where: str = ""):
    """`value` if it fits the field's type (int, float, bool, str, Path, list[str], or None), converted where a
    job file or a caller may write it more loosely (a whole number for a float, a string for a path); a UserError
    that names the option otherwise (`where`: what to name before it, a job)."""
    hint = option_types()[key]
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind in (str, Path) and isinstance(value, (str, int, float, Path)) and not isinstance(value, bool):
            return Path(value) if kind is Path else str(value)
        if typing.get_origin(kind) is list and isinstance(value, (list, tuple)) and all(isinstance(v, str)
                                                                                        for v in value):
            return list(value)
    expected = " or ".join(getattr(k, "__name__", str(k)) for k in allowed)
    raise UserError(f"{where + ': ' if where else ''}option '{key}' must be {expected} (got {value!r})")
