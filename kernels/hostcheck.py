"""The CUDA kernels of this folder, run on the CPU: every .cu compiled with the host C++ compiler against a small CUDA
emulation (host_cuda.h), launched through the same Python launch code as on a GPU, checked against the torch
reference ops computed in float64.

    python -m sg3stream.kernels.hostcheck [--kernels-dir DIR] [--build-dir DIR]
    python -m sg3stream.kernels.hostcheck --resources     (the ptxas resource table: kernels/resources.py, needs nvcc)

How: for each .cu, a generated launcher source includes it after host_cuda.h and adds one exported function
`launch_<kernel>(grid, block, shared bytes, kernel arguments...)` per `__global__` kernel; g++ builds it into a
shared library (cached by the hash of everything compiled, in build.py's cache folder under host/), called with
ctypes. `HostBackend` is backends.KernelBackend — the grid, block and shared-memory sizing and the argument lists
CudaBackend launches with — with only the final launch replaced, and it is plugged into kernels/ops.py's op set, so
every op runs its full autograd path (forward, and the input and bias gradients through the adjoint passes and the
backward kernels) as on CUDA. Each launch is also checked for what a GPU would reject or silently get wrong: the
argument count and each argument's type against the kernel's C signature (pycuda packs the numpy scalars it is given
as they are), contiguous tensors, block, grid and shared-memory sizes against the device limits of
resources.DEVICE_LIMITS. Each tensor argument is copied between margins of 0xFF bytes (NaN in float and half), so a
read past either end of a tensor gives a NaN and a write past either end is reported; the outputs (the non-const
pointer parameters) start as NaNs, so an element no thread writes shows up too.

Cases: upfirdn2d, bias_act and filtered_lrelu on small shapes covering the generator's layers (up 1/2/4, down 1/2,
separable, 2-D and radial filters, odd sizes, partial tiles, clamp on and off, 1 and 64 channels, every
activation, bias along other dims), the paths of the launch code (filtered_lrelu's tile shrinking and its pass-kernel
fallbacks, grid-stride loops with a small grid cap), in float32 and float16; then the load-time self-test
(selftest.py) on the host kernels. Inputs are multiples of 1/64 (1/16 for bias_act, never 0) so that x + b is exact
in float16, and a clamp lies in a gap of the exact values: float16 rounding cannot move a value across lrelu's kink
or the clamp, where the gradient jumps. Error = max |kernel - reference| / max |reference| per output; limits 1e-5
(float32) and 1e-2 (float16). One line per op and dtype; exit status 0 only when everything agrees.

What it cannot catch: anything about warps (warp-synchronous code, shuffles, votes: a block's threads are fibers that
run one after another up to each __syncthreads, in threadIdx order), races between the threads of a block other than
a missing barrier before shared memory is read (no other interleaving is tried), timing and deadlocks that depend on
it, memory coalescing, bank conflicts and anything else about performance, the GPU's own math library (its expf,
tanhf, ... are a few ulp off the host's) and fused multiply-adds, and the real device's limits beyond the table
checked here (registers and spills: see resources.py).
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .backends import FUNCTIONS, MAX_BLOCKS, KernelBackend
from .build import KERNEL_DIR, cache_dir, run_compiler
from .resources import DEVICE_LIMITS, DYNAMIC_SHARED_MAX

HOST_HEADER = "host_cuda.h"
# -fno-extern-tls-init: the `extern thread_local` shared array needs no init call (with hidden visibility g++ would
# call a null one).
CXX_FLAGS = ["-std=c++17", "-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-fno-extern-tls-init"]
CXX_TIMEOUT_S = 300
# The emulated dynamic shared memory of a block: the largest any architecture of resources.DEVICE_LIMITS allows
# (with opt-in), so that a launch asking for more than the default is refused by the limit check, not the emulation.
SHARED_CAPACITY = max(limits.shared_per_block_optin for limits in DEVICE_LIMITS.values())
GUARD_BYTES = 64 * 1024  # 0xFF bytes on each side of every tensor argument
LIMITS = {torch.float32: 1e-5, torch.float16: 1e-2}
OPS = ("upfirdn2d", "bias_act", "filtered_lrelu")

# C parameter type -> (the numpy scalar type the launch code must pass, the ctypes type of the launcher)
PARAM_TYPES = {
    "pointer": (np.uintp, ctypes.c_void_p),
    "int": (np.int32, ctypes.c_int32),
    "long long": (np.int64, ctypes.c_int64),
    "float": (np.float32, ctypes.c_float),
}
# hostcuda::LaunchStatus of host_cuda.h
LAUNCH_STATUS = {1: "bad block size", 2: "more dynamic shared memory than emulated", 3: "launch from inside a kernel"}


class HostBuildError(RuntimeError):
    """No C++ compiler, or a kernel source that does not compile for the host."""


class HostLaunchError(RuntimeError):
    """A launch a GPU would refuse or get wrong: bad arguments or sizes, or a write outside a tensor."""


def find_cxx() -> str | None:
    """g++ (the flags are g++'s; _Float16 needs g++ 12+), else $CXX or c++."""
    for candidate in ("g++", os.environ.get("CXX"), "c++"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


@lru_cache(maxsize=None)
def _cxx_version(cxx: str) -> str:
    result = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60)
    return result.stdout.strip().splitlines()[0] if result.stdout.strip() else "unknown"


# ---------------------------------------------------------------------------------------------------------------
# Building the host libraries

@dataclass(frozen=True)
class KernelSignature:
    name: str
    params: tuple[tuple[str, str, bool], ...]  # (PARAM_TYPES key, name, written: a pointer to non-const)
    declaration: str  # the parameter list as written in the .cu


def _strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*|/\*.*?\*/", " ", text, flags=re.S)


def parse_kernels(text: str) -> dict[str, KernelSignature]:
    """The __global__ kernels of a .cu source and their parameters."""
    kernels = {}
    for m in re.finditer(r"__global__\s+void\s+(\w+)\s*\(([^)]*)\)", _strip_comments(text)):
        params = []
        for param in m.group(2).split(","):
            name = re.search(r"(\w+)\s*$", param.strip())
            ctype = param.strip()[:name.start()] if name else ""
            if "*" in ctype:
                kind = "pointer"
            else:
                kind = " ".join(w for w in ctype.split() if w not in ("const", "__restrict__"))
            if name is None or kind not in PARAM_TYPES:
                known = ", ".join(k for k in PARAM_TYPES if k != "pointer")
                raise HostBuildError(f"kernel {m.group(1)}: parameter {param.strip()!r} has a type hostcheck does "
                                     f"not know (known: pointers, {known})")
            params.append((kind, name.group(1), kind == "pointer" and "const" not in re.findall(r"\w+", ctype)))
        kernels[m.group(1)] = KernelSignature(m.group(1), tuple(params), " ".join(m.group(2).split()))
    return kernels


def launcher_source(source: str, kernels: dict[str, KernelSignature], text: str) -> str:
    """C++ that includes `source` and exports `launch_<kernel>` for each kernel."""
    shared = sorted(set(re.findall(r"extern\s+__shared__\s+(\w+)\s+(\w+)\s*\[\s*\]", _strip_comments(text))))
    if len({name for _, name in shared}) > 1:
        raise HostBuildError(f"{source}: more than one extern __shared__ array; hostcheck emulates one per source")
    lines = [f"// Generated by kernels/hostcheck.py: host launchers of the kernels of {source}.",
             f'#include "{source}"', ""]
    if shared:
        ctype, name = shared[0]
        lines += [f"// The definition of `extern __shared__ {ctype} {name}[]`: the dynamic shared memory.",
                  f"alignas(16) thread_local {ctype} {name}[{SHARED_CAPACITY} / sizeof({ctype})];",
                  f"#define HOSTCHECK_SHARED reinterpret_cast<unsigned char*>({name}), sizeof({name})"]
    else:
        lines += ["thread_local unsigned char hostcheck_no_shared[16];",
                  "#define HOSTCHECK_SHARED hostcheck_no_shared, sizeof(hostcheck_no_shared)"]
    for kernel in kernels.values():
        args = ", ".join(name for _, name, _ in kernel.params)
        lines += ["",
                  f'extern "C" __attribute__((visibility("default"))) int launch_{kernel.name}(',
                  "        unsigned hostcheck_gx, unsigned hostcheck_gy, unsigned hostcheck_gz, unsigned hostcheck_bx,",
                  "        unsigned hostcheck_by, unsigned hostcheck_bz, unsigned long long hostcheck_shared,",
                  f"        {kernel.declaration}) {{",
                  f"    auto call = [&]() {{ {kernel.name}({args}); }};",
                  "    return hostcuda::launch_call(dim3{hostcheck_gx, hostcheck_gy, hostcheck_gz},",
                  "                                 dim3{hostcheck_bx, hostcheck_by, hostcheck_bz}, hostcheck_shared,",
                  "                                 HOSTCHECK_SHARED, call);",
                  "}"]
    return "\n".join(lines) + "\n"


def build_host_library(source: str, kernels_dir: Path, build_dir: Path, cxx: str) -> tuple[Path, dict]:
    """The shared library of `source` (compiled now, or found under the hash of all it is compiled from) and its
    kernels' signatures."""
    text = (kernels_dir / source).read_text()
    kernels = parse_kernels(text)
    launcher = launcher_source(source, kernels, text)
    # Everything the compile reads: the source, the headers beside it, the emulation header, the launcher, a stub
    # for <cuda_fp16.h> (__half is host_cuda.h's), the compiler and its flags.
    files = {source: text}
    for header in sorted([*kernels_dir.glob("*.cuh"), *kernels_dir.glob("*.h")]):
        files[header.name] = header.read_text()
    files[HOST_HEADER] = (KERNEL_DIR / HOST_HEADER).read_text()
    files["cuda_fp16.h"] = "// hostcheck: __half and its conversions are defined in host_cuda.h\n#pragma once\n"
    files["launcher.cpp"] = launcher
    h = hashlib.sha256()
    for name, content in sorted(files.items()):
        h.update(f"{name}\0{content}\0".encode())
    h.update(" ".join([_cxx_version(cxx), *CXX_FLAGS]).encode())
    target = build_dir / f"{Path(source).stem}-{h.hexdigest()[:20]}.so"
    if target.is_file():
        return target, kernels
    build_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=build_dir, prefix=".build-") as tmp:
        for name, content in files.items():
            (Path(tmp) / name).write_text(content)
        output = Path(tmp) / target.name
        command = [cxx, *CXX_FLAGS, "-include", HOST_HEADER, "-I", tmp, "-o", str(output),
                   str(Path(tmp) / "launcher.cpp")]
        run_compiler(command, source, CXX_TIMEOUT_S, error=HostBuildError)
        os.replace(output, target)  # atomic: a concurrent run never loads half a library
    return target, kernels


@dataclass
class HostKernel:
    source: str
    signature: KernelSignature
    function: ctypes._CFuncPtr


def load_host_kernels(kernels_dir: Path | None = None, build_dir: Path | None = None) -> dict[str, HostKernel]:
    """Every kernel of FUNCTIONS, compiled for the host from `kernels_dir` (default: this folder)."""
    cxx = find_cxx()
    if cxx is None:
        raise HostBuildError("no C++ compiler found (g++, $CXX, c++)")
    kernels_dir = Path(kernels_dir) if kernels_dir is not None else KERNEL_DIR
    build_dir = Path(build_dir) if build_dir is not None else cache_dir() / "host"
    with ThreadPoolExecutor(max_workers=2) as pool:  # the compiler is the slow part: two at a time
        built = dict(zip(FUNCTIONS, pool.map(lambda source: build_host_library(source, kernels_dir, build_dir, cxx),
                                             FUNCTIONS)))
    loaded = {}
    for source, names in FUNCTIONS.items():
        path, signatures = built[source]
        library = ctypes.CDLL(str(path))
        for name in names:
            if name not in signatures:
                raise HostBuildError(f"{source} has no __global__ kernel {name} (backends.FUNCTIONS lists it)")
            function = getattr(library, f"launch_{name}")
            function.restype = ctypes.c_int
            function.argtypes = [ctypes.c_uint] * 6 + [ctypes.c_ulonglong] + [
                PARAM_TYPES[kind][1] for kind, _, _ in signatures[name].params]
            loaded[name] = HostKernel(source, signatures[name], function)
    return loaded


# ---------------------------------------------------------------------------------------------------------------
# Launching on the host

class _GuardedTensor:
    """A tensor argument's bytes, copied between two margins of 0xFF bytes (NaN as float and as half). Plain memory
    copies (numpy, ctypes), as a kernel reads and writes memory: no autograd version bump, no torch thread pool."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor
        self.nbytes = tensor.numel() * tensor.element_size()
        self.buffer = np.full(2 * GUARD_BYTES + self.nbytes, 0xFF, dtype=np.uint8)
        self.address = self.buffer.ctypes.data + GUARD_BYTES
        ctypes.memmove(self.address, tensor.data_ptr(), self.nbytes)

    def fill_nan(self) -> None:
        ctypes.memset(self.address, 0xFF, self.nbytes)

    def margins_intact(self) -> bool:
        return bool((self.buffer[:GUARD_BYTES] == 0xFF).all() and (self.buffer[-GUARD_BYTES:] == 0xFF).all())

    def copy_back(self) -> None:
        ctypes.memmove(self.tensor.data_ptr(), self.address, self.nbytes)


class HostBackend(KernelBackend):
    """KernelBackend (CudaBackend's launch code) launching the host-compiled kernels on CPU tensors."""

    name = "host"

    def __init__(self, kernels: dict[str, HostKernel], max_blocks: int = MAX_BLOCKS):
        self.kernels = kernels
        self.max_blocks = max_blocks
        self.launched = Counter()
        self._guards: list[_GuardedTensor] = []

    def _ptr(self, t):
        if t is None:
            return np.uintp(0)
        if t.device.type != "cpu" or not t.is_contiguous():
            raise HostLaunchError(f"a kernel argument is {'not contiguous' if t.device.type == 'cpu' else t.device}")
        guarded = _GuardedTensor(t)
        self._guards.append(guarded)
        return np.uintp(guarded.address)

    def _launch(self, name, grid, block, args, shared=0):
        guards, self._guards = self._guards, []
        kernel = self.kernels.get(name)
        if kernel is None:
            raise HostLaunchError(f"no kernel named {name}")
        grid = tuple(grid) + (1,) * (3 - len(grid))
        block = tuple(block) + (1,) * (3 - len(block))
        self._check_sizes(kernel, grid, block, shared)
        params = kernel.signature.params
        if len(args) != len(params):
            raise HostLaunchError(f"{name}: {len(args)} arguments, the kernel takes {len(params)}")
        guarded_at = {g.address: g for g in guards}
        for i, (arg, (kind, param, written)) in enumerate(zip(args, params)):
            if type(arg) is not PARAM_TYPES[kind][0]:
                raise HostLaunchError(f"{name}: argument {i} ({param}) is {type(arg).__name__}, the kernel takes "
                                      f"{kind} ({PARAM_TYPES[kind][0].__name__})")
            if written and int(arg) in guarded_at:
                guarded_at[int(arg)].fill_nan()  # an output: an element no thread writes stays NaN
        status = kernel.function(*grid, *block, shared, *[a.item() for a in args])
        if status != 0:
            raise HostLaunchError(f"{name}: {LAUNCH_STATUS.get(status, f'launch status {status}')}")
        guarded_args = [(param, guarded_at[int(arg)]) for (kind, param, _), arg in zip(params, args)
                        if kind == "pointer" and int(arg) in guarded_at]
        for param, guarded in guarded_args:
            if not guarded.margins_intact():
                raise HostLaunchError(f"{name}: wrote outside its argument {param}")
        for _, guarded in guarded_args:
            guarded.copy_back()
        self.launched[name] += 1

    @staticmethod
    def _check_sizes(kernel, grid, block, shared):
        """What every architecture of DEVICE_LIMITS accepts, and no more dynamic shared memory than
        resources.DYNAMIC_SHARED_MAX says the Python side asks for (the resource check relies on it)."""
        name = kernel.signature.name
        for arch, limits in DEVICE_LIMITS.items():
            if math.prod(block) > limits.max_threads_per_block or any(
                    not 1 <= b <= m for b, m in zip(block, limits.max_block)):
                raise HostLaunchError(f"{name}: block {block} is not allowed on sm_{arch}")
            if any(not 1 <= g <= m for g, m in zip(grid, limits.max_grid)):
                raise HostLaunchError(f"{name}: grid {grid} is not allowed on sm_{arch}")
            if shared > limits.shared_per_block_default:
                raise HostLaunchError(f"{name}: {shared} B of dynamic shared memory > "
                                      f"{limits.shared_per_block_default} B (sm_{arch} without opt-in)")
        if shared > DYNAMIC_SHARED_MAX[kernel.source]:
            raise HostLaunchError(f"{name}: {shared} B of dynamic shared memory, resources.DYNAMIC_SHARED_MAX "
                                  f"says at most {DYNAMIC_SHARED_MAX[kernel.source]}")


@contextlib.contextmanager
def _one_torch_thread():
    """The tensors are tiny: torch's thread pool only costs time (a lot on a loaded machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------------------
# Cases

@dataclass
class Case:
    op: str
    label: str
    x: torch.Tensor                    # float64 values, exact in float16
    filters: tuple = ()                # positional filters (float32), as the generator passes them
    kwargs: dict = field(default_factory=dict)  # b (float64, exact in float16) and the op's keyword arguments
    max_blocks: int = MAX_BLOCKS       # the grid cap of the backend running the case


def _grid_values(shape, step, limit, gen):
    """Gaussian values rounded to multiples of `step` within +-limit: exact in float16 for step >= 1/64."""
    return (torch.randn(shape, generator=gen, dtype=torch.float64) / step).round().clamp(-limit / step,
                                                                                         limit / step) * step


def _odd_sixteenths(shape, gen):
    """Odd multiples of 1/16 in (-4, 4): with a bias of multiples of 1/8, x + b is never 0 (relu's kink)."""
    return (2 * torch.randint(-32, 32, shape, generator=gen) + 1).double() / 16


def _eighths(n, gen):
    return torch.randint(-8, 8, (n,), generator=gen).double() / 8


def _clamp_in_gap(values: torch.Tensor, quantile: float = 0.8, margin: float = 2e-3) -> float:
    """A clamp about the `quantile` of |values| with no value within `margin` (relative) of it, so that rounding
    the intermediate to float16 (2^-11 relative) cannot move a value across it."""
    v = values.abs().flatten().sort().values
    for i in range(int(quantile * (v.numel() - 1)), v.numel() - 1):
        lo, hi = float(v[i]), float(v[i + 1])
        if lo > 0 and hi > lo * (1 + 2 * margin) ** 2:
            return math.sqrt(lo * hi)
    return float(v[-1]) * 2  # no gap: a clamp above every value


def _lowpass(taps, gen):
    f = torch.rand(taps, generator=gen) + 0.5
    return f / f.sum()


def _windowed_sinc(taps, cutoff, radial=False):
    """A Kaiser-windowed sinc low-pass (cutoff in cycles per sample), as the generator's filters: mixed-sign taps
    summing to 1; radial: the 2-D filter of sinc(2 cutoff r), not separable (as the generator's radial filters)."""
    n = np.arange(taps) - (taps - 1) / 2
    window = np.kaiser(taps, 6.0)
    if radial:
        f = np.sinc(2 * cutoff * np.hypot(*np.meshgrid(n, n))) * np.outer(window, window)
    else:
        f = np.sinc(2 * cutoff * n) * window
    return torch.as_tensor(f / f.sum(), dtype=torch.float32)


def _layer_padding(in_size, out_size, up, down, up_taps, down_taps, conv_kernel=3):
    """SynthesisLayer's padding (models/stylegan3.py); its filtered_lrelu input is in_size + conv_kernel - 1."""
    total = (out_size - 1) * down + 1 - (in_size + conv_kernel - 1) * up + up_taps + down_taps - 2
    lo = (total + up) // 2
    return [lo, total - lo, lo, total - lo]


def upfirdn2d_cases(gen) -> list[Case]:
    def x(*shape):
        return _grid_values(shape, 1 / 64, 4, gen)

    f12 = _windowed_sinc(12, 0.25)
    return [
        Case("upfirdn2d", "up=2, 12 taps separable, 9x7", x(2, 3, 9, 7), (f12,), dict(up=2, padding=[6, 5, 6, 5])),
        Case("upfirdn2d", "up=4, 8x8 2-D filter", x(1, 2, 5, 6), (torch.rand(8, 8, generator=gen),),
             dict(up=4, padding=[4, 3, 4, 3])),
        Case("upfirdn2d", "down=2, 3x3 2-D filter, flip, gain 2, 11x9", x(1, 3, 11, 9),
             (torch.rand(3, 3, generator=gen),), dict(down=2, padding=1, flip_filter=True, gain=2.0)),
        Case("upfirdn2d", "up=[2,1] down=[1,2], crop", x(1, 2, 6, 5), (_lowpass(4, gen),),
             dict(up=[2, 1], down=[1, 2], padding=[2, 1, -1, 1])),
        Case("upfirdn2d", "up=4 down=2, flip, gain 3, crop", x(1, 2, 6, 5), (_lowpass(4, gen),),
             dict(up=4, down=2, padding=[-2, 5, 4, -1], flip_filter=True, gain=3.0)),
        Case("upfirdn2d", "no filter: pad and crop, 1 channel", x(2, 1, 5, 6), (None,), dict(padding=[2, -1, 1, 0])),
        Case("upfirdn2d", "down=2, 12 taps separable, 64 channels", x(1, 64, 8, 8), (f12,), dict(down=2, padding=5)),
        Case("upfirdn2d", "up=2, grid of 2 blocks (grid-stride loop)", x(1, 3, 17, 13), (_lowpass(4, gen),),
             dict(up=2, padding=2), max_blocks=2),
    ]


def bias_act_cases(gen) -> list[Case]:
    from sg3stream.ops import bias_act

    def case(label, shape, act, channels=None, dim=1, clamp=False, max_blocks=MAX_BLOCKS):
        x = _odd_sixteenths(shape, gen)
        kwargs = dict(act=act, dim=dim)
        if channels:
            kwargs["b"] = _eighths(channels, gen)
        if clamp:
            kwargs["clamp"] = _clamp_in_gap(bias_act(x, **kwargs))
        return Case("bias_act", label, x, (), kwargs, max_blocks)

    cases = [
        case("lrelu, bias, clamp, 2x5x6x7 (synthesis)", (2, 5, 6, 7), "lrelu", 5, clamp=True),
        case("lrelu, bias, 4x512 (mapping)", (4, 512), "lrelu", 512),
        case("linear, bias, 3x17 (affine)", (3, 17), "linear", 17),
        case("lrelu, no bias, 1 channel", (2, 1, 5, 5), "lrelu"),
        case("linear, bias, clamp", (3, 8, 5), "linear", 8, clamp=True),
        case("lrelu, bias along dim 0", (6, 10), "lrelu", 6, dim=0),
        case("elu, bias along dim 2 of 4", (2, 3, 4, 5), "elu", 4, dim=2),
        case("lrelu, clamp, grid of 2 blocks (grid-stride loop)", (1, 3, 37, 29), "lrelu", 3, clamp=True,
             max_blocks=2),
    ]
    for act in ("relu", "tanh", "sigmoid", "selu", "softplus", "swish"):
        cases.append(case(f"{act}, bias", (3, 8, 5), act, 8))
    return cases


def filtered_lrelu_cases(gen) -> list[Case]:
    from sg3stream.ops import upfirdn2d

    def case(label, shape, fu, fd, up, down, padding, clamp=False, gain=2 ** 0.5, slope=0.2, max_blocks=MAX_BLOCKS):
        x = _grid_values(shape, 1 / 64, 4, gen)
        b = _eighths(shape[1], gen)
        kwargs = dict(b=b, up=up, down=down, padding=padding, gain=gain, slope=slope)
        if clamp:  # in a gap of the exact activated intermediate (the reference's first pass)
            t = upfirdn2d(x + b.reshape(1, -1, 1, 1), fu.double() if fu is not None else None, up=up,
                          padding=padding, gain=up ** 2)
            kwargs["clamp"] = _clamp_in_gap(torch.where(t > 0, t, t * slope) * gain)
        return Case("filtered_lrelu", label, x, (fu, fd), kwargs, max_blocks)

    fu12 = _windowed_sinc(12, 0.25)   # the generator's filters: 6 taps per up/down factor
    fd12 = _windowed_sinc(12, 0.2)
    fu24 = _windowed_sinc(24, 0.125)
    radial12 = _windowed_sinc(12, 0.25, radial=True)
    return [
        case("up=2 down=2, 12+12 taps, clamp (a layer at constant rate)", (1, 4, 10, 10), fu12, fd12, 2, 2,
             _layer_padding(8, 8, 2, 2, 12, 12), clamp=True),
        case("up=4 down=2, 24 taps + radial 12x12, clamp (a rate-doubling layer)", (1, 3, 7, 7), fu24, radial12, 4, 2,
             _layer_padding(5, 10, 4, 2, 24, 12), clamp=True),
        case("up=1 down=1, no filters, gain 1, slope 1, clamp (ToRGB)", (2, 3, 9, 9), None, None, 1, 1,
             _layer_padding(9, 9, 1, 1, 1, 1, conv_kernel=1), clamp=True, gain=1.0, slope=1.0),
        case("up=2 down=1, 9x11, 2x2 tiles, partial", (1, 2, 9, 11), fu12, None, 2, 1, 5),
        case("up=2 down=2, 64 channels, no clamp", (1, 64, 6, 6), fu12, fd12, 2, 2, 10),
        case("up=2 down=2, 1 channel, batch 3, clamp", (3, 1, 8, 8), _lowpass(6, gen), _lowpass(6, gen), 2, 2, 5,
             clamp=True),
        case("down=2, 84-tap down filter (tile 16 -> 8)", (1, 2, 30, 30), None, _lowpass(84, gen), 1, 2, 32),
        case("112-tap down filter (over the shared memory: the pass kernels)", (1, 1, 24, 24), None,
             _lowpass(112, gen), 1, 1, 48),
        case("6 planes > grid cap 2 (the pass kernels, grid-stride loops)", (2, 3, 6, 6), _lowpass(6, gen),
             _lowpass(6, gen), 2, 2, 5, max_blocks=2),
    ]


def all_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(0)
    return upfirdn2d_cases(gen) + bias_act_cases(gen) + filtered_lrelu_cases(gen)


# ---------------------------------------------------------------------------------------------------------------
# Checking

def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max |ours - ref| / max |ref|; inf for a wrong shape or a NaN or inf in ours."""
    if ours.shape != ref.shape:
        return math.inf
    ours, ref = ours.detach().double(), ref.detach().double()
    if not bool(torch.isfinite(ours).all()):
        return math.inf
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    err = float((ours - ref).abs().max()) if ref.numel() else 0.0
    return err / scale if scale > 0 else (0.0 if err == 0 else math.inf)


def run_case(ops, case: Case, dtype: torch.dtype, gen: torch.Generator) -> tuple[float, float]:
    """(forward error, gradient error) of one case in `dtype` through `ops` (a KernelOps)."""
    from sg3stream.ops import TORCH_OPS

    xk = case.x.to(dtype).requires_grad_(True)
    kw = dict(case.kwargs)
    inputs, ref_inputs = [xk], []
    if "b" in kw:
        kw["b"] = kw["b"].to(dtype).requires_grad_(True)  # the bias follows x's dtype, as in the generator
        inputs.append(kw["b"])
    xr = xk.detach().double().requires_grad_(True)
    ref_kw = dict(kw)
    ref_inputs.append(xr)
    if "b" in kw:
        ref_kw["b"] = kw["b"].detach().double().requires_grad_(True)
        ref_inputs.append(ref_kw["b"])
    filters = [f.to(torch.float32) if f is not None else None for f in case.filters]
    ref_filters = [f.double() if f is not None else None for f in filters]

    y = getattr(ops, case.op)(xk, *filters, **kw)
    y_ref = getattr(TORCH_OPS, case.op)(xr, *ref_filters, **ref_kw)
    forward = relative_error(y, y_ref)
    g = torch.randn(y_ref.shape, generator=gen, dtype=torch.float64).to(dtype)
    grads = torch.autograd.grad(y, inputs, g)
    ref_grads = torch.autograd.grad(y_ref, ref_inputs, g.double())
    backward = max(relative_error(a, b) for a, b in zip(grads, ref_grads))
    return forward, backward


@dataclass
class OpResult:
    op: str
    dtype: torch.dtype
    cases: int = 0
    forward: float = 0.0
    backward: float = 0.0
    worst: str = ""
    errors: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and self.forward <= LIMITS[self.dtype] and self.backward <= LIMITS[self.dtype]

    def line(self) -> str:
        dtype = str(self.dtype).replace("torch.", "")
        text = (f"{self.op:15} {dtype:8} forward {self.forward:8.2e}  backward {self.backward:8.2e}  "
                f"limit {LIMITS[self.dtype]:.0e}  {self.cases:2d} cases  ")
        if self.ok:
            return text + "ok"
        return text + "FAIL: " + "; ".join(self.errors or [f"worst: {self.worst}"])


def check(kernels: dict[str, HostKernel], out=print) -> bool:
    """Runs every case in float32 and float16, then the load-time self-test; prints one line per op and dtype."""
    from .ops import KernelOps
    from .selftest import KernelSelfTestError, self_test

    cases = all_cases()
    gen = torch.Generator().manual_seed(1)
    backends = {}
    launched = Counter()
    ok = True
    with _one_torch_thread():
        for op in OPS:
            for dtype in LIMITS:
                result = OpResult(op, dtype)
                for case in (c for c in cases if c.op == op):
                    backend = backends.setdefault(case.max_blocks, HostBackend(kernels, case.max_blocks))
                    result.cases += 1
                    try:
                        forward, backward = run_case(KernelOps(backend), case, dtype, gen)
                    except Exception as e:  # a refused launch, a write outside a tensor, ...
                        result.errors.append(f"{case.label}: {type(e).__name__}: {e}")
                        continue
                    for what, err in (("forward", forward), ("backward", backward)):
                        if err > getattr(result, what):
                            setattr(result, what, err)
                            if err > LIMITS[dtype]:
                                result.worst = f"{case.label}, {what}"
                out(result.line())
                ok &= result.ok
        selftest_backend = HostBackend(kernels)
        try:
            self_test(KernelOps(selftest_backend), "cpu")
            out("selftest        the load-time self-test (selftest.py) on the host kernels  ok")
        except KernelSelfTestError as e:
            out(f"selftest        FAIL: {e}")
            ok = False
    for backend in [*backends.values(), selftest_backend]:
        launched.update(backend.launched)
    never = [name for names in FUNCTIONS.values() for name in names if not launched[name]]
    if never:
        out(f"not launched    FAIL: {', '.join(never)}")
        ok = False
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sg3stream.kernels.hostcheck",
                                     description="Run the CUDA kernels on the CPU against the torch reference ops.")
    parser.add_argument("--kernels-dir", type=Path, help="the .cu sources to check (default: the package's)")
    parser.add_argument("--build-dir", type=Path, help="where the host libraries are cached (default: "
                                                       "build.py's cache folder, host/)")
    parser.add_argument("--resources", action="store_true",
                        help="print the ptxas resource table instead (kernels/resources.py; needs nvcc)")
    args = parser.parse_args(argv)
    if args.resources:
        from .resources import main as resources_main

        return resources_main([])
    try:
        kernels = load_host_kernels(args.kernels_dir, args.build_dir)
    except HostBuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ok = check(kernels)
    print("all kernels agree with the reference" if ok else "some kernels disagree with the reference (FAIL above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
