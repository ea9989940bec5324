"""The generator's synthesis network behind torch.compile, at fixed batch shapes (`sg3stream run --compile`).

Compiled code is specialised to the shapes it saw, and the pipeline's batches vary in size (a clip's last batch,
frames without a face, field-of-view copies). So every call is padded up to a bucket of rows (a power of two, at
least `min_rows`) by repeating its last row, and the padding is cut off the result: steady state is one compiled
graph per kind of call (W+ render, StyleSpace render, the encoder's aligned renders), never a recompile for a
short batch. On CUDA the mode is "reduce-overhead": inductor's kernels replayed as CUDA graphs, which launch the
whole network at once; a graph replay reuses its output buffer, hence the copy of each result.

The compiled copy runs the torch reference ops (inductor fuses them into its own kernels; the pycuda kernels
would be opaque calls that break the graph). It shares the parameters of the network it wraps: a PTI-tuned
generator needs a wrapper of its own. If compilation fails (no C compiler, no triton, an unsupported op), the
first call warns once and the wrapper runs eager from then on: a run never fails because of --compile.
"""
from __future__ import annotations

import copy
import logging

import torch

log = logging.getLogger("sg3stream")


def bucket_rows(rows: int, min_rows: int) -> int:
    """The padded batch size for `rows` rows: the next power of two, at least `min_rows`."""
    return max(min_rows, 1 << max(rows - 1, 0).bit_length())


def pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """x with its last row repeated up to `rows` rows."""
    if x.shape[0] == rows:
        return x
    return torch.cat([x, x[-1:].expand(rows - x.shape[0], *x.shape[1:])], 0)


class CompiledSynthesis:
    """Called like `SynthesisNetwork`: (ws, transform=None, *, styles=None, force_fp32=None) -> images.

    `styles(ws)` and the network's attributes used by callers (img_resolution, num_ws, w_dim) pass through to the
    wrapped network. `mode`/`backend` go to torch.compile (default: "reduce-overhead" on CUDA, inductor's default
    on the CPU).
    """

    def __init__(self, synthesis: torch.nn.Module, min_rows: int = 8, mode: str | None = None,
                 backend: str = "inductor"):
        self.synthesis = synthesis
        # A shallow copy shares the parameters and buffers; only its op choice differs from the wrapped network.
        runner = copy.copy(synthesis)
        runner.ops_impl = "torch"
        device = next(synthesis.parameters()).device
        if mode is None and backend == "inductor":
            mode = "reduce-overhead" if device.type == "cuda" else "default"
        self._eager = runner
        self._compiled = torch.compile(runner, dynamic=False, mode=mode, backend=backend)
        self._copy_outputs = mode == "reduce-overhead"
        self.min_rows = int(min_rows)
        self.compiled = True  # False once compilation failed and the eager network took over

    def __getattr__(self, name):  # only called for names the wrapper lacks: the network's attributes
        if name == "synthesis":  # not set yet (a half-built or unpickled object): no endless recursion
            raise AttributeError(name)
        return getattr(self.synthesis, name)

    def styles(self, ws):
        return self.synthesis.styles(ws)

    def __call__(self, ws=None, transform=None, *, styles=None, force_fp32=None):
        if (ws is None) == (styles is None):
            raise ValueError("give exactly one of ws and styles")
        rows = (ws if ws is not None else styles["input"]).shape[0]
        bucket = bucket_rows(rows, self.min_rows)
        if ws is not None:
            ws = pad_rows(ws, bucket)
        else:
            styles = {name: pad_rows(s, bucket) for name, s in styles.items()}
        if transform is not None and transform.ndim == 3:
            transform = pad_rows(transform, bucket)
        images = self._run(ws=ws, transform=transform, styles=styles, force_fp32=force_fp32)
        images = images[:rows]
        return images.clone() if self._copy_outputs else images

    def _run(self, **inputs) -> torch.Tensor:
        if not self.compiled:
            return self._eager(**inputs)
        try:
            return self._compiled(**inputs)
        except Exception as e:  # missing toolchain (C compiler, triton) or an op the compiler cannot take
            log.warning("torch.compile of the synthesis network failed (%s: %s); running it eager",
                        type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            self.compiled = False
            return self._eager(**inputs)
