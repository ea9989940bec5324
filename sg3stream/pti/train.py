"""Pivotal tuning (Roich et al.) of a generator on the frames of one clip.

The pivots are the clip's smoothed W+ codes; the targets are the *unaligned* crops (`crop` of the align stage),
which the generator renders with the per-frame transforms — as the paper's video workflow does, so that the
regions the aligned crop cuts off get better too. Each step takes `batch` frames (in a seeded random order,
epoch after epoch) and minimises

    l2_lambda * MSE(G(w, T), crop) + perceptual_lambda * P(G(w, T), crop)

plus, every `reg_interval` steps, PTI's locality regularisation: for random z, w_z = mapping(z) (psi 0.5 as the
reference), w_r = w + alpha * (w_z - w) / |w_z - w| and the tuned generator must render w_r as the original does
(reg_l2_lambda * MSE + reg_perceptual_lambda * P). Only the synthesis network is trained (the pivots are fixed).

Determinism and resume: everything random comes from one seeded torch.Generator on the CPU (sample order, the
regulariser's z); a checkpoint holds the synthesis weights, the Adam (and grad scaler) state, the step and that
generator's state, written atomically every `checkpoint_every` steps and at the end. Resuming from it gives the
same weights as an uninterrupted run (bitwise on the CPU).

Mixed precision on CUDA: the generator's own fp16 layers (as the official StyleGAN3 code) with a GradScaler and
fp32 master weights; `mixed_precision=False` forces fp32.

Targets of another size than the generator's output are compared with the output area-resized to theirs.
"""
from __future__ import annotations

import copy
import hashlib
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from .losses import ReconstructionLoss, perceptual_loss

log = logging.getLogger("sg3stream")

CHECKPOINT_NAME = "pti_checkpoint.pt"
CHECKPOINT_VERSION = 1


@dataclass
class PTIConfig:
    steps: int
    lr: float = 3e-4
    batch: int = 1                      # frames per step
    seed: int = 0
    l2_lambda: float = 1.0
    perceptual_lambda: float = 1.0
    reg_interval: int = 1               # locality regularisation every N steps; 0 = off
    reg_l2_lambda: float = 0.1
    reg_perceptual_lambda: float = 0.1
    reg_alpha: float = 30.0
    reg_samples: int = 1
    reg_psi: float = 0.5
    checkpoint_every: int = 500         # 0 = only at the end
    mixed_precision: bool = True        # on CUDA only

    def check(self) -> None:
        if self.steps < 0:
            raise UserError("--pti-steps must be 0 (off) or more")
        if not self.lr > 0:
            raise UserError("--pti-lr must be positive")
        if self.batch < 1:
            raise UserError("--pti-batch must be at least 1")
        if self.checkpoint_every < 0 or self.reg_interval < 0:
            raise UserError("--pti-checkpoint-every and --pti-reg-every must be 0 or more")


@dataclass
class PTISamples:
    """The training frames: crops [K,H,W,3] uint8 (unaligned), latents [K,num_ws,w_dim], transforms [K,3,3]."""
    crops: np.ndarray
    latents: np.ndarray
    transforms: np.ndarray
    frames: np.ndarray  # [K] frame numbers, for logs

    def __post_init__(self):
        k = len(self.crops)
        if not (len(self.latents) == len(self.transforms) == len(self.frames) == k):
            raise ValueError("PTISamples: crops, latents, transforms and frames must have the same length")
        if k == 0:
            raise UserError("PTI: no frame with a face to tune the generator on")

    def __len__(self) -> int:
        return len(self.crops)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for a in (self.crops, self.latents, self.transforms, self.frames):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()


def to_images(crops: np.ndarray, device) -> torch.Tensor:
    """[B,H,W,3] uint8 -> [B,3,H,W] float32 in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(crops)).to(device)
    return x.permute(0, 3, 1, 2).float() / 127.5 - 1


def fit_size(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="area")


class PTITrainer:
    """Holds the frozen original, the tuned copy, the optimizer and the RNG; `run()` trains up to `config.steps`."""

    def __init__(self, generator, samples: PTISamples, config: PTIConfig, loss: torch.nn.Module | None = None,
                 device: torch.device | str | None = None, checkpoint_dir: Path | None = None):
        config.check()
        self.config = config
        self.samples = samples
        self.device = torch.device(device) if device is not None else generator.mapping.w_avg.device
        self.original = generator.to(self.device).eval().requires_grad_(False)
        self.tuned = copy.deepcopy(self.original)
        self.tuned.synthesis.requires_grad_(True)
        self.loss = loss if loss is not None else ReconstructionLoss(perceptual_loss(None))
        self.loss = self.loss.to(self.device)
        self.amp = bool(config.mixed_precision and self.device.type == "cuda")
        self.tuned.synthesis.force_fp32 = not self.amp
        self.original.synthesis.force_fp32 = not self.amp
        self.params = [p for p in self.tuned.synthesis.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=config.lr)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.rng = torch.Generator().manual_seed(int(config.seed))
        self.order = torch.empty(0, dtype=torch.long)  # the current epoch's permutation (what is left of it)
        self.step = 0
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.fingerprint = self._fingerprint()
        self.last_loss = float("nan")

    def _fingerprint(self) -> str:
        """What a checkpoint must match to be resumed: the data, the starting weights and the settings that shape
        the trajectory (not `steps`: a run may be resumed to go further)."""
        h = hashlib.sha256(self.samples.fingerprint().encode())
        settings = {k: v for k, v in asdict(self.config).items() if k not in ("steps", "checkpoint_every")}
        h.update(repr(sorted(settings.items())).encode())
        h.update(type(getattr(self.loss, "perceptual", self.loss)).__name__.encode())
        for k, v in self.original.synthesis.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().float().cpu().numpy().tobytes()[:4096])
        return h.hexdigest()

    # -----------------------------------------------------------------------------------------------------------

    def _next_indices(self) -> torch.Tensor:
        out = []
        while len(out) < self.config.batch:
            if len(self.order) == 0:
                self.order = torch.randperm(len(self.samples), generator=self.rng)
            take = min(self.config.batch - len(out), len(self.order))
            out.extend(self.order[:take].tolist())
            self.order = self.order[take:]
        return torch.tensor(out)

    def _render(self, G, ws, transforms, size):
        return fit_size(G.synthesis(ws, transform=transforms).float(), size)

    def _regularisation(self, pivots: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        z = torch.randn(cfg.reg_samples, self.original.z_dim, generator=self.rng).to(self.device)
        with torch.no_grad():
            w_z = self.original.mapping(z, truncation_psi=cfg.reg_psi)  # [S, num_ws, w_dim]
        loss = 0.0
        for w_sample in w_z:
            direction = w_sample.unsqueeze(0) - pivots
            w_r = pivots + cfg.reg_alpha * direction / direction.flatten(1).norm(dim=1).reshape(-1, 1, 1)
            with torch.no_grad():
                old = self.original.synthesis(w_r).float()
            new = self.tuned.synthesis(w_r).float()
            if cfg.reg_l2_lambda > 0:
                loss = loss + cfg.reg_l2_lambda * F.mse_loss(new, old)
            if cfg.reg_perceptual_lambda > 0:
                loss = loss + cfg.reg_perceptual_lambda * self.loss.perceptual(new, old)
        return loss / max(cfg.reg_samples, 1)

    def train_step(self) -> float:
        cfg = self.config
        idx = self._next_indices().numpy()
        pivots = torch.from_numpy(self.samples.latents[idx]).float().to(self.device)
        transforms = torch.from_numpy(self.samples.transforms[idx]).float().to(self.device)
        target = to_images(self.samples.crops[idx], self.device)
        self.optimizer.zero_grad(set_to_none=True)
        image = self._render(self.tuned, pivots, transforms, target.shape[-2:])
        loss = self.loss(image, target)
        self.step += 1
        if cfg.reg_interval > 0 and self.step % cfg.reg_interval == 0 and (cfg.reg_l2_lambda or cfg.reg_perceptual_lambda):
            loss = loss + self._regularisation(pivots)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.last_loss = float(loss.detach())
        return self.last_loss

    def run(self, on_step: Callable[[int, float], None] | None = None) -> torch.nn.Module:
        """Train until `config.steps`; returns the tuned generator (eval mode, no gradients)."""
        every = self.config.checkpoint_every
        while self.step < self.config.steps:
            loss = self.train_step()
            if on_step is not None:
                on_step(self.step, loss)
            if self.checkpoint_dir is not None and every > 0 and self.step % every == 0:
                self.save_checkpoint()
        if self.checkpoint_dir is not None and (every == 0 or self.step % every != 0):
            self.save_checkpoint()
        return self.tuned_generator()

    def tuned_generator(self):
        G = self.tuned
        G.eval().requires_grad_(False)
        G.synthesis.force_fp32 = False
        return G

    # -----------------------------------------------------------------------------------------------------------
    # Checkpoints

    @property
    def checkpoint_path(self) -> Path | None:
        return self.checkpoint_dir / CHECKPOINT_NAME if self.checkpoint_dir is not None else None

    def save_checkpoint(self) -> Path:
        """Write the state atomically (temporary file, then rename) so an interruption never leaves half a file."""
        path = self.checkpoint_path
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "version": CHECKPOINT_VERSION,
            "fingerprint": self.fingerprint,
            "step": self.step,
            "synthesis": {k: v.detach().cpu() for k, v in self.tuned.synthesis.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": self.rng.get_state(),
            "order": self.order.clone(),
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
        return path

    def load_checkpoint(self) -> bool:
        """Continue from the checkpoint if there is one (False if none). A checkpoint of another clip, generator
        or setting is refused (UserError), so a resumed run is always the run it claims to continue."""
        path = self.checkpoint_path
        if path is None or not path.is_file():
            return False
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated or foreign files fail in many ways
            raise UserError(f"PTI checkpoint '{path}' cannot be read ({type(e).__name__}); delete it to start over") from None
        if state.get("version") != CHECKPOINT_VERSION or state.get("fingerprint") != self.fingerprint:
            raise UserError(f"PTI checkpoint '{path}' belongs to another clip, generator or PTI setting; delete it "
                            f"or run without --resume")
        self.tuned.synthesis.load_state_dict(state["synthesis"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.rng.set_state(state["rng"])
        self.order = state["order"].clone()
        self.step = int(state["step"])
        return True


def train_pti(generator, samples: PTISamples, config: PTIConfig, *, loss: torch.nn.Module | None = None,
              device=None, checkpoint_dir: Path | None = None, resume: bool = False,
              on_step: Callable[[int, float], None] | None = None):
    """Pivotal tuning of `generator` (left untouched) on `samples`; returns the tuned copy.

    checkpoint_dir: where checkpoints go (none without it); resume: continue from the checkpoint there.
    """
    trainer = PTITrainer(generator, samples, config, loss=loss, device=device, checkpoint_dir=checkpoint_dir)
    if resume:
        if checkpoint_dir is None:
            raise UserError("--resume needs a PTI checkpoint folder")
        if trainer.load_checkpoint():
            log.info("PTI: resuming from step %d (%s)", trainer.step, trainer.checkpoint_path)
        else:
            log.warning("PTI: --resume found no checkpoint in %s: starting from step 0", checkpoint_dir)
    return trainer.run(on_step=on_step)
