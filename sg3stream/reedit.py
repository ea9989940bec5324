"""Re-edits from a run's artifacts: `sg3stream run IN -o OUT --from ARTIFACTS --edit age:-2`.

Changing an edit's strength should not mean running landmarks, alignment and inversion again. A run with
`--artifacts DIR` keeps what the render needs per face track (alignment.npz; latents_smoothed_track<ID>.npy and
transforms_smoothed_track<ID>.npy) and what identifies its input (run.json's `source`). With `--from DIR` the chain
is

    decode -> recorded (those faces, read back frame by frame) -> edit -> render -> paste [-> label] -> encode

and the result is what a full run with the same options and the new edits gives. Checked before any model loads:
the folder holds a run's artifacts, its input had this input's size, frame count and content checksum (a mismatch
is an error naming what differs), and the options that made the faces (`FACE_OPTIONS`) are the ones given.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .align.artifacts import open_alignment
from .align.landmarks import OUTLINE_POINTS, face_outline
from .errors import UserError
from .pipeline.batch import FrameBatch
from .pipeline.contract import Key
from .pipeline.stage import Stage

# What decides the faces the artifacts hold: these must be as in the recorded run (`--from` refuses a difference)
FACE_OPTIONS = ("encoder", "n_iters", "crop", "align_smoothing", "faces", "min_face", "max_yaw", "min_track_frames",
                "smooth_sigma", "fine_layers", "fine_window")
SAMPLE_BYTES = 4 << 20  # the checksum reads this much at the start, the middle and the end of the file


def source_identity(path: str | os.PathLike, width: int, height: int, frames: int) -> dict:
    """What identifies an input: its size, frame count and a content checksum (BLAKE2b of the file's size and of
    4 MiB at its start, middle and end: quick on a 100 GB plate, and any re-encode or other clip changes it).
    An image sequence: its numbers, and its first, middle and last pictures sampled so."""
    from .video.sequence import find_sequence, is_sequence

    files = [Path(path)]
    digest = hashlib.blake2b(digest_size=16)
    if is_sequence(path):
        sequence = find_sequence(path)
        numbers = sequence.numbers
        digest.update(",".join(map(str, numbers)).encode())
        files = [sequence.path(n) for n in sorted({numbers[0], numbers[len(numbers) // 2], numbers[-1]})]
    for file in files:
        size = file.stat().st_size
        digest.update(str(size).encode())
        with open(file, "rb") as f:
            for offset in sorted({0, max(0, size // 2 - SAMPLE_BYTES // 2), max(0, size - SAMPLE_BYTES)}):
                f.seek(offset)
                digest.update(f.read(SAMPLE_BYTES))
    return {"width": int(width), "height": int(height), "frames": int(frames), "checksum": digest.hexdigest()}


class RecordedRun:
    """A run's artifacts folder, checked against this run's input and options (`check`), read back per frame."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        run_json = self.folder / "run.json"
        if not run_json.is_file() or not (self.folder / "alignment.npz").is_file():
            raise UserError(f"--from {self.folder}: not a run's artifacts folder (it needs run.json and alignment.npz "
                            "from `sg3stream run --artifacts DIR`)")
        try:
            self.run = json.loads(run_json.read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"--from {self.folder}: run.json is not readable ({e})") from None
        if "source" not in self.run or "faces" not in self.run:
            raise UserError(f"--from {self.folder}: its run.json predates re-edits (no `source`/`faces`); run it again "
                            "with --artifacts")

    def check(self, options, identity: dict) -> None:
        """A different input, or options that would have made other faces, is an error naming what differs."""
        recorded = self.run["source"]
        for key in ("width", "height", "frames", "checksum"):
            if recorded.get(key) != identity[key]:
                what = "content" if key == "checksum" else key
                raise UserError(f"--from {self.folder}: recorded from another input ({what}: {recorded.get(key)} "
                                f"there, {identity[key]} here)")
        before = self.run.get("options", {})
        for key in FACE_OPTIONS:
            value = getattr(options, key)
            if key in before and before[key] != value:
                raise UserError(f"--from {self.folder}: --{key.replace('_', '-')} was {before[key]!r} in that run, "
                                f"{value!r} now; the recorded faces depend on it (run again without --from)")

    def stage(self) -> "RecordedFacesStage":
        return RecordedFacesStage(self.folder, [t["id"] for t in self.run["faces"]],
                                  {t["id"]: t["first_frame"] for t in self.run["faces"]})


class RecordedFacesStage(Stage):
    """The faces of a recorded run, frame by frame: what the edit, render and paste stages read, as the full run's
    smoothing and alignment wrote them (memory-mapped: nothing is read before its frame)."""

    name = "recorded"
    executor = "thread"
    reads = ()
    writes = (
        Key("has_latents", (), "bool", doc="the face was inverted in the recorded run"),
        Key("track_id", (), "int32", doc="the face's track, -1: empty slot"),
        Key("latents_smoothed", ("num_ws", "w_dim"), "float32", doc="the recorded smoothed code"),
        Key("transform_smoothed", (3, 3), "float32", doc="the recorded smoothed transform"),
        Key("crop_quad", (4, 2), "float32", doc="the recorded crop square, source pixels"),
        Key("face_outline", (OUTLINE_POINTS, 2), "float32", doc="from the recorded landmarks"),
    )

    def __init__(self, folder: Path, tracks: list[int], first_frame: dict[int, int]):
        self.folder = folder
        self.tracks = tracks
        self.first_frame = first_frame
        self.alignment = None
        self.codes: dict[int, np.ndarray] = {}
        self.transforms: dict[int, np.ndarray] = {}

    def setup(self) -> None:
        self.alignment = open_alignment(self.folder / "alignment.npz")
        for t in self.tracks:
            for into, stem in ((self.codes, "latents_smoothed"), (self.transforms, "transforms_smoothed")):
                path = self.folder / f"{stem}_track{t}.npy"
                if not path.is_file():
                    raise UserError(f"--from {self.folder}: {path.name} is missing")
                into[t] = np.load(path, mmap_mode="r")

    def __call__(self, batch: FrameBatch) -> FrameBatch:
        if self.alignment is None:
            self.setup()
        a = self.alignment
        rows = np.asarray(batch.index, np.int64)  # alignment.npz has a row per frame, in order
        if rows[-1] >= len(a["frame_index"]):
            raise UserError(f"--from {self.folder}: alignment.npz has {len(a['frame_index'])} frames, the input more")
        track = np.asarray(a["track_id"][rows])
        usable = (np.asarray(a["detected"][rows]) & np.asarray(a["has_quad"][rows])
                  & (np.asarray(a["passthrough"][rows]) == 0) & (track >= 0))
        some = next(iter(self.codes.values()), None)
        codes = np.full(track.shape + (some.shape[1:] if some is not None else (0, 0)), np.nan, np.float32)
        transforms = np.full(track.shape + (3, 3), np.nan, np.float32)
        for i, k in zip(*np.nonzero(usable)):
            t = int(track[i, k])
            r = int(rows[i]) - self.first_frame[t]
            codes[i, k] = self.codes[t][r]
            transforms[i, k] = self.transforms[t][r]
        has = usable & np.isfinite(codes).all(axis=(-2, -1)) & np.isfinite(transforms).all(axis=(-2, -1))
        out = batch.replace()
        out.data.update(has_latents=has, track_id=track.astype(np.int32), latents_smoothed=codes,
                        transform_smoothed=transforms, crop_quad=np.asarray(a["crop_quad"][rows]),
                        face_outline=face_outline(np.asarray(a["landmarks"][rows])))
        return out
