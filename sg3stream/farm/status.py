"""`sg3stream farm status`: where each job of a job file stands, read from the manifests (no Ray needed).

    done     the output exists and matches the checksum its manifest recorded
    partial  some segments are done (or the job failed, or its output changed since)
    pending  nothing done yet, or the job's options or input changed since its manifest was written
"""
from __future__ import annotations

from pathlib import Path

from .jobs import FarmJob
from .manifest import file_matches, job_hash, load_manifest


def job_status(job: FarmJob) -> dict:
    manifest = load_manifest(job.manifest_path)
    status = {"job": job.name, "output": str(job.options.output), "state": "pending", "segments_done": 0,
              "segments": None, "segments_failed": 0, "joins_at_cuts": None, "error": None}
    if manifest is None:
        return status
    if not Path(job.options.input).is_file() or manifest["job_hash"] != job_hash(job):
        status["error"] = "options or input changed since the last run: it will start over"
        return status
    segments = manifest["segments"]
    status.update(segments=len(segments), segments_done=sum(s["state"] == "done" for s in segments),
                  segments_failed=sum(s["state"] == "failed" for s in segments), error=manifest.get("error"),
                  joins_at_cuts=sum(bool(s.get("start_at_cut")) for s in segments))  # segments.py: less context
    if manifest["state"] == "done" and file_matches(job.options.output, manifest["output_sha256"]):
        status["state"] = "done"
    elif manifest["state"] == "done":
        status.update(state="partial", error="the output is missing or changed since it was written")
    elif status["segments_done"] or status["segments_failed"]:
        status["state"] = "partial"
    return status
