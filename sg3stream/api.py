"""The Python API: load the models once, then edit clips as lazy streams of frames (as faster-whisper's
`WhisperModel.transcribe` streams segments).

    from sg3stream import Editor

    editor = Editor(device="auto")                      # the demo model; encoder=..., generator=... for real weights
    with editor.edit("clip.mp4", edits=["smile"]) as frames:
        for frame in frames:                            # decoded, edited and handed over as they are asked for
            frame.image, frame.index, frame.pts, frame.faces
    editor.edit(frames_of_my_own, fps=30)               # any iterable of [H, W, 3] uint8 frames
    editor.run("clip.mp4", "out.mp4", edits=["age:-2"])  # what `sg3stream run` does

Every run option (sg3stream/options.py) is a keyword argument of `Editor` (the default of every call) and of
`edit` and `run` (for that call). The models (`encoder`, `generator`, `device`, `engine`, `compile`) are loaded
once, by `Editor`; the edits are resolved, and PTI (`pti_steps`) tunes the generator, for each call.

`edit` runs the same chain as `sg3stream run` (sg3stream/chain.py, purpose "api") on the same runner: a thread per
stage and the landmark stage's process pool, started at the first frame asked for. The runner's frame budget
(`max_frames_in_flight`, by default what the chain's windows need) bounds how far ahead of the caller it reads,
and a caller that stops reading holds the whole chain back. `close()` (or leaving the `with` block, or dropping
the iterator) stops every thread and worker process.
"""
from __future__ import annotations

import collections
import dataclasses
import inspect
import os
import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from .errors import UserError
from .options import MODEL_OPTIONS, RunOptions, checked_value, option_fields
from .pipeline.batch import FrameBatch

POLL_S = 0.05
_END = object()  # the runner thread's last hand-over: the run ended (its error, if any, is kept beside it)


@dataclass
class Face:
    """One face of an edited frame (a face slot of the chain's per-face keys).

    slot: its slot in the frame's face axis. track: its face track (the same person from frame to frame, until a
    cut or a long absence; the number `--edit NAME@TRACK` and run.json's `faces` use).
    quad: [4, 2] the FFHQ-aligned quad in the frame's pixels (corners TL, BL, BR, TR).
    crop_quad: [4, 2] the unaligned square crop the generator renders and the paste puts back.
    transform: [3, 3] the generator's input transform (crop -> aligned coordinates), smoothed over time.
    latent: [num_ws, w_dim] the inverted W+ code, smoothed over time. edited_latent: the same with the edits.
    """

    slot: int
    track: int
    quad: np.ndarray
    crop_quad: np.ndarray
    transform: np.ndarray
    latent: np.ndarray
    edited_latent: np.ndarray


@dataclass
class EditedFrame:
    """One frame of `Editor.edit`'s stream.

    image: [H, W, 3] uint8 RGB, the input's size (with output_mode "full", the default).
    index: the frame's number from 0; pts: its timestamp in `time_base` units (seconds: `time`).
    faces: the faces edited in this frame (empty where none was found: the frame is the input's).
    """

    image: np.ndarray
    index: int
    pts: int
    time_base: Fraction
    faces: list[Face]

    @property
    def time(self) -> float:
        return float(self.pts * self.time_base)


def frames_of(batch: FrameBatch) -> list[EditedFrame]:
    """A batch at the end of the chain -> its frames, each with its faces (the keys of chain.API_SINK_READS)."""
    data = batch.data
    has = data.get("has_latents")
    out = []
    for i in range(len(batch)):
        faces = []
        if has is not None:
            for k in np.flatnonzero(np.asarray(has[i], bool).reshape(-1)):
                faces.append(Face(slot=int(k), track=int(data["track_id"][i, k]), quad=data["aligned_quad"][i, k], crop_quad=data["crop_quad"][i, k],
                                  transform=data["transform_smoothed"][i, k], latent=data["latents_smoothed"][i, k],
                                  edited_latent=data["ws_edit"][i, k]))
        out.append(EditedFrame(image=batch.frames[i], index=int(batch.index[i]), pts=int(batch.pts[i]),
                               time_base=batch.time_base, faces=faces))
    return out


def frame_batches(frames: Iterable, fps: float, batch_size: int) -> Iterator[FrameBatch]:
    """Any iterable of [H, W, 3] uint8 frames -> FrameBatches, numbered from 0, pts = index at 1/fps. Frames are
    pulled from `frames` one batch at a time, as the chain asks for them."""
    rate = Fraction(fps).limit_denominator(1_000_000)
    time_base = 1 / rate
    chunk: list[np.ndarray] = []
    first_shape = None
    count = 0
    for frame in frames:
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise UserError(f"frame {count} is {frame.dtype} of shape {frame.shape}: frames must be [H, W, 3] uint8 "
                            "RGB")
        first_shape = first_shape or frame.shape
        if frame.shape != first_shape:
            raise UserError(f"frame {count} is {frame.shape[1]}x{frame.shape[0]}, frame 0 was "
                            f"{first_shape[1]}x{first_shape[0]}: one frame size per clip")
        chunk.append(frame)
        count += 1
        if len(chunk) == batch_size:
            yield _batch(chunk, count, time_base)
            chunk = []
    if chunk:
        yield _batch(chunk, count, time_base)
    if count == 0:
        raise UserError("no frames: the iterable given to edit() was empty")


def _batch(chunk: list[np.ndarray], end: int, time_base: Fraction) -> FrameBatch:
    index = np.arange(end - len(chunk), end, dtype=np.int64)
    return FrameBatch(frames=np.stack(chunk), index=index, pts=index.copy(), time_base=time_base)


class EditedFrames:
    """The lazy stream of `EditedFrame`s that `Editor.edit` returns; an iterator and a context manager.

    Nothing runs (nothing is decoded, no thread or process starts) before the first frame is asked for. `close()`,
    leaving a `with` block, or dropping the iterator stops the chain's threads and worker processes; an error of the
    run is raised by the `next()` that reaches it, after the frames that came before it.
    """

    def __init__(self, start):
        self._start = start  # () -> (source, chain, options): called at the first next()
        self._run: _Run | None = None
        self._pending: collections.deque = collections.deque()  # frames of the batch being read
        self._done = False

    def __iter__(self) -> "EditedFrames":
        return self

    def __enter__(self) -> "EditedFrames":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at interpreter exit anything may be half gone
            pass

    def __next__(self) -> EditedFrame:
        if self._pending:
            return self._pending.popleft()
        if self._done:
            raise StopIteration
        if self._run is None:
            self._done = True  # until the run has started: a failed start is not retried
            self._run = _Run(*self._start())
            self._done = False
        batch = self._run.take()
        if batch is _END:
            self._done = True
            self._run.join()
            if self._run.error is not None:
                raise self._run.error
            raise StopIteration
        self._pending.extend(frames_of(batch))
        return self._pending.popleft()

    def close(self) -> None:
        """Stop the run (if it started) and wait for its threads and worker processes to end."""
        self._done = True
        self._pending.clear()
        if self._run is not None:
            self._run.stop()


class _Run:
    """The chain at work for one `EditedFrames`: the runner (sg3stream/pipeline/runner.py) in a thread of its own,
    whose sink hands each batch over to the caller. Kept apart from the iterator, which the thread does not hold, so
    that dropping the iterator stops the run."""

    def __init__(self, source, chain, options: RunOptions):
        from .chain import frame_budget
        from .pipeline.runner import Pipeline

        self.handed = queue.Queue(maxsize=1)  # batches from the sink to the caller
        self.error: BaseException | None = None
        self.stopped = False
        self.pipeline = Pipeline(source, chain, self.sink, queue_size=options.queue_size, sink_name="caller",
                                 sequential=options.reference_mode, stall_timeout_s=options.stall_timeout,
                                 max_frames_in_flight=frame_budget(options, chain))
        self.thread = threading.Thread(target=self.main, name="sg3-api", daemon=True)
        self.thread.start()

    def main(self) -> None:
        try:
            self.pipeline.run()
        except BaseException as e:  # noqa: BLE001 - raised by the caller's next()
            if not self.stopped:
                self.error = e
        finally:
            self.hand_over(_END)

    def sink(self, batch: FrameBatch) -> None:
        """The chain's last step: wait until the caller takes the batch (backpressure, not a stall)."""
        with self.pipeline.sink_waiting():
            handed = self.hand_over(batch)
        if not handed:
            from .pipeline.runner import Interrupted

            raise Interrupted("stopped")

    def hand_over(self, item) -> bool:
        """Put `item` for the caller; False when the caller stopped the run meanwhile."""
        while True:
            try:
                self.handed.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                if self.stopped or (item is not _END and self.pipeline.stop_flag.is_set()):
                    return False

    def take(self):
        """The next batch for the caller, or _END."""
        while True:
            try:
                return self.handed.get(timeout=POLL_S)
            except queue.Empty:
                if not self.thread.is_alive() and self.handed.empty():
                    return _END

    def stop(self) -> None:
        """Stop every stage (threads, the landmark processes) and wait until they have ended."""
        self.stopped = True
        self.pipeline.stop()
        self.join()

    def join(self) -> None:
        self.thread.join()
        # The runner waits a bounded time for a worker inside a long call (a torch op) and leaves it behind; the
        # command line then ends the process at once, which a library cannot do: wait for the call to return, so
        # that nothing of the run is left when close() returns (the stop flag ends the worker right after it).
        for worker in self.pipeline.workers:
            if worker.thread is not None:
                worker.thread.join()


class Editor:
    """Loads the models once; edits clips with them (`edit`: a lazy stream of frames; `run`: a file).

    encoder, generator, device, engine, compile: the models, as `sg3stream run`'s options of those names (None:
    the demo model). Every other run option (sg3stream/options.py: `n_iters`, `expand`, `fine_window`,
    `batch_size`…) may be given here, as the default of every call, or to a call. The calls share the models: run
    one stream at a time per Editor.
    """

    def __init__(self, encoder: str | None = None, generator: str | None = None, device: str = "auto",
                 engine: str = "torch", compile: bool = False, **options):
        from .job import check_options, load_models

        self.settings = settings(dict(options, encoder=encoder, generator=generator, device=device, engine=engine,
                                      compile=compile), "Editor()")
        self.options = RunOptions(input=None, output=None, **self.settings)
        check_options(self.options)
        self.models = load_models(self.options)

    def call_options(self, input, output, overrides: dict, call: str) -> RunOptions:
        """The Editor's options with a call's changes (not to the models, which are loaded)."""
        changes = settings(overrides, call)
        fixed = sorted(k for k in changes if k in MODEL_OPTIONS and changes[k] != self.settings[k])
        if fixed:
            raise UserError(f"{call}: {', '.join(fixed)} belong to the Editor, whose models are loaded once: make "
                            "another Editor to change them")
        options = RunOptions(input=input, output=output, **{**self.settings, **changes})
        from .job import check_options

        check_options(options)
        return options

    def edit(self, source, edits: list[str] | None = None, fps: float | None = None, **options) -> EditedFrames:
        """Edit the faces of a clip: `source` is a video file's path, or any iterable of [H, W, 3] uint8 RGB frames
        (then `fps` is required: the frames' timestamps come from it). Returns a lazy iterator (and context manager)
        of `EditedFrame`s in order; nothing is read before the first is asked for.

        edits: as `--edit` (NAME[:STRENGTH], .npy/.npz files, s:LAYER:CHANNEL); None: the Editor's.
        options: any run option, for this call. codec, crf, preset and artifacts concern written files: `run` only.
        """
        if edits is not None:
            options["edits"] = edits
        path = source if isinstance(source, (str, os.PathLike)) else None
        if path is None:
            if not isinstance(source, Iterable) or isinstance(source, np.ndarray) and source.ndim != 4:
                raise UserError("edit() takes a video file's path or an iterable of [H, W, 3] uint8 frames")
            if fps is None or not fps > 0:
                raise UserError("edit() needs fps=... (frames per second) with frames given as an iterable")
        opts = self.call_options(Path(path) if path is not None else None, None, options, "edit()")
        if opts.pti_steps and path is None:
            raise UserError("edit(): PTI (pti_steps) needs a video file: it passes over the clip twice")
        if opts.pti_steps and opts.pti_checkpoint_dir is None and opts.artifacts is None:
            raise UserError("edit(): PTI (pti_steps) needs pti_checkpoint_dir=... (or artifacts=...) for its "
                            "checkpoints: edit() writes no output beside which to keep them")
        total = len(source) if path is None and hasattr(source, "__len__") else None
        if opts.edit_ramp and path is None and total is None:
            raise UserError("edit(): edit_ramp needs the clip's length: give a path or a sized sequence of frames")

        from .chain import model_batch

        batch = model_batch(opts)
        reader = None
        if path is not None:  # the file is probed now (a missing or broken file fails here), decoded later
            from .video.decode import FrameReader

            reader = FrameReader(path, batch_size=batch, decoder=opts.decoder, hwdec=opts.hwdec, fps=fps or opts.fps,
                                 allow_gaps=opts.allow_gaps, transfer=opts.linear_transfer)

        def start():
            from .chain import ChainParts, build_chain
            from .job import estimated_frames, load_parts, redecode_reader

            if reader is not None:
                source_batches, frames_total, redecode = reader, estimated_frames(reader), redecode_reader(opts, reader)
            else:
                source_batches, frames_total, redecode = frame_batches(source, fps, batch), total, None
            parts = load_parts(opts, None, self.models)[0] if not opts.passthrough else ChainParts()
            chain = build_chain(opts, parts, purpose="api", total_frames=frames_total, redecode=redecode)
            return source_batches, chain, opts

        return EditedFrames(start)

    def run(self, input, output, reporter=None, **options) -> dict:
        """What `sg3stream run INPUT -o OUTPUT` does, with these models: returns the run's summary (run.json's).
        reporter: a `sg3stream.report.Reporter` for progress and warnings (default: warnings go to the
        `sg3stream` logger)."""
        from .job import run_video
        from .report import Reporter

        opts = self.call_options(Path(input), Path(output), options, "run()")
        return run_video(opts, reporter or Reporter(), self.models)


def settings(values: dict, call: str) -> dict[str, Any]:
    """Keyword arguments -> run options (checked against each field's type); an unknown one is a TypeError, as for
    any Python call."""
    names = {f.name for f in option_fields()}
    unknown = sorted(k for k in values if k not in names)
    if unknown:
        raise TypeError(f"{call} got unexpected keyword arguments: {', '.join(unknown)} (the run options are "
                        "sg3stream.options.RunOptions's fields)")
    return {k: checked_value(k, v, where=call) for k, v in values.items()}


def _editor_signature() -> inspect.Signature:
    """Editor(...)'s full signature, every run option by name, for help() and editors: derived from RunOptions."""
    named = list(MODEL_OPTIONS)
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for f in option_fields():
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD if f.name in named else inspect.Parameter.KEYWORD_ONLY
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        parameters.append(inspect.Parameter(f.name, kind, default=default, annotation=f.type))
    parameters.sort(key=lambda p: (p.kind, named.index(p.name) if p.name in named else 0))
    return inspect.Signature(parameters)


Editor.__init__.__signature__ = _editor_signature()
