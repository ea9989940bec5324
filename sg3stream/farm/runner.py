"""Ray orchestration: every job's segments as Ray tasks, a join per job, retries, and the manifests.

The driver (this process) is the only writer of the manifests: workers return their results. Retries are made
by the driver rather than by Ray's `max_retries`, so that every attempt is counted in the manifest: a segment
whose worker died (killed, out of memory, node lost: a Ray system error) is submitted again, up to `retries`
more times; an exception raised by the segment itself (bad weights, a damaged input) is not retried, as it
would fail the same way. A job whose segment failed is reported failed; the others go on.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..chain import chain_context, plan_chain
from ..errors import StageError, UserError
from ..job import check_options
from ..pipeline.runner import Interrupted
from ..report import JsonReporter, Reporter
from ..video.decode import FrameReader, packet_pts
from ..video.encode import check_codec, check_output_path, resolve_codec
from .jobs import FarmJob
from .manifest import (job_hash, load_manifest, new_manifest, output_is_done, save_manifest, segment_is_done)
from .segments import Segment, find_cuts, plan_segments

ADDRESS_HELP = "local (start Ray on this machine), auto (the running cluster) or ray://HOST:PORT"


def require_ray():
    try:
        import ray
    except ImportError as e:
        raise UserError("the farm needs Ray, which is not installed: pip install 'sg3stream[farm]'") from e
    return ray


@contextlib.contextmanager
def ray_session(address: str) -> Iterator[Any]:
    """Connect to (or start) Ray for the duration of a farm run; a session already open in this process is used
    as it is and left open."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    if address == "local":
        from ..align.stages import available_cores

        kwargs = dict(num_cpus=available_cores(), include_dashboard=False)
    elif address == "auto" or address.startswith("ray://"):
        kwargs = dict(address=address)
    else:
        raise UserError(f"unknown --address '{address}': use {ADDRESS_HELP}")
    # Ray prints what it hears from the cluster (a worker that died, say) to sys.stdout from a thread of its own,
    # where it shared lines with the JSON events: it goes to stderr for the session (the reporter, made before,
    # keeps writing to the real stdout).
    with contextlib.redirect_stdout(sys.stderr):
        try:
            # Workers' own output would mix into the driver's (JSON) stdout: their warnings come back with results.
            ray.init(**kwargs, logging_level=logging.ERROR, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UserError(f"cannot start or reach Ray at '{address}': {str(e).splitlines()[0]}") from e
        try:
            yield ray
        finally:
            ray.shutdown()


class FarmEvents:
    """Farm events: JSON lines through JsonReporter.emit, or one readable line each for other reporters."""

    def __init__(self, reporter: Reporter):
        self.reporter = reporter
        self.seen_warnings: set[str] = set()

    def __call__(self, event: str, message: str, **fields: Any) -> None:
        if isinstance(self.reporter, JsonReporter):
            self.reporter.emit(event, message=message, **fields)
        else:
            self.reporter.info(message)

    def warning(self, message: str) -> None:
        if message not in self.seen_warnings:  # every segment of a job says the same things: say them once
            self.seen_warnings.add(message)
            self.reporter.warning(message)


@dataclass
class JobRun:
    """A job during one farm run: its manifest and what is left to do."""

    job: FarmJob
    hash: str
    manifest: dict
    skipped: bool = False  # the output was already complete: nothing to do
    failed: bool = False
    joining: bool = False
    started: float = field(default_factory=time.perf_counter)

    @property
    def state(self) -> str:
        return self.manifest["state"]

    def save(self) -> None:
        save_manifest(self.job.manifest_path, self.manifest)


def prepare_job(job: FarmJob) -> JobRun:
    """Check the job's input and output, plan its segments, and take over what an earlier run finished."""
    from ..video.sequence import is_sequence, is_sequence_name

    options = job.options
    if is_sequence(options.input) or is_sequence_name(options.output):
        raise UserError(f"{job.name}: the farm splits video files; run an image sequence with `sg3stream run`")
    if not Path(options.input).is_file():
        raise UserError(f"{job.name}: input not found: {options.input}")
    try:
        check_options(options)  # the checks `sg3stream run` makes before any work
    except UserError as e:
        raise UserError(f"{job.name}: {e}") from None
    check_output_path(options.output, options.input)
    info = FrameReader(options.input).info  # probes: a file that is not a video is a UserError here
    # the container, codec and settings, tried on two frames in memory, as `run` does: not at the join
    check_codec(resolve_codec(options.codec), options.output, crf=options.crf, preset=options.preset,
                size=(info.width, info.height), streams_from=options.input)
    hash_ = job_hash(job)
    manifest = load_manifest(job.manifest_path)
    if output_is_done(manifest, hash_, Path(options.output)):
        return JobRun(job, hash_, manifest, skipped=True)
    total = len(packet_pts(options.input))
    if total == 0:
        raise UserError(f"{job.name}: no video frames in {options.input}")
    chain = plan_chain(options)
    context = chain_context(chain)
    segments = plan_segments(total, job.segment_frames, context, options.batch_size)
    shots = next((s for s in chain.stages if s.name == "shots"), None)
    cuts = None
    if len(segments) > 1 and shots is not None:
        # Boundaries moved to cuts need little context (segments.py). Finding the cuts costs one decode of the
        # clip, so a resumed job takes them from its manifest.
        same_job = manifest is not None and manifest["job_hash"] == hash_
        cuts = manifest.get("cuts") if same_job else None
        if cuts is None:
            cuts = find_cuts(options.input, batch_size=options.batch_size, decoder=options.decoder,
                             hwdec=options.hwdec, **shots.detector_args)
        segments = plan_segments(total, job.segment_frames, context, options.batch_size, cuts,
                                 (shots.context_before, shots.context_after))
    fresh = new_manifest(job, hash_, total, context, segments, cuts)
    if manifest is not None and manifest["job_hash"] == hash_ and _same_plan(manifest, fresh):
        for old, new in zip(manifest["segments"], fresh["segments"]):
            new["attempts"] = old["attempts"]
            if segment_is_done(old, job.work_dir):
                new.update(old)
    fresh["state"] = "running"
    return JobRun(job, hash_, fresh)


def _same_plan(a: dict, b: dict) -> bool:
    keys = ("start", "stop", "decode_start", "decode_stop")
    return [[s[k] for k in keys] for s in a["segments"]] == [[s[k] for k in keys] for s in b["segments"]]


class Farm:
    """Submits segments and joins as Ray tasks and follows them to the end."""

    def __init__(self, ray, runs: list[JobRun], events: FarmEvents, retries: int):
        from . import join, worker

        self.ray, self.runs, self.events, self.retries = ray, runs, events, retries
        gpus = ray.cluster_resources().get("GPU", 0)
        self.segment_resources = {"num_gpus": 1} if gpus >= 1 else {"num_cpus": 1}
        self.segment_task = ray.remote(worker.run_segment).options(max_retries=0, **self.segment_resources)
        self.join_task = ray.remote(join.join_segments).options(max_retries=0, num_cpus=1)
        self.in_flight: dict[Any, tuple[JobRun, dict | None]] = {}  # ref -> (job, segment entry; None: the join)

    def run(self) -> None:
        try:
            for run in self.runs:
                if run.skipped:
                    self.events("job", f"{run.job.name}: already done, skipped", job=run.job.name, state="skipped")
                    continue
                todo = [s for s in run.manifest["segments"] if s["state"] != "done"]
                at_cuts = sum(s["start_at_cut"] for s in run.manifest["segments"])
                joins = len(run.manifest["segments"]) - 1
                self.events("job", f"{run.job.name}: {len(todo)} of {len(run.manifest['segments'])} segments to run "
                            f"({run.manifest['total_frames']} frames, {run.manifest['context_frames']} of context"
                            + (f", {at_cuts} of {joins} joins at cuts)" if joins else ")"),
                            job=run.job.name, state="running", segments=len(run.manifest["segments"]),
                            segments_todo=len(todo), frames=run.manifest["total_frames"], joins_at_cuts=at_cuts)
                for entry in todo:
                    self._submit_segment(run, entry)
                run.save()
                self._join_if_ready(run)
            while self.in_flight:
                ready, _ = self.ray.wait(list(self.in_flight), num_returns=1)
                self._collect(ready[0])
        except KeyboardInterrupt:
            self._stop()
            raise Interrupted("interrupted") from None

    # --- segments -------------------------------------------------------------------------------------------

    def _submit_segment(self, run: JobRun, entry: dict) -> None:
        segment = Segment(**{f.name: entry[f.name] for f in dataclasses.fields(Segment)})
        entry.update(state="running", attempts=entry["attempts"] + 1, error=None)
        ref = self.segment_task.remote(run.job.options, segment, str(run.job.work_dir),
                                       run.manifest["total_frames"], run.manifest["context_frames"])
        self.in_flight[ref] = (run, entry)

    def _collect(self, ref) -> None:
        run, entry = self.in_flight.pop(ref)
        what = f"{run.job.name}: " + (f"segment {entry['number']}" if entry is not None else "join")
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as e:  # raised by our code: it would fail again
            self._failed(run, entry, what, _cause(e))
        except self.ray.exceptions.RayError as e:  # the worker died, or its node: try again
            if entry is not None and entry["attempts"] <= self.retries:
                self.events("segment", f"{what}: worker lost ({type(e).__name__}), retrying", job=run.job.name,
                            segment=entry["number"], state="retrying", attempts=entry["attempts"],
                            error=type(e).__name__)
                self._submit_segment(run, entry)
                run.save()
            else:
                self._failed(run, entry, what, f"worker lost: {type(e).__name__}")
        else:
            if entry is None:
                self._joined(run, result)
            else:
                self._segment_done(run, entry, result, what)

    def _segment_done(self, run: JobRun, entry: dict, result: dict, what: str) -> None:
        for message in result.pop("warnings", []):
            self.events.warning(f"{run.job.name}: {message}")
        result.pop("first_frame", None)
        result.pop("last_frame", None)
        entry.update(state="done", **result)
        run.save()
        self.events("segment", f"{what}: done ({entry['frames']} frames, attempt {entry['attempts']})",
                    job=run.job.name, segment=entry["number"], state="done", frames=entry["frames"],
                    attempts=entry["attempts"])
        self._join_if_ready(run)

    def _failed(self, run: JobRun, entry: dict | None, what: str, error: str) -> None:
        if entry is not None:
            entry.update(state="failed", error=error)
        run.manifest.update(state="failed", error=f"{what}: {error}")
        run.failed = True
        run.save()
        self.events("error" if entry is None else "segment", f"{what} failed: {error}", job=run.job.name,
                    segment=None if entry is None else entry["number"], state="failed", error=error)

    # --- the join -------------------------------------------------------------------------------------------

    def _join_if_ready(self, run: JobRun) -> None:
        segments = run.manifest["segments"]
        if run.failed or run.joining or any(s["state"] != "done" for s in segments):
            return
        if not run.job.options.passthrough and not any(s["found_face"] for s in segments):
            self._failed(run, None, f"{run.job.name}", f"no face was found in any of the {run.manifest['total_frames']} "
                         "frames of the clip (sg3stream needs a visible face; check the input video)")
            return
        run.joining = True
        files = [(s["file"], s["pts_file"]) for s in segments]
        ref = self.join_task.remote(run.job.options, str(run.job.work_dir), files)
        self.in_flight[ref] = (run, None)

    def _joined(self, run: JobRun, result: dict) -> None:
        run.manifest.update(state="done", output_sha256=result["sha256"], output_frames=result["frames"], error=None)
        run.save()
        # The lossless segment files are large and the output now holds their frames: drop them.
        shutil.rmtree(run.job.work_dir, ignore_errors=True)
        self.events("job", f"{run.job.name}: wrote {run.job.options.output} ({result['frames']} frames)",
                    job=run.job.name, state="done", output=str(run.job.options.output), frames=result["frames"],
                    seconds=time.perf_counter() - run.started)

    def _stop(self) -> None:
        """Ctrl-C: cancel what runs, and leave the manifests saying it did not finish."""
        for ref, (run, entry) in list(self.in_flight.items()):
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
            if entry is not None:
                entry["state"] = "pending"
            run.manifest["state"] = "pending" if not run.failed else "failed"
            run.save()
        self.in_flight.clear()


def _cause(error: Exception) -> str:
    """The message of the exception a Ray task raised, without Ray's traceback wrapping."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, (UserError, StageError)):
        return str(cause)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    return str(error).splitlines()[0]


def run_farm(jobs: list[FarmJob], address: str, reporter: Reporter, retries: int = 2) -> dict:
    """Run every job of a job file; return a summary. Raises UserError for bad input, Interrupted on Ctrl-C."""
    if retries < 0:
        raise UserError("--retries must be 0 or more")
    require_ray()
    events = FarmEvents(reporter)
    runs = [prepare_job(job) for job in jobs]  # every job's input is checked before anything starts
    started = time.perf_counter()
    with ray_session(address) as ray:
        events("start", f"farm: {len(runs)} jobs on Ray ({address})", jobs=len(runs), address=address,
               resources={k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")})
        Farm(ray, runs, events, retries).run()
    summary = {
        "jobs": len(runs),
        "done": sum(r.state == "done" for r in runs),
        "skipped": sum(r.skipped for r in runs),
        "failed": [r.job.name for r in runs if r.state != "done"],
        "seconds": time.perf_counter() - started,
    }
    events("summary", f"farm: {summary['done']} of {len(runs)} jobs done ({summary['skipped']} already done), "
           f"{len(summary['failed'])} failed", **summary)
    return summary
