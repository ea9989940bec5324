"""The runner: one worker per stage, bounded queues between them, errors and shutdown in one place.

    source ──q──> stage 1 ──q──> stage 2 ──q──> … ──q──> sink

Every queue holds at most `queue_size` batches, so a slow stage blocks the ones before it (backpressure)
and memory stays constant whatever the clip's length. The first exception anywhere sets the stop flag;
every worker polls it while it waits, so the whole pipeline ends within a poll interval and `run()`
raises the error with the stage's name and frame range. Ctrl-C and SIGTERM go the same way.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import multiprocessing
import queue
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..errors import StageError, UserError
from .batch import FrameBatch
from .stage import Stage

POLL_S = 0.05
_END = object()  # end of stream, passed down every queue


class Interrupted(Exception):
    """The run was stopped by Ctrl-C or SIGTERM."""


@dataclass
class StageStats:
    """What one worker did: counts, the time it computed, and the time it waited on either queue."""

    name: str
    batches: int = 0
    frames: int = 0
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


@dataclass
class _Worker:
    name: str
    stats: StageStats
    thread: threading.Thread | None = None
    pool: cf.ProcessPoolExecutor | None = None
    current: tuple[int, int] | None = None  # frame range being worked on, for error messages


class Pipeline:
    """Runs `source -> stages -> sink` with bounded queues. Use once: `stats = Pipeline(...).run()`."""

    def __init__(self, source: Iterable[FrameBatch], stages: list[Stage], sink: Callable[[FrameBatch], None],
                 *, queue_size: int = 4, source_name: str = "decode", sink_name: str = "encode",
                 sequential: bool = False):
        if queue_size < 1:
            raise UserError("--queue-size must be at least 1")
        self.source = source
        self.stages = stages
        self.sink = sink
        self.queue_size = queue_size
        self.sequential = sequential  # reference mode: one thread, one batch at a time, no two stages overlap
        self.queues = [queue.Queue(maxsize=queue_size) for _ in range(len(stages) + 1)]
        self.stop_flag = threading.Event()
        self.error: BaseException | None = None
        self.error_lock = threading.Lock()
        names = [source_name] + [s.name for s in stages] + [sink_name]
        self.workers = [_Worker(n, StageStats(n)) for n in names]

    # --- public -------------------------------------------------------------------------------------

    @property
    def stats(self) -> list[StageStats]:
        return [w.stats for w in self.workers]

    @property
    def frames_done(self) -> int:
        return self.workers[-1].stats.frames

    def run(self, on_tick: Callable[["Pipeline"], None] | None = None, tick_s: float = 0.25) -> list[StageStats]:
        """Run to the end; raise the first error (UserError as is, others as StageError) or Interrupted."""
        if self.sequential:
            return self._run_sequential(on_tick, tick_s)
        targets = [self._run_source] + [self._stage_target(i, s) for i, s in enumerate(self.stages)] + [self._run_sink]
        for worker, target in zip(self.workers, targets):
            worker.thread = threading.Thread(target=self._guard, args=(worker, target), name=f"sg3-{worker.name}",
                                             daemon=True)
        restore = _raise_on_sigterm()
        try:
            for w in self.workers:
                w.thread.start()
            last_tick = 0.0
            while self.workers[-1].thread.is_alive() and not self.stop_flag.is_set():
                self.workers[-1].thread.join(POLL_S)
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
        restore = _raise_on_sigterm()
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
                self._count(workers[0].stats, batch, 0.0)
                push(0, batch)
            for k, stage in enumerate(self.stages):
                workers[k + 1].current = None
                for held in timed(workers[k + 1], stage.flush):
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

    # --- workers ------------------------------------------------------------------------------------

    def _guard(self, worker: _Worker, target: Callable[[_Worker], None]) -> None:
        worker.stats.started = time.perf_counter()
        try:
            target(worker)
        except _Stopped:
            pass
        except BaseException as e:  # noqa: BLE001 - every failure must reach run()
            self._fail(e, worker)
        finally:
            worker.stats.ended = time.perf_counter()

    def _fail(self, error: BaseException, worker: _Worker | None) -> None:
        with self.error_lock:
            if self.error is None:
                if worker is not None and not isinstance(error, (UserError, Interrupted, StageError)):
                    error = StageError(worker.name, worker.current, error)
                self.error = error
        self.stop_flag.set()

    def _get(self, q: queue.Queue, stats: StageStats):
        t0 = time.perf_counter()
        try:
            while True:
                try:
                    return q.get(timeout=POLL_S)
                except queue.Empty:
                    if self.stop_flag.is_set():
                        raise _Stopped
        finally:
            stats.wait_in_s += time.perf_counter() - t0

    def _put(self, q: queue.Queue, item, stats: StageStats) -> None:
        t0 = time.perf_counter()
        try:
            while True:
                try:
                    q.put(item, timeout=POLL_S)
                    return
                except queue.Full:
                    if self.stop_flag.is_set():
                        raise _Stopped
        finally:
            stats.wait_out_s += time.perf_counter() - t0

    def _count(self, stats: StageStats, batch: FrameBatch, busy: float) -> None:
        stats.batches += 1
        stats.frames += len(batch)
        stats.busy_s += busy

    def _run_source(self, worker: _Worker) -> None:
        out, stats = self.queues[0], worker.stats
        iterator = iter(self.source)
        while not self.stop_flag.is_set():
            t0 = time.perf_counter()
            batch = next(iterator, _END)
            if batch is _END:
                break
            worker.current = batch.frame_range
            self._count(stats, batch, time.perf_counter() - t0)
            self._put(out, batch, stats)
        self._put(out, _END, stats)

    def _run_sink(self, worker: _Worker) -> None:
        inp, stats = self.queues[-1], worker.stats
        while True:
            batch = self._get(inp, stats)
            if batch is _END:
                return
            worker.current = batch.frame_range
            t0 = time.perf_counter()
            self.sink(batch)
            self._count(stats, batch, time.perf_counter() - t0)

    def _stage_target(self, i: int, stage: Stage) -> Callable[[_Worker], None]:
        inp, out = self.queues[i], self.queues[i + 1]
        if stage.executor == "process":
            return lambda worker: self._run_process_stage(worker, stage, inp, out)
        return lambda worker: self._run_thread_stage(worker, stage, inp, out)

    def _run_thread_stage(self, worker: _Worker, stage: Stage, inp: queue.Queue, out: queue.Queue) -> None:
        stats = worker.stats
        t0 = time.perf_counter()
        stage.setup()
        stats.busy_s += time.perf_counter() - t0
        try:
            while True:
                batch = self._get(inp, stats)
                if batch is _END:
                    break
                worker.current = batch.frame_range
                t0 = time.perf_counter()
                result = stage(batch)
                busy = time.perf_counter() - t0
                stats.busy_s += busy
                if result is not None:
                    self._count(stats, result, 0.0)
                    self._put(out, result, stats)
            worker.current = None
            t0 = time.perf_counter()
            held = stage.flush()
            stats.busy_s += time.perf_counter() - t0
            for result in held:
                self._count(stats, result, 0.0)
                self._put(out, result, stats)
            self._put(out, _END, stats)
        finally:
            stage.close()

    def _run_process_stage(self, worker: _Worker, stage: Stage, inp: queue.Queue, out: queue.Queue) -> None:
        """Map batches over a process pool, at most 2 per process in flight, results in input order."""
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
                self._count(stats, result, 0.0)
                self._put(out, result, stats)

        while True:
            batch = self._get(inp, stats)
            if batch is _END:
                break
            in_flight.append((batch, pool.submit(_process_call, batch)))
            if len(in_flight) >= 2 * stage.processes:
                collect_one()
        while in_flight:
            collect_one()
        self._put(out, _END, stats)

    def _join(self) -> None:
        for w in self.workers:
            if w.pool is not None:
                _shutdown_pool(w.pool, terminate=self.error is not None)
        for w in self.workers:
            if w.thread is not None and w.thread.is_alive():
                w.thread.join(timeout=10)


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


def _shutdown_pool(pool: cf.ProcessPoolExecutor, terminate: bool) -> None:
    if terminate:
        # On an error or interrupt, don't wait for chunks in progress: end the processes so none outlives us.
        for process in list((pool._processes or {}).values()):  # noqa: SLF001 - no public way to terminate
            process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def _raise_on_sigterm() -> Callable[[], None]:
    """Make SIGTERM behave like Ctrl-C while the pipeline runs (main thread only); returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)
