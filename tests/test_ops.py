"""The fast torch reference ops against the literal transcription of the official formulation (ops.naive)."""
import itertools

import numpy as np
import pytest
import torch

from sg3stream.models.stylegan3 import design_lowpass_filter
from sg3stream.ops import (bias_act, filtered_lrelu, filtered_lrelu_naive, get_ops, modulated_conv2d,
                           modulated_conv2d_naive, upfirdn2d, upfirdn2d_naive)


def _filters(kind, gen):
    return {"none": None, "sep": torch.randn(6, generator=gen, dtype=torch.float64),
            "2d": torch.randn(5, 4, generator=gen, dtype=torch.float64),
            "1x1": torch.randn(1, 1, generator=gen, dtype=torch.float64)}[kind]


def test_upfirdn2d_matches_naive_for_all_argument_forms():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 11, generator=gen, dtype=torch.float64)
    checked = 0
    for up, down, pad, flip, kind in itertools.product(
            [1, 2, 3, [2, 1]], [1, 2, [1, 3]], [0, 3, [2, -1], [2, -1, 4, 1], [-2, 5, 1, -3]], [False, True],
            ["none", "sep", "2d", "1x1"]):
        f = _filters(kind, gen)
        try:
            ref = upfirdn2d_naive(x, f, up, down, pad, flip, gain=1.7)
        except RuntimeError:
            continue  # padding/cropping leaves nothing for the filter: invalid for both
        ours = upfirdn2d(x, f, up, down, pad, flip, gain=1.7)
        assert ours.shape == ref.shape, (up, down, pad, kind)
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
        checked += 1
    assert checked > 400


@pytest.mark.parametrize("up,down,radial", [(2, 2, False), (4, 2, False), (2, 2, True), (4, 2, True), (1, 1, False)])
def test_filtered_lrelu_matches_naive(up, down, radial):
    gen = torch.Generator().manual_seed(up * 10 + down)
    x = torch.randn(2, 4, 14, 14, generator=gen) * 3
    b = torch.randn(4, generator=gen)
    fu = design_lowpass_filter(6 * up, 2.0, 3.0, 8.0 * up / 2) if up > 1 else None
    fd = design_lowpass_filter(6 * down, 2.0, 3.0, 8.0 * up / 2, radial=radial) if down > 1 else None
    kw = dict(fu=fu, fd=fd, b=b, up=up, down=down, padding=[7, 6, 7, 6], gain=np.sqrt(2), slope=0.2, clamp=2.5)
    ref = filtered_lrelu_naive(x, **kw)
    ours = filtered_lrelu(x, **kw)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours, filtered_lrelu(x, **{**kw, "clamp": None}))  # the clamp took effect


def test_filtered_lrelu_keeps_autograd_working():
    x = torch.randn(1, 2, 8, 8, requires_grad=True)
    f = design_lowpass_filter(12, 2.0, 3.0, 8.0)
    filtered_lrelu(x, f, f, up=2, down=2, padding=5, clamp=1.0).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("act", ["linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish"])
def test_bias_act(act):
    x = torch.randn(3, 5, 4)
    b = torch.randn(5)
    y = bias_act(x, b, dim=1, act=act, clamp=0.5)
    assert y.shape == x.shape and y.abs().max() <= 0.5
    if act == "lrelu":
        expected = torch.nn.functional.leaky_relu(x + b[None, :, None], 0.2) * np.sqrt(2)
        torch.testing.assert_close(bias_act(x, b, act="lrelu"), expected)
    with pytest.raises(ValueError, match="accepted"):
        bias_act(x, b, act="nope")


@pytest.mark.parametrize("demodulate,kernel", [(True, 3), (True, 1), (False, 1)])
def test_modulated_conv2d_matches_grouped_formulation(demodulate, kernel):
    gen = torch.Generator().manual_seed(kernel)
    x = torch.randn(3, 6, 10, 10, generator=gen)
    w = torch.randn(5, 6, kernel, kernel, generator=gen)
    s = torch.randn(3, 6, generator=gen) + 1
    gain = torch.tensor(0.7)
    ref = modulated_conv2d_naive(x, w, s, demodulate=demodulate, padding=kernel - 1, input_gain=gain)
    ours = modulated_conv2d(x, w, s, demodulate=demodulate, padding=kernel - 1, input_gain=gain)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_get_ops():
    assert get_ops("auto", "cpu").name == "torch"
    assert get_ops("naive").name == "naive"
    with pytest.raises(ValueError, match="accepted"):
        get_ops("cuda-kernels-that-do-not-exist")
