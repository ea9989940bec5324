"""The artifacts folder (`--artifacts DIR`): run.json and whatever stages leave for inspection."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError


class Artifacts:
    """A folder that files are written into atomically (temporary name, then rename)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
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

    def write_npy(self, name: str, array: np.ndarray) -> Path:
        return self._atomic(name, lambda f: np.save(f, array))

    def write_npz(self, name: str, **arrays: np.ndarray) -> Path:
        return self._atomic(name, lambda f: np.savez_compressed(f, **arrays))

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
