"""What the stages of a chain read and write, checked once when the chain is built.

Every stage declares the keys of `FrameBatch.data` it reads and the keys it writes, with each key's shape per
item (per frame, or per face on the face axis), its dtype, and how many frames of context it holds back. A chain
is valid when every key a stage reads is written by a stage before it (or by the source); `Chain` also works out
after which stage each key is read for the last time, so that the runner can drop it there instead of carrying
256² crops and 478 landmarks down to the encoder.

    frames, index, pts         what the source gives (the decoded picture and its numbers and timestamps)
    per-frame keys             shape [N, ...]       N = frames in the batch
    per-face keys              shape [N, F, ...]    F = face slots of the chain (`faces`), NaN/False where empty
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..errors import UserError

SOURCE_KEYS = ("frames",)  # what the source gives besides index and pts (a batch's own fields)


@dataclass(frozen=True)
class Key:
    """One key of `FrameBatch.data`: its shape per item (symbolic sizes are names), dtype and axis."""

    name: str
    shape: tuple[int | str, ...] = ()
    dtype: str = "float32"
    per_face: bool = True  # [N, F, *shape]; False: [N, *shape]
    doc: str = ""

    def describe(self) -> str:
        axes = ["N", "F"] if self.per_face else ["N"]
        return f"[{', '.join(axes + [str(s) for s in self.shape])}] {self.dtype}"


FRAMES = Key("frames", ("H", "W", 3), "uint8", per_face=False, doc="the picture, RGB")


class ChainError(UserError):
    """A chain whose stages do not fit together (a key read before any stage writes it)."""


@dataclass
class Link:
    """What one stage of a chain reads, writes and holds, as the chain sees it."""

    name: str
    reads: tuple[str, ...]
    writes: tuple[Key, ...]
    context_before: int
    context_after: int
    drops: tuple[str, ...] = ()  # keys no later stage reads: removed from the batch after this stage


def declared(stage) -> Link:
    """The declaration of a stage (class attributes `reads`, `writes`, `context_before`, `context_after`, which a
    stage may also set per instance when they depend on its options)."""
    return Link(name=stage.name, reads=tuple(getattr(stage, "reads", ())), writes=tuple(getattr(stage, "writes", ())),
                context_before=int(getattr(stage, "context_before", 0)),
                context_after=int(getattr(stage, "context_after", 0)))


class Chain:
    """Stages checked against each other: `links[i]` says what stage i reads, writes, holds and drops.

    sink_reads: what the sink after the last stage needs (the encoder: frames; PTI's collector: its keys).
    """

    def __init__(self, stages: Sequence, *, sink_reads: Iterable[str] = ("frames",), sink_name: str = "encode"):
        self.stages = list(stages)
        self.links = [declared(s) for s in self.stages]
        self.sink_reads = tuple(sink_reads)
        self.sink_name = sink_name
        self.picture_queue_size: int | None = None  # batches a queue carrying the pictures holds (None: as any)
        self.faces = None  # the chain's FaceLedger (sg3stream/align/ledger.py) when its alignment counts tracks
        self.keys: dict[str, Key] = {FRAMES.name: FRAMES}
        for link in self.links:
            for name in link.reads:
                if name not in self.keys:
                    raise ChainError(self._missing(link.name, name))
            for key in link.writes:
                self.keys[key.name] = key
        for name in self.sink_reads:
            if name not in self.keys:
                raise ChainError(self._missing(self.sink_name, name))
        self._plan_drops()

    def _missing(self, reader: str, name: str) -> str:
        written = ", ".join(k for k in self.keys if k not in SOURCE_KEYS) or "nothing"
        return (f"the chain cannot be built: stage '{reader}' reads '{name}', which no stage before it writes "
                f"(written before it: {written})")

    def _plan_drops(self) -> None:
        """Each key goes after its last reader (right after its writer when nobody reads it). A key that a later
        stage writes again (the picture, redecoded for the paste) goes after the last reader of its old value."""
        last: dict[str, int] = {}  # key -> the stage that last needs its current value
        drops: dict[int, set[str]] = {}
        for i, link in enumerate(self.links):
            for name in link.reads:
                last[name] = i
            for key in link.writes:
                if key.name in last and key.name not in link.reads:
                    drops.setdefault(last[key.name], set()).add(key.name)  # replaced here: the old value can go
                last[key.name] = i
        for name in self.sink_reads:
            last.pop(name, None)  # the sink needs it: never dropped
        for name, i in last.items():
            drops.setdefault(i, set()).add(name)
        for i, link in enumerate(self.links):
            link.drops = tuple(sorted(drops.get(i, ())))

    @classmethod
    def unchecked(cls, stages: Sequence, sink_name: str = "encode") -> "Chain":
        """Stages as given, nothing checked and nothing dropped: for a source whose batches already carry keys
        (tests feeding a stage hand-made batches) and a sink that may read anything."""
        chain = cls.__new__(cls)
        chain.stages, chain.links = list(stages), [declared(s) for s in stages]
        chain.sink_reads, chain.sink_name, chain.picture_queue_size = (), sink_name, None
        chain.keys = {FRAMES.name: FRAMES, **{k.name: k for link in chain.links for k in link.writes}}
        return chain

    def pictures_flow(self) -> list[bool]:
        """For each queue (after the source, then after each stage): whether its batches carry the pictures."""
        flowing, carries = True, [True]
        for link in self.links:
            written = any(k.name == FRAMES.name for k in link.writes)
            flowing = (flowing or written) and FRAMES.name not in link.drops
            carries.append(flowing)
        return carries

    @property
    def context(self) -> tuple[int, int]:
        """Frames of input a frame's output depends on, before and after it: the windows of the stages, chained."""
        return (sum(link.context_before for link in self.links), sum(link.context_after for link in self.links))

    def table(self) -> list[dict]:
        """One row per stage: what it reads and writes (with shapes) and drops; for `sg3stream chain` and the README."""
        return [{"stage": link.name, "reads": list(link.reads),
                 "writes": {k.name: k.describe() for k in link.writes}, "drops": list(link.drops),
                 "context": [link.context_before, link.context_after]} for link in self.links]


def drop_keys(batch, names: Iterable[str]):
    """The batch without the given keys (a shallow copy: other holders of the batch keep theirs); dropping
    "frames" leaves the batch without its picture (frames None) until a stage writes it again."""
    names = [n for n in names if n in batch.data or (n == FRAMES.name and batch.frames is not None)]
    if not names:
        return batch
    out = batch.replace()
    for name in names:
        if name == FRAMES.name:
            out.frames = None
        else:
            del out.data[name]
    return out


def nbytes(value) -> int:
    """Bytes held by a data value (arrays, dicts and lists of arrays)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value)
    return 0


def batch_bytes(batch) -> int:
    """Bytes a batch holds: its frames and every data key."""
    return nbytes(batch.frames) + sum(nbytes(v) for v in batch.data.values())


def widen(values: np.ndarray, faces: int, fill) -> np.ndarray:
    """Per-face values [N, F, ...] -> [N, faces, ...], the new slots filled with `fill` (no copy when as wide)."""
    if values.shape[1] >= faces:
        return values
    out = np.full((values.shape[0], faces) + values.shape[2:], fill, dtype=values.dtype)
    out[:, :values.shape[1]] = values
    return out
