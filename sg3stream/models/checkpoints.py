"""Reading torch checkpoints without running arbitrary pickled code.

`safe_torch_load` is `torch.load(weights_only=True)` plus a short, explicit allowlist of the non-tensor objects
that official ReStyle checkpoints put in their `opts`:

- pathlib paths: read back as *pure* paths (`PurePosixPath` / `PureWindowsPath`), so a checkpoint written on
  Windows loads on Linux and nothing in it can touch the file system;
- `argparse.Namespace` (older training scripts saved `opts` as a Namespace, newer ones as a dict).

Anything else (a pickled class, a function, an NVlabs network pickle) is refused with a `UserError` naming the
object that was refused.
"""
from __future__ import annotations

import argparse
import io
import os
import pathlib
import pickle
from typing import Any, BinaryIO

import torch

from sg3stream.errors import UserError

__all__ = ["ALLOWED_GLOBALS", "safe_torch_load"]

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
