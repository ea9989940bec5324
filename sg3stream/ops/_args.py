"""Argument parsing shared by the up/down-sampling ops (official conventions)."""
from __future__ import annotations

import torch


def parse_scaling(scaling) -> tuple[int, int]:
    """int or [x, y] -> (sx, sy)."""
    if isinstance(scaling, int):
        scaling = [scaling, scaling]
    sx, sy = (int(s) for s in scaling)
    if sx < 1 or sy < 1:
        raise ValueError(f"up/down factors must be >= 1, got {scaling}")
    return sx, sy


def parse_padding(padding) -> tuple[int, int, int, int]:
    """int, [x, y] or [x0, x1, y0, y1] -> (x0, x1, y0, y1); negative values crop."""
    if isinstance(padding, int):
        padding = [padding, padding]
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        padding = [px, px, py, py]
    if len(padding) != 4:
        raise ValueError(f"padding must be an int, [x, y] or [x0, x1, y0, y1], got {padding}")
    return tuple(padding)


def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(width, height) of a filter: None -> 1x1, 1-D (separable) -> LxL, 2-D [h, w] -> (w, h)."""
    if f is None:
        return 1, 1
    if f.ndim == 1:
        return f.shape[0], f.shape[0]
    if f.ndim == 2:
        return f.shape[1], f.shape[0]
    raise ValueError(f"filter must be None, 1-D or 2-D, got shape {tuple(f.shape)}")
