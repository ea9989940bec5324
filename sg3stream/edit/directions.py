"""Edit directions: InterFaceGAN directions in W and StyleSpace directions in S, and how names resolve.

`--edit NAME[:STRENGTH]` names one of the directions that belong to the chosen generator, or gives one directly:
  - a path to an InterFaceGAN boundary `.npy` ([1, w_dim], [w_dim] or [num_ws, w_dim]): a direction in W;
  - a path to a `.npz` of StyleSpace directions ({layer name: [channels]}): a direction in S;
  - `s:LAYER:CHANNEL`: one StyleSpace channel (layer names as `G.synthesis.style_names`, e.g. L6_148_512).
Edits are added: w + strength * d (the reference's InterFaceGAN editing), s[layer] + strength * d[layer].

Where the named directions of a generator come from:
  - the built-in demo generator carries fixed directions (`DEMO_DIRECTIONS`, drawn from a fixed seed: they change
    the demo's faces, they do not mean smile or age — the demo shows the pipeline, not a real edit);
  - a generator loaded from a file (`--generator`, else the `--encoder` checkpoint that holds it) looks in
    `<file stem>.directions/` beside the file, then in the models cache `directions/<file stem>/`, for `NAME.npy`
    (or `NAME_boundary.npy`, the InterFaceGAN file name) and `NAME.npz`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError

DEFAULT_STRENGTH = 3.0
DEMO_DIRECTIONS = ("smile", "age", "pose", "gender", "eyes")
DIRECTION_SUFFIXES = (".npy", ".npz")
DEMO_STYLE_DIRECTIONS = {"eyes"}  # the demo's StyleSpace example; the others are W directions


@dataclass
class Direction:
    name: str
    w: np.ndarray | None = None                          # [num_ws, w_dim] per unit strength
    s: dict[str, np.ndarray] = field(default_factory=dict)  # layer -> [channels] per unit strength

    @property
    def space(self) -> str:
        return "w" if self.w is not None else "s"


@dataclass
class Edit:
    direction: Direction
    strength: float
    track: int | None = None  # the face track it applies to (`@N`); None: every face

    def describe(self) -> dict:
        return {"name": self.direction.name, "space": self.direction.space, "strength": self.strength,
                "track": self.track}


def split_track(text: str) -> tuple[str, int | None]:
    """`--edit NAME[:STRENGTH][@TRACK]` -> (NAME[:STRENGTH], TRACK or None): 'smile@1' -> ('smile', 1),
    'age:-2@0' -> ('age:-2', 0), 'smile' -> ('smile', None). An '@' not followed by a whole number is an error."""
    head, sep, tail = text.rpartition("@")
    if not sep:
        return text, None
    if not tail.isdigit() or not head:
        raise UserError(f"--edit '{text}': the face track after '@' must be a whole number from 0 "
                        "(NAME[:STRENGTH][@TRACK], e.g. smile@1; run.json's `faces` lists the tracks)")
    return head, int(tail)


def parse_edit(text: str) -> tuple[str, float]:
    """Split `--edit NAME[:STRENGTH]`; a strength that is not a number is an error, not part of the name.

    'smile' -> ('smile', 3.0); 'age:-2' -> ('age', -2.0); 'dir/x.npy:1.5' -> ('dir/x.npy', 1.5);
    's:L6_148_512:12' -> ('s:L6_148_512:12', 3.0); 's:L6_148_512:12:-1' -> ('s:L6_148_512:12', -1.0).
    """
    if not text:
        raise UserError("--edit needs a name: NAME[:STRENGTH]")
    if text.startswith("s:"):  # s:LAYER:CHANNEL[:STRENGTH]: the channel's colon is not a strength
        parts = text.split(":")
        if len(parts) not in (3, 4) or not parts[1] or not parts[2].isdigit():
            raise UserError(f"a StyleSpace channel edit reads s:LAYER:CHANNEL[:STRENGTH], got '{text}'")
        if len(parts) == 3:
            return text, DEFAULT_STRENGTH
        return ":".join(parts[:3]), _strength(text, parts[3])
    name, sep, tail = text.rpartition(":")
    if not sep or Path(text).suffix in DIRECTION_SUFFIXES:  # no strength, or a path with a colon in it
        return text, DEFAULT_STRENGTH
    if not name:
        raise UserError(f"--edit '{text}' has no name before its strength")
    return name, _strength(text, tail)


def _strength(text: str, tail: str) -> float:
    try:
        value = float(tail)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value):
        raise UserError(f"--edit '{text}': the strength '{tail}' is not a number (NAME[:STRENGTH], e.g. smile:2.5)")
    return value


def check_edit_names(texts: list[str], *, demo: bool, generator_path: Path | None) -> None:
    """What can be checked of `--edit` values before any model loads: their syntax, that named directions exist
    for this generator, and that direction files exist. Shapes and StyleSpace layers are checked once it loads."""
    known = set(DEMO_DIRECTIONS if demo else ()) | set(named_direction_files(generator_path))
    for text in texts:
        name, _ = parse_edit(split_track(text)[0])
        if name in known or name.startswith("s:"):
            continue
        path = Path(name)
        if path.suffix in DIRECTION_SUFFIXES:
            if not path.is_file():
                raise UserError(f"edit direction file not found: {path}")
            continue
        raise UserError(unknown_edit_message(name, sorted(known)))


def unknown_edit_message(name: str, available: list[str]) -> str:
    return (f"unknown edit '{name}'. Available: {', '.join(available) or 'none for this generator'}; or give a "
            f"direction file (.npy in W, .npz in StyleSpace) or s:LAYER:CHANNEL")


def demo_directions(num_ws: int, w_dim: int, style_sizes: dict[str, int]) -> dict[str, Direction]:
    """The demo generator's fixed directions: unit vectors from a fixed seed (not semantic)."""
    out = {}
    for k, name in enumerate(DEMO_DIRECTIONS):
        rng = np.random.default_rng(1000 + k)
        if name in DEMO_STYLE_DIRECTIONS:
            layer = list(style_sizes)[len(style_sizes) // 2]
            d = np.zeros(style_sizes[layer], np.float32)
            d[rng.choice(len(d), size=min(8, len(d)), replace=False)] = 1.0
            out[name] = Direction(name, s={layer: d})
        else:
            v = rng.normal(size=w_dim).astype(np.float32)
            out[name] = Direction(name, w=np.tile(v / np.linalg.norm(v), (num_ws, 1)))
    return out


def load_direction_file(path: Path, num_ws: int, w_dim: int, style_sizes: dict[str, int],
                        name: str | None = None) -> Direction:
    name = name or path.stem.removesuffix("_boundary")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read the edit direction {path}: {e}") from e
    if isinstance(data, np.lib.npyio.NpzFile):
        s = {}
        for layer in data.files:
            if layer not in style_sizes:
                raise UserError(f"{path}: StyleSpace layer '{layer}' is not in this generator "
                                f"(layers: {', '.join(style_sizes)})")
            d = np.asarray(data[layer], np.float32).reshape(-1)
            if d.shape[0] != style_sizes[layer]:
                raise UserError(f"{path}: layer '{layer}' has {d.shape[0]} channels, the generator {style_sizes[layer]}")
            s[layer] = d
        return Direction(name, s=s)
    w = np.asarray(data, np.float32)
    if w.shape in ((w_dim,), (1, w_dim)):
        w = np.tile(w.reshape(1, w_dim), (num_ws, 1))
    if w.shape != (num_ws, w_dim):
        raise UserError(f"{path}: a W direction must have shape [{w_dim}], [1, {w_dim}] or [{num_ws}, {w_dim}] "
                        f"for this generator, got {list(w.shape)}")
    return Direction(name, w=w)


def named_direction_files(generator_path: Path | None) -> dict[str, Path]:
    """NAME -> file for the directions stored for a generator file (beside it, then in the models cache)."""
    if generator_path is None:
        return {}
    from ..models.download import models_dir

    folders = [generator_path.with_name(generator_path.stem + ".directions"),
               models_dir() / "directions" / generator_path.stem]
    found: dict[str, Path] = {}
    for folder in reversed(folders):  # the folder beside the file wins
        if folder.is_dir():
            for f in sorted(folder.iterdir()):
                if f.suffix in DIRECTION_SUFFIXES:
                    found[f.stem.removesuffix("_boundary")] = f
    return found


class DirectionCatalog:
    """The directions a generator can be edited along, by name, and the parsing of `--edit` values."""

    def __init__(self, num_ws: int, w_dim: int, style_sizes: dict[str, int], *, demo: bool = False,
                 generator_path: Path | None = None):
        self.num_ws, self.w_dim, self.style_sizes = num_ws, w_dim, style_sizes
        self.builtin = demo_directions(num_ws, w_dim, style_sizes) if demo else {}
        self.files = named_direction_files(generator_path)

    @classmethod
    def for_generator(cls, generator, *, demo: bool = False, generator_path: Path | None = None) -> "DirectionCatalog":
        import torch

        probe = torch.zeros(1, generator.num_ws, generator.w_dim, device=generator.mapping.w_avg.device)
        with torch.no_grad():
            sizes = {name: int(s.shape[1]) for name, s in generator.synthesis.styles(probe).items()}
        return cls(generator.num_ws, generator.w_dim, sizes, demo=demo, generator_path=generator_path)

    @property
    def names(self) -> list[str]:
        return sorted(set(self.builtin) | set(self.files))

    def resolve(self, text: str) -> Edit:
        text, track = split_track(text)
        name, strength = parse_edit(text)
        return Edit(self._direction(name), strength, track)

    def _direction(self, name: str) -> Direction:
        if name in self.builtin:
            return self.builtin[name]
        if name in self.files:
            return load_direction_file(self.files[name], self.num_ws, self.w_dim, self.style_sizes, name)
        if name.startswith("s:"):
            return self._channel(name)
        path = Path(name)
        if path.suffix in DIRECTION_SUFFIXES:
            if not path.is_file():
                raise UserError(f"edit direction file not found: {path}")
            return load_direction_file(path, self.num_ws, self.w_dim, self.style_sizes)
        raise UserError(unknown_edit_message(name, self.names))

    def _channel(self, text: str) -> Direction:
        parts = text.split(":")  # parse_edit checked the form s:LAYER:CHANNEL
        layer, channel = parts[1], int(parts[2])
        if layer not in self.style_sizes:
            raise UserError(f"unknown StyleSpace layer '{layer}' (layers: {', '.join(self.style_sizes)})")
        if channel >= self.style_sizes[layer]:
            raise UserError(f"layer {layer} has {self.style_sizes[layer]} channels; channel {channel} is out of range")
        d = np.zeros(self.style_sizes[layer], np.float32)
        d[channel] = 1.0
        return Direction(text, s={layer: d})
