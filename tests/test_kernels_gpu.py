"""The CUDA kernels (kernels/*.cu through pycuda) against the torch reference ops: values and gradients in
float32 and float16, gradcheck on small shapes, stream ordering, the load-time self-test, and the generator end to
end. Skipped without CUDA and pycuda."""
import pytest
import torch

from sg3stream.kernels import pycuda_available, self_test
from sg3stream.kernels.ops import GuardedBackend, KernelOps
from sg3stream.models.stylegan3 import design_lowpass_filter
from sg3stream.ops import bias_act, filtered_lrelu, get_ops, upfirdn2d

pytestmark = pytest.mark.skipif(not (torch.cuda.is_available() and pycuda_available()),
                                reason="needs a CUDA device and pycuda")

TOL = {torch.float32: dict(atol=1e-4, rtol=1e-4), torch.float16: dict(atol=2e-2, rtol=2e-2)}


@pytest.fixture(scope="module")
def ops():
    return get_ops("cuda", "cuda")


@pytest.fixture(autouse=True)
def _exact_float32_reference():
    """The reference ops' convolutions may run in TF32 on Ampere/Hopper (cuDNN's default), 1e-3 off: the float32
    tolerance above assumes full float32."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture(autouse=True)
def _no_run_time_fallback(ops):
    """The op set falls back to torch when a launch raises (GuardedBackend): a test would then pass on the torch
    values. Fail it instead."""
    yield
    assert not ops.upfirdn2d.__self__.backend.failed, "a kernel launch raised (see the warning in the log)"


def test_load_time_self_test_passes_on_this_gpu(ops):
    """get_ops("cuda") ran it already (it would have raised KernelSelfTestError); again here, unguarded, so that a
    failing kernel raises instead of falling back. Its duration is not asserted (no timed assertions in tests)."""
    guarded = ops.upfirdn2d.__self__.backend
    assert isinstance(guarded, GuardedBackend)
    kernels = KernelOps(guarded.backend)
    for _ in range(2):  # a second run on the same kernels passes too (no state left by the first)
        self_test(kernels, "cuda")
    torch.cuda.synchronize()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("case", [dict(up=2, padding=[3, 2, 3, 2]), dict(down=2, padding=1),
                                  dict(up=4, down=2, padding=[-2, 5, 4, -1], flip_filter=True, gain=3.0)])
@pytest.mark.parametrize("separable", [True, False])
def test_upfirdn2d(ops, dtype, case, separable):
    torch.manual_seed(0)
    f = (torch.rand(6) if separable else torch.rand(5, 6)).cuda()
    x = torch.randn(2, 5, 33, 31, device="cuda", dtype=dtype, requires_grad=True)
    ours, ref = ops.upfirdn2d(x, f, **case), upfirdn2d(x, f, **case)
    torch.testing.assert_close(ours.float(), ref.float(), **TOL[dtype])
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(ours, x, g)[0].float(), torch.autograd.grad(ref, x, g)[0].float(),
                               **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("act", ["linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish"])
def test_bias_act(ops, dtype, act):
    torch.manual_seed(1)
    x = torch.randn(4, 64, 9, 9, device="cuda", dtype=dtype, requires_grad=True)
    b = torch.randn(64, device="cuda", dtype=dtype, requires_grad=True)
    ours, ref = ops.bias_act(x, b, act=act, clamp=2.0), bias_act(x, b, act=act, clamp=2.0)
    torch.testing.assert_close(ours.float(), ref.float(), **TOL[dtype])
    g = torch.randn_like(ref)
    for a, r in zip(torch.autograd.grad(ours, (x, b), g), torch.autograd.grad(ref, (x, b), g)):
        torch.testing.assert_close(a.float(), r.float(), atol=TOL[dtype]["atol"] * 50, rtol=TOL[dtype]["rtol"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("up,down,radial", [(2, 2, False), (4, 2, True), (2, 1, False), (1, 1, False)])
def test_filtered_lrelu(ops, dtype, up, down, radial):
    torch.manual_seed(2)
    fu = design_lowpass_filter(6 * up, 8.0, 6.0, 32 * up).cuda() if up > 1 else None
    fd = design_lowpass_filter(6 * down, 8.0, 6.0, 32 * up, radial=radial).cuda() if down > 1 else None
    x = torch.randn(2, 8, 36, 36, device="cuda", dtype=dtype, requires_grad=True)
    b = torch.randn(8, device="cuda", dtype=dtype, requires_grad=True)
    kwargs = dict(fu=fu, fd=fd, up=up, down=down, padding=[5, 4, 5, 4], clamp=4.0)
    ours, ref = ops.filtered_lrelu(x, b=b, **kwargs), filtered_lrelu(x, b=b, **kwargs)
    torch.testing.assert_close(ours.float(), ref.float(), **TOL[dtype])
    g = torch.randn_like(ref)
    for a, r in zip(torch.autograd.grad(ours, (x, b), g), torch.autograd.grad(ref, (x, b), g)):
        torch.testing.assert_close(a.float(), r.float(), atol=TOL[dtype]["atol"] * 50, rtol=TOL[dtype]["rtol"] * 5)


def test_gradcheck_small_shapes(ops):
    """float32 gradcheck (the kernels take no float64) with a loose finite-difference tolerance."""
    torch.manual_seed(3)
    f = torch.rand(4, device="cuda")
    x = torch.randn(1, 2, 6, 5, device="cuda", requires_grad=True)
    b = torch.randn(2, device="cuda", requires_grad=True)
    check = dict(eps=1e-2, atol=1e-2, rtol=1e-2)
    assert torch.autograd.gradcheck(lambda v: ops.upfirdn2d(v, f, up=2, down=1, padding=2), (x,), **check)
    assert torch.autograd.gradcheck(lambda v, w: ops.bias_act(v, w, act="tanh"), (x, b), **check)
    fu = design_lowpass_filter(4, 1.0, 1.0, 4).cuda()
    assert torch.autograd.gradcheck(
        lambda v, w: ops.filtered_lrelu(v, fu=fu, fd=fu, b=w, up=2, down=2, padding=3, clamp=None), (x, b), **check)


def test_launches_follow_torch_current_stream(ops):
    """Work queued on a side stream before and after a kernel sees the kernel's input and output in order."""
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        x = torch.randn(8, 64, 128, 128, device="cuda")
        torch.cuda._sleep(10_000_000)  # a long kernel before ours on the same stream
        x.mul_(2)
        y = ops.bias_act(x, None, act="lrelu")
        z = y.sum()
    side.synchronize()
    torch.testing.assert_close(z, bias_act(x, None, act="lrelu").sum())


def test_generator_with_kernels_matches_the_torch_ops():
    from sg3stream.models.loading import load_generator

    G = load_generator("demo", device="cuda")
    ws = G.mapping(torch.randn(2, 512, device="cuda", generator=torch.Generator("cuda").manual_seed(0)))
    G.synthesis.ops_impl = "torch"
    ref = G.synthesis(ws)
    G.synthesis.ops_impl = "cuda"
    ours = G.synthesis(ws)
    assert float((ours - ref).abs().max()) < 2e-2  # fp16 layers on CUDA
    G.synthesis.force_fp32 = True
    G.synthesis.ops_impl = "torch"
    ref32 = G.synthesis(ws)
    G.synthesis.ops_impl = "cuda"
    assert float((G.synthesis(ws) - ref32).abs().max()) < 1e-3
