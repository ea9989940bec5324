"""The load-time self-test of the kernels: every op, forward and input gradient, in float32 and float16, on tiny
inputs, against the torch reference ops. `cuda_op_set` runs it before handing the op set out, so a kernel that
builds and loads but computes garbage (or raises, or gives NaN) on this GPU is caught once, at load time, and
`get_ops("auto")` falls back to the torch ops instead of rendering wrong frames.

The reference runs in float64 on the same (rounded) inputs: the exact value, and free of TF32 (which cuDNN may use
for float32 convolutions on the GPU). The float32 tolerance covers summation order, the float16 one the kernels'
float16 loads, stores and intermediates. A broken kernel (wrong index, wrong gain, a missing tap) is off by O(1),
far beyond either tolerance.
"""
from __future__ import annotations

import torch

from sg3stream.ops import TORCH_OPS

DTYPES = (torch.float32, torch.float16)
TOLERANCE = {torch.float32: (1e-3, 1e-3), torch.float16: (2e-2, 2e-2)}  # (atol, rtol), elementwise
SEED = 0


class KernelSelfTestError(RuntimeError):
    """A kernel gave a wrong value, a NaN or an exception in the load-time self-test."""


def _cases(gen: torch.Generator):
    """(label, op name, x, filters, keyword arguments), all on the CPU in float32."""
    def lowpass(taps):  # positive taps summing to 1: a smoothing filter, values stay O(1)
        f = torch.rand(taps, generator=gen) + 0.5
        return f / f.sum()

    # bias_act's inputs: x odd multiples of 1/16 in (-2, 2), b multiples of 1/8 in [-1, 1): exact in float16, and
    # x + b is never 0 (lrelu's kink) and |gain * (x + b)| keeps >= 0.07 away from the clamp 1.4 (negative values
    # stay under 0.85): rounding cannot flip a gradient between the kernel and the reference.
    bias_x = (2 * torch.randint(-16, 16, (2, 3, 8, 8), generator=gen) + 1) / 16
    bias_b = torch.randint(-8, 8, (3,), generator=gen) / 8
    f2d = torch.rand(3, 3, generator=gen) + 0.5
    return [
        ("upfirdn2d up=2", "upfirdn2d", torch.randn(1, 3, 8, 8, generator=gen), (lowpass(4),),
         dict(up=2, padding=[2, 1, 2, 1])),
        ("upfirdn2d down=2", "upfirdn2d", torch.randn(1, 3, 8, 8, generator=gen), (f2d / f2d.sum(),),
         dict(down=2, padding=1, flip_filter=True, gain=2.0)),
        ("bias_act lrelu clamp", "bias_act", bias_x, (), dict(b=bias_b, act="lrelu", clamp=1.4)),
        ("filtered_lrelu up=2 down=2", "filtered_lrelu", torch.randn(1, 3, 8, 8, generator=gen),
         (lowpass(6), lowpass(6)), dict(b=0.5 * torch.randn(3, generator=gen), up=2, down=2, padding=[5, 4, 5, 4],
                                        clamp=1.0)),
    ]


def _check(what: str, dtype: torch.dtype, ours: torch.Tensor, ref: torch.Tensor) -> None:
    name = str(dtype).replace("torch.", "")
    if ours.shape != ref.shape:
        raise KernelSelfTestError(f"CUDA kernel self-test: {what} in {name}: shape {tuple(ours.shape)}, expected "
                                  f"{tuple(ref.shape)}")
    ours, ref = ours.detach().double(), ref.detach().double()
    atol, rtol = TOLERANCE[dtype]
    err = (ours - ref).abs()
    if not bool(torch.isfinite(ours).all()) or bool((err > atol + rtol * ref.abs()).any()):
        max_err = float(err.max()) if bool(torch.isfinite(ours).all()) else float("nan")
        raise KernelSelfTestError(f"CUDA kernel self-test: {what} in {name}: max error {max_err:.3g} "
                                  f"(tolerance {atol:g} + {rtol:g} * |reference|)")


def self_test(ops, device) -> None:
    """Raises KernelSelfTestError unless `ops` (an OpSet or KernelOps) matches the torch reference ops on `device`.

    Cheap (a few milliseconds of tiny launches), deterministic, and leaves torch's global RNG alone."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(SEED)
    # get_ops may be called under no_grad / inference_mode / autocast (inside a forward pass): the test needs
    # gradients and exact dtypes regardless.
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device.type, enabled=False):
        for label, op, x, filters, kwargs in _cases(gen):
            filters = [f.to(device) for f in filters]  # float32, as in the generator
            for dtype in DTYPES:
                xk = x.to(device, dtype).requires_grad_(True)
                kw = dict(kwargs)
                if "b" in kw:
                    kw["b"] = kw["b"].to(device, dtype)  # the bias follows x's dtype, as in the generator
                if op == "filtered_lrelu" and dtype == torch.float16:
                    # The clamp is tested in float32 only: in float16 the rounding of the intermediate may move a
                    # value across the clamp, which flips its gradient between 0 and full. The float16 kernels
                    # share the clamp's code with the float32 ones.
                    del kw["clamp"]
                # the reference, in float64 on exactly the values the kernel sees
                xr = xk.detach().double().requires_grad_(True)
                kw_ref = dict(kw, b=kw["b"].double()) if "b" in kw else kw
                y_ref = getattr(TORCH_OPS, op)(xr, *[f.double() for f in filters], **kw_ref)
                g = torch.randn(y_ref.shape, generator=gen).to(device, dtype)
                (dx_ref,) = torch.autograd.grad(y_ref, xr, g.double())

                what = f"{label} forward"
                try:
                    y = getattr(ops, op)(xk, *filters, **kw)
                    _check(what, dtype, y, y_ref)
                    what = f"{label} backward"
                    (dx,) = torch.autograd.grad(y, xk, g)
                    _check(what, dtype, dx, dx_ref)
                except KernelSelfTestError:
                    raise
                except Exception as e:
                    name = str(dtype).replace("torch.", "")
                    raise KernelSelfTestError(f"CUDA kernel self-test: {what} in {name} raised "
                                              f"{type(e).__name__}: {e}") from e
