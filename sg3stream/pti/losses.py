"""Reconstruction losses of pivotal tuning: L2 plus a perceptual term.

The perceptual term is LPIPS (Zhang et al.) when its weights are available: a VGG16 or AlexNet backbone with the
torchvision weights found in the torch hub cache (`<torch.hub.get_dir()>/checkpoints/vgg16-397923af.pth` or
`alexnet-owt-7be5be79.pth`) and the LPIPS linear heads (the `lpips` package's `weights/v0.1/vgg.pth` or `alex.pth`,
given by path). Without them it is 1 - MS-SSIM, with a warning: nothing is downloaded at run time.

All losses take images in [-1, 1], [B, 3, H, W], and return a scalar (mean over the batch).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import UserError

log = logging.getLogger("sg3stream")

BACKBONE_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}
MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


# ---------------------------------------------------------------------------------------------------------------
# MS-SSIM (the fallback perceptual term)

def _gaussian_window(size: int, sigma: float, channels: int, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def _ssim_and_cs(x, y, window, data_range=1.0):
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    channels = x.shape[1]
    mu_x = F.conv2d(x, window, groups=channels)
    mu_y = F.conv2d(y, window, groups=channels)
    sxx = F.conv2d(x * x, window, groups=channels) - mu_x ** 2
    syy = F.conv2d(y * y, window, groups=channels) - mu_y ** 2
    sxy = F.conv2d(x * y, window, groups=channels) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim = ((2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1)) * cs
    return ssim.flatten(1).mean(1), cs.flatten(1).mean(1)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Multi-scale SSIM per sample ([B]) of images in [-1, 1]; as many of the 5 standard scales as the size allows.

    Negative contrast terms are clamped to 0 (as pytorch-msssim's normalisation does) so the product stays defined
    and differentiable early in training.
    """
    x = (x.float() + 1) / 2
    y = (y.float() + 1) / 2
    scales = 1
    while scales < len(MSSSIM_WEIGHTS) and min(x.shape[-2:]) // (2 ** scales) >= window_size:
        scales += 1
    weights = torch.tensor(MSSSIM_WEIGHTS[:scales], device=x.device)
    weights = weights / weights.sum()
    window = _gaussian_window(min(window_size, *x.shape[-2:]), sigma, x.shape[1], x.device, x.dtype)
    terms = []
    for s in range(scales):
        ssim, cs = _ssim_and_cs(x, y, window)
        terms.append(ssim.clamp(min=0) if s == scales - 1 else cs.clamp(min=0))
        if s < scales - 1:
            x = F.avg_pool2d(x, 2)
            y = F.avg_pool2d(y, 2)
    stacked = torch.stack(terms, dim=1)  # [B, scales]
    return (stacked + 1e-8).pow(weights).prod(dim=1)


class MSSSIMLoss(torch.nn.Module):
    name = "ms-ssim"

    def forward(self, x, y):
        return (1 - ms_ssim(x, y)).mean()


# ---------------------------------------------------------------------------------------------------------------
# LPIPS

# torchvision layer layouts: (kind, out_channels, kernel, stride, padding); "M" = max pool, "R" = ReLU.
VGG16_LAYERS = [("C", 64, 3, 1, 1), "R", ("C", 64, 3, 1, 1), "R", "M",
                ("C", 128, 3, 1, 1), "R", ("C", 128, 3, 1, 1), "R", "M",
                ("C", 256, 3, 1, 1), "R", ("C", 256, 3, 1, 1), "R", ("C", 256, 3, 1, 1), "R", "M",
                ("C", 512, 3, 1, 1), "R", ("C", 512, 3, 1, 1), "R", ("C", 512, 3, 1, 1), "R", "M",
                ("C", 512, 3, 1, 1), "R", ("C", 512, 3, 1, 1), "R", ("C", 512, 3, 1, 1), "R"]
VGG16_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (index of the ReLU in `features`)
ALEXNET_LAYERS = [("C", 64, 11, 4, 2), "R", ("M", 3, 2), ("C", 192, 5, 1, 2), "R", ("M", 3, 2),
                  ("C", 384, 3, 1, 1), "R", ("C", 256, 3, 1, 1), "R", ("C", 256, 3, 1, 1), "R"]
ALEXNET_TAPS = (1, 4, 7, 9, 11)


def _features(layers) -> tuple[torch.nn.Sequential, list[int]]:
    modules, channels, in_ch = [], [], 3
    for spec in layers:
        if spec == "R":
            modules.append(torch.nn.ReLU(inplace=False))
            channels.append(in_ch)
        elif spec == "M":
            modules.append(torch.nn.MaxPool2d(2, 2))
            channels.append(in_ch)
        elif spec[0] == "M":
            modules.append(torch.nn.MaxPool2d(spec[1], spec[2]))
            channels.append(in_ch)
        else:
            _, out_ch, k, s, p = spec
            modules.append(torch.nn.Conv2d(in_ch, out_ch, k, s, p))
            in_ch = out_ch
            channels.append(in_ch)
    return torch.nn.Sequential(*modules), channels


class LPIPS(torch.nn.Module):
    """LPIPS distance (v0.1): backbone features at 5 taps, unit-normalised over channels, squared differences
    weighted by 1x1 linear heads, averaged over space, summed over taps. Parameter names follow torchvision
    (`features.N.weight`) and the lpips package (`lin{k}.model.1.weight`) so their files load as they are."""

    name = "lpips"

    def __init__(self, net: str = "vgg"):
        super().__init__()
        if net not in BACKBONE_FILES:
            raise ValueError(f"LPIPS backbone must be one of {sorted(BACKBONE_FILES)}")
        self.net = net
        layers, self.taps = (VGG16_LAYERS, VGG16_TAPS) if net == "vgg" else (ALEXNET_LAYERS, ALEXNET_TAPS)
        self.features, channels = _features(layers)
        for k, tap in enumerate(self.taps):
            head = torch.nn.Sequential(torch.nn.Dropout(), torch.nn.Conv2d(channels[tap], 1, 1, bias=False))
            setattr(self, f"lin{k}", _Head(head))
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).reshape(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).reshape(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def _taps(self, x):
        x = (x - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
                if len(out) == len(self.taps):
                    break
        return out

    def forward(self, x, y):
        total = 0.0
        for k, (fx, fy) in enumerate(zip(self._taps(x.float()), self._taps(y.float()))):
            fx = fx / (fx.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            fy = fy / (fy.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            total = total + getattr(self, f"lin{k}").model((fx - fy).square()).mean(dim=(2, 3))
        return total.mean()

    def train(self, mode: bool = True):
        return super().train(False)  # always deterministic (no dropout)


class _Head(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model


def find_backbone(net: str) -> Path | None:
    """The torchvision weights of the LPIPS backbone in the torch hub cache, or None."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]
    return path if path.is_file() else None


def load_lpips(heads_path: str | Path, net: str | None = None) -> LPIPS:
    """LPIPS with the backbone from the torch hub cache and the linear heads from `heads_path`."""
    heads_path = Path(heads_path)
    if not heads_path.is_file():
        raise UserError(f"LPIPS weights '{heads_path}': no such file (the lpips package's weights/v0.1/vgg.pth "
                        f"or alex.pth)")
    if net is None:
        net = "alex" if "alex" in heads_path.stem.lower() else "vgg"
    backbone = find_backbone(net)
    if backbone is None:
        raise UserError(f"LPIPS ({net}) needs {BACKBONE_FILES[net]} in {Path(torch.hub.get_dir()) / 'checkpoints'}")
    model = LPIPS(net)
    try:
        features = torch.load(backbone, map_location="cpu", weights_only=True)
        heads = torch.load(heads_path, map_location="cpu", weights_only=True)
        model.features.load_state_dict({k[len("features."):]: v for k, v in features.items()
                                        if k.startswith("features.")})
        model.load_state_dict({**model.state_dict(), **heads}, strict=True)
    except (RuntimeError, KeyError, OSError, ValueError) as e:
        raise UserError(f"LPIPS weights: cannot load {backbone} / {heads_path} ({type(e).__name__}: {e})") from None
    return model.eval().requires_grad_(False)


def perceptual_loss(lpips_weights: str | Path | None = None) -> torch.nn.Module:
    """LPIPS when its weights are at hand, else MS-SSIM (with a warning)."""
    if lpips_weights is not None:
        return load_lpips(lpips_weights)
    log.warning("PTI: no LPIPS weights given (--lpips-weights, with vgg16-397923af.pth or alexnet-owt-7be5be79.pth "
                "in the torch hub cache): using MS-SSIM + L2 instead of LPIPS + L2")
    return MSSSIMLoss()


class ReconstructionLoss(torch.nn.Module):
    """l2_lambda * MSE + perceptual_lambda * perceptual(x, y); images in [-1, 1]."""

    def __init__(self, perceptual: torch.nn.Module, l2_lambda: float = 1.0, perceptual_lambda: float = 1.0):
        super().__init__()
        self.perceptual = perceptual
        self.l2_lambda = l2_lambda
        self.perceptual_lambda = perceptual_lambda

    def forward(self, x, y):
        loss = x.new_zeros((), dtype=torch.float32)
        if self.l2_lambda > 0:
            loss = loss + self.l2_lambda * F.mse_loss(x.float(), y.float())
        if self.perceptual_lambda > 0:
            loss = loss + self.perceptual_lambda * self.perceptual(x, y)
        return loss
