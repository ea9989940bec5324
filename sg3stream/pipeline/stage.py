"""What a pipeline stage is: a small object that turns a batch into a batch.

The runner (runner.py) owns threads, processes, queues, errors and shutdown; a stage owns none of them.
"""
from __future__ import annotations

from typing import ClassVar, Literal

from .batch import FrameBatch
from .contract import Key


class Stage:
    """Base class of the stages between decode and encode.

    Subclasses set `name` and override `__call__`. `setup()` runs once in the worker that will call the
    stage (load models there, not in `__init__`, so the stage stays cheap to build and to pickle).
    A stage that needs context across batches (a smoothing window) may return None to hold a batch back
    and release it later; `flush()` returns whatever it still holds when the stream ends.

    `executor` says where the runner runs it: "thread" (the default: torch, numpy and FFmpeg release the
    GIL) or "process" (CPU-bound Python work: the runner maps batches over `processes` worker processes
    and keeps their order; such a stage must be picklable and must not hold state across batches).

    What it reads and writes (contract.py checks a chain against it and drops each key after its last reader),
    as class attributes, or per instance (properties) when they depend on the stage's options:

    reads:  the `data` keys it reads, plus "frames" when it looks at the picture. It reads nothing else: a key
            it does not declare may already have been dropped.
    writes: a `Key` (name, per-item shape, dtype, per_face) for every key it attaches; `Key("frames", ...)`
            when it replaces the picture. Per-face keys are [N, F, ...]: F face slots, NaN / False / black where
            a slot is empty.
    context_before, context_after: frames of input before and after a frame that its output for that frame
            depends on; a stage with context_after > 0 holds batches back (window.py) until that many frames
            past them have arrived, and `flush()` releases them.
    """

    name: ClassVar[str] = "stage"
    executor: ClassVar[Literal["thread", "process"]] = "thread"
    processes: int = 1
    reads: tuple[str, ...] = ()
    writes: tuple[Key, ...] = ()
    context_before: int = 0
    context_after: int = 0

    def setup(self) -> None:
        pass

    def __call__(self, batch: FrameBatch) -> FrameBatch | None:
        raise NotImplementedError

    def flush(self) -> list[FrameBatch]:
        return []

    def close(self) -> None:
        pass
