"""Modulated convolution (StyleGAN2/3 weight (de)modulation), fast torch formulation.

Mathematically the official fused op (per-sample weights, grouped conv) but executed as
scale input channels -> one shared convolution -> scale output channels, which is one large batched conv
(a plain matmul for 1x1 kernels) instead of B small ones.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def modulated_conv2d(x, weight, styles, demodulate=True, padding=0, input_gain=None):
    """x [B,I,H,W], weight [O,I,k,k], styles [B,I], input_gain scalar/[I]/[B,I] -> [B,O,H',W'] in x.dtype."""
    in_c = int(styles.shape[1])
    w = weight.to(torch.float32)
    s = styles.to(torch.float32)
    if demodulate:
        # Pre-normalisation keeps fp16 in range; the demodulation makes the result invariant to both scales.
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean(dim=1, keepdim=True).rsqrt()
        dcoefs = (s.square() @ w.square().sum([2, 3]).t() + 1e-8).rsqrt()  # [B, O]
    if input_gain is not None:
        s = s * torch.as_tensor(input_gain, dtype=torch.float32, device=s.device)  # broadcasts to [B, I]
    x = x * s.to(x.dtype).reshape(-1, in_c, 1, 1)  # -1: the batch stays symbolic in an exported graph
    x = F.conv2d(x, w.to(x.dtype), padding=padding)
    if demodulate:
        x = x * dcoefs.to(x.dtype).unsqueeze(2).unsqueeze(3)
    return x
