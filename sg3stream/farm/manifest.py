"""OUTPUT.manifest.json: the state of a farm job, beside its output, so that a second run resumes it.

    {
      "format": "sg3stream-farm-manifest/1",
      "job_hash": "…",               # options, segment_frames, input size and mtime, sg3stream version
      "input": "/abs/in.mp4", "output": "/abs/out.mp4",
      "total_frames": 96, "context_frames": 40, "segment_frames": 48,
      "cuts": [50],                  # the clip's cuts (segments.find_cuts); null: not looked for (one segment)
      "state": "pending" | "running" | "done" | "failed",
      "segments": [{"number": 0, "start": 0, "stop": 50, "decode_start": 0, "decode_stop": 52,
                    "start_at_cut": false, "stop_at_cut": true,   # which ends are cuts (less context decoded)
                    "state": "pending" | "running" | "done" | "failed", "attempts": 1, "error": null,
                    "file": "seg-0000.mkv", "sha256": "…", "pts_file": "seg-0000.json", "pts_sha256": "…",
                    "frames": 50, "found_face": true}],
      "output_sha256": "…", "output_frames": 96, "error": null, "updated": 1764000000.0
    }

Only the driver writes it (workers return their results), always to a temporary file renamed over it.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from .. import __version__
from ..errors import UserError
from .jobs import FarmJob

FORMAT = "sg3stream-farm-manifest/1"
# Options that change neither the frames nor the file: changing them does not redo finished work.
NOT_HASHED = {"input", "output", "landmark_workers", "queue_size", "decoder", "hwdec"}
STATES = ("pending", "running", "done", "failed")


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_matches(path: str | os.PathLike, sha256: str | None) -> bool:
    return bool(sha256) and Path(path).is_file() and sha256_file(path) == sha256


def job_hash(job: FarmJob) -> str:
    """What the output depends on. The input is identified by size and modification time (not re-read)."""
    options = {k: v for k, v in job.options.to_dict().items() if k not in NOT_HASHED}
    stat = Path(job.options.input).stat()
    identity = {"options": options, "segment_frames": job.segment_frames, "input": str(job.options.input),
                "input_size": stat.st_size, "input_mtime_ns": stat.st_mtime_ns, "version": __version__}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def load_manifest(path: Path) -> dict | None:
    """The manifest, or None when there is none; a damaged one is an error (delete it to start over)."""
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read the manifest {path} ({e}); delete it to start the job over") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"{path} is not a manifest this version of sg3stream understands; delete it to start over")
    return manifest


def save_manifest(path: Path, manifest: dict) -> None:
    """Write atomically: a temporary file beside it, then a rename (readers never see half a manifest)."""
    manifest["updated"] = time.time()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path)


def new_manifest(job: FarmJob, hash_: str, total_frames: int, context: int, segments: list,
                 cuts: list[int] | None = None) -> dict:
    return {
        "format": FORMAT,
        "job_hash": hash_,
        "input": str(job.options.input),
        "output": str(job.options.output),
        "total_frames": total_frames,
        "context_frames": context,
        "segment_frames": job.segment_frames,
        "cuts": None if cuts is None else [int(c) for c in cuts],
        "state": "pending",
        "segments": [{**s.to_dict(), "state": "pending", "attempts": 0, "error": None, "file": None,
                      "sha256": None, "pts_file": None, "pts_sha256": None, "frames": None, "found_face": None}
                     for s in segments],
        "output_sha256": None,
        "output_frames": None,
        "error": None,
    }


def segment_is_done(entry: dict, work_dir: Path) -> bool:
    """Done, and its files are still what was written."""
    return (entry["state"] == "done" and file_matches(work_dir / (entry["file"] or ""), entry["sha256"])
            and file_matches(work_dir / (entry["pts_file"] or ""), entry["pts_sha256"]))


def output_is_done(manifest: dict | None, hash_: str, output: Path) -> bool:
    return (manifest is not None and manifest["job_hash"] == hash_ and manifest["state"] == "done"
            and file_matches(output, manifest["output_sha256"]))
