"""kernels/hostcheck.py: the .cu kernels compiled for the CPU (host_cuda.h) and launched through the same launch code
as on a GPU (backends.KernelBackend) agree with the torch reference ops, forward and backward, in float32 and float16;
and a bug planted in a copy of the sources makes it fail, naming the op. Skipped without a C++ compiler.

The host libraries are built once into a folder shared by the tests of this module (cached by content: the planted-bug
copies rebuild only the source they change)."""
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from sg3stream.kernels import hostcheck
from sg3stream.kernels.backends import THREADS, CudaBackend, KernelBackend
from sg3stream.kernels.build import KERNEL_DIR

pytestmark = pytest.mark.skipif(hostcheck.find_cxx() is None, reason="no C++ compiler")


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("hostcheck-build")


@pytest.fixture(scope="module")
def host_kernels(build_dir):
    return hostcheck.load_host_kernels(build_dir=build_dir)


def _op_lines(stdout: str) -> dict[tuple[str, str], str]:
    """(op, dtype) -> its line of hostcheck's output."""
    lines = {}
    for line in stdout.splitlines():
        m = re.match(r"(\w+) +(float32|float16) ", line)
        if m:
            lines[m.groups()] = line
    return lines


def test_the_shipped_kernels_pass_on_the_host(build_dir):
    result = subprocess.run([sys.executable, "-m", "sg3stream.kernels.hostcheck", "--build-dir", str(build_dir)],
                            capture_output=True, text=True, timeout=600)
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = _op_lines(result.stdout)
    assert sorted(lines) == sorted((op, dtype) for op in hostcheck.OPS for dtype in ("float32", "float16"))
    assert all(line.endswith(" ok") for line in lines.values())
    assert re.search(r"^selftest .* ok$", result.stdout, re.M)


# (source, text in it, the bug replacing it, the op whose lines must fail, ops whose lines must stay ok)
PLANTED_BUGS = [
    pytest.param("upfirdn2d.cu", "ky < fh; ky += upy", "ky < fh - 1; ky += upy", "upfirdn2d", ["bias_act"],
                 id="upfirdn2d-off-by-one-tap-loop"),
    pytest.param("bias_act.cu", "case 2: return v > 0.f ? 1.f : alpha;", "case 2: return v > 0.f ? 1.f : -alpha;",
                 "bias_act", ["upfirdn2d"], id="bias_act-flipped-sign-in-lrelu-gradient"),
    pytest.param("filtered_lrelu.cu", "k < tmp_h * tmp_w; k += blockDim.x", "k < tmp_h * tmp_w - 1; k += blockDim.x",
                 "filtered_lrelu", ["upfirdn2d", "bias_act"], id="filtered_lrelu-off-by-one-shared-fill"),
    pytest.param("filtered_lrelu.cu", "    __syncthreads();\n", "", "filtered_lrelu", ["upfirdn2d", "bias_act"],
                 id="filtered_lrelu-missing-barrier"),
]


@pytest.mark.parametrize("source, original, bug, failing_op, passing_ops", PLANTED_BUGS)
def test_a_planted_bug_fails_naming_the_op(source, original, bug, failing_op, passing_ops, build_dir, tmp_path,
                                           capsys):
    kernels_dir = tmp_path / "kernels"
    kernels_dir.mkdir()
    for path in [*KERNEL_DIR.glob("*.cu"), *KERNEL_DIR.glob("*.cuh")]:
        shutil.copy(path, kernels_dir)
    text = (kernels_dir / source).read_text()
    assert text.count(original) == 1, f"the text to break is no longer in {source}: update the planted bug"
    (kernels_dir / source).write_text(text.replace(original, bug))

    # in-process: these bugs give wrong values, not wild pointers (reads stay within the guard margins)
    status = hostcheck.main(["--kernels-dir", str(kernels_dir), "--build-dir", str(build_dir)])
    stdout = capsys.readouterr().out
    print(stdout)
    assert status == 1
    lines = _op_lines(stdout)
    for dtype in ("float32", "float16"):
        assert "FAIL" in lines[failing_op, dtype]
        for op in passing_ops:  # sources the bug is not in: no false alarm
            assert lines[op, dtype].endswith(" ok")


def test_the_host_backend_runs_the_cuda_backends_launch_code():
    for method in ("upfirdn2d_pass", "bias_act_forward", "bias_act_backward", "filtered_lrelu_forward", "_blocks"):
        assert getattr(hostcheck.HostBackend, method) is getattr(CudaBackend, method) is getattr(KernelBackend, method)


def _bias_act_args(backend, x, y, n, n_type=np.int64):
    return [backend._ptr(x), backend._ptr(None), backend._ptr(y), n_type(n), np.int32(0), np.int32(1), np.int64(1),
            np.int32(2), np.float32(0.2), np.float32(1.0), np.float32(-1.0)]


def test_a_launch_the_gpu_would_get_wrong_is_refused(host_kernels):
    """What pycuda would pass on silently: an argument of the wrong width, an output too small for the launch, more
    dynamic shared memory than a block gets without opt-in."""
    backend = hostcheck.HostBackend(host_kernels)
    x, y = torch.randn(300), torch.empty(300)
    backend._launch("bias_act_forward_f32", backend._blocks(300), (THREADS, 1, 1), _bias_act_args(backend, x, y, 300))
    torch.testing.assert_close(y, torch.where(x > 0, x, 0.2 * x))

    with pytest.raises(hostcheck.HostLaunchError, match=r"argument 3 \(n\) is int32, the kernel takes long long"):
        backend._launch("bias_act_forward_f32", (2, 1), (THREADS, 1, 1),
                        _bias_act_args(backend, x, y, 300, n_type=np.int32))
    with pytest.raises(hostcheck.HostLaunchError, match="bias_act_forward_f32: wrote outside its argument y"):
        backend._launch("bias_act_forward_f32", (2, 1), (THREADS, 1, 1),
                        _bias_act_args(backend, x, torch.empty(299), 300))
    with pytest.raises(hostcheck.HostLaunchError, match="49153 B of dynamic shared memory > 49152 B"):
        backend._launch("filtered_lrelu_f32", (1, 1), (THREADS, 1, 1), [], shared=48 * 1024 + 1)


def test_the_emulated_barrier_lets_every_thread_of_a_block_see_the_shared_memory(host_kernels):
    """filtered_lrelu's block fills shared memory, waits at __syncthreads, then reads samples other threads wrote:
    with 1-tap filters and down=2, output k of a tile is shared sample 2k (tile row and column doubled), written by
    another thread; a sample not yet written at the barrier (0xFF: NaN) would show."""
    backend = hostcheck.HostBackend(host_kernels)
    x = torch.randn(1, 2, 20, 19)
    one = torch.ones(1, 1)
    y = backend.filtered_lrelu_forward(x, None, one, one, 1, 2, 0, 0, 10, 10, 1.0, 0.2, -1.0)
    torch.testing.assert_close(y, torch.where(x > 0, x, 0.2 * x)[:, :, ::2, ::2])
