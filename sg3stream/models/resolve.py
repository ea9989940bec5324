"""One resolver for what users pass as a generator or an encoder: a file, a registry name, or a built-in.

Looked up in this order:
1. a built-in configuration: generators "demo", "sg3-t-1024", "sg3-r-1024" (configs.BUILTIN_GENERATORS; random
   weights, no file) and "oracle" (no network: the run's own faces, oracle.py), encoders "demo";
2. an existing file;
3. a name from `sg3stream models list` (registry.REGISTRY) whose file is in the cache (download.models_dir()).

Anything else is a UserError that says what to do: download the named model, or pass the file's path.
`sg3stream.models.load_generator`, `restyle.load_encoder`, `download.resolve_weights` and the run command all go
through `resolve_model`, so a name means the same everywhere.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sg3stream.errors import UserError

from .registry import REGISTRY

__all__ = ["ModelSource", "BUILTIN_ENCODERS", "builtin_names", "resolve_model"]

KINDS = ("generator", "encoder")
BUILTIN_ENCODERS = ("demo",)


def builtin_names(kind: str | None = None) -> list[str]:
    """Built-in names of `kind` ("generator", "encoder", or None for both)."""
    from .configs import BUILTIN_GENERATORS
    from .oracle import ORACLE

    names = [*BUILTIN_GENERATORS, ORACLE] if kind in (None, "generator") else []
    names += [n for n in BUILTIN_ENCODERS if kind in (None, "encoder") and n not in names]
    return names


@dataclass(frozen=True)
class ModelSource:
    """What a generator/encoder argument stands for: a file (`path`) or a built-in configuration (`builtin`)."""
    spec: str
    path: Path | None = None
    builtin: str | None = None

    @property
    def is_demo(self) -> bool:
        return self.builtin == "demo"


def resolve_model(name_or_path: str | os.PathLike, kind: str | None = None) -> ModelSource:
    """The file or built-in behind `name_or_path`, for a model of `kind` ("generator", "encoder" or None: any).

    Raises UserError naming what to do when it is neither: `sg3stream models download NAME` for a registry name
    that is not in the cache, the file's path otherwise.
    """
    if kind not in (None, *KINDS):
        raise ValueError(f"kind must be one of {KINDS} or None, not {kind!r}")
    what = kind or "model"
    spec = str(name_or_path)
    if spec in builtin_names(kind):
        return ModelSource(spec, builtin=spec)
    path = Path(spec).expanduser()
    if path.is_file():
        return ModelSource(spec, path=path)
    if path.is_dir():
        raise UserError(f"{what} '{spec}' is a folder; give the path of a {what} file, or a name from "
                        f"`sg3stream models list`")
    entry = REGISTRY.get(spec)
    if entry is not None:
        if kind is not None and entry.kind != kind:
            raise UserError(_wrong_kind(spec, entry.kind, kind))
        from .download import models_dir

        cached = models_dir() / entry.filename
        if cached.is_file():
            return ModelSource(spec, path=cached)
        if entry.url is None:
            raise UserError(f"{spec} is not downloaded and cannot be downloaded automatically (it is a folder): "
                            f"download it by hand from {entry.page} and pass its path")
        raise UserError(f"{spec} is not downloaded: run `sg3stream models download {spec}`, or pass the file's "
                        f"path (looked for {cached})")
    if spec in builtin_names():  # a built-in of the other kind
        raise UserError(_wrong_kind(spec, "built-in " + ("generator" if kind == "encoder" else "encoder"), kind))
    names = builtin_names(kind) + [n for n, e in REGISTRY.items() if kind is None or e.kind == kind]
    if path.suffix or os.sep in spec or "/" in spec:
        known = [n for n, e in REGISTRY.items() if e.filename == path.name]
        hint = (f" ({path.name} is the file of the model name {known[0]}: pass that name once it is downloaded)"
                if known else f"; or give a {what} name: {', '.join(names)}")
        raise UserError(f"{what} file not found: {path}{hint}")
    raise UserError(f"'{spec}' is neither a file nor a {what} name. Names: {', '.join(names)} (`sg3stream models "
                    f"list` describes them; get one with `sg3stream models download NAME`), or pass a file's path")


def _wrong_kind(spec: str, is_kind: str, wanted: str) -> str:
    if is_kind == "encoder":
        how = f"pass it as the encoder (`--encoder {spec}`): its checkpoint includes its generator"
    elif is_kind == "generator":
        how = f"pass it as the generator (`--generator {spec}`)"
    elif is_kind == "boundaries":
        how = "its edit directions go in a folder beside the generator (see the README's Weights section)"
    else:
        names = builtin_names(wanted) + [n for n, e in REGISTRY.items() if e.kind == wanted]
        how = f"{wanted} names: {', '.join(names)}"
    return f"{spec} is {_article(is_kind)} {is_kind}, not {_article(wanted)} {wanted}: {how}"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"
