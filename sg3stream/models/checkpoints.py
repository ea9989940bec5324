"""Reading torch checkpoints without running arbitrary pickled code.

`safe_torch_load` is `torch.load(weights_only=True)` plus a short, explicit allowlist of the non-tensor objects
that official ReStyle checkpoints put in their `opts`:

- pathlib paths: read back as *pure* paths (`PurePosixPath` / `PureWindowsPath`), so a checkpoint written on
  Windows loads on Linux and nothing in it can touch the file system;
- `argparse.Namespace` (older training scripts saved `opts` as a Namespace, newer ones as a dict).

Anything else (a pickled class, a function, an NVlabs network pickle) is refused with a `UserError` naming the
object that was refused.

torch's weights-only unpickler does not bound the work a pickle causes (a dict key of 60 nested pairs of one
tuple takes 2^60 steps to hash; a deeply nested one crashes the interpreter), so `check_torch_pickles` scans the
pickles of a torch file first (limits.check_pickle). Tensor views larger than their storage need no check here:
zip storages cannot grow, and an old-format storage that grew no longer matches its data, which torch refuses.
"""
from __future__ import annotations

import argparse
import io
import os
import pathlib
import pickle
import zipfile
from typing import Any, BinaryIO

import torch

from sg3stream.errors import UserError

from .limits import UnreadablePickle, check_pickle

__all__ = ["ALLOWED_GLOBALS", "check_torch_pickles", "safe_torch_load"]

LEGACY_PICKLES = 5  # torch's non-zip format: magic number, protocol, sys info, the object, storage keys
MAX_DATA_PKL = 1 << 30  # the pickle inside a torch zip (tensor data lives beside it)

# (object, the name it has in a pickle). Only what ReStyle checkpoints need.
ALLOWED_GLOBALS: list[Any] = [
    (pathlib.PurePosixPath, "pathlib.PosixPath"),
    (pathlib.PureWindowsPath, "pathlib.WindowsPath"),
    (pathlib.PurePosixPath, "pathlib.PurePosixPath"),
    (pathlib.PureWindowsPath, "pathlib.PureWindowsPath"),
    argparse.Namespace,
]


def safe_torch_load(source: str | os.PathLike | BinaryIO | bytes, *, what: str = "checkpoint") -> Any:
    """Load a torch checkpoint onto the CPU with weights_only=True and the allowlist above.

    Raises UserError when the file is missing, is not a torch checkpoint, or holds an object outside the allowlist.
    """
    name = "<memory>" if isinstance(source, (bytes, io.IOBase)) else str(source)
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    elif not isinstance(source, io.IOBase) and not hasattr(source, "read"):
        p = pathlib.Path(source)
        if not p.is_file():
            raise UserError(f"{what} not found: {p} (expected a path to an existing .pt file)")
    check_torch_pickles(source, what=f"{what} {name}")
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        refused = ""
        for line in msg.splitlines():
            if "Unsupported global" in line or "Unsupported operand" in line or "GLOBAL" in line:
                refused = line.strip()
                break
        detail = f" ({refused})" if refused else f" ({msg.splitlines()[0] if msg else type(e).__name__})"
        raise UserError(
            f"{what} {name} cannot be read safely{detail}. Accepted: a torch checkpoint holding only tensors, "
            f"dicts/lists, numbers, strings, pathlib paths and argparse.Namespace (e.g. an official ReStyle .pt); "
            f"network pickles (NVlabs .pkl) are not loaded here"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise UserError(f"{what} {name} is not a readable torch checkpoint: {type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}") from None


def check_torch_pickles(source, what: str = "checkpoint") -> None:
    """Scan the pickles torch.load would unpickle from `source` (a path or a seekable binary stream, left where it
    was); raise UserError when one is out of bounds.

    Pickles that cannot be parsed are left to torch.load, which stops at the same place with its own error.
    """
    own = isinstance(source, (str, os.PathLike))
    f = open(source, "rb") if own else source
    start = f.tell()
    try:
        head = f.read(4)
        f.seek(start)
        if head.startswith(b"PK"):
            try:
                with zipfile.ZipFile(f) as archive:
                    for info in archive.infolist():
                        if info.filename == "data.pkl" or info.filename.endswith("/data.pkl"):
                            if info.file_size > MAX_DATA_PKL:  # read as a stream, up to the size it declares
                                raise UserError(f"{what}: its {info.filename} has {info.file_size} bytes "
                                                f"(a checkpoint's has a few MB)")
                            with archive.open(info) as member:
                                check_pickle(member, f"{what} ({info.filename})")
            except UnreadablePickle:
                pass
            except (zipfile.BadZipFile, OSError, EOFError, ValueError):
                pass  # torch.load reports a broken archive
            return
        try:
            for _ in range(LEGACY_PICKLES):
                check_pickle(f, what)
        except UnreadablePickle:
            pass
    finally:
        if own:
            f.close()
        else:
            f.seek(start)

