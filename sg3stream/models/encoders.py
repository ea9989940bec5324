"""The ReStyle encoder backbones of "Third Time's the Charm?" (StyleGAN3 versions), written from the paper's code.

Four classes, with the reference's parameter names so that official state dicts load with strict=True:

- `BackboneEncoder`             ReStyle-pSp on IR-SE50 (every W+ code from its own map2style head)
- `ProgressiveBackboneEncoder`  ReStyle-e4e on IR-SE50 (code 0 from head 0, code i = code 0 + delta_i)
- `ResNetBackboneEncoder`       ReStyle-pSp on a ResNet34 body (torchvision layout, 6-channel 7x7 stem, no max pool)
- `ResNetProgressiveBackboneEncoder`  ReStyle-e4e on the ResNet34 body

Inputs are [B, input_nc, 256, 256] (input_nc = 6: the frame and the current reconstruction); the body ends on a
16x16 feature map from which each `GradualStyleBlock` reduces to one 512-d code. Output: [B, n_styles, 512].

e4e encoders are always at their inference stage here (all deltas added): that is what the released checkpoints
use; `progressive_stage` is kept only to mirror training-time behaviour.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "EqualLinear", "GradualStyleBlock", "SEModule", "bottleneck_IR", "bottleneck_IR_SE", "BasicBlock",
    "BackboneEncoder", "ProgressiveBackboneEncoder", "ResNetBackboneEncoder", "ResNetProgressiveBackboneEncoder",
    "ENCODER_CLASSES", "INFERENCE_STAGE",
]

INFERENCE_STAGE = 16  # ProgressiveStage.Inference in the reference


class EqualLinear(nn.Module):
    """StyleGAN2's equalized-learning-rate linear layer (no activation): y = x @ (W * lr_mul / sqrt(in)).T + b * lr_mul."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        return F.linear(x, self.weight * self.scale, bias)


class GradualStyleBlock(nn.Module):
    """map2style: log2(spatial) stride-2 3x3 convs with LeakyReLU(0.01) down to 1x1, then an EqualLinear.

    `mid_c` (default out_c, as in the reference) is the width of the convs; only the demo encoder changes it.
    """

    def __init__(self, in_c: int, out_c: int, spatial: int, mid_c: int | None = None):
        super().__init__()
        mid_c = out_c if mid_c is None else mid_c
        self.out_c = out_c
        self.mid_c = mid_c
        self.spatial = spatial
        n = int(round(math.log2(spatial)))
        layers: list[nn.Module] = []
        for i in range(n):
            layers += [nn.Conv2d(in_c if i == 0 else mid_c, mid_c, kernel_size=3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(mid_c, out_c, lr_mul=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        return self.linear(x.reshape(x.shape[0], self.mid_c))


class SEModule(nn.Module):
    """Squeeze-and-excitation gate (attribute names as in the reference: fc1, fc2)."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, padding=0, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, padding=0, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * s


def _shortcut(in_c: int, depth: int, stride: int) -> nn.Module:
    if in_c == depth:
        return nn.MaxPool2d(1, stride)  # a strided identity
    return nn.Sequential(nn.Conv2d(in_c, depth, (1, 1), stride, bias=False), nn.BatchNorm2d(depth))


class bottleneck_IR(nn.Module):  # noqa: N801 (reference name)
    def __init__(self, in_channel: int, depth: int, stride: int):
        super().__init__()
        self.shortcut_layer = _shortcut(in_channel, depth, stride)
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, (3, 3), (1, 1), 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class bottleneck_IR_SE(bottleneck_IR):  # noqa: N801 (reference name)
    def __init__(self, in_channel: int, depth: int, stride: int):
        super().__init__(in_channel, depth, stride)
        self.res_layer.append(SEModule(depth, 16))


def ir_blocks(num_layers: int) -> list[tuple[int, int, int]]:
    """(in_channel, depth, stride) of every unit of IR-50/100/152."""
    units = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
    if num_layers not in units:
        raise ValueError(f"num_layers must be 50, 100 or 152, got {num_layers}")
    out = []
    for (cin, depth), n in zip(((64, 64), (64, 128), (128, 256), (256, 512)), units[num_layers]):
        out.append((cin, depth, 2))
        out += [(depth, depth, 1)] * (n - 1)
    return out


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, same attribute names (conv1, bn1, relu, conv2, bn2, downsample)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def resnet34_body(widths: Sequence[int] = (64, 128, 256, 512), stem: int = 64) -> nn.Sequential:
    """layer1..layer4 of a torchvision resnet34, flattened into one Sequential (as the reference does)."""
    blocks: list[nn.Module] = []
    cin = stem
    for i, (w, n) in enumerate(zip(widths, (3, 4, 6, 3))):
        for j in range(n):
            blocks.append(BasicBlock(cin, w, 2 if (j == 0 and i > 0) else 1))
            cin = w
    return nn.Sequential(*blocks)


class _StyleHeads(nn.Module):
    """Shared code of the four encoders: the 16 map2style heads and the pSp / e4e combination of their outputs."""

    progressive: bool = False

    def _make_styles(self, n_styles: int, in_c: int, style_dim: int, mid_c: int | None) -> None:
        self.style_count = n_styles
        self.style_dim = style_dim
        self.styles = nn.ModuleList(GradualStyleBlock(in_c, style_dim, 16, mid_c) for _ in range(n_styles))
        self.progressive_stage = INFERENCE_STAGE

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.features(x)
        if not self.progressive:
            return torch.stack([s(feat) for s in self.styles], dim=1)
        w0 = self.styles[0](feat)
        n_deltas = min(self.progressive_stage + 1, self.style_count)
        deltas = [torch.zeros_like(w0)] + [self.styles[i](feat) for i in range(1, n_deltas)]
        deltas += [torch.zeros_like(w0)] * (self.style_count - n_deltas)
        return w0.unsqueeze(1) + torch.stack(deltas, dim=1)


class BackboneEncoder(_StyleHeads):
    """ReStyle-pSp encoder on IR-SE50 (reference: restyle_psp_encoders.BackboneEncoder)."""

    def __init__(self, num_layers: int = 50, mode: str = "ir_se", n_styles: int = 16, input_nc: int = 6,
                 style_dim: int = 512):
        super().__init__()
        if mode not in ("ir", "ir_se"):
            raise ValueError(f"mode must be 'ir' or 'ir_se', got {mode!r}")
        unit = bottleneck_IR_SE if mode == "ir_se" else bottleneck_IR
        self.input_nc = input_nc
        self.input_layer = nn.Sequential(nn.Conv2d(input_nc, 64, (3, 3), 1, 1, bias=False), nn.BatchNorm2d(64),
                                         nn.PReLU(64))
        self.body = nn.Sequential(*(unit(c, d, s) for c, d, s in ir_blocks(num_layers)))
        self._make_styles(n_styles, 512, style_dim, None)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.input_layer(x))


class ProgressiveBackboneEncoder(BackboneEncoder):
    """ReStyle-e4e encoder on IR-SE50 (reference: restyle_e4e_encoders.ProgressiveBackboneEncoder)."""

    progressive = True


class ResNetBackboneEncoder(_StyleHeads):
    """ReStyle-pSp encoder on ResNet34 (reference: restyle_psp_encoders.ResNetBackboneEncoder).

    `widths`/`style_mid` default to the reference sizes; only the demo encoder shrinks them.
    """

    def __init__(self, n_styles: int = 16, input_nc: int = 6, style_dim: int = 512,
                 widths: Sequence[int] = (64, 128, 256, 512), style_mid: int | None = None):
        super().__init__()
        stem = widths[0]
        self.input_nc = input_nc
        self.conv1 = nn.Conv2d(input_nc, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.PReLU(stem)
        self.body = resnet34_body(widths, stem)
        self._make_styles(n_styles, widths[-1], style_dim, style_mid)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.relu(self.bn1(self.conv1(x))))


class ResNetProgressiveBackboneEncoder(ResNetBackboneEncoder):
    """ReStyle-e4e encoder on ResNet34 (reference: restyle_e4e_encoders.ResNetProgressiveBackboneEncoder)."""

    progressive = True


ENCODER_CLASSES: dict[str, type[nn.Module]] = {
    "BackboneEncoder": BackboneEncoder,
    "ProgressiveBackboneEncoder": ProgressiveBackboneEncoder,
    "ResNetBackboneEncoder": ResNetBackboneEncoder,
    "ResNetProgressiveBackboneEncoder": ResNetProgressiveBackboneEncoder,
}
