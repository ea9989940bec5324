"""The generator's ops on top of a kernel backend (backends.py), with autograd, as an `sg3stream.ops.OpSet`.

Signatures and semantics are those of the reference ops in sg3stream/ops (the official ones); the reference ops
are the fallback: inputs the kernels do not take (dtypes other than float32/float16 on CUDA, a filter gradient)
go to them.

Gradients:
- upfirdn2d: the adjoint of a pass is a pass with the kernel flipped, up and down swapped and the paddings of the
  official op's backward, so the backward is the same kernel (and twice differentiable).
- bias_act: a backward kernel (dx); the bias gradient is dx summed in torch.
- filtered_lrelu: the forward is fused (no intermediate in global memory); the backward is the reference's
  decomposition run with the kernels: recompute the pre-activation t (upfirdn2d pass), then the adjoint of the
  down pass, the bias_act backward kernel on t, the adjoint of the up pass. It stores only x and b.
bias_act's and filtered_lrelu's backward are not differentiable again (PTI needs first-order gradients only).

Run-time failures: `GuardedBackend` wraps the CUDA backend of a loaded op set. The first exception a launch raises
(say a pycuda LaunchError, out of resources for a shape the load-time self-test did not cover) is logged once; that
launch and every later one of the op set run on `EmulatedBackend` (the same arithmetic in torch), and KernelOps
sends every later op call straight to the reference ops. Guarding the backend rather than the op calls also
covers the launches of the backward passes, which autograd runs after the op call has returned.
"""
from __future__ import annotations

import logging
import math
import threading

import torch
from torch.autograd.function import once_differentiable

from sg3stream.ops import OpSet
from sg3stream.ops import bias_act as reference_bias_act
from sg3stream.ops import filtered_lrelu as reference_filtered_lrelu
from sg3stream.ops import modulated_conv2d
from sg3stream.ops import upfirdn2d as reference_upfirdn2d
from sg3stream.ops._args import parse_padding, parse_scaling
from sg3stream.ops.bias_act import ACTIVATIONS

from .backends import EmulatedBackend

log = logging.getLogger("sg3stream")


def correlation_kernel(f: torch.Tensor, gain: float, flip_filter: bool) -> torch.Tensor:
    """A filter of the ops' convention (convolved unless flip_filter) -> the 2-D correlation kernel the kernels
    apply: a 1-D filter becomes its outer product (separable filters in one fused pass)."""
    f = f.to(torch.float32)
    if f.ndim == 1:
        f = torch.outer(f, f)
    f = f * float(gain)
    return (f if flip_filter else f.flip([0, 1])).contiguous()


def _sum_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float32 if t.dtype == torch.float16 else t.dtype  # sums of half values in float


def _pass_out_size(size, up, down, pad0, pad1, taps):
    return (size * up + pad0 + pad1 - taps + down) // down


class _Upfirdn2dPass(torch.autograd.Function):
    """One pass with a 2-D correlation kernel w; differentiable in x (any order)."""

    @staticmethod
    def forward(ctx, backend, x, w, upx, upy, downx, downy, px0, px1, py0, py1):
        fh, fw = w.shape
        out_h = _pass_out_size(x.shape[2], upy, downy, py0, py1, fh)
        out_w = _pass_out_size(x.shape[3], upx, downx, px0, px1, fw)
        if out_h < 1 or out_w < 1:
            raise ValueError(f"upfirdn2d: output would be empty ({out_h}x{out_w})")
        ctx.backend = backend
        ctx.save_for_backward(w)
        ctx.params = (x.shape, out_h, out_w, upx, upy, downx, downy, px0, py0)
        return backend.upfirdn2d_pass(x.contiguous(), w, upx, upy, downx, downy, px0, py0, out_h, out_w)

    @staticmethod
    def backward(ctx, dy):
        (w,) = ctx.saved_tensors
        shape, out_h, out_w, upx, upy, downx, downy, px0, py0 = ctx.params
        fh, fw = w.shape
        dx = None
        if ctx.needs_input_grad[1]:
            # The official op's backward paddings, for the flipped kernel with up and down swapped.
            gx0 = fw - px0 - 1
            gx1 = shape[3] * upx - out_w * downx + px0 - upx + 1
            gy0 = fh - py0 - 1
            gy1 = shape[2] * upy - out_h * downy + py0 - upy + 1
            dx = _Upfirdn2dPass.apply(ctx.backend, dy, w.flip([0, 1]).contiguous(), downx, downy, upx, upy,
                                      gx0, gx1, gy0, gy1)
        return (None, dx) + (None,) * 9


class _BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, backend, x, b, dim, act, alpha, gain, clamp):
        x = x.contiguous()
        channels = x.shape[dim] if b is not None else 1
        inner = math.prod(x.shape[dim + 1:]) if b is not None else 1
        ctx.backend = backend
        ctx.params = (dim, channels, inner, act, alpha, gain, clamp)
        ctx.save_for_backward(x, b)
        return backend.bias_act_forward(x, b, channels, inner, act, alpha, gain, clamp)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, b = ctx.saved_tensors
        dim, channels, inner, act, alpha, gain, clamp = ctx.params
        dx = ctx.backend.bias_act_backward(dy.contiguous(), x, b, channels, inner, act, alpha, gain, clamp)
        db = None
        if b is not None and ctx.needs_input_grad[2]:
            db = dx.sum(dim=[i for i in range(dx.ndim) if i != dim], dtype=_sum_dtype(dx)).to(b.dtype)
        return None, (dx if ctx.needs_input_grad[1] else None), db, None, None, None, None, None


class _FilteredLRelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, backend, x, b, wu, wd, up, down, px0, px1, py0, py1, gain, slope, clamp):
        x = x.contiguous()
        n, c, h, w = x.shape
        out_h = (h * up + py0 + py1 - (wu.shape[0] - 1) - (wd.shape[0] - 1) + (down - 1)) // down
        out_w = (w * up + px0 + px1 - (wu.shape[1] - 1) - (wd.shape[1] - 1) + (down - 1)) // down
        if out_h < 1 or out_w < 1:
            raise ValueError(f"filtered_lrelu: output would be empty ({out_h}x{out_w})")
        ctx.backend = backend
        ctx.params = (up, down, px0, py0, out_h, out_w, gain, slope, clamp)
        ctx.save_for_backward(x, b, wu, wd)
        return backend.filtered_lrelu_forward(x, b, wu, wd, up, down, px0, py0, out_h, out_w, gain, slope, clamp)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, b, wu, wd = ctx.saved_tensors
        up, down, px0, py0, out_h, out_w, gain, slope, clamp = ctx.params
        backend = ctx.backend
        n, c, h, w = x.shape
        tmp_h, tmp_w = (out_h - 1) * down + wd.shape[0], (out_w - 1) * down + wd.shape[1]
        xb = x + b.to(x.dtype).reshape(1, -1, 1, 1) if b is not None else x
        t = backend.upfirdn2d_pass(xb.contiguous(), wu, up, up, 1, 1, px0, py0, tmp_h, tmp_w)
        # adjoint of the down pass (size out -> tmp)
        da = backend.upfirdn2d_pass(dy.contiguous(), wd.flip([0, 1]).contiguous(), down, down, 1, 1,
                                    wd.shape[1] - 1, wd.shape[0] - 1, tmp_h, tmp_w)
        dt = backend.bias_act_backward(da, t, None, 1, 1, "lrelu", slope, gain, clamp)
        # adjoint of the up pass (size tmp -> in)
        dx = backend.upfirdn2d_pass(dt, wu.flip([0, 1]).contiguous(), 1, 1, up, up, wu.shape[1] - px0 - 1,
                                    wu.shape[0] - py0 - 1, h, w)
        db = dx.sum(dim=[0, 2, 3], dtype=_sum_dtype(dx)).to(b.dtype) if b is not None and ctx.needs_input_grad[2] else None
        return (None, dx if ctx.needs_input_grad[1] else None, db) + (None,) * 11


class GuardedBackend:
    """`backend` until one of its calls raises; then, after one warning, EmulatedBackend for that call and every
    later one (`failed` is set: KernelOps then uses the reference ops). One flag per op set, no global state."""

    def __init__(self, backend):
        self.backend = backend
        self.name = backend.name
        self.failed = False
        self._emulated = EmulatedBackend()
        self._lock = threading.Lock()  # one warning even when two threads fail at once

    def _call(self, method: str, *args):
        if not self.failed:
            try:
                return getattr(self.backend, method)(*args)
            except torch.cuda.OutOfMemoryError:
                raise  # not the kernel's fault: the torch ops would need the memory too, and the caller may retry
            except Exception as e:
                self._fail(method, e)
        return getattr(self._emulated, method)(*args)

    def _fail(self, method: str, error: Exception) -> None:
        with self._lock:
            if self.failed:
                return
            self.failed = True
        message = str(error).splitlines()[0] if str(error) else ""
        log.warning("CUDA kernel %s failed at run time (%s: %s); using the torch ops from now on", method,
                    type(error).__name__, message)

    def upfirdn2d_pass(self, *args):
        return self._call("upfirdn2d_pass", *args)

    def bias_act_forward(self, *args):
        return self._call("bias_act_forward", *args)

    def bias_act_backward(self, *args):
        return self._call("bias_act_backward", *args)

    def filtered_lrelu_forward(self, *args):
        return self._call("filtered_lrelu_forward", *args)


class KernelOps:
    """upfirdn2d, bias_act, filtered_lrelu with the official signatures, computed by `backend`."""

    def __init__(self, backend, dtypes=(torch.float32, torch.float16)):
        self.backend = backend
        self.dtypes = dtypes

    def _takes(self, *tensors) -> bool:
        if getattr(self.backend, "failed", False):
            return False  # a GuardedBackend whose kernels failed at run time: the reference ops from now on
        return all(t is None or (t.dtype in self.dtypes and not (isinstance(t, torch.Tensor) and t.ndim == 0))
                   for t in tensors)

    def upfirdn2d(self, x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
        if not self._takes(x) or x.ndim != 4 or (f is not None and f.requires_grad):
            return reference_upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)
        upx, upy = parse_scaling(up)
        downx, downy = parse_scaling(down)
        px0, px1, py0, py1 = parse_padding(padding)
        if f is None:
            f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
        if f.ndim == 1:  # separable: a row pass and a column pass, sqrt(gain) each (as the reference)
            row = correlation_kernel(f.reshape(1, -1), float(gain) ** 0.5, flip_filter)
            col = correlation_kernel(f.reshape(-1, 1), float(gain) ** 0.5, flip_filter)
            x = _Upfirdn2dPass.apply(self.backend, x, row.to(x.device), upx, 1, downx, 1, px0, px1, 0, 0)
            return _Upfirdn2dPass.apply(self.backend, x, col.to(x.device), 1, upy, 1, downy, 0, 0, py0, py1)
        w = correlation_kernel(f, gain, flip_filter).to(x.device)
        return _Upfirdn2dPass.apply(self.backend, x, w, upx, upy, downx, downy, px0, px1, py0, py1)

    def bias_act(self, x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None):
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; accepted: {', '.join(ACTIVATIONS)}")
        if not self._takes(x):
            return reference_bias_act(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
        spec = ACTIVATIONS[act]
        alpha = float(alpha if alpha is not None else spec.def_alpha)
        gain = float(gain if gain is not None else spec.def_gain)
        clamp = float(clamp if clamp is not None else -1)
        return _BiasAct.apply(self.backend, x, b, dim % x.ndim, act, alpha, gain, clamp)

    def filtered_lrelu(self, x, fu=None, fd=None, b=None, up=1, down=1, padding=0, gain=2 ** 0.5, slope=0.2,
                       clamp=None, flip_filter=False):
        if not self._takes(x) or x.ndim != 4 or any(f is not None and f.requires_grad for f in (fu, fd)):
            return reference_filtered_lrelu(x, fu, fd, b, up=up, down=down, padding=padding, gain=gain,
                                            slope=slope, clamp=clamp, flip_filter=flip_filter)
        if not (isinstance(up, int) and isinstance(down, int) and up >= 1 and down >= 1):
            raise ValueError(f"filtered_lrelu: up and down must be integers >= 1, got up={up!r} down={down!r}")
        px0, px1, py0, py1 = parse_padding(padding)
        one = torch.ones([1, 1], dtype=torch.float32, device=x.device)
        wu = correlation_kernel(fu if fu is not None else one, up ** 2, flip_filter).to(x.device)
        wd = correlation_kernel(fd if fd is not None else one, 1, flip_filter).to(x.device)
        clamp = float(clamp) if clamp is not None and clamp >= 0 else -1.0
        return _FilteredLRelu.apply(self.backend, x, b, wu, wd, up, down, px0, px1, py0, py1, float(gain),
                                    float(slope), clamp)

    def op_set(self, name: str) -> OpSet:
        return OpSet(name, self.upfirdn2d, self.bias_act, self.filtered_lrelu, modulated_conv2d)
