"""What a pipeline stage is: a small object that turns a batch into a batch.

The runner (runner.py) owns threads, processes, queues, errors and shutdown; a stage owns none of them.
"""
from __future__ import annotations

from typing import ClassVar, Literal

from .batch import FrameBatch


class Stage:
    """Base class of the stages between decode and encode.

    Subclasses set `name` and override `__call__`. `setup()` runs once in the worker that will call the
    stage (load models there, not in `__init__`, so the stage stays cheap to build and to pickle).
    A stage that needs context across batches (a smoothing window) may return None to hold a batch back
    and release it later; `flush()` returns whatever it still holds when the stream ends.

    `executor` says where the runner runs it: "thread" (the default: torch, numpy and FFmpeg release the
    GIL) or "process" (CPU-bound Python work: the runner maps batches over `processes` worker processes
    and keeps their order; such a stage must be picklable and must not hold state across batches).
    """

    name: ClassVar[str] = "stage"
    executor: ClassVar[Literal["thread", "process"]] = "thread"
    processes: int = 1

    def setup(self) -> None:
        pass

    def __call__(self, batch: FrameBatch) -> FrameBatch | None:
        raise NotImplementedError

    def flush(self) -> list[FrameBatch]:
        return []

    def close(self) -> None:
        pass
