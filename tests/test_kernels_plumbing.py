"""The Python side of the CUDA kernels (kernels/ops.py), on the CPU: how each op is turned into kernel launches
(the correlation kernel, flips, gains, paddings, up/down factors and output sizes handed to each pass), the adjoint
passes of the backward, the decomposed filtered_lrelu backward, and their autograd wiring. The launches go to
kernels/backends.EmulatedBackend, a stand-in built from torch ops (F.pad and F.conv2d for a pass, torch
activations for bias_act) that takes the same arguments as the .cu kernels; values and gradients are checked
against the reference ops, with gradcheck in float64. The .cu code (its index arithmetic, its float16 paths) does
not run here: it runs in tests/test_kernels_gpu.py (needs CUDA and pycuda) and is compiled in
tests/test_kernels_build.py."""
import pytest
import torch

from sg3stream.kernels.backends import EmulatedBackend
from sg3stream.kernels.ops import KernelOps
from sg3stream.ops import bias_act, filtered_lrelu, get_ops, upfirdn2d
from sg3stream.models.stylegan3 import design_lowpass_filter

OPS = KernelOps(EmulatedBackend(), dtypes=(torch.float32, torch.float64))

UPFIRDN_CASES = [
    dict(up=2, down=1, padding=[3, 2, 3, 2]),
    dict(up=1, down=2, padding=[1, 1, 0, 2]),
    dict(up=[2, 1], down=[1, 2], padding=[2, 1, -1, 1]),
    dict(up=4, down=2, padding=[-2, 5, 4, -1], flip_filter=True, gain=3.0),
]


@pytest.mark.parametrize("case", UPFIRDN_CASES)
@pytest.mark.parametrize("separable", [True, False])
def test_upfirdn2d_values_and_gradcheck(case, separable):
    torch.manual_seed(0)
    f = torch.rand(4, dtype=torch.float64) if separable else torch.rand(3, 4, dtype=torch.float64)
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(OPS.upfirdn2d(x, f, **case), upfirdn2d(x, f, **case))
    assert torch.autograd.gradcheck(lambda v: OPS.upfirdn2d(v, f, **case), (x,))


def test_upfirdn2d_is_twice_differentiable():
    f = torch.rand(3, dtype=torch.float64)
    x = torch.randn(1, 1, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda v: OPS.upfirdn2d(v, f, up=2, down=2, padding=1), (x,))


@pytest.mark.parametrize("act", ["linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish"])
def test_bias_act_values_and_gradients(act):
    torch.manual_seed(1)
    x = torch.randn(3, 5, 4, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    kwargs = dict(act=act, clamp=1.5 if act in ("lrelu", "linear") else None)
    ours, ref = OPS.bias_act(x, b, **kwargs), bias_act(x, b, **kwargs)
    torch.testing.assert_close(ours, ref)
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(ours, (x, b), g), torch.autograd.grad(ref, (x, b), g))
    assert torch.autograd.gradcheck(lambda v, w: OPS.bias_act(v, w, **kwargs), (x, b))


def test_bias_act_along_another_dim():
    x = torch.randn(4, 6, dtype=torch.float64)
    b = torch.randn(4, dtype=torch.float64)
    torch.testing.assert_close(OPS.bias_act(x, b, dim=0, act="lrelu"), bias_act(x, b, dim=0, act="lrelu"))


FLRELU_CASES = [  # size: of the input; 5 for up=4, whose full gradcheck takes a minute at 9x9 (392 outputs)
    dict(up=2, down=2, taps=(12, 12), radial=False, padding=[10, 9, 10, 9], clamp=256, size=9),
    dict(up=4, down=2, taps=(24, 12), radial=True, padding=[13, 12, 13, 12], clamp=0.5, size=5),
    dict(up=1, down=1, taps=(1, 1), radial=False, padding=0, clamp=None, size=9),
]


@pytest.mark.parametrize("case", FLRELU_CASES)
def test_filtered_lrelu_values_and_gradcheck(case):
    torch.manual_seed(2)
    fu = design_lowpass_filter(case["taps"][0], 2.0, 1.5, 4 * case["up"]) if case["taps"][0] > 1 else None
    fd = design_lowpass_filter(case["taps"][1], 2.0, 1.5, 4 * case["up"], radial=case["radial"]) \
        if case["taps"][1] > 1 else None
    fu = fu.double() if fu is not None else None
    fd = fd.double() if fd is not None else None
    x = torch.randn(1, 2, case["size"], case["size"], dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    kwargs = dict(fu=fu, fd=fd, up=case["up"], down=case["down"], padding=case["padding"], clamp=case["clamp"])
    ours, ref = OPS.filtered_lrelu(x, b=b, **kwargs), filtered_lrelu(x, b=b, **kwargs)
    torch.testing.assert_close(ours, ref)
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(ours, (x, b), g), torch.autograd.grad(ref, (x, b), g))
    assert torch.autograd.gradcheck(lambda v, w: OPS.filtered_lrelu(v, b=w, **kwargs), (x, b))


def test_generator_renders_the_same_with_the_kernel_op_set():
    """The whole demo synthesis network through KernelOps (launches emulated with torch ops) equals the torch ops."""
    from sg3stream.models.loading import load_generator

    G = load_generator("demo")
    ws = G.mapping(torch.randn(1, 512, generator=torch.Generator().manual_seed(3)))
    ref = G.synthesis(ws)
    import sg3stream.ops as ops_module

    original = ops_module.IMPLEMENTATIONS.get("emulated")
    ops_module.IMPLEMENTATIONS["emulated"] = OPS.op_set("emulated")
    try:
        G.synthesis.ops_impl = "emulated"
        ours = G.synthesis(ws)
    finally:
        G.synthesis.ops_impl = "auto"
        if original is None:
            del ops_module.IMPLEMENTATIONS["emulated"]
    assert float((ours - ref).abs().max()) < 1e-4


def test_auto_on_cpu_is_the_torch_ops():
    assert get_ops("auto", "cpu").name == "torch"
    assert get_ops("auto").name == "torch"


def test_asking_for_the_cuda_kernels_without_a_device_fails_with_a_clear_error(monkeypatch):
    """get_ops("cuda") on a machine where torch sees no CUDA device (made so here on any machine) raises an error
    that says so, whether pycuda is installed or not, for any way of naming the device."""
    import sg3stream.kernels as kernels

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(kernels, "_LOADED", {})  # nothing loaded on an earlier device
    for pycuda in (False, True):
        monkeypatch.setattr(kernels, "pycuda_available", lambda: pycuda)
        for device in (None, "cuda", "cuda:0", "cuda:1"):
            with pytest.raises(RuntimeError, match="^the CUDA kernels need a CUDA device: "):
                get_ops("cuda", device)
    with pytest.raises(ValueError, match="the CUDA kernels run on CUDA devices only"):
        get_ops("cuda", "cpu")


def test_auto_on_cuda_falls_back_with_one_warning_when_the_kernels_fail(monkeypatch, caplog):
    import sg3stream.kernels as kernels
    import sg3stream.ops as ops_module

    monkeypatch.setattr(kernels, "pycuda_available", lambda: True)
    monkeypatch.setattr(kernels, "cuda_op_set", lambda device: (_ for _ in ()).throw(RuntimeError("nvcc failed")))
    monkeypatch.setattr(ops_module, "_KERNELS_WARNED", False)
    with caplog.at_level("WARNING", logger="sg3stream"):
        assert get_ops("auto", "cuda:0").name == "torch"
        assert get_ops("auto", "cuda:0").name == "torch"
    assert caplog.text.count("CUDA kernels unavailable") == 1
    monkeypatch.setattr(kernels, "pycuda_available", lambda: False)
    assert get_ops("auto", "cuda:0").name == "torch"
