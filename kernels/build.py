"""Compiling the .cu sources of this folder to cubins with nvcc, cached on disk.

Cache: $SG3STREAM_CACHE/kernels, else $XDG_CACHE_HOME/sg3stream/kernels, else ~/.cache/sg3stream/kernels; one file
per (source, GPU architecture), named by the hash of the source, the shared header and the nvcc version, so an
edited kernel or another compiler rebuilds and nothing stale is loaded. Files are written under a temporary name
and renamed, so concurrent processes never read half a cubin. nvcc runs with a time limit: it never hangs a run.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

KERNEL_DIR = Path(__file__).resolve().parent
SOURCES = ("upfirdn2d.cu", "bias_act.cu", "filtered_lrelu.cu")
HEADERS = ("common.cuh",)
NVCC_TIMEOUT_S = 300


class KernelBuildError(RuntimeError):
    """nvcc is missing or failed; the message holds its output."""


def cache_dir() -> Path:
    env = os.environ.get("SG3STREAM_CACHE")
    if env:
        return Path(env) / "kernels"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "sg3stream" / "kernels"


def find_nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and (Path(home) / "bin" / "nvcc").is_file():
            return str(Path(home) / "bin" / "nvcc")
    return None


@lru_cache(maxsize=None)
def nvcc_version(nvcc: str) -> str:
    result = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60)
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "unknown"


def source_key(source: str, arch: str, nvcc: str) -> str:
    h = hashlib.sha256()
    for name in (source, *HEADERS):
        h.update((KERNEL_DIR / name).read_bytes())
    h.update(arch.encode())
    h.update(nvcc_version(nvcc).encode())
    return h.hexdigest()[:20]


def nvcc_command(nvcc: str, source: str, arch: str, output: Path, mode: str = "--cubin") -> list[str]:
    return [nvcc, mode, f"-arch=sm_{arch}", "-O3", "-std=c++17", "-I", str(KERNEL_DIR), "-o", str(output),
            str(KERNEL_DIR / source)]


def compile_cubin(source: str, arch: str, *, out_dir: Path | None = None, nvcc: str | None = None) -> Path:
    """The cubin of `source` for sm_`arch` (e.g. "80"), compiled now or taken from the cache."""
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        raise KernelBuildError("nvcc not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin): cannot build the "
                               "CUDA kernels")
    out_dir = Path(out_dir) if out_dir is not None else cache_dir()
    target = out_dir / f"{Path(source).stem}-sm{arch}-{source_key(source, arch, nvcc)}.cubin"
    if target.is_file():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        run_compiler(nvcc_command(nvcc, source, arch, tmp), f"{source} for sm_{arch}", NVCC_TIMEOUT_S)
    except KernelBuildError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)
    return target


def run_compiler(command: list[str], what: str, timeout_s: float,
                 error: type[Exception] = KernelBuildError) -> subprocess.CompletedProcess:
    """Run a compiler (nvcc, g++) within a time limit; `error` with its output when it fails or takes too long."""
    tool = Path(command[0]).name
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise error(f"{tool} took more than {timeout_s} s on {what}") from None
    if result.returncode != 0:
        raise error(f"{tool} failed on {what}:\n{result.stderr.strip()}")
    return result
