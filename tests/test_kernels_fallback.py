"""Issue 7, on the CPU with the kernels' arithmetic emulated (kernels/backends.EmulatedBackend): a kernel that
cannot be trusted or fails at run time warns once and falls back to the torch ops; it never crashes the run.
- the load-time self-test (kernels/selftest.py) passes a correct backend and rejects a wrong or raising one, and
  `get_ops("auto")` then falls back with one warning while `get_ops("cuda")` raises;
- a backend that raises in the middle of a run (kernels/ops.GuardedBackend): results still equal the reference ops,
  one warning, and the failed backend is not called again."""
import pytest
import torch

import sg3stream.kernels as kernels
import sg3stream.ops as ops_module
from sg3stream.kernels import KernelSelfTestError, checked_op_set, self_test
from sg3stream.kernels.backends import EmulatedBackend
from sg3stream.kernels.ops import GuardedBackend, KernelOps
from sg3stream.models.stylegan3 import design_lowpass_filter
from sg3stream.ops import TORCH_OPS, get_ops

RUNTIME_WARNING = "failed at run time"


class WrongBackend(EmulatedBackend):
    """filtered_lrelu's fused kernel forgets the gain: wrong values, no exception."""

    def filtered_lrelu_forward(self, x, b, wu, wd, up, down, padx0, pady0, out_h, out_w, gain, slope, clamp):
        return super().filtered_lrelu_forward(x, b, wu, wd, up, down, padx0, pady0, out_h, out_w, 1.0, slope, clamp)


class NaNBackend(EmulatedBackend):
    """The float16 bias_act backward gives NaN (say an uninitialised output)."""

    def bias_act_backward(self, dy, *args):
        dx = super().bias_act_backward(dy, *args)
        return dx.fill_(float("nan")) if dx.dtype == torch.float16 else dx


class RaisingBackend(EmulatedBackend):
    """Every launch raises, as a kernel image that does not fit the GPU."""

    def upfirdn2d_pass(self, *args):
        raise RuntimeError("cuLaunchKernel failed: no kernel image is available for execution on the device")


class FailsOnCallBackend(EmulatedBackend):
    """Raises on its `fail_at`-th call (any method), as a LaunchError for a shape the self-test did not cover;
    counts every call so a test can see that a failed backend is not used again."""

    def __init__(self, fail_at=3, methods=("upfirdn2d_pass", "bias_act_forward", "bias_act_backward",
                                           "filtered_lrelu_forward")):
        self.calls = 0
        self.fail_at = fail_at
        self.methods = methods

    def _count(self, method):
        if method in self.methods:
            self.calls += 1
            if self.calls == self.fail_at:
                raise RuntimeError("cuLaunchKernel failed: too many resources requested for launch\n(details)")

    def upfirdn2d_pass(self, *args):
        self._count("upfirdn2d_pass")
        return super().upfirdn2d_pass(*args)

    def bias_act_forward(self, *args):
        self._count("bias_act_forward")
        return super().bias_act_forward(*args)

    def bias_act_backward(self, *args):
        self._count("bias_act_backward")
        return super().bias_act_backward(*args)

    def filtered_lrelu_forward(self, *args):
        self._count("filtered_lrelu_forward")
        return super().filtered_lrelu_forward(*args)


# ---------------------------------------------------------------------------------------------------------------
# Self-test

def test_self_test_passes_a_correct_backend_and_the_reference_ops():
    self_test(KernelOps(EmulatedBackend()), "cpu")
    self_test(KernelOps(EmulatedBackend()).op_set("emulated"), "cpu")
    self_test(TORCH_OPS, "cpu")


def test_self_test_works_inside_no_grad_inference_mode_and_autocast():
    """get_ops is called from inside forward passes: the self-test must not depend on the caller's modes."""
    ops = KernelOps(EmulatedBackend())
    with torch.no_grad():
        self_test(ops, "cpu")
    with torch.inference_mode():
        self_test(ops, "cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        self_test(ops, "cpu")


def test_self_test_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    self_test(KernelOps(EmulatedBackend()), "cpu")
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("backend,message", [
    (WrongBackend(), r"filtered_lrelu up=2 down=2 forward in float32: max error \d"),
    (NaNBackend(), r"bias_act lrelu clamp backward in float16: max error nan"),
    (RaisingBackend(), r"upfirdn2d up=2 forward in float32 raised RuntimeError: cuLaunchKernel failed"),
])
def test_self_test_rejects_a_broken_backend(backend, message):
    with pytest.raises(KernelSelfTestError, match=message):
        self_test(KernelOps(backend), "cpu")


def _loaded_from(monkeypatch, backend):
    """cuda_op_set (and so get_ops "auto"/"cuda") as on a GPU machine whose kernels are `backend`."""
    monkeypatch.setattr(kernels, "pycuda_available", lambda: True)
    monkeypatch.setattr(kernels, "_LOADED", {})
    monkeypatch.setattr(kernels, "_load", lambda device: checked_op_set(backend, "cpu"))
    monkeypatch.setattr(ops_module, "_KERNELS_WARNED", False)


def test_a_backend_failing_its_self_test_falls_back_with_one_warning(monkeypatch, caplog):
    _loaded_from(monkeypatch, WrongBackend())
    with caplog.at_level("WARNING", logger="sg3stream"):
        assert get_ops("auto", "cuda:0") is TORCH_OPS
        assert get_ops("auto", "cuda:0") is TORCH_OPS
    assert caplog.text.count("CUDA kernels unavailable (KernelSelfTestError: CUDA kernel self-test: "
                             "filtered_lrelu up=2 down=2 forward in float32: max error") == 1
    assert caplog.text.count("WARNING") == 1
    with pytest.raises(KernelSelfTestError, match="filtered_lrelu"):
        get_ops("cuda", "cuda:0")


def test_a_backend_passing_its_self_test_is_handed_out_guarded(monkeypatch, caplog):
    _loaded_from(monkeypatch, EmulatedBackend())
    with caplog.at_level("WARNING", logger="sg3stream"):
        ops = get_ops("auto", "cuda:0")
    assert ops.name == "emulated" and get_ops("cuda", "cuda:0") is ops  # loaded once per device
    assert isinstance(ops.upfirdn2d.__self__.backend, GuardedBackend)
    assert not caplog.text


# ---------------------------------------------------------------------------------------------------------------
# Run-time failures

def _flrelu_case():
    torch.manual_seed(0)
    fu = design_lowpass_filter(12, 2.0, 1.5, 8)
    fd = design_lowpass_filter(12, 2.0, 1.5, 8, radial=True)
    x = torch.randn(2, 4, 12, 12, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    return x, b, dict(fu=fu, fd=fd, up=2, down=2, padding=[10, 9, 10, 9], clamp=2.0)


def test_a_launch_failing_at_run_time_falls_back_to_the_torch_ops_with_one_warning(caplog):
    backend = FailsOnCallBackend(fail_at=3)
    ops = KernelOps(GuardedBackend(backend)).op_set("cuda")
    x, b, kwargs = _flrelu_case()
    f = torch.rand(4)
    with caplog.at_level("WARNING", logger="sg3stream"):
        for _ in range(3):  # launches 1-2 (upfirdn2d's passes) succeed, the 3rd (filtered_lrelu) raises, then
            # nothing reaches the backend again
            up = dict(up=2, padding=1)
            torch.testing.assert_close(ops.upfirdn2d(x, f, **up), TORCH_OPS.upfirdn2d(x, f, **up))
            ours, ref = ops.filtered_lrelu(x, b=b, **kwargs), TORCH_OPS.filtered_lrelu(x, b=b, **kwargs)
            torch.testing.assert_close(ours, ref)
            g = torch.randn_like(ref)
            torch.testing.assert_close(torch.autograd.grad(ours, (x, b), g), torch.autograd.grad(ref, (x, b), g))
            torch.testing.assert_close(ops.bias_act(x, b, act="lrelu", clamp=1.0),
                                       TORCH_OPS.bias_act(x, b, act="lrelu", clamp=1.0))
    assert backend.calls == 3
    assert caplog.text.count(RUNTIME_WARNING) == 1
    assert ("CUDA kernel filtered_lrelu_forward failed at run time (RuntimeError: cuLaunchKernel failed: too many "
            "resources requested for launch); using the torch ops from now on") in caplog.text


def test_a_launch_failing_in_the_backward_pass_still_gives_the_gradient(caplog):
    """The backward launches run inside autograd, after the op call returned: they are guarded too."""
    backend = FailsOnCallBackend(fail_at=1, methods=("bias_act_backward",))
    guarded = GuardedBackend(backend)
    ops = KernelOps(guarded).op_set("cuda")
    x, b, kwargs = _flrelu_case()
    with caplog.at_level("WARNING", logger="sg3stream"):
        ours, ref = ops.filtered_lrelu(x, b=b, **kwargs), TORCH_OPS.filtered_lrelu(x, b=b, **kwargs)
        assert not guarded.failed
        g = torch.randn_like(ref)
        torch.testing.assert_close(torch.autograd.grad(ours, (x, b), g), torch.autograd.grad(ref, (x, b), g))
        assert guarded.failed
        torch.testing.assert_close(ops.filtered_lrelu(x, b=b, **kwargs), ref)
    assert caplog.text.count("CUDA kernel bias_act_backward failed at run time") == 1
    assert caplog.text.count(RUNTIME_WARNING) == 1


def test_errors_about_the_arguments_still_raise_and_do_not_disable_the_kernels(caplog):
    backend = FailsOnCallBackend(fail_at=10 ** 9)
    guarded = GuardedBackend(backend)
    ops = KernelOps(guarded).op_set("cuda")
    x = torch.randn(1, 2, 4, 4)
    with caplog.at_level("WARNING", logger="sg3stream"):
        with pytest.raises(ValueError, match="unknown activation"):
            ops.bias_act(x, act="nope")
        with pytest.raises(ValueError, match="output would be empty"):
            ops.upfirdn2d(x, torch.ones(3, 3), padding=-3)
        with pytest.raises(ValueError, match="up and down must be integers"):
            ops.filtered_lrelu(x, up=0)
    assert not guarded.failed and not caplog.text
    ops.bias_act(x, act="lrelu")
    assert backend.calls == 1  # still on the kernels


def test_out_of_memory_is_not_a_kernel_failure():
    class OutOfMemoryBackend(EmulatedBackend):
        def bias_act_forward(self, *args):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    guarded = GuardedBackend(OutOfMemoryBackend())
    with pytest.raises(torch.cuda.OutOfMemoryError):
        KernelOps(guarded).bias_act(torch.randn(2, 3), act="lrelu")
    assert not guarded.failed


def test_the_generator_renders_through_a_failing_backend():
    """The demo synthesis network through a kernel op set whose 5th launch fails: same image as the torch ops."""
    from sg3stream.models.loading import load_generator

    G = load_generator("demo")
    ws = G.mapping(torch.randn(1, 512, generator=torch.Generator().manual_seed(3)))
    ref = G.synthesis(ws)
    backend = FailsOnCallBackend(fail_at=5)
    ops_module.IMPLEMENTATIONS["failing"] = KernelOps(GuardedBackend(backend)).op_set("failing")
    try:
        G.synthesis.ops_impl = "failing"
        ours = G.synthesis(ws)
        again = G.synthesis(ws)
    finally:
        G.synthesis.ops_impl = "auto"
        del ops_module.IMPLEMENTATIONS["failing"]
    assert backend.calls == 5
    assert float((ours - ref).abs().max()) < 1e-4
    assert float((again - ref).abs().max()) < 1e-4
