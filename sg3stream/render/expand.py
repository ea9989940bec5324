"""Field-of-view expansion (the reference's Expander, utils/fov_expansion.py), batched and seamless.

StyleGAN3 renders whatever window of its (infinite) Fourier-feature plane the input transform points at. To widen
the view by (left, right, top, bottom) pixels the reference renders up to nine copies translated by whole
fractions of the image (`make_transform((±px/res, ±py/res), 0)`, inverted, composed after the landmark transform)
and pastes their outer strips around the centre render. Here all copies of all frames go through the generator in
one batched call (per-sample transforms), and the copies are blended with feathered weights across their overlap
instead of pasted edge to edge, so no seam shows where equivariance is imperfect.

Placement: a copy translated by t = (tx, ty) (normalised units) shows the content that sits at -t·res pixels
from the centre render; on the expanded canvas, whose centre render starts at (left, top), it starts at
(left - tx·res, top - ty·res).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..models.stylegan3 import make_transform


@dataclass(frozen=True)
class Expansion:
    left: int = 0
    right: int = 0
    top: int = 0
    bottom: int = 0

    @classmethod
    def parse(cls, text: str | None) -> "Expansion":
        from ..errors import UserError

        if not text:
            return cls()
        try:
            values = [int(v) for v in text.split(",")]
        except ValueError:
            values = []
        if len(values) != 4 or min(values) < 0:
            raise UserError(f"--expand takes LEFT,RIGHT,TOP,BOTTOM as four pixel counts >= 0, got '{text}'")
        return cls(*values)

    @property
    def any(self) -> bool:
        return bool(self.left or self.right or self.top or self.bottom)

    def canvas(self, res: int) -> tuple[int, int]:
        """(height, width) of the expanded image."""
        return res + self.top + self.bottom, res + self.left + self.right


def tile_shifts(expansion: Expansion, res: int) -> list[tuple[float, float]]:
    """Translations (tx, ty) of the copies to render: the centre, then the edges and corners that are asked for."""
    e = expansion
    xs = [0.0] + ([e.left / res] if e.left else []) + ([-e.right / res] if e.right else [])
    ys = [0.0] + ([e.top / res] if e.top else []) + ([-e.bottom / res] if e.bottom else [])
    return [(tx, ty) for ty in ys for tx in xs]


def tile_weight(res: int, feather: int) -> np.ndarray:
    """[res, res] weight that falls linearly to ~0 over `feather` pixels at the tile's border."""
    ramp = np.minimum(np.arange(res) + 1, np.arange(res)[::-1] + 1) / max(feather, 1)
    ramp = np.clip(ramp, 0, 1)
    return np.outer(ramp, ramp).astype(np.float32)


def render_expanded(synthesize, count: int, transforms: torch.Tensor, res: int, expansion: Expansion,
                    feather: int | None = None, one_call: bool = True) -> torch.Tensor:
    """Render `count` frames with their [count,3,3] transforms, expanded; returns [count, 3, H, W].

    `synthesize(repeats, transforms)` renders every frame `repeats` times (frame-major: frame i's copies are
    rows i*repeats .. i*repeats+repeats-1) with the given [count*repeats, 3, 3] transforms.
    one_call=False renders the copies one synthesis call each, as the reference does (for --reference-mode).
    """
    shifts = tile_shifts(expansion, res)
    if len(shifts) == 1:
        return synthesize(1, transforms)
    device = transforms.device
    offsets = torch.tensor(np.stack([np.linalg.inv(make_transform(s, 0.0)) for s in shifts]), dtype=transforms.dtype,
                           device=device)  # [K,3,3]
    k = len(shifts)
    all_t = transforms[:, None] @ offsets[None]  # [count, K, 3, 3]
    if one_call:
        images = synthesize(k, all_t.reshape(count * k, 3, 3)).reshape(count, k, -1, res, res)
    else:
        images = torch.stack([synthesize(1, all_t[:, j]) for j in range(k)], dim=1)
    height, width = expansion.canvas(res)
    feather = feather or max(2, res // 16)
    canvas = torch.zeros(count, images.shape[2], height, width, device=device)
    weights = torch.zeros(1, 1, height, width, device=device)
    for j, (tx, ty) in enumerate(shifts):
        x0 = int(round(expansion.left - tx * res))
        y0 = int(round(expansion.top - ty * res))
        w = torch.from_numpy(tile_weight(res, feather)).to(device)
        if j == 0:
            w = w * 4 + 1e-3  # the centre render wins where it overlaps; keeps its edges from going to zero weight
        # crop the tile to the canvas (edge tiles reach past it by design)
        cx0, cy0 = max(x0, 0), max(y0, 0)
        cx1, cy1 = min(x0 + res, width), min(y0 + res, height)
        tile = images[:, j, :, cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
        tw = w[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
        canvas[:, :, cy0:cy1, cx0:cx1] += tile * tw
        weights[:, :, cy0:cy1, cx0:cx1] += tw
    return canvas / weights.clamp_min(1e-6)
