"""filtered_lrelu: bias, upsample + FIR, leaky ReLU + gain + clamp, FIR + downsample — torch reference.

Same signature and semantics as the official custom op `torch_utils.ops.filtered_lrelu.filtered_lrelu`
(its `_filtered_lrelu_ref`): the upsampling pass uses `padding` and gain up**2, the downsampling pass no padding.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ._args import filter_size, parse_padding
from .upfirdn2d import upfirdn2d


def filtered_lrelu(x, fu=None, fd=None, b=None, up=1, down=1, padding=0, gain=np.sqrt(2), slope=0.2, clamp=None,
                   flip_filter=False):
    if not (isinstance(up, int) and isinstance(down, int) and up >= 1 and down >= 1):
        raise ValueError(f"filtered_lrelu: up and down must be integers >= 1, got up={up!r} down={down!r}")
    px0, px1, py0, py1 = parse_padding(padding)
    fu_w, fu_h = filter_size(fu)
    fd_w, fd_h = filter_size(fd)
    c, h, w = (int(d) for d in x.shape[1:])  # Python ints: static shapes in an exported graph
    out_w = (w * up + px0 + px1 - (fu_w - 1) - (fd_w - 1) + (down - 1)) // down
    out_h = (h * up + py0 + py1 - (fu_h - 1) - (fd_h - 1) + (down - 1)) // down

    if b is not None:
        x = x + b.to(x.dtype).reshape(1, -1, 1, 1)
    x = upfirdn2d(x, fu, up=up, padding=[px0, px1, py0, py1], gain=up ** 2, flip_filter=flip_filter)
    x = _lrelu_gain_clamp(x, float(slope), float(gain), clamp)
    x = upfirdn2d(x, fd, down=down, flip_filter=flip_filter)
    assert tuple(x.shape[1:]) == (c, out_h, out_w), (tuple(x.shape), (c, out_h, out_w))
    return x


def _lrelu_gain_clamp(x, slope, gain, clamp):
    # The intermediate is the largest tensor of the layer: work in place on it unless autograd needs the values.
    in_place = not (torch.is_grad_enabled() and x.requires_grad)
    if slope != 1:
        x = F.leaky_relu(x, slope, inplace=in_place)
    elif not in_place:
        x = x.clone()
    if gain != 1:
        x = x.mul_(gain) if in_place else x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp_(-clamp, clamp) if in_place else x.clamp(-clamp, clamp)
    return x
