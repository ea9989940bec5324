"""The artifacts folder (`--artifacts DIR`): run.json and whatever stages leave for inspection."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError


class Artifacts:
    """A folder that files are written into atomically (temporary name, then rename).

    A failed run leaves no trace: `abort()` removes the folder again when this run created it.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.streams: list[NpyStream] = []
        # the first folder of the path that does not exist yet: what abort() removes (None: it existed)
        self.created = next((p for p in reversed([self.folder, *self.folder.parents]) if not p.exists()), None)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create the artifacts folder {self.folder}: {e.strerror}") from e
        if not os.access(self.folder, os.W_OK):
            raise UserError(f"artifacts folder is not writable: {self.folder}")

    def path(self, name: str) -> Path:
        return self.folder / name

    def write_json(self, name: str, obj: Any) -> Path:
        return self._atomic(name, lambda f: f.write(json.dumps(obj, indent=2, default=_jsonable).encode()))

    def open_npy_stream(self, name: str) -> "NpyStream":
        """An .npy file written block by block (constant memory); it appears when the run commits."""
        stream = NpyStream(self.path(name))
        self.streams.append(stream)
        return stream

    def open_track_streams(self, stem: str) -> "TrackStreams":
        """One .npy per face track, `<stem>_track<ID>.npy` (see TrackStreams)."""
        return TrackStreams(self, stem)

    def commit(self) -> None:
        """The run succeeded: finish the streamed files."""
        for stream in self.streams:
            stream.close()
        self.streams = []

    def abort(self) -> None:
        """The run failed: drop the streamed files (nothing half-written is left), and the folder if it is ours."""
        for stream in self.streams:
            stream.abort()
        self.streams = []
        if self.created is not None:
            shutil.rmtree(self.created, ignore_errors=True)

    def _atomic(self, name: str, write) -> Path:
        target = self.path(name)
        tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                write(f)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


class NpyStream:
    """Appends [n, ...] blocks to an .npy file whose first dimension grows; close() fixes the header and renames.

    The header is written with room to spare and rewritten at the end, so nothing is held in memory. The file is
    opened for each block, not held open: a film can have thousands of face tracks, each with its stream.
    """

    HEADER_BYTES = 256

    def __init__(self, target: Path):
        self.target = target
        self.tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
        with open(self.tmp, "wb") as f:
            f.write(b"\0" * self.HEADER_BYTES)
        self.rows = 0
        self.row_shape: tuple[int, ...] | None = None
        self.dtype: np.dtype | None = None

    def write(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block)
        if self.row_shape is None:
            self.row_shape, self.dtype = block.shape[1:], block.dtype
        if block.shape[1:] != self.row_shape or block.dtype != self.dtype:
            raise ValueError(f"{self.target.name}: block {block.shape} {block.dtype} does not match "
                             f"rows {self.row_shape} {self.dtype}")
        with open(self.tmp, "ab") as f:
            f.write(block.tobytes())
        self.rows += len(block)

    def close(self) -> Path:
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype or np.dtype(np.float32)), "fortran_order": False,
                  "shape": (self.rows, *(self.row_shape or ()))}
        text = repr(header).encode("latin1")
        prefix = b"\x93NUMPY\x01\x00"
        pad = self.HEADER_BYTES - len(prefix) - 2 - len(text) - 1
        with open(self.tmp, "r+b") as f:
            f.write(prefix + np.uint16(len(text) + pad + 1).tobytes() + text + b" " * pad + b"\n")
        os.replace(self.tmp, self.target)
        return self.target

    def abort(self) -> None:
        self.tmp.unlink(missing_ok=True)


class TrackStreams:
    """Per-face values [N, F, ...] of frames in order -> one NpyStream per track, `<stem>_track<ID>.npy`, whose
    row r is the track's frame `first_frame + r` (run.json's `faces` gives first_frame; NaN rows where the track has
    a slot but no value, e.g. a bridged gap)."""

    def __init__(self, artifacts: Artifacts, stem: str):
        self.artifacts = artifacts
        self.stem = stem
        self.streams: dict[int, tuple[NpyStream, list[int]]] = {}  # track -> (stream, [next frame])

    def write(self, index: np.ndarray, track_id: np.ndarray, values: np.ndarray) -> None:
        """index [N], track_id [N, F] (-1: none), values [N, F, ...] float."""
        for tid in np.unique(track_id[track_id >= 0]):
            frames, slots = np.nonzero(track_id == tid)  # at most one slot per frame holds a track
            rows = values[frames, slots].astype(np.float32)
            if int(tid) not in self.streams:
                stream = self.artifacts.open_npy_stream(f"{self.stem}_track{int(tid)}.npy")
                self.streams[int(tid)] = (stream, [int(index[frames[0]])])
            stream, next_frame = self.streams[int(tid)]
            at = np.asarray(index, np.int64)[frames] - next_frame[0]  # row offsets from the next row to write
            block = np.full((int(at[-1]) + 1,) + rows.shape[1:], np.nan, np.float32)
            block[at] = rows
            stream.write(block)
            next_frame[0] += len(block)
