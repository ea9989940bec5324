"""Saving a (tuned) generator in the project format, so that `--generator PATH` and `load_generator` read it back."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import UserError
from ..models.loading import PROJECT_FORMAT, _json_default


def save_generator(G: torch.nn.Module, path: str | Path, *, tuned_from: str | None = None) -> Path:
    """Write G (state dict + constructor config) as one safetensors file, atomically (temporary name, rename).

    tuned_from: the generator it was tuned from, kept in the metadata for the record.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise UserError(f"--save-generator '{path}': the project format is a .safetensors file; give a name "
                        f"ending in .safetensors")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in G.state_dict().items()}
    metadata = {"format": PROJECT_FORMAT, "config": json.dumps(G.init_kwargs, default=_json_default)}
    if tuned_from:
        metadata["tuned_from"] = str(tuned_from)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("." + path.name + ".tmp")
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"--save-generator '{path}': cannot write it ({e.strerror or e})") from None
    return path


def tuned_from(path: str | Path | None) -> str | None:
    """What a saved generator was tuned from (the `tuned_from` metadata of save_generator), None otherwise."""
    if path is None or Path(path).suffix != ".safetensors" or not Path(path).is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get("tuned_from")
    except Exception:  # not a safetensors file after all: the loader reports that properly
        return None
