"""alignment.npz: per-frame alignment results, written incrementally.

Rows are appended per batch to raw spill files next to the output (so an hour-long clip does not hold its
landmarks in memory: 478x2 float32 is 3.8 kB a frame), and `close()` assembles them into an uncompressed .npz
that `numpy.load` reads normally. Keys (N = frames):

  frame_index   [N] int64
  detected      [N] bool      landmarks were found in this frame
  has_quad      [N] bool      detected, or inside a bridged gap (quads valid); False: pass the frame through
  landmark_source [N] uint8   0 none, 1 face mesh, 2 full-range detector fallback
  landmarks     [N,478,2] float32  source-frame pixels (pixel centres at integers), NaN where none
  aligned_quad  [N,4,2] float32   FFHQ corner order TL, BL, BR, TR of the aligned image; NaN where no quad
  crop_quad     [N,4,2] float32   same order, of the unaligned crop
  transform     [N,3,3] float32   StyleGAN3 input transform (see transforms.py)
  rotation_deg  [N] float32, translation [N,2] float32, scale [N] float32
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

FIELDS: dict[str, tuple[str, tuple[int, ...]]] = {
    "frame_index": ("<i8", ()),
    "detected": ("|b1", ()),
    "has_quad": ("|b1", ()),
    "landmark_source": ("|u1", ()),
    "landmarks": ("<f4", (478, 2)),
    "aligned_quad": ("<f4", (4, 2)),
    "crop_quad": ("<f4", (4, 2)),
    "transform": ("<f4", (3, 3)),
    "rotation_deg": ("<f4", ()),
    "translation": ("<f4", (2,)),
    "scale": ("<f4", ()),
}


class AlignmentWriter:
    """Append per-frame rows, then `close()` to write `<directory>/alignment.npz`."""

    def __init__(self, directory: str | os.PathLike, filename: str = "alignment.npz"):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / filename
        self._spill = {k: self.directory / f".{filename}.{k}.part" for k in FIELDS}
        self._files = {k: open(p, "wb") for k, p in self._spill.items()}
        self._count = 0

    def append(self, rows: dict[str, np.ndarray]) -> None:
        n = len(rows["frame_index"])
        for key, (dtype, shape) in FIELDS.items():
            arr = np.ascontiguousarray(np.asarray(rows[key]).astype(dtype, copy=False))
            if arr.shape != (n,) + shape:
                raise ValueError(f"alignment row '{key}' has shape {arr.shape}, expected {(n,) + shape}")
            self._files[key].write(arr.tobytes())
        self._count += n

    def close(self) -> Path:
        """Write alignment.npz and remove the spill files."""
        for f in self._files.values():
            f.close()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, (dtype, shape) in FIELDS.items():
                header = {"descr": dtype, "fortran_order": False, "shape": (self._count,) + shape}
                with zf.open(f"{key}.npy", "w", force_zip64=True) as out, open(self._spill[key], "rb") as src:
                    np.lib.format.write_array_header_2_0(out, header)
                    while chunk := src.read(1 << 22):
                        out.write(chunk)
        os.replace(tmp, self.path)
        self.discard()
        return self.path

    def discard(self) -> None:
        """Drop the spill files without writing (the stream was aborted)."""
        for f in self._files.values():
            f.close()
        for p in self._spill.values():
            p.unlink(missing_ok=True)
