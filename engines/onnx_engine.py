"""The ONNX backend: export with a dynamic batch dimension, run with ONNX Runtime.

`export_onnx` is generic: any module whose inputs and outputs are batch-first tensors (the ReStyle encoder; the
synthesis network with the per-frame transform as a second input). Exported graphs are cached under
`<cache_root>/onnx/<fingerprint>.onnx` so a second run does not export again.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from sg3stream.errors import UserError

from .base import Engine, as_tuple, cache_root, module_fingerprint

__all__ = ["export_onnx", "OnnxEngine", "DEFAULT_OPSET"]

DEFAULT_OPSET = 17


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UserError("the onnx engine needs the 'onnx' and 'onnxruntime' packages: pip install 'sg3stream[onnx]'") from None


def export_onnx(module: nn.Module, example_inputs: Sequence[torch.Tensor] | torch.Tensor, path: str | os.PathLike, *,
                input_names: Sequence[str] = ("input",), output_names: Sequence[str] = ("output",),
                dynamic_batch: bool = True, opset: int = DEFAULT_OPSET) -> Path:
    """Export `module` (in eval mode, on the CPU, float32) to an ONNX file at `path`, written atomically.

    Every input and output gets a dynamic first dimension named "batch" when dynamic_batch is True.
    Uses the TorchScript-based exporter (no onnxscript dependency). Returns the path.
    """
    _require_onnx()
    example_inputs = tuple(x.detach().cpu() for x in as_tuple(example_inputs))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = module.training
    params = next(iter(module.parameters()), None)
    orig_device = params.device if params is not None else torch.device("cpu")
    module = module.eval().cpu()
    axes = {n: {0: "batch"} for n in (*input_names, *output_names)} if dynamic_batch else None
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice and tracer warnings
            torch.onnx.export(module, example_inputs, tmp, input_names=list(input_names),
                              output_names=list(output_names), dynamic_axes=axes, opset_version=opset,
                              do_constant_folding=True, dynamo=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        module.to(orig_device).train(was_training)
    return path


class OnnxEngine(Engine):
    """ONNX Runtime session over an exported graph.

    providers: ONNX Runtime execution providers; default CUDA when device is cuda and available, else CPU.
    threads:   intra-op threads (None = ONNX Runtime's default).
    """

    kind = "onnx"

    def __init__(self, onnx_path: str | os.PathLike, *, device: str | torch.device = "cpu",
                 providers: Sequence[str] | None = None, threads: int | None = None):
        _require_onnx()
        import onnxruntime as ort

        self.path = Path(onnx_path)
        self.device = torch.device(device)
        if providers is None:
            avail = ort.get_available_providers()
            providers = ["CPUExecutionProvider"]
            if self.device.type == "cuda" and "CUDAExecutionProvider" in avail:
                providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=list(providers))
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = tuple(o.name for o in self.session.get_outputs())

    @classmethod
    def from_module(cls, module: nn.Module, example_inputs: Sequence[torch.Tensor], *, device="cpu",
                    input_names: Sequence[str] = ("input",), output_names: Sequence[str] = ("output",),
                    cache: bool = True, cache_dir: str | os.PathLike | None = None, opset: int = DEFAULT_OPSET,
                    **kw: Any) -> "OnnxEngine":
        """Export `module` and open a session on it. cache=True: the graph is kept in the cache, by the module's
        fingerprint (a second run does not export again); False: exported to a temporary folder, removed once the
        session has read it (weights no other run will ask for, such as a PTI-tuned generator's)."""
        example_inputs = as_tuple(example_inputs)
        if not cache:
            with tempfile.TemporaryDirectory(prefix="sg3stream-onnx-") as tmp:
                path = export_onnx(module, example_inputs, Path(tmp) / "graph.onnx", input_names=input_names,
                                   output_names=output_names, opset=opset)
                return cls(path, device=device, **kw)
        shapes = ";".join(f"{tuple(x.shape[1:])}:{x.dtype}" for x in example_inputs)
        key = module_fingerprint(module, f"onnx|{opset}|{shapes}|{input_names}|{output_names}")
        path = (Path(cache_dir) if cache_dir else cache_root() / "onnx") / f"{key}.onnx"
        if not path.is_file():
            export_onnx(module, example_inputs, path, input_names=input_names, output_names=output_names, opset=opset)
        return cls(path, device=device, **kw)

    def run(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feed = {}
        for name, x, meta in zip(self.input_names, inputs, self.session.get_inputs()):
            a = x.detach().cpu()
            if meta.type == "tensor(float)":
                a = a.float()
            feed[name] = np.ascontiguousarray(a.numpy())
        outs = self.session.run(None, feed)
        return tuple(torch.from_numpy(o).to(self.device) for o in outs)
