"""The job file: a YAML list of jobs, each an input, an output and any option of `sg3stream run`.

    defaults:             # optional: options every job starts from
      n_iters: 1
    jobs:
      - input: clips/interview.mp4      # relative paths are relative to the job file's folder
        output: out/interview_smile.mp4
        edit: [smile, age:-2]           # `edit` (as on the command line) or `edits`
        segment_frames: 600             # optional: split the clip into segments of this many frames
      - input: clips/short.mov
        output: out/short.mp4
        expand: 0,0,64,0

Option names are the fields of `RunOptions` (declared in options.py), or the command line's name where it differs
(`edit`); an unknown name is an error that names it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import UserError
from ..options import RunOptions, aliases, checked_value

# Options the farm refuses (when set): per-run artifacts are not joined across segments, reference mode is a speed
# comparison of one process. The farm sets the landmark workers itself (one per Ray worker).
UNSUPPORTED = {
    "artifacts": "artifacts are not supported by the farm (they would be split across segments)",
    "from_artifacts": "re-edits (--from) are not supported by the farm (it records no artifacts)",
    "matte": "mattes are not supported by the farm yet (its segments would need joining)",
    # the farm's segments are 8-bit video files: the depth is kept by `sg3stream run`, not by the farm yet
    "pix_fmt": "pix_fmt is not supported by the farm yet (its segments are 8-bit): run deep clips with `sg3stream run`",
    "fps": "fps goes with image sequences, which the farm does not take: run them with `sg3stream run`",
    "allow_gaps": "allow_gaps goes with image sequences, which the farm does not take: run them with `sg3stream run`",
    "reference_mode": "reference_mode is a single-process speed comparison, not supported by the farm",
    # PTI tunes one generator on the whole clip before rendering: not split across workers yet.
    "pti_steps": "PTI is not supported by the farm yet: tune with `sg3stream run --pti-steps N --save-generator "
                 "G.safetensors` and give the job `generator: G.safetensors`",
    "save_generator": "save_generator goes with PTI, which the farm does not run",
    "resume": "resume goes with PTI, which the farm does not run",
}
FARM_KEYS = {"segment_frames"}
ALIASES = aliases()  # {"edit": "edits"}


@dataclass
class FarmJob:
    """One job of a job file: what to run, and how to cut it (segment_frames None: one segment)."""

    name: str
    options: RunOptions
    segment_frames: int | None = None

    @property
    def manifest_path(self) -> Path:
        output = Path(self.options.output)
        return output.with_name(output.name + ".manifest.json")

    @property
    def work_dir(self) -> Path:
        output = Path(self.options.output)
        return output.with_name(f".{output.name}.farm")


def load_job_file(path: str | Path) -> list[FarmJob]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise UserError(f"cannot read the job file {path}: {e.strerror}") from e
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from e
    if isinstance(document, list):
        document = {"jobs": document}
    if not isinstance(document, dict) or not isinstance(document.get("jobs"), list) or not document["jobs"]:
        raise UserError(f"{path}: expected a non-empty list of jobs under 'jobs:'")
    extra = set(document) - {"jobs", "defaults"}
    if extra:
        raise UserError(f"{path}: unknown top-level keys: {', '.join(sorted(extra))} (use 'jobs' and 'defaults')")
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise UserError(f"{path}: 'defaults' must be a mapping of options")
    jobs = []
    for number, entry in enumerate(document["jobs"]):
        if not isinstance(entry, dict):
            raise UserError(f"{path}: job {number + 1} must be a mapping with input, output and options")
        jobs.append(parse_job({**defaults, **entry}, f"job {number + 1}", path.parent))
    outputs = [j.options.output.resolve() for j in jobs]
    duplicates = {str(o) for o in outputs if outputs.count(o) > 1}
    if duplicates:
        raise UserError(f"{path}: several jobs write the same output: {', '.join(sorted(duplicates))}")
    return jobs


def parse_job(entry: dict, name: str, base: Path) -> FarmJob:
    """One job's mapping -> FarmJob; every problem is a UserError that names the job and the key."""
    fields = {f.name: f for f in dataclasses.fields(RunOptions)}
    entry = {ALIASES.get(k, k): v for k, v in entry.items()}
    unknown = sorted(k for k in entry if k not in fields and k not in FARM_KEYS)
    if unknown:
        raise UserError(f"{name}: unknown options: {', '.join(map(str, unknown))} "
                        f"(known: {', '.join(sorted(set(fields) | FARM_KEYS | set(ALIASES)))})")
    for key, reason in UNSUPPORTED.items():
        if entry.get(key):
            raise UserError(f"{name}: {reason}")
    for key in ("input", "output"):
        if not entry.get(key):
            raise UserError(f"{name}: '{key}' is required")
    values = {}
    for key, value in entry.items():
        if key in FARM_KEYS:
            continue
        if key == "edits" and isinstance(value, str):
            value = [value]
        values[key] = checked_value(key, value, where=name)
    for key in ("input", "output"):
        values[key] = (base / Path(values[key]).expanduser()).resolve()
    segment_frames = entry.get("segment_frames")
    if segment_frames is not None and (type(segment_frames) is not int or segment_frames < 1):
        raise UserError(f"{name}: segment_frames must be a positive whole number of frames (got {segment_frames!r})")
    options = RunOptions(**values)
    if segment_frames is not None and options.crop == "fixed" and not options.passthrough:
        raise UserError(f"{name}: crop 'fixed' uses the clip's first face for every frame and cannot be split "
                        "into segments: remove segment_frames or use crop 'smooth'")
    if segment_frames is not None:
        check_no_track_options(options, name)
    return FarmJob(name=f"{name} ({Path(values['output']).name})", options=options, segment_frames=segment_frames)


def check_no_track_options(options: RunOptions, name: str) -> None:
    """Face track ids restart in every segment (each numbers the tracks it sees from 0), so an option that names a
    track would pick different faces in different segments: refused for a segmented job."""
    named = [f"edit '{e}'" for e in options.edits or () if "@" in str(e)]
    # getattr: `track` and `pti_track` are newer fields of RunOptions
    named += [f"{key}: {getattr(options, key)}" for key in ("track", "pti_track")
              if getattr(options, key, None) is not None]
    if named:
        raise UserError(f"{name}: segment_frames cannot go with what names a face track ({', '.join(named)}): "
                        "track numbers restart in every segment")

