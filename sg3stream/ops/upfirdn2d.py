"""upfirdn2d: upsample (zero insertion), pad, FIR filter, downsample — fast torch reference implementation.

Same signature and semantics as the official custom op `torch_utils.ops.upfirdn2d.upfirdn2d`:
  f None   -> identity filter
  f 1-D    -> separable filter, applied along x and then y, each pass with sqrt(gain)
  f 2-D    -> non-separable filter [fh, fw], applied with gain
The filter is convolved (not correlated) unless flip_filter=True.

Why it is fast: upsampling is a strided transposed convolution (no zeros are ever multiplied), downsampling a
strided convolution (dropped samples are never computed), and every pass is one depthwise convolution.

Export-friendly: channel counts, spatial sizes and filter sizes are read as Python ints, so a traced graph (ONNX)
has static convolution kernels and paddings; only the batch dimension stays symbolic.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._args import parse_padding, parse_scaling


def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    upx, upy = parse_scaling(up)
    downx, downy = parse_scaling(down)
    px0, px1, py0, py1 = parse_padding(padding)
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    f = f.to(device=x.device)

    if f.ndim == 1:
        f = f * (float(gain) ** 0.5)
        x = _fir_pass(x, f.reshape(1, -1), upx, downx, px0, px1, 1, 1, 0, 0, flip_filter)
        return _fir_pass(x, f.reshape(-1, 1), 1, 1, 0, 0, upy, downy, py0, py1, flip_filter)
    if f.ndim != 2:
        raise ValueError(f"filter must be None, 1-D or 2-D, got shape {tuple(f.shape)}")
    return _fir_pass(x, f * float(gain), upx, downx, px0, px1, upy, downy, py0, py1, flip_filter)


def _fir_pass(x, f2d, upx, downx, px0, px1, upy, downy, py0, py1, flip_filter):
    """One depthwise pass with a 2-D filter [fh, fw] (a row or column for the separable passes)."""
    # Python ints, not traced sizes: the depthwise kernels and paddings must be static in an exported graph.
    c, h, w = (int(d) for d in x.shape[1:])
    fh, fw = (int(d) for d in f2d.shape)
    out_w = w * upx + px0 + px1 - fw + 1
    out_h = h * upy + py0 + py1 - fh + 1
    if out_w < 1 or out_h < 1:
        raise ValueError(f"upfirdn2d: output would be empty ({out_h}x{out_w}); input too small for filter/padding")
    # The correlation kernel that conv2d needs is the flipped filter (the op convolves).
    corr = f2d if flip_filter else f2d.flip([0, 1])
    corr = corr.to(x.dtype)

    if fh == 1 and fw == 1:
        # Identity-size filter: just scale, zero-insert, pad and subsample.
        x = x * corr[0, 0]
        if upx > 1 or upy > 1:
            x = x.reshape(-1, c, h, 1, w, 1)
            x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1]).reshape(-1, c, h * upy, w * upx)
        return _pad_or_crop(x, px0, px1, py0, py1)[:, :, ::downy, ::downx]

    # Depthwise convolutions run several times faster in channels-last layout on CPU (oneDNN).
    if x.device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    if upx == 1 and upy == 1:
        weight = corr.reshape(1, 1, fh, fw).expand(c, 1, fh, fw).contiguous()
        if px0 == px1 == py0 == py1 >= 0:  # symmetric: let the convolution pad, no copy
            return F.conv2d(x, weight, stride=(downy, downx), padding=px0, groups=c)
        return F.conv2d(_pad_or_crop(x, px0, px1, py0, py1), weight, stride=(downy, downx), groups=c)

    # Transposed conv: z[k] = sum_q x[q] * h[k - up*q] with h the unflipped convolution kernel equals zero insertion
    # followed by convolution; the zero-inserted, padded reference output y[j] is z[j + (taps - 1) - pad_lo].
    weight = corr.flip([0, 1]).reshape(1, 1, fh, fw).expand(c, 1, fh, fw).contiguous()
    z = F.conv_transpose2d(x, weight, stride=(upy, upx), groups=c)
    sx, sy = fw - 1 - px0, fh - 1 - py0
    zh, zw = (h - 1) * upy + fh, (w - 1) * upx + fw  # conv_transpose2d output size
    z = _pad_or_crop(z, -sx, out_w - zw + sx, -sy, out_h - zh + sy)
    return z[:, :, ::downy, ::downx]


def _pad_or_crop(x, px0, px1, py0, py1):
    """F.pad semantics (negative values crop), but a crop-only request is a view instead of a copy."""
    if max(px0, px1, py0, py1) > 0:
        return F.pad(x, [px0, px1, py0, py1])
    h, w = int(x.shape[2]), int(x.shape[3])
    return x[:, :, -py0: h + py1, -px0: w + px1]
