"""Every .cu of kernels/ is shipped (always checked) and compiles with nvcc for sm_80 and sm_90 (no GPU needed), the
build cache works, and ptxas's resource report of every kernel fits the device limits of the launches the Python side
makes (these skip without nvcc; the report's parsing and checks are tested everywhere)."""
import dataclasses
import subprocess

import pytest

from sg3stream.kernels import SOURCES
from sg3stream.kernels.backends import FUNCTIONS, SHARED_LIMIT, THREADS
from sg3stream.kernels.build import KERNEL_DIR, compile_cubin, find_nvcc, nvcc_command
from sg3stream.kernels.resources import ARCHS, format_report, limit_problems, parse_ptxas, resource_report

NVCC = find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")


def test_sources_are_shipped():  # no compiler needed: runs everywhere
    assert sorted(p.name for p in KERNEL_DIR.glob("*.cu")) == sorted(SOURCES) == sorted(FUNCTIONS)


@needs_nvcc
@pytest.mark.parametrize("arch", ["80", "90"])
@pytest.mark.parametrize("source", SOURCES)
def test_kernel_compiles(source, arch, tmp_path):
    out = tmp_path / f"{source}.{arch}.cubin"
    result = subprocess.run(nvcc_command(NVCC, source, arch, out), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    data = out.read_bytes()
    for name in FUNCTIONS[source]:  # every kernel the loader asks pycuda for is exported under its C name
        assert name.encode() + b"\x00" in data


@needs_nvcc
def test_compiled_cubins_are_cached_by_source_and_arch(tmp_path):
    first = compile_cubin("upfirdn2d.cu", "80", out_dir=tmp_path)
    mtime = first.stat().st_mtime_ns
    again = compile_cubin("upfirdn2d.cu", "80", out_dir=tmp_path)
    assert again == first and again.stat().st_mtime_ns == mtime  # not rebuilt
    assert not list(tmp_path.glob(".*.tmp"))


PTXAS_SAMPLE = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'tiled_f32' for 'sm_90'
ptxas info    : Function properties for tiled_f32
    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 1024 bytes smem, 468 bytes cmem[0]
ptxas info    : Compile time = 133.454 ms
ptxas info    : Compiling entry function 'plain_f32' for 'sm_90'
ptxas info    : Function properties for plain_f32
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 30 registers, used 0 barriers
"""


def test_ptxas_report_is_parsed_and_checked_against_the_device_limits():  # no compiler needed
    tiled, plain = parse_ptxas("filtered_lrelu.cu", PTXAS_SAMPLE)
    assert (tiled.kernel, tiled.arch, tiled.registers, tiled.shared_static, tiled.stack_frame, tiled.spill_stores,
            tiled.spill_loads, tiled.barriers) == ("tiled_f32", "90", 255, 1024, 8, 4, 4, 1)
    assert (plain.kernel, plain.registers, plain.shared_static, plain.spill_stores) == ("plain_f32", 30, 0, 0)
    assert plain.registers_per_block == 32 * THREADS  # rounded up to the allocation unit (256 per warp)
    assert tiled.registers_per_block == 256 * THREADS == 65536  # 255 registers: the most a 256-thread block fits
    problems = "\n".join(limit_problems([tiled, plain]))
    assert "registers" not in problems.replace("spills registers", "")
    assert f"1024 B static + {SHARED_LIMIT} B dynamic shared memory > 49152 B" in problems
    assert "spills registers to local memory (4 B stores, 4 B loads)" in problems
    assert "plain_f32" not in problems
    problems = "\n".join(limit_problems([dataclasses.replace(plain, registers=300)]))
    assert "300 registers per thread > 255" in problems and "registers per block > 65536" in problems


@needs_nvcc
def test_kernel_resources_fit_the_device_limits():
    """ptxas's registers, shared memory and spills of every kernel on sm_80 and sm_90, against the limits of the
    launches backends.py makes (THREADS threads per block, up to SHARED_LIMIT bytes of dynamic shared memory for
    filtered_lrelu, no opt-in): a kernel that would fail to launch, or spill, fails here."""
    found = resource_report(ARCHS, nvcc=NVCC)
    print(format_report(found))
    assert sorted((k.kernel, k.arch) for k in found) == sorted(
        (name, arch) for names in FUNCTIONS.values() for name in names for arch in ARCHS)
    assert limit_problems(found) == []
