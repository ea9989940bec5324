"""Every .cu of kernels/ is shipped (always checked) and compiles with nvcc for sm_80 and sm_90 (no GPU needed), and
the build cache works (these two skip without nvcc)."""
import subprocess

import pytest

from sg3stream.kernels import SOURCES
from sg3stream.kernels.backends import FUNCTIONS
from sg3stream.kernels.build import KERNEL_DIR, compile_cubin, find_nvcc, nvcc_command

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
