"""Built-in generator configurations, usable by name wherever a generator path is accepted.

- demo:        a small 256x256 generator (z = w = 512, 16 ws) with deterministic random weights; no file needed.
- sg3-t-1024:  the official StyleGAN3-T FFHQ 1024 architecture, random weights (for benchmarks: cost only).
- sg3-r-1024:  the official StyleGAN3-R FFHQ 1024 architecture, random weights (for benchmarks: cost only).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from .stylegan3 import Generator

log = logging.getLogger("sg3stream")

DEMO_WARNING = ("the demo model has fixed-seed random weights: its faces are not real results (it shows the "
                "pipeline at work). For real edits load official weights: see `sg3stream models list`.")


def warn_demo_model() -> None:
    """Say, on the `sg3stream` logger, that the demo model's output is not a real result."""
    log.warning(DEMO_WARNING)


@dataclass(frozen=True)
class BuiltinGenerator:
    name: str
    description: str
    init_kwargs: dict = field(repr=False)
    seed: int = 0
    calibrate: bool = False  # set w_avg, magnitude EMAs and the output scale from sample forward passes


FFHQ_1024_COMMON = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3,
                        mapping_kwargs=dict(num_layers=2), magnitude_ema_beta=0.999)

BUILTIN_GENERATORS = {
    "demo": BuiltinGenerator(
        "demo", "small 256x256 StyleGAN3-T with fixed random weights (no file needed)",
        dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3, mapping_kwargs=dict(num_layers=2),
             channel_base=1024, channel_max=32, magnitude_ema_beta=0.999),
        seed=20211011, calibrate=True),
    "sg3-t-1024": BuiltinGenerator(
        "sg3-t-1024", "StyleGAN3-T FFHQ 1024 architecture, random weights (benchmarks)",
        dict(FFHQ_1024_COMMON, channel_base=32768, channel_max=512), seed=1),
    "sg3-r-1024": BuiltinGenerator(
        "sg3-r-1024", "StyleGAN3-R FFHQ 1024 architecture, random weights (benchmarks)",
        dict(FFHQ_1024_COMMON, channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True),
        seed=2),
}

# Number of samples used to calibrate the demo's statistics (w_avg, magnitude EMAs, output scale).
CALIBRATION_W_SAMPLES = 1000
CALIBRATION_IMAGES = 4
TARGET_OUTPUT_STD = 0.5


def build_builtin(name: str) -> Generator:
    """Construct a built-in generator (KeyError for unknown names; loading.load_generator gives the user error)."""
    spec = BUILTIN_GENERATORS[name]
    G = Generator(**spec.init_kwargs, seed=spec.seed)
    if spec.calibrate:
        calibrate_statistics(G, seed=spec.seed)
    return G.eval().requires_grad_(False)


@torch.no_grad()
def calibrate_statistics(G: Generator, seed: int = 0) -> None:
    """Give randomly initialised weights what training would: w_avg, per-layer input magnitudes, output range.

    magnitude_ema is what each layer divides its input by; left at 1 the activations of random weights drift
    far from unit scale and images come out flat. ToRGB's weight and bias are set so images use the [-1, 1] range.
    """
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn([CALIBRATION_W_SAMPLES, G.z_dim], generator=rng)
    G.mapping.w_avg.copy_(G.mapping(z, None).mean(dim=(0, 1)))

    ws = G.mapping(torch.randn([CALIBRATION_IMAGES, G.z_dim], generator=rng), None)
    synthesis = G.synthesis
    styles = synthesis.styles(ws)
    x = synthesis.input(styles["input"])
    for name in synthesis.layer_names:
        layer = getattr(synthesis, name)
        layer.magnitude_ema.copy_(x.square().mean())
        x = layer(x, styles[name])
    # ToRGB is linear with a zero bias here: scale its weight to the target spread, then centre with its bias.
    torgb = getattr(synthesis, synthesis.layer_names[-1])
    scale = TARGET_OUTPUT_STD / max(float((x * synthesis.output_scale).std()), 1e-8)
    torgb.weight.mul_(scale)
    torgb.bias.copy_(-(x * scale).mean(dim=(0, 2, 3)))
