"""Who runs the kernels' math: `CudaBackend` (the .cu kernels, launched through pycuda; its launch code, in
`KernelBackend`, is shared with kernels/hostcheck.py's HostBackend, the .cu kernels compiled for the CPU) or
`EmulatedBackend` (a stand-in for the kernels built from torch ops — F.pad and F.conv2d — on any device and dtype:
it does not run the .cu index arithmetic, it lets the autograd plumbing of ops.py — the adjoint passes, paddings,
gains, flips — be tested with gradcheck on a machine without a GPU).

A backend has four methods, on contiguous NCHW tensors, with 2-D float32 correlation kernels `w`:
  upfirdn2d_pass(x, w, upx, upy, downx, downy, padx0, pady0, out_h, out_w)                (kernels/upfirdn2d.cu)
  bias_act_forward(x, b, channels, inner, act, alpha, gain, clamp)                        (kernels/bias_act.cu)
  bias_act_backward(dy, x, b, channels, inner, act, alpha, gain, clamp)
  filtered_lrelu_forward(x, b, wu, wd, up, down, padx0, pady0, out_h, out_w, gain, slope, clamp)
                                                                              (kernels/filtered_lrelu.cu)
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F

ACT_CODES = {"linear": 0, "relu": 1, "lrelu": 2, "tanh": 3, "sigmoid": 4, "elu": 5, "selu": 6, "softplus": 7,
             "swish": 8}
SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805
THREADS = 256
MAX_BLOCKS = 65535
TILE = 16            # filtered_lrelu: outputs per tile side
SHARED_LIMIT = 48 * 1024
# The extern "C" kernels of each source (one per dtype).
FUNCTIONS = {
    "upfirdn2d.cu": ("upfirdn2d_f32", "upfirdn2d_f16"),
    "bias_act.cu": ("bias_act_forward_f32", "bias_act_forward_f16", "bias_act_backward_f32", "bias_act_backward_f16"),
    "filtered_lrelu.cu": ("filtered_lrelu_f32", "filtered_lrelu_f16"),
}


# ---------------------------------------------------------------------------------------------------------------
# Emulation in torch

def _act_forward(act: str, v, alpha):
    if act == "relu":
        return v.clamp(min=0)
    if act == "lrelu":
        return torch.where(v > 0, v, v * alpha)
    if act == "tanh":
        return torch.tanh(v)
    if act == "sigmoid":
        return torch.sigmoid(v)
    if act == "elu":
        return torch.where(v > 0, v, torch.expm1(v))
    if act == "selu":
        return SELU_SCALE * torch.where(v > 0, v, SELU_ALPHA * torch.expm1(v))
    if act == "softplus":
        return torch.where(v > 20, v, torch.log1p(torch.exp(v)))
    if act == "swish":
        return v * torch.sigmoid(v)
    return v


def _act_derivative(act: str, v, alpha):
    one = torch.ones_like(v)
    if act == "relu":
        return (v > 0).to(v.dtype)
    if act == "lrelu":
        return torch.where(v > 0, one, one * alpha)
    if act == "tanh":
        return 1 - torch.tanh(v) ** 2
    if act == "sigmoid":
        s = torch.sigmoid(v)
        return s * (1 - s)
    if act == "elu":
        return torch.where(v > 0, one, torch.exp(v))
    if act == "selu":
        return SELU_SCALE * torch.where(v > 0, one, SELU_ALPHA * torch.exp(v))
    if act == "softplus":
        return torch.where(v > 20, one, torch.sigmoid(v))
    if act == "swish":
        s = torch.sigmoid(v)
        return s + v * s * (1 - s)
    return one


def _broadcast_bias(b, x, channels, inner):
    outer = x.numel() // (channels * inner)
    return b.to(x.dtype).reshape(1, channels, 1).expand(outer, channels, inner).reshape(x.shape)


class EmulatedBackend:
    """What the kernels compute, from torch ops (any device, any float dtype); not the .cu code itself."""

    name = "emulated"

    def upfirdn2d_pass(self, x, w, upx, upy, downx, downy, padx0, pady0, out_h, out_w):
        n, c, h, wd = x.shape
        fh, fw = w.shape
        u = x.reshape(n, c, h, 1, wd, 1)
        u = F.pad(u, [0, upx - 1, 0, 0, 0, upy - 1]).reshape(n, c, h * upy, wd * upx)
        need_h, need_w = (out_h - 1) * downy + fh, (out_w - 1) * downx + fw
        u = F.pad(u, [padx0, need_w - u.shape[3] - padx0, pady0, need_h - u.shape[2] - pady0])
        weight = w.to(x.dtype).reshape(1, 1, fh, fw).expand(c, 1, fh, fw)
        return F.conv2d(u, weight, stride=(downy, downx), groups=c)

    def bias_act_forward(self, x, b, channels, inner, act, alpha, gain, clamp):
        v = x + _broadcast_bias(b, x, channels, inner) if b is not None else x
        y = _act_forward(act, v, alpha) * gain
        return y.clamp(-clamp, clamp) if clamp >= 0 else y

    def bias_act_backward(self, dy, x, b, channels, inner, act, alpha, gain, clamp):
        v = x + _broadcast_bias(b, x, channels, inner) if b is not None else x
        g = dy * gain * _act_derivative(act, v, alpha)
        if clamp >= 0:
            g = torch.where((_act_forward(act, v, alpha) * gain).abs() >= clamp, torch.zeros_like(g), g)
        return g

    def filtered_lrelu_forward(self, x, b, wu, wd, up, down, padx0, pady0, out_h, out_w, gain, slope, clamp):
        if b is not None:
            x = x + b.to(x.dtype).reshape(1, -1, 1, 1)
        tmp_h, tmp_w = (out_h - 1) * down + wd.shape[0], (out_w - 1) * down + wd.shape[1]
        t = self.upfirdn2d_pass(x, wu, up, up, 1, 1, padx0, pady0, tmp_h, tmp_w)
        t = torch.where(t > 0, t, t * slope) * gain
        if clamp >= 0:
            t = t.clamp(-clamp, clamp)
        return self.upfirdn2d_pass(t, wd, 1, 1, down, down, 0, 0, out_h, out_w)


# ---------------------------------------------------------------------------------------------------------------
# The compiled kernels

class KernelBackend:
    """The four methods as launches of the compiled .cu kernels: output allocation, grid / block / shared-memory
    sizing and argument lists (numpy scalars and pointers, as pycuda takes them). A subclass provides `_launch`:
    CudaBackend on a GPU, hostcheck.HostBackend on the CPU (the .cu code compiled for the host), so that both run
    this same launch code."""

    name = "kernels"
    max_blocks = MAX_BLOCKS  # grid cap of the grid-stride kernels, and most planes of one filtered_lrelu launch

    def _launch(self, name, grid, block, args, shared=0):
        raise NotImplementedError

    @staticmethod
    def _suffix(x):
        if x.dtype == torch.float32:
            return "f32"
        if x.dtype == torch.float16:
            return "f16"
        raise TypeError(f"CUDA kernels take float32 or float16, got {x.dtype}")

    @staticmethod
    def _ptr(t):
        return np.uintp(t.data_ptr() if t is not None else 0)

    def _blocks(self, n):
        return (max(1, min(math.ceil(n / THREADS), self.max_blocks)), 1)

    def upfirdn2d_pass(self, x, w, upx, upy, downx, downy, padx0, pady0, out_h, out_w):
        n, c, h, wd = x.shape
        y = torch.empty((n, c, out_h, out_w), dtype=x.dtype, device=x.device)
        w = w.to(device=x.device, dtype=torch.float32).contiguous()
        i32 = np.int32
        self._launch(f"upfirdn2d_{self._suffix(x)}", self._blocks(y.numel()), (THREADS, 1, 1),
                     [self._ptr(x), self._ptr(y), self._ptr(w), i32(n * c), i32(h), i32(wd), i32(out_h), i32(out_w),
                      i32(upx), i32(upy), i32(downx), i32(downy), i32(padx0), i32(pady0), i32(w.shape[0]),
                      i32(w.shape[1])])
        return y

    def _bias_act(self, name, tensors, b, n, channels, inner, act, alpha, gain, clamp, like):
        out = torch.empty_like(like)
        b = b.to(device=like.device, dtype=torch.float32).contiguous() if b is not None else None
        self._launch(f"{name}_{self._suffix(like)}", self._blocks(n), (THREADS, 1, 1),
                     [*map(self._ptr, tensors), self._ptr(b), self._ptr(out), np.int64(n), np.int32(b is not None),
                      np.int32(channels), np.int64(inner), np.int32(ACT_CODES[act]), np.float32(alpha),
                      np.float32(gain), np.float32(clamp)])
        return out

    def bias_act_forward(self, x, b, channels, inner, act, alpha, gain, clamp):
        return self._bias_act("bias_act_forward", [x], b, x.numel(), channels, inner, act, alpha, gain, clamp, x)

    def bias_act_backward(self, dy, x, b, channels, inner, act, alpha, gain, clamp):
        return self._bias_act("bias_act_backward", [dy, x], b, x.numel(), channels, inner, act, alpha, gain, clamp,
                              x)

    def filtered_lrelu_forward(self, x, b, wu, wd, up, down, padx0, pady0, out_h, out_w, gain, slope, clamp):
        n, c, h, w = x.shape
        fdh, fdw = wd.shape
        tile = TILE
        while tile > 1 and ((tile - 1) * down + fdh) * ((tile - 1) * down + fdw) * 4 > SHARED_LIMIT:
            tile //= 2
        shared = ((tile - 1) * down + fdh) * ((tile - 1) * down + fdw) * 4
        if shared > SHARED_LIMIT or n * c > self.max_blocks:
            return EmulatedBackend.filtered_lrelu_forward(self, x, b, wu, wd, up, down, padx0, pady0, out_h, out_w,
                                                          gain, slope, clamp)  # via the pass kernels
        y = torch.empty((n, c, out_h, out_w), dtype=x.dtype, device=x.device)
        wu = wu.to(device=x.device, dtype=torch.float32).contiguous()
        wd = wd.to(device=x.device, dtype=torch.float32).contiguous()
        b = b.to(device=x.device, dtype=torch.float32).contiguous() if b is not None else None
        tiles = math.ceil(out_h / tile) * math.ceil(out_w / tile)
        i32, f32 = np.int32, np.float32
        self._launch(f"filtered_lrelu_{self._suffix(x)}", (tiles, n * c), (THREADS, 1, 1),
                     [self._ptr(x), self._ptr(b), self._ptr(y), self._ptr(wu), self._ptr(wd), i32(c), i32(h), i32(w),
                      i32(out_h), i32(out_w), i32(up), i32(down), i32(padx0), i32(pady0), i32(wu.shape[0]),
                      i32(wu.shape[1]), i32(fdh), i32(fdw), i32(b is not None), f32(gain), f32(slope), f32(clamp),
                      i32(tile), i32(tile)], shared=shared)
        return y


# ---------------------------------------------------------------------------------------------------------------
# CUDA through pycuda

class CudaBackend(KernelBackend):
    """The compiled kernels on one GPU, launched through pycuda on tensors' device pointers.

    pycuda works in the device's primary context (the one torch uses), pushed around each launch. pycuda can only
    launch on a pycuda `Stream`, so the backend owns one, wrapped for torch as `torch.cuda.ExternalStream`; each
    launch is ordered after the work already queued on torch's current stream and before the work queued after it
    (`wait_stream` both ways: GPU-side events, no host synchronisation). Memory stays safe under torch's caching
    allocator because the current stream waits for every launch before anything queued later can reuse a block.
    """

    name = "cuda"

    def __init__(self, device: torch.device, cubins: dict[str, bytes]):
        import pycuda.driver as cuda

        self.cuda = cuda
        self.device = device
        cuda.init()
        self.context = cuda.Device(device.index).retain_primary_context()
        self.functions = {}
        with self.active():
            for source, cubin in cubins.items():
                module = cuda.module_from_buffer(cubin)
                for name in FUNCTIONS[source]:
                    self.functions[name] = module.get_function(name)
            self.stream = cuda.Stream()
        self.torch_stream = torch.cuda.ExternalStream(self.stream.handle, device=device)

    @contextlib.contextmanager
    def active(self):
        self.context.push()
        try:
            yield
        finally:
            self.cuda.Context.pop()

    def _launch(self, name, grid, block, args, shared=0):
        current = torch.cuda.current_stream(self.device)
        self.torch_stream.wait_stream(current)
        with self.active():
            self.functions[name](*args, block=block, grid=grid, shared=shared, stream=self.stream)
        current.wait_stream(self.torch_stream)
