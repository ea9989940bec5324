"""The inversion stage: aligned crops of the frames with a face -> W+ codes (ReStyle, batched)."""
from __future__ import annotations

import numpy as np
import torch

from ..models.components import model_call_lock
from ..pipeline.batch import FrameBatch
from ..pipeline.contract import Key
from ..pipeline.stage import Stage


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """Host array -> device tensor; through pinned memory and a non-blocking copy on CUDA, so the copy overlaps
    the GPU's work instead of stalling it (uint8 crosses the bus: 4x less than float)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


class InvertStage(Stage):
    """Reads `aligned` [N,F,S,S,3] uint8, `detected` and `has_quad` [N,F]; attaches `latents` [N,F,num_ws,w_dim]
    float32 (NaN where no face was detected) and `has_latents` [N,F] bool. Every face of the batch, whatever its
    frame and slot, goes through the encoder in the same calls.

    gated: also read `passthrough` (AlignStage's gate): the faces it names are not inverted.
    artifacts: writes `latents_track<ID>.npy` per face track (streamed; reads `track_id`)."""

    name = "invert"
    writes = (Key("latents", ("num_ws", "w_dim"), "float32", doc="W+ code of the face; NaN where none"),
              Key("has_latents", (), "bool", doc="the face was inverted: it is rendered and pasted"))

    def __init__(self, inverter, n_iters: int = 3, max_batch: int = 8, artifacts=None, gated: bool = False):
        self.inverter = inverter  # sg3stream/models/components.py: chosen once for the run
        self.n_iters = n_iters
        self.max_batch = max_batch
        self.artifacts = artifacts
        self.gated = gated
        self.writer = None

    @property
    def reads(self) -> tuple[str, ...]:
        return (("aligned", "detected", "has_quad") + (("passthrough",) if self.gated else ())
                + (("track_id",) if self.artifacts is not None else ()))

    def setup(self) -> None:
        if self.artifacts is not None:
            self.writer = self.artifacts.open_track_streams("latents")

    @torch.no_grad()
    def __call__(self, batch: FrameBatch) -> FrameBatch:
        g = self.inverter.generator
        sel = np.asarray(batch.data["detected"], bool) & np.asarray(batch.data["has_quad"], bool)  # [N, F]
        if self.gated:
            sel &= np.asarray(batch.data["passthrough"]) == 0
        latents = np.full(sel.shape + (g.num_ws, g.w_dim), np.nan, np.float32)
        if sel.any():
            images = to_device(batch.data["aligned"][sel], self.inverter.device)  # the valid (frame, slot) pairs
            images = images.permute(0, 3, 1, 2).float() / 127.5 - 1
            with model_call_lock(self.inverter.device):
                codes = self.inverter.invert(images, n_iters=self.n_iters, batch_size=self.max_batch)
            latents[sel] = codes.float().cpu().numpy()
        out = batch.replace()
        out.data["latents"] = latents
        out.data["has_latents"] = sel
        if self.writer is not None:
            self.writer.write(batch.index, np.asarray(batch.data["track_id"]), latents)
        return out
