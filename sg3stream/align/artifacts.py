"""alignment.npz: per-frame alignment results, written incrementally.

Rows are appended per batch to raw spill files next to the output (so an hour-long clip does not hold its
landmarks in memory: 478x2 float32 is 3.8 kB a frame), and `close()` assembles them into an uncompressed .npz
that `numpy.load` reads normally. Keys (N = frames, F = face slots, `--faces`; slot k holds one track at a
time, `track_id` says which):

  frame_index   [N] int64
  track_id      [N,F] int32   the face's track (run.json's `faces`); -1: empty slot
  detected      [N,F] bool    landmarks were found for this face in this frame
  has_quad      [N,F] bool    detected, or inside a bridged gap (quads valid); False: no face there
  passthrough   [N,F] uint8   why a detected face was left unchanged: 0 edited, 1 small, 2 profile, 3 short
  landmark_source [N,F] uint8 0 none, 1 face mesh, 2 full-range detector fallback
  landmarks     [N,F,478,2] float32  source-frame pixels (pixel centres at integers), NaN where none
  aligned_quad  [N,F,4,2] float32   FFHQ corner order TL, BL, BR, TR of the aligned image; NaN where no quad
  crop_quad     [N,F,4,2] float32   same order, of the unaligned crop
  transform     [N,F,3,3] float32   StyleGAN3 input transform (see transforms.py)
  rotation_deg  [N,F] float32, translation [N,F,2] float32, scale [N,F] float32
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ..pipeline.contract import widen

# key -> (dtype, shape after the frame axis and, except frame_index, the face axis)
FIELDS: dict[str, tuple[str, tuple[int, ...]]] = {
    "frame_index": ("<i8", ()),
    "track_id": ("<i4", ()),
    "detected": ("|b1", ()),
    "has_quad": ("|b1", ()),
    "passthrough": ("|u1", ()),
    "landmark_source": ("|u1", ()),
    "landmarks": ("<f4", (478, 2)),
    "aligned_quad": ("<f4", (4, 2)),
    "crop_quad": ("<f4", (4, 2)),
    "transform": ("<f4", (3, 3)),
    "rotation_deg": ("<f4", ()),
    "translation": ("<f4", (2,)),
    "scale": ("<f4", ()),
}


# what an empty face slot holds (floats: NaN)
FILL = {"track_id": -1, "detected": False, "has_quad": False, "passthrough": 0, "landmark_source": 0}


class AlignmentWriter:
    """Append per-frame rows, then `close()` to write `<directory>/alignment.npz`."""

    def __init__(self, directory: str | os.PathLike, filename: str = "alignment.npz"):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / filename
        self._spill = {k: self.directory / f".{filename}.{k}.part" for k in FIELDS}
        self._files = {k: open(p, "wb") for k, p in self._spill.items()}
        self._count = 0
        # (rows, F) of each append: the face axis may grow during the stream (TrackStage), and close() widens the
        # earlier rows to the final F
        self._parts: list[tuple[int, int]] = []

    @property
    def faces(self) -> int:
        return max((f for _, f in self._parts), default=0)

    @staticmethod
    def _shape(key: str, faces: int) -> tuple[int, ...]:
        return FIELDS[key][1] if key == "frame_index" else (faces,) + FIELDS[key][1]

    def append(self, rows: dict[str, np.ndarray]) -> None:
        n = len(rows["frame_index"])
        faces = int(np.shape(rows["detected"])[1])
        for key, (dtype, _) in FIELDS.items():
            shape = self._shape(key, faces)
            arr = np.ascontiguousarray(np.asarray(rows[key]).astype(dtype, copy=False))
            if arr.shape != (n,) + shape:
                raise ValueError(f"alignment row '{key}' has shape {arr.shape}, expected {(n,) + shape}")
            self._files[key].write(arr.tobytes())
        self._count += n
        self._parts.append((n, faces))

    def close(self) -> Path:
        """Write alignment.npz and remove the spill files."""
        for f in self._files.values():
            f.close()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            faces = self.faces
            for key, (dtype, _) in FIELDS.items():
                header = {"descr": dtype, "fortran_order": False, "shape": (self._count,) + self._shape(key, faces)}
                with zf.open(f"{key}.npy", "w", force_zip64=True) as out, open(self._spill[key], "rb") as src:
                    np.lib.format.write_array_header_2_0(out, header)
                    for n, f in self._parts:
                        part = np.frombuffer(src.read(n * int(np.prod(self._shape(key, f))) * np.dtype(dtype).itemsize),
                                             dtype).reshape((n,) + self._shape(key, f))
                        if key != "frame_index":
                            part = widen(part, faces, FILL.get(key, np.nan))
                        out.write(np.ascontiguousarray(part).tobytes())
        os.replace(tmp, self.path)
        self.discard()
        return self.path

    def discard(self) -> None:
        """Drop the spill files without writing (the stream was aborted)."""
        for f in self._files.values():
            f.close()
        for p in self._spill.values():
            p.unlink(missing_ok=True)


def open_alignment(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """alignment.npz as read-only memory maps, one per key: rows are read from disk as they are indexed, so a long
    clip's landmarks are never all in memory (the file is stored uncompressed, each member contiguous)."""
    path = Path(path)
    out = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                raise ValueError(f"{path.name}: member {info.filename} is not a stored .npy")
            f.seek(info.header_offset + 26)  # the local header: its name and extra field lengths, then the data
            name_len, extra_len = np.frombuffer(f.read(4), "<u2")
            start = info.header_offset + 30 + int(name_len) + int(extra_len)
            f.seek(start)
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            out[info.filename[:-4]] = np.memmap(path, dtype=dtype, mode="r", offset=f.tell(), shape=shape,
                                                order="F" if fortran else "C")
    return out
