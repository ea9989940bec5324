"""The runner: one worker per stage, bounded queues between them, errors and shutdown in one place.

    source ──q──> stage 1 ──q──> stage 2 ──q──> … ──q──> sink

Every queue holds at most `queue_size` batches, so a slow stage blocks the ones before it (backpressure)
and memory stays constant whatever the clip's length. The first exception anywhere sets the stop flag;
every worker polls it while it waits, so the whole pipeline ends within a poll interval and `run()`
raises the error with the stage's name and frame range. Ctrl-C and SIGTERM go the same way.

A worker busy in a native call (a torch op) cannot see the flag until the call returns: `run()` waits for it at
most `STOP_WAIT_S`, then raises anyway and leaves the thread behind (daemon; `threads_left_running()` names it).
The process must then end with `os._exit`: a normal exit runs libtorch's static destructors under the busy thread
and aborts ("terminate called without an active exception", exit 134). The command line does that.

A watchdog fails the run when a worker holds work and makes no progress for `stall_timeout_s` (a worker process
stopped or wedged, a decoder or an op that never returns); waiting on a queue is not a stall.
"""
from __future__ import annotations

import collections
import contextlib
import concurrent.futures as cf
import multiprocessing
import queue
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..errors import StageError, UserError
from .batch import FrameBatch
from .contract import Chain, batch_bytes, drop_keys
from .heap import release_free_heap
from .stage import Stage

POLL_S = 0.05
HEAP_TRIM_S = 1.0  # how often freed heap pages go back to the system while the pipeline runs (see heap.py)
STOP_WAIT_S = 2.0  # after an error or a signal, how long a worker gets to finish the call it is in
DEFAULT_STALL_TIMEOUT_S = 600.0  # long enough for a first call that compiles (torch.compile, TensorRT)
_END = object()  # end of stream, passed down every queue
_left_running: list[threading.Thread] = []  # workers still busy when run() gave up waiting for them


def threads_left_running() -> list[threading.Thread]:
    """Workers that a failed or stopped run left inside a call (see the module's docstring); empty normally."""
    _left_running[:] = [t for t in _left_running if t.is_alive()]
    return list(_left_running)


class Interrupted(Exception):
    """The run was stopped by Ctrl-C or SIGTERM."""


@dataclass
class StageStats:
    """What one worker did: counts, the time it computed, and the time it waited on either queue.

    faces: the (frame, face) pairs it passed on with a code (`has_latents` True), for the stages that work per face
    from the inversion on (see `Pipeline._counting_faces`); None for the others."""

    name: str
    batches: int = 0
    frames: int = 0
    faces: int | None = None
    busy_s: float = 0.0
    wait_in_s: float = 0.0   # blocked on the queue before it (starved)
    wait_out_s: float = 0.0  # blocked on the queue after it (backpressure)
    started: float = 0.0
    ended: float = 0.0

    @property
    def wall_s(self) -> float:
        return max((self.ended or time.perf_counter()) - self.started, 1e-9) if self.started else 0.0

    def to_dict(self) -> dict[str, Any]:
        wall = self.wall_s or 1e-9
        return {
            "name": self.name,
            "batches": self.batches,
            "frames": self.frames,
            "frames_per_s": self.frames / wall,
            "faces": self.faces,
            "faces_per_s": self.faces / wall if self.faces is not None else None,
            "busy_frames_per_s": self.frames / self.busy_s if self.busy_s > 0 else None,
            "busy_s": self.busy_s,
            "wait_in_s": self.wait_in_s,
            "wait_out_s": self.wait_out_s,
            "busy_fraction": min(self.busy_s / wall, 1.0),
            "wait_in_fraction": min(self.wait_in_s / wall, 1.0),
            "wait_out_fraction": min(self.wait_out_s / wall, 1.0),
            "wall_s": wall,
        }


class _Stopped(Exception):
    """Raised inside a worker when the stop flag is seen while waiting."""


class Stalled(StageError):
    """The watchdog's error: a worker held work and made no progress for the stall timeout."""

    def __init__(self, stage: str, frame_range: tuple[int, int] | None, seconds: float):
        super().__init__(stage, frame_range, TimeoutError(
            f"no progress for {seconds:.0f} s (a hung worker or call; if the stage is only slow, raise "
            f"--stall-timeout, 0 = off)"))


@dataclass
class _Worker:
    name: str
    stats: StageStats
    thread: threading.Thread | None = None
    pool: cf.ProcessPoolExecutor | None = None
    current: tuple[int, int] | None = None  # frame range being worked on, for error messages
    busy_since: float | None = None  # since when it holds work without progress; None while it waits on a queue


class Pipeline:
    """Runs `source -> stages -> sink` with bounded queues. Use once: `stats = Pipeline(...).run()`."""

    def __init__(self, source: Iterable[FrameBatch], stages: list[Stage] | Chain, sink: Callable[[FrameBatch], None],
                 *, queue_size: int = 4, source_name: str = "decode", sink_name: str = "encode",
                 sequential: bool = False, stall_timeout_s: float | None = DEFAULT_STALL_TIMEOUT_S,
                 max_frames_in_flight: int | None = None):
        if queue_size < 1:
            raise UserError("--queue-size must be at least 1")
        if stall_timeout_s is not None and stall_timeout_s < 0:
            raise UserError("--stall-timeout must be 0 (off) or a number of seconds")
        # A chain from the builder has been checked and says which keys to drop where; a plain list runs as given.
        self.chain = stages if isinstance(stages, Chain) else Chain.unchecked(stages, sink_name=sink_name)
        stages = self.chain.stages
        self.source = source
        self.stages = stages
        self.sink = sink
        self.queue_size = queue_size
        self.sequential = sequential  # reference mode: one thread, one batch at a time, no two stages overlap
        self.stall_timeout_s = stall_timeout_s or None  # 0 = no watchdog (there is none in sequential mode)
        # The chain may make the queues whose batches carry the full pictures shorter (`picture_queue_size`): at 4K
        # a batch of eight pictures is 200 MB, a batch of codes and quads a few hundred kB.
        short = self.chain.picture_queue_size
        pictures = self.chain.pictures_flow()
        self.queues = [queue.Queue(maxsize=min(short, queue_size) if short and carries else queue_size)
                       for carries in pictures]
        # The workers that put pictures on a queue wait for room there before they decode or compute (`_wait_for_room`)
        self.waits_for_room = pictures
        self.stop_flag = threading.Event()
        self.error: BaseException | None = None
        self.error_lock = threading.Lock()
        names = [source_name] + [s.name for s in stages] + [sink_name]
        self.workers = [_Worker(n, StageStats(n)) for n in names]
        for worker, counts in zip(self.workers[1:], self._counting_faces()):
            if counts:
                worker.stats.faces = 0
        # Frames between the source and the sink: the source waits while `max_frames_in_flight` are out (None: only
        # the queues bound them). Bytes per frame as each queue received them, for run.json.
        self.max_frames_in_flight = max_frames_in_flight
        self.frames_in_flight = 0
        self.peak_frames_in_flight = 0
        self.in_flight_changed = threading.Condition()
        self.bytes_per_frame = [0] * (len(stages) + 1)  # peak, per queue: after the source, after each stage

    # --- public -------------------------------------------------------------------------------------

    @property
    def stats(self) -> list[StageStats]:
        return [w.stats for w in self.workers]

    @property
    def sink_running(self) -> bool:
        """Whether the sink's thread still runs: a failed run gave up waiting for it, maybe inside the sink."""
        thread = self.workers[-1].thread
        return thread is not None and thread.is_alive()

    @property
    def frames_done(self) -> int:
        return self.workers[-1].stats.frames

    @contextlib.contextmanager
    def sink_waiting(self) -> Iterator[None]:
        """For a sink that waits on something outside the chain (a caller reading the frames): like a worker
        waiting on a queue, that is backpressure, not a stall, so the watchdog leaves it alone meanwhile."""
        worker = self.workers[-1]
        worker.busy_since = None
        try:
            yield
        finally:
            worker.busy_since = time.perf_counter()

    def memory(self) -> dict:
        """What the frames in flight held: the peak count, and the peak bytes per frame entering each queue."""
        names = [w.name for w in self.workers[:-1]]
        return {"max_frames_in_flight": self.max_frames_in_flight, "peak_frames_in_flight": self.peak_frames_in_flight,
                "bytes_per_frame_after": dict(zip(names, self.bytes_per_frame))}

    def run(self, on_tick: Callable[["Pipeline"], None] | None = None, tick_s: float = 0.25) -> list[StageStats]:
        """Run to the end; raise the first error (UserError as is, others as StageError) or Interrupted."""
        if self.sequential:
            return self._run_sequential(on_tick, tick_s)
        targets = [self._run_source] + [self._stage_target(i, s) for i, s in enumerate(self.stages)] + [self._run_sink]
        for worker, target in zip(self.workers, targets):
            worker.thread = threading.Thread(target=self._guard, args=(worker, target), name=f"sg3-{worker.name}",
                                             daemon=True)
        restore = interrupt_on_signals()
        try:
            for w in self.workers:
                w.thread.start()
            last_tick = last_trim = 0.0
            while self.workers[-1].thread.is_alive() and not self.stop_flag.is_set():
                self.workers[-1].thread.join(POLL_S)
                self._check_stalls()
                if time.perf_counter() - last_trim >= HEAP_TRIM_S:
                    last_trim = time.perf_counter()
                    release_free_heap()
                if on_tick and time.perf_counter() - last_tick >= tick_s:
                    last_tick = time.perf_counter()
                    on_tick(self)
        except KeyboardInterrupt:
            self._fail(Interrupted("interrupted"), None)
        finally:
            self._join()
            restore()
        if self.error is not None:
            raise self.error
        if on_tick:
            on_tick(self)
        return self.stats

    def _run_sequential(self, on_tick, tick_s: float) -> list[StageStats]:
        """Every batch through every stage in this thread, as the frame-at-a-time reference workflow does.

        Process stages run in this process too. Statistics are kept the same way, so the two modes compare.
        """
        restore = interrupt_on_signals()
        workers = self.workers
        last_tick = 0.0

        def timed(worker: _Worker, fn, *args):
            worker.stats.started = worker.stats.started or time.perf_counter()
            t0 = time.perf_counter()
            try:
                return fn(*args)
            except (UserError, StageError, KeyboardInterrupt):
                raise
            except Exception as e:
                raise StageError(worker.name, worker.current, e) from e
            finally:
                worker.stats.busy_s += time.perf_counter() - t0
                worker.stats.ended = time.perf_counter()

        def push(i: int, batch: FrameBatch) -> None:
            """Send `batch` through stages i.. and into the sink."""
            nonlocal last_tick
            for k in range(i, len(self.stages)):
                worker = workers[k + 1]
                worker.current = batch.frame_range
                batch = timed(worker, self.stages[k], batch)
                if batch is None:
                    return
                batch = self._leaving(k + 1, batch)
                self._count(worker.stats, batch, 0.0)
            sink = workers[-1]
            sink.current = batch.frame_range
            timed(sink, self.sink, batch)
            self._count(sink.stats, batch, 0.0)
            if on_tick and time.perf_counter() - last_tick >= tick_s:
                last_tick = time.perf_counter()
                on_tick(self)

        try:
            for k, stage in enumerate(self.stages):
                timed(workers[k + 1], stage.setup)
            iterator = iter(self.source)
            while True:
                batch = timed(workers[0], next, iterator, None)
                if batch is None:
                    break
                batch = self._leaving(0, batch)
                self._count(workers[0].stats, batch, 0.0)
                push(0, batch)
            for k, stage in enumerate(self.stages):
                workers[k + 1].current = None
                for held in timed(workers[k + 1], stage.flush):
                    held = self._leaving(k + 1, held)
                    self._count(workers[k + 1].stats, held, 0.0)
                    push(k + 1, held)
        except KeyboardInterrupt:
            raise Interrupted("interrupted") from None
        finally:
            for stage in self.stages:
                stage.close()
            restore()
        if on_tick:
            on_tick(self)
        return self.stats

    def stop(self) -> None:
        self._fail(Interrupted("stopped"), None)

    def _check_stalls(self) -> None:
        if self.stall_timeout_s is None:
            return
        now = time.perf_counter()
        for w in self.workers:
            since = w.busy_since
            if since is not None and now - since > self.stall_timeout_s:
                self._fail(Stalled(w.name, w.current, now - since), None)
                return

    # --- workers ------------------------------------------------------------------------------------

    def _guard(self, worker: _Worker, target: Callable[[_Worker], None]) -> None:
        worker.stats.started = worker.busy_since = time.perf_counter()
        try:
            target(worker)
        except _Stopped:
            pass
        except BaseException as e:  # noqa: BLE001 - every failure must reach run()
            self._fail(e, worker)
        finally:
            worker.stats.ended = time.perf_counter()
            worker.busy_since = None

    def _fail(self, error: BaseException, worker: _Worker | None) -> None:
        with self.error_lock:
            if self.error is None:
                if worker is not None and not isinstance(error, (UserError, Interrupted, StageError)):
                    error = StageError(worker.name, worker.current, error)
                self.error = error
        self.stop_flag.set()

    def _get(self, q: queue.Queue, worker: _Worker):
        t0 = time.perf_counter()
        worker.busy_since = None  # waiting for work is not a stall
        try:
            while True:
                try:
                    return q.get(timeout=POLL_S)
                except queue.Empty:
                    if self.stop_flag.is_set():
                        raise _Stopped
        finally:
            worker.stats.wait_in_s += time.perf_counter() - t0
            worker.busy_since = time.perf_counter()

    def _put(self, q: queue.Queue, item, worker: _Worker) -> None:
        t0 = time.perf_counter()
        worker.busy_since = None  # neither is waiting for room downstream (backpressure)
        try:
            while True:
                try:
                    q.put(item, timeout=POLL_S)
                    return
                except queue.Full:
                    if self.stop_flag.is_set():
                        raise _Stopped
        finally:
            worker.stats.wait_out_s += time.perf_counter() - t0
            worker.busy_since = time.perf_counter()

    def _wait_for_room(self, q: queue.Queue, worker: _Worker) -> None:
        """Wait until `q` can take a batch. A worker whose output carries the pictures calls this before it makes the
        next batch, not after: blocked behind a slow stage it then holds no finished batch it cannot pass on, and a
        chain at a standstill holds only its queues' batches and those in use (one more per worker otherwise: at
        1080p a batch of eight pictures is 50 MB). Each queue has one producer, so the room stays until its put."""
        t0 = time.perf_counter()
        worker.busy_since = None  # backpressure, not a stall
        try:
            with q.not_full:  # the queue's own condition (get() notifies it); len(q.queue) because q.full() would
                while q.maxsize > 0 and len(q.queue) >= q.maxsize:  # take the lock this block already holds
                    if self.stop_flag.is_set():
                        raise _Stopped
                    q.not_full.wait(POLL_S)
        finally:
            worker.stats.wait_out_s += time.perf_counter() - t0
            worker.busy_since = time.perf_counter()

    def _count(self, stats: StageStats, batch: FrameBatch, busy: float) -> None:
        stats.batches += 1
        stats.frames += len(batch)
        stats.busy_s += busy

    def _run_source(self, worker: _Worker) -> None:
        out, stats = self.queues[0], worker.stats
        iterator = iter(self.source)
        expected = 1  # frames the next batch will have: the last batch's count (room is made before decoding it)
        while not self.stop_flag.is_set():
            if self.waits_for_room[0]:
                self._wait_for_room(out, worker)
            worker.busy_since = None  # waiting for room in the frame budget is backpressure, not a stall
            self._admit(expected)
            t0 = time.perf_counter()
            worker.busy_since = t0
            batch = next(iterator, _END)
            if batch is _END:
                self._release(expected)
                break
            self._admitted(len(batch) - expected)
            expected = max(len(batch), 1)
            worker.current = batch.frame_range
            self._count(stats, batch, time.perf_counter() - t0)
            self._put(out, self._leaving(0, batch), worker)
        self._put(out, _END, worker)

    def _run_sink(self, worker: _Worker) -> None:
        inp, stats = self.queues[-1], worker.stats
        while True:
            batch = self._get(inp, worker)
            if batch is _END:
                return
            worker.current = batch.frame_range
            t0 = time.perf_counter()
            self.sink(batch)
            self._release(len(batch))
            self._count(stats, batch, time.perf_counter() - t0)

    def _stage_target(self, i: int, stage: Stage) -> Callable[[_Worker], None]:
        if stage.executor == "process":
            return lambda worker: self._run_process_stage(worker, i, stage)
        return lambda worker: self._run_thread_stage(worker, i, stage)

    def _counting_faces(self) -> list[bool]:
        """For each stage: whether its statistics count faces. From the stage that writes `has_latents` (the
        inversion) on, the stages that work per face: they read `has_latents`, or read or write another per-face key
        (smoothing, edit, render, paste). A stage that only rides along (a second decode) is not counted, nor any
        stage before the inversion (no batch says yet which faces get a code)."""
        keys, inverted, out = self.chain.keys, False, []
        for link in self.chain.links:
            inverted = inverted or any(k.name == "has_latents" for k in link.writes)
            touched = [keys.get(n) for n in link.reads] + list(link.writes)
            out.append(inverted and any(k is not None and k.per_face for k in touched))
        return out

    def _leaving(self, position: int, batch: FrameBatch) -> FrameBatch:
        """A batch as it leaves worker `position` (0: the source, k: stage k): its faces counted (before the keys
        go: the paste is the last reader of `has_latents`), without the keys no later stage reads, and measured."""
        stats = self.workers[position].stats
        if stats.faces is not None and "has_latents" in batch.data:
            stats.faces += int(np.count_nonzero(batch.data["has_latents"]))
        if position > 0:
            batch = drop_keys(batch, self.chain.links[position - 1].drops)
        if len(batch):
            per_frame = batch_bytes(batch) // len(batch)
            if per_frame > self.bytes_per_frame[position]:
                self.bytes_per_frame[position] = per_frame
        return batch

    def _admit(self, frames: int) -> None:
        """The source waits here, before it decodes a batch, until its `frames` fit in `max_frames_in_flight`. One
        batch always fits, and so does the next one when every stage waits for input: a stage holding more than
        its declared window must not stall the run (the budget then stretches instead)."""
        with self.in_flight_changed:
            while (self.max_frames_in_flight is not None and self.frames_in_flight > 0
                   and self.frames_in_flight + frames > self.max_frames_in_flight and not self._starved()):
                if self.stop_flag.is_set():
                    raise _Stopped
                self.in_flight_changed.wait(POLL_S)
            self._admitted(frames)

    def _admitted(self, frames: int) -> None:
        """Count `frames` more in flight (fewer, when the batch decoded was shorter than the frames admitted)."""
        with self.in_flight_changed:
            self.frames_in_flight += frames
            self.peak_frames_in_flight = max(self.peak_frames_in_flight, self.frames_in_flight)

    def _starved(self) -> bool:
        """Every stage and the sink wait on an empty queue: nothing moves until the source sends more."""
        return (all(q.empty() for q in self.queues)
                and all(w.busy_since is None for w in self.workers[1:] if w.thread is not None and w.thread.is_alive()))

    def _release(self, frames: int) -> None:
        with self.in_flight_changed:
            self.frames_in_flight -= frames
            self.in_flight_changed.notify_all()

    def _run_thread_stage(self, worker: _Worker, i: int, stage: Stage) -> None:
        inp, out = self.queues[i], self.queues[i + 1]
        stats = worker.stats
        t0 = time.perf_counter()
        stage.setup()
        stats.busy_s += time.perf_counter() - t0
        try:
            while True:
                if self.waits_for_room[i + 1]:
                    self._wait_for_room(out, worker)
                batch = self._get(inp, worker)
                if batch is _END:
                    break
                worker.current = batch.frame_range
                t0 = time.perf_counter()
                result = stage(batch)
                busy = time.perf_counter() - t0
                stats.busy_s += busy
                if result is not None:
                    result = self._leaving(i + 1, result)
                    self._count(stats, result, 0.0)
                    self._put(out, result, worker)
            worker.current = None
            t0 = time.perf_counter()
            held = stage.flush()
            stats.busy_s += time.perf_counter() - t0
            for result in held:
                result = self._leaving(i + 1, result)
                self._count(stats, result, 0.0)
                self._put(out, result, worker)
            self._put(out, _END, worker)
        finally:
            stage.close()

    def _run_process_stage(self, worker: _Worker, i: int, stage: Stage) -> None:
        """Map batches over a process pool, at most 2 per process in flight, results in input order."""
        inp, out = self.queues[i], self.queues[i + 1]
        stats = worker.stats
        # spawn, not fork: the parent has threads (and maybe torch/OpenMP state) that fork would copy broken.
        pool = cf.ProcessPoolExecutor(max_workers=stage.processes, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_process_init, initargs=(stage,))
        worker.pool = pool
        in_flight: collections.deque = collections.deque()

        def collect_one() -> None:
            sent, future = in_flight.popleft()
            worker.current = sent.frame_range
            while True:  # wait in short steps so a stop elsewhere is seen
                try:
                    result, busy = future.result(timeout=POLL_S)
                    break
                except cf.TimeoutError:
                    if self.stop_flag.is_set():
                        raise _Stopped
            stats.busy_s += busy
            if result is not None and result.frames is None:
                result.frames = sent.frames  # the worker left them unchanged and did not send them back
            if result is not None:
                result = self._leaving(i + 1, result)
                self._count(stats, result, 0.0)
                self._put(out, result, worker)

        while True:
            batch = self._get(inp, worker)
            if batch is _END:
                break
            in_flight.append((batch, pool.submit(_process_call, batch)))
            if len(in_flight) >= 2 * stage.processes:
                collect_one()
        while in_flight:
            collect_one()
        self._put(out, _END, worker)

    def _join(self) -> None:
        failed = self.error is not None
        # After a failure, a worker inside a long native call is not waited for (see the module's docstring).
        deadline = time.monotonic() + STOP_WAIT_S
        for w in self.workers:
            if w.thread is not None:
                w.thread.join(max(deadline - time.monotonic(), 0.0) if failed else None)
                if w.thread.is_alive():
                    _left_running.append(w.thread)
        # Pools last: a process stage's thread may have made its pool while the others stopped.
        for w in self.workers:
            if w.pool is not None:
                _left_running.extend(_shutdown_pool(w.pool, kill=failed))


# --- process-pool plumbing (module level so that it pickles) ---------------------------------------------

_process_stage: Stage | None = None  # the stage of this worker process, set once by the pool's initializer


def _process_init(stage: Stage) -> None:
    global _process_stage
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    _process_stage = stage
    _process_stage.setup()


def _process_call(batch: FrameBatch):
    t0 = time.perf_counter()
    result = _process_stage(batch)
    if result is not None and result.frames is batch.frames:
        result.frames = None  # unchanged: spare pickling them back (the parent still has them)
    return result, time.perf_counter() - t0


def _shutdown_pool(pool: cf.ProcessPoolExecutor, kill: bool) -> list[threading.Thread]:
    """Shut a pool down. With `kill` (an error, interrupt or stall) don't wait for chunks in progress: end the
    processes so that none outlives us, and wait a bounded time. Returns the pool's thread if it did not end."""
    if not kill:
        pool.shutdown(wait=True)
        return []
    manager = pool._executor_manager_thread  # noqa: SLF001 - no public way to kill or to wait with a timeout
    # SIGKILL, not SIGTERM: a stopped (SIGSTOP) or wedged worker does not act on SIGTERM, and the pool would wait
    # for it forever. The pool's own thread then sees the processes gone, fails what was pending and reaps them.
    for process in list((pool._processes or {}).values()):  # noqa: SLF001
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)
    if manager is None:
        return []
    manager.join(STOP_WAIT_S)
    return [manager] if manager.is_alive() else []


class _InterruptOnce:
    """SIGINT/SIGTERM handler: the first signal raises KeyboardInterrupt (in the main thread); later ones are ignored,
    so that an impatient second Ctrl-C does not cut short the cleanup the first one started (stopping the workers,
    removing the partial output; it is bounded)."""

    def __init__(self) -> None:
        self.fired = False

    def __call__(self, signum, frame) -> None:
        if not self.fired:
            self.fired = True
            raise KeyboardInterrupt


def interrupt_on_signals() -> Callable[[], None]:
    """Ctrl-C and SIGTERM both interrupt, once (see `_InterruptOnce`); returns the undo. Only in the main thread,
    never over a signal the process was told to ignore, and nothing changes inside a block that did this already."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    if any(isinstance(h, _InterruptOnce) for h in previous.values()):
        return lambda: None
    handler = _InterruptOnce()
    for s, h in previous.items():
        if h is not signal.SIG_IGN:
            signal.signal(s, handler)

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore
