"""Straightforward torch versions of the ops, literally following the official reference formulation
(zero-insertion upsampling, per-channel grouped convolution, modulated weights per sample).

Slow; kept as the oracle for the fast reference ops and as the baseline of `bench/generator.py`.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ._args import filter_size, parse_padding, parse_scaling
from .bias_act import bias_act


def upfirdn2d_naive(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    upx, upy = parse_scaling(up)
    downx, downy = parse_scaling(down)
    px0, px1, py0, py1 = parse_padding(padding)
    n, c, h, w = x.shape

    # Upsample by inserting up-1 zeros after every sample.
    x = x.reshape([n, c, h, 1, w, 1])
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    x = x.reshape([n, c, h * upy, w * upx])

    # Pad (positive) or crop (negative).
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]

    # conv2d is a correlation: flip the filter unless asked not to.
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f[None, None].repeat([c, 1] + [1] * f.ndim)
    if f.ndim == 4:
        x = F.conv2d(x, f, groups=c)
    else:
        x = F.conv2d(x, f.unsqueeze(2), groups=c)
        x = F.conv2d(x, f.unsqueeze(3), groups=c)
    return x[:, :, ::downy, ::downx]


def filtered_lrelu_naive(x, fu=None, fd=None, b=None, up=1, down=1, padding=0, gain=np.sqrt(2), slope=0.2,
                         clamp=None, flip_filter=False):
    fu_w, fu_h = filter_size(fu)
    fd_w, fd_h = filter_size(fd)
    if b is not None:
        x = bias_act(x, b)
    px0, px1, py0, py1 = parse_padding(padding)
    x = upfirdn2d_naive(x, fu, up=up, padding=[px0, px1, py0, py1], gain=up ** 2, flip_filter=flip_filter)
    x = bias_act(x, act="lrelu", alpha=slope, gain=gain, clamp=clamp)
    return upfirdn2d_naive(x, fd, down=down, flip_filter=flip_filter)


def modulated_conv2d_naive(x, weight, styles, demodulate=True, padding=0, input_gain=None):
    """Per-sample modulated weights, executed as one grouped convolution (the official formulation)."""
    batch = x.shape[0]
    out_c, in_c, kh, kw = weight.shape
    w = weight
    s = styles
    if demodulate:
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()
    w = w.unsqueeze(0) * s.reshape(batch, 1, in_c, 1, 1)
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(batch, out_c, 1, 1, 1)
    if input_gain is not None:
        w = w * input_gain.expand(batch, in_c).reshape(batch, 1, in_c, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    x = F.conv2d(x, w.reshape(-1, in_c, kh, kw).to(x.dtype), padding=padding, groups=batch)
    return x.reshape(batch, -1, *x.shape[2:])
