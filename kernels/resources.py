"""What each kernel uses on the GPU, from ptxas (registers, static shared memory, stack frame, spill stores and
loads), per architecture the kernels are built for, checked against the device limits for the launch configurations
backends.py can choose (THREADS threads per block; up to SHARED_LIMIT bytes of dynamic shared memory for
filtered_lrelu, none for the others).

    python -m sg3stream.kernels.resources [--arch 80 --arch 90]

prints the table and exits 1 when a kernel would not launch on an architecture, or spills registers to local memory
(correct but slow: a performance regression to look at). Needs nvcc; the sources are compiled exactly as build.py
compiles them (`nvcc_command`), with `-Xptxas -v` added, into a temporary folder (nothing is cached).
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .backends import FUNCTIONS, SHARED_LIMIT, THREADS
from .build import NVCC_TIMEOUT_S, SOURCES, KernelBuildError, find_nvcc, nvcc_command, run_compiler

ARCHS = ("80", "90")


@dataclass(frozen=True)
class DeviceLimits:
    max_threads_per_block: int
    max_registers_per_thread: int
    max_registers_per_block: int
    register_allocation_unit: int    # registers are allocated per warp, in units of this many
    shared_per_block_default: int    # bytes, static + dynamic, without the cudaFuncSetAttribute opt-in
    shared_per_block_optin: int      # bytes, with it (CudaBackend does not opt in)
    max_grid: tuple[int, int, int]
    max_block: tuple[int, int, int]


# CUDA C++ Programming Guide, "Compute Capabilities" > "Technical Specifications per Compute Capability" (columns 8.0
# and 9.0): 1024 threads per block, 64 K 32-bit registers per block and per SM, 255 per thread, 48 KB of shared
# memory per block unless the kernel opts in (up to 163 KB on 8.0, 227 KB on 9.0), grid 2^31-1 x 65535 x 65535,
# block 1024 x 1024 x 64. The register allocation unit (256 per warp) is the CUDA Occupancy Calculator's.
DEVICE_LIMITS = {
    "80": DeviceLimits(1024, 255, 65536, 256, 48 * 1024, 163 * 1024, (2 ** 31 - 1, 65535, 65535), (1024, 1024, 64)),
    "90": DeviceLimits(1024, 255, 65536, 256, 48 * 1024, 227 * 1024, (2 ** 31 - 1, 65535, 65535), (1024, 1024, 64)),
}
WARP = 32

# The most dynamic shared memory the Python side asks for per launch, by source (backends.KernelBackend: only
# filtered_lrelu_forward passes `shared`, at most SHARED_LIMIT; it falls back to the pass kernels above that).
DYNAMIC_SHARED_MAX = {"upfirdn2d.cu": 0, "bias_act.cu": 0, "filtered_lrelu.cu": SHARED_LIMIT}


@dataclass(frozen=True)
class KernelResources:
    source: str
    kernel: str
    arch: str
    registers: int
    shared_static: int   # bytes
    stack_frame: int     # bytes
    spill_stores: int    # bytes
    spill_loads: int     # bytes
    barriers: int

    @property
    def registers_per_block(self) -> int:
        """Registers a block of THREADS threads takes, in the warp allocation units."""
        unit = DEVICE_LIMITS[self.arch].register_allocation_unit
        per_warp = -(-self.registers * WARP // unit) * unit
        return per_warp * -(-THREADS // WARP)

    @property
    def shared_max(self) -> int:
        """Static plus the largest dynamic shared memory of a launch."""
        return self.shared_static + DYNAMIC_SHARED_MAX[self.source]


_ENTRY = re.compile(r"Compiling entry function '(\w+)' for 'sm_(\d+)'")
_PROPERTIES = re.compile(r"Function properties for (\w+)")
_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")
_BARRIERS = re.compile(r"used (\d+) barriers")


def parse_ptxas(source: str, text: str) -> list[KernelResources]:
    """The entry functions of `ptxas -v` output (what nvcc prints on stderr with -Xptxas -v)."""
    found = []
    entry = arch = None
    stack = {}  # function -> (stack frame, spill stores, spill loads), printed before its "Used ..." line
    properties_of = None
    for line in text.splitlines():
        if m := _ENTRY.search(line):
            entry, arch = m.group(1), m.group(2)
        elif m := _PROPERTIES.search(line):
            properties_of = m.group(1)
        elif (m := _STACK.search(line)) and properties_of:
            stack[properties_of] = tuple(int(g) for g in m.groups())
            properties_of = None
        elif (m := _USED.search(line)) and entry:
            smem = _SMEM.search(line)
            barriers = _BARRIERS.search(line)
            frame, spill_stores, spill_loads = stack.get(entry, (0, 0, 0))
            found.append(KernelResources(source, entry, arch, int(m.group(1)), int(smem.group(1)) if smem else 0,
                                         frame, spill_stores, spill_loads, int(barriers.group(1)) if barriers else 0))
            entry = None
    return found


def ptxas_resources(source: str, arch: str, nvcc: str, out_dir: Path) -> list[KernelResources]:
    """Compiles `source` for sm_`arch` as build.py does, with ptxas verbose, and parses its report."""
    command = nvcc_command(nvcc, source, arch, out_dir / f"{source}.sm{arch}.cubin") + ["-Xptxas", "-v"]
    result = run_compiler(command, f"{source} for sm_{arch}", NVCC_TIMEOUT_S)
    found = parse_ptxas(source, result.stderr + result.stdout)
    missing = set(FUNCTIONS[source]) - {k.kernel for k in found}
    if missing:
        raise KernelBuildError(f"no ptxas report for {', '.join(sorted(missing))} in {source} (sm_{arch}):\n"
                               f"{result.stderr.strip()}")
    return found


def resource_report(archs=ARCHS, nvcc: str | None = None) -> list[KernelResources]:
    """Every kernel of SOURCES on every architecture of `archs` (nvcc runs two at a time)."""
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        raise KernelBuildError("nvcc not found: cannot report the kernels' resources")
    with tempfile.TemporaryDirectory(prefix="sg3stream-ptxas-") as tmp:
        jobs = [(source, arch) for source in SOURCES for arch in archs]
        with ThreadPoolExecutor(max_workers=2) as pool:
            reports = pool.map(lambda job: ptxas_resources(*job, nvcc, Path(tmp)), jobs)
            found = [k for report in reports for k in report]
    return sorted(found, key=lambda k: (SOURCES.index(k.source), k.kernel, k.arch))


def limit_problems(found: list[KernelResources]) -> list[str]:
    """Why a launch the Python side can make would fail (or spill) on an architecture; empty when none."""
    problems = []
    for k in found:
        limits = DEVICE_LIMITS[k.arch]
        where = f"{k.kernel} on sm_{k.arch}"
        if THREADS > limits.max_threads_per_block:
            problems.append(f"{where}: {THREADS} threads per block > {limits.max_threads_per_block}")
        if k.registers > limits.max_registers_per_thread:
            problems.append(f"{where}: {k.registers} registers per thread > {limits.max_registers_per_thread}")
        if k.registers_per_block > limits.max_registers_per_block:
            problems.append(f"{where}: {k.registers} registers x {THREADS} threads = {k.registers_per_block} "
                            f"registers per block > {limits.max_registers_per_block} (launch fails: too many "
                            "resources requested)")
        if k.shared_max > limits.shared_per_block_default:
            problems.append(f"{where}: {k.shared_static} B static + {DYNAMIC_SHARED_MAX[k.source]} B dynamic "
                            f"shared memory > {limits.shared_per_block_default} B per block without opt-in")
        if k.spill_stores or k.spill_loads:
            problems.append(f"{where}: spills registers to local memory ({k.spill_stores} B stores, "
                            f"{k.spill_loads} B loads): correct but slow")
    return problems


def format_report(found: list[KernelResources]) -> str:
    lines = [f"{'kernel':24} {'arch':6} {'regs':>4} {'regs/block':>10} {'smem static':>11} {'smem max':>9} "
             f"{'stack':>5} {'spill st/ld':>11} {'barriers':>8}"]
    for k in found:
        lines.append(f"{k.kernel:24} sm_{k.arch:3} {k.registers:4d} {k.registers_per_block:10d} "
                     f"{k.shared_static:9d} B {k.shared_max:7d} B {k.stack_frame:5d} "
                     f"{f'{k.spill_stores}/{k.spill_loads}':>11} {k.barriers:8d}")
    for arch in sorted({k.arch for k in found}):
        limits = DEVICE_LIMITS[arch]
        lines.append(f"limits sm_{arch}: {limits.max_threads_per_block} threads, {limits.max_registers_per_thread} "
                     f"registers per thread, {limits.max_registers_per_block} per block, "
                     f"{limits.shared_per_block_default} B shared per block (no opt-in); launches use {THREADS} "
                     "threads per block")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sg3stream.kernels.resources", description=__doc__.split("\n")[0])
    parser.add_argument("--arch", action="append", choices=sorted(DEVICE_LIMITS),
                        help="GPU architecture (repeatable; default: 80 and 90)")
    args = parser.parse_args(argv)
    try:
        found = resource_report(tuple(args.arch or ARCHS))
    except KernelBuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_report(found))
    problems = limit_problems(found)
    for problem in problems:
        print(f"PROBLEM {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
