"""The oracle's render stage (sg3stream/models/oracle.py): RenderStage, with the faces themselves for codes."""
from __future__ import annotations

import numpy as np

from ..pipeline.batch import FrameBatch
from .stages import RenderStage


class OracleRenderStage(RenderStage):
    """Renders `aligned_gen` [N,F,R,R,3] (the aligned crops at the generator's resolution, AlignStage's `gen_size`)
    with `transform_smoothed` through the oracle renderer, field-of-view expansion included, for the faces with
    `has_latents`. Attaches `render` (and `render_recon`, the same picture: the oracle's reconstruction is its
    edit). The codes and edits are not read: the oracle has none.
    """

    @property
    def reads(self) -> tuple[str, ...]:
        return ("has_latents", "transform_smoothed", "aligned_gen")

    def __call__(self, batch: FrameBatch) -> FrameBatch:
        sel = np.asarray(batch.data["has_latents"], bool)
        transforms = np.nan_to_num(batch.data["transform_smoothed"]).astype(np.float32)
        out = batch.replace()
        out.data["render"] = self._render_all(batch.data["aligned_gen"], {}, transforms, sel)
        if self.with_reconstruction:
            out.data["render_recon"] = out.data["render"]
        return out
