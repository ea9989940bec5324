"""The oracle generator (`--generator oracle`): a stand-in for a perfect generator, to measure what the pipeline
itself loses.

A perfect encoder and generator would give back, for each frame, the input's own face. The oracle does exactly
that: its "code" for a face is the face itself, cut from the frame with the frame's aligned quad at the
generator's resolution (AlignStage's `aligned_gen`: what the encoder sees, at R² instead of 256²), and it renders
it through the frame's smoothed generator transform T the way StyleGAN3 renders any code: out(p) = aligned(T p)
(align/transforms.py), so that the face lands in the crop exactly where a perfect generator would put it. Field of
view expansion, paste-back, colour matching and encoding run as usual (render/oracle.py is its render stage), so
the output against the input measures the pipeline's own loss: misregistration from the closed-form transforms and
their smoothing, resampling, blending.

It has no latent space: its inverter gives every face an empty code (only which faces have one matters), and
edits and PTI are refused before anything loads (`check_oracle_options`).
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F

from sg3stream.errors import UserError

from .components import Renderer

ORACLE = "oracle"
# The side of its renders: the demo generator's, and the resolution whose resampling loss the README quotes.
ORACLE_RESOLUTION = 256
NOTICE = ("generator: the oracle (the input's own faces, rendered through the pipeline's transforms: no model "
          "runs; the output measures what the pipeline itself loses)")


def is_oracle(generator: str | None) -> bool:
    """Whether a --generator value names the oracle."""
    return generator == ORACLE


def is_oracle_renderer(renderer) -> bool:
    """Whether the run's renderer is the oracle's (the chain then renders with OracleRenderStage)."""
    return getattr(renderer, "kind", None) == ORACLE


def check_oracle_options(options) -> None:
    """What the oracle cannot do, refused in one line before any model loads or any frame is decoded."""
    if options.edits:
        raise UserError(f"--generator oracle renders the input's own faces and has no latent space: it cannot "
                        f"apply edits (drop --edit {' --edit '.join(options.edits)})")
    if options.pti_steps > 0:
        raise UserError("--generator oracle has no weights to tune: drop --pti-steps")


class OracleRenderer(Renderer):
    """Renders aligned faces through generator transforms: `render(faces, transforms)` -> [B, 3, R, R] in [-1, 1].

    faces: [B, R, R, 3] uint8, the aligned crops at R² (the oracle's codes; OracleRenderStage hands them in where
    RenderStage hands the generator its W+ codes). Where T p leaves the aligned crop the oracle knows nothing and
    renders black (a generator would invent something there); the paste's mask keeps to the face.
    Bicubic: closer than bilinear to a generator's band-limited render (1.5 dB more on a moving face).
    """

    kind = ORACLE

    def __init__(self, resolution: int = ORACLE_RESOLUTION, device="cpu"):
        # The stages size their canvases from the generator's resolution: the oracle's stand-in has just that.
        super().__init__(SimpleNamespace(img_resolution=resolution, num_ws=1, w_dim=1), device)

    @torch.no_grad()
    def render(self, faces: torch.Tensor, transforms: torch.Tensor, offsets: dict | None = None) -> torch.Tensor:
        if offsets:
            raise UserError("the oracle has no latent space: it cannot apply StyleSpace edits")
        images = faces.to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1
        count, res = images.shape[0], self.resolution
        # output pixel j sits at p = (j + 0.5) / R - 0.5; grid_sample (align_corners=False) reads the aligned crop
        # at 2 T p, its edges at ±1: the generator's convention, out(p) = aligned(T p)
        p = (torch.arange(res, device=self.device, dtype=torch.float32) + 0.5) / res - 0.5
        py, px = torch.meshgrid(p, p, indexing="ij")
        points = torch.stack([px, py, torch.ones_like(px)], dim=-1).reshape(1, -1, 3)  # [1, R*R, 3]
        t = transforms.to(self.device, torch.float32)
        grid = 2 * (points @ t[:, :2].transpose(1, 2))  # [B, R*R, 2]
        out = F.grid_sample(images, grid.reshape(count, res, res, 2), mode="bicubic", padding_mode="zeros",
                            align_corners=False)
        return out.clamp(-1, 1)

    def reconstruct(self, ws, transform=None, force_fp32=None):
        raise UserError("the oracle has no latent space: it reconstructs nothing")

    def describe(self) -> dict:
        return {"device": str(self.device), "compiled": False, "ops": "none", "engine": ORACLE}

    def with_generator(self, generator):
        raise UserError("--generator oracle has no weights to tune: drop --pti-steps")


class OracleInverter:
    """The oracle's inverter: an empty code [1, 1] per face. Which faces have a code decides what is rendered and
    pasted, as with the encoder; the faces themselves reach the oracle's renderer through `aligned_gen`."""

    def __init__(self, renderer: OracleRenderer):
        self.renderer = renderer
        self.device = renderer.device
        self.generator = renderer.generator  # num_ws = w_dim = 1: the shape of the empty codes

    def invert(self, images: torch.Tensor, n_iters: int = 3, batch_size: int | None = None) -> torch.Tensor:
        return torch.zeros(len(images), 1, 1)

    def describe(self) -> dict:
        return {"encoder": ORACLE, "reconstructions": ORACLE}


def make_oracle_components(device="cpu") -> tuple[OracleInverter, OracleRenderer]:
    """The oracle's inverter and renderer, in place of `make_components`; no model loads. Its resamples are cheap:
    it runs on the CPU unless a device is named."""
    from .bundle import pick_device

    renderer = OracleRenderer(device=pick_device("cpu" if device == "auto" else device))
    return OracleInverter(renderer), renderer
