"""The TensorRT backend: fp16 engines built from the ONNX graph, with a dynamic-batch optimization profile.

Built engines are cached in `<cache_root>/trt/` (by default ~/.cache/sg3stream/trt/, honouring $XDG_CACHE_HOME and
$SG3STREAM_CACHE), keyed by the ONNX graph's sha256, the GPU name, the TensorRT version, the precision and the
batch profile, so a new driver/GPU/TensorRT or a changed model builds a new engine instead of loading a stale one.

Needs an NVIDIA GPU, a CUDA build of torch and the `tensorrt` package (TensorRT 10 API: named I/O tensors,
execute_async_v3). Buffers are torch CUDA tensors, so pycuda is not needed. Without them, `TensorRTEngine` raises a
UserError saying what is missing.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from sg3stream.errors import UserError

from .base import Engine, as_tuple, cache_root, module_fingerprint

__all__ = ["tensorrt_available", "TensorRTEngine", "engine_cache_path"]


def tensorrt_available() -> tuple[bool, str]:
    """(True, version) when TensorRT can run here, else (False, the reason)."""
    if not torch.cuda.is_available():
        return False, "no CUDA GPU is visible to torch (TensorRT needs an NVIDIA GPU and a CUDA build of torch)"
    try:
        import tensorrt as trt
    except ImportError:
        return False, "the 'tensorrt' package is not installed (pip install 'sg3stream[gpu]')"
    return True, str(trt.__version__)


def _require_tensorrt():
    ok, why = tensorrt_available()
    if not ok:
        raise UserError(f"engine 'tensorrt' is not available: {why}; use engine='torch' or 'onnx' instead")
    import tensorrt as trt
    return trt


def engine_cache_path(onnx_bytes: bytes, *, fp16: bool, profile: tuple[int, int, int],
                      cache_dir: str | os.PathLike | None = None, gpu_name: str | None = None,
                      trt_version: str | None = None) -> Path:
    """Where the engine for this graph/GPU/TensorRT/precision/profile lives."""
    if gpu_name is None:
        gpu_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "nogpu"
    if trt_version is None:
        import tensorrt as trt
        trt_version = trt.__version__
    graph = hashlib.sha256(onnx_bytes).hexdigest()[:20]
    gpu = re.sub(r"[^A-Za-z0-9.]+", "-", gpu_name).strip("-")
    name = f"{graph}_{gpu}_trt{trt_version}_{'fp16' if fp16 else 'fp32'}_b{profile[0]}-{profile[1]}-{profile[2]}.engine"
    return (Path(cache_dir) if cache_dir else cache_root() / "trt") / name


_TRT_TO_TORCH = {"FLOAT": torch.float32, "HALF": torch.float16, "INT32": torch.int32, "INT64": torch.int64,
                 "BOOL": torch.bool, "INT8": torch.int8, "BF16": torch.bfloat16}


class TensorRTEngine(Engine):
    """A TensorRT engine over an ONNX graph whose inputs have a dynamic batch dimension.

    fp16: build with FP16 kernels allowed (I/O stays float32). min/opt/max_batch: the optimization profile;
    larger batches are split by `Engine.__call__`.
    """

    kind = "tensorrt"

    def __init__(self, onnx_path: str | os.PathLike, *, device: str | torch.device = "cuda", fp16: bool = True,
                 min_batch: int = 1, opt_batch: int = 8, max_batch: int = 32,
                 cache_dir: str | os.PathLike | None = None, workspace_gb: float = 4.0):
        trt = _require_tensorrt()
        self.trt = trt
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise UserError(f"engine 'tensorrt' runs on a CUDA device, got device={str(device)!r}")
        if not (1 <= min_batch <= opt_batch <= max_batch):
            raise UserError(f"TensorRT batch profile must satisfy 1 <= min <= opt <= max, got "
                            f"{min_batch}/{opt_batch}/{max_batch}")
        self.max_batch = max_batch
        self.logger = trt.Logger(trt.Logger.WARNING)
        onnx_bytes = Path(onnx_path).read_bytes()
        profile = (min_batch, opt_batch, max_batch)
        with torch.cuda.device(self.device):
            self.cache_path = engine_cache_path(onnx_bytes, fp16=fp16, profile=profile, cache_dir=cache_dir)
            if self.cache_path.is_file():
                plan = self.cache_path.read_bytes()
            else:
                plan = self._build(onnx_bytes, fp16, profile, workspace_gb)
                self.cache_path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=self.cache_path.parent, suffix=".part")
                with os.fdopen(fd, "wb") as f:
                    f.write(plan)
                os.replace(tmp, self.cache_path)
            self.runtime = trt.Runtime(self.logger)
            self.engine = self.runtime.deserialize_cuda_engine(plan)
            if self.engine is None:
                raise UserError(f"TensorRT could not load the cached engine {self.cache_path}; delete it to rebuild")
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = tuple(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output_names = tuple(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)

    def _build(self, onnx_bytes: bytes, fp16: bool, profile: tuple[int, int, int], workspace_gb: float) -> bytes:
        trt = self.trt
        builder = trt.Builder(self.logger)
        flags = 0
        if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # TensorRT 8.x; implicit in 10
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(onnx_bytes):
            errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise UserError(f"TensorRT could not parse the ONNX graph: {errs}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
        if fp16 and builder.platform_has_fast_fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        prof = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            inp = network.get_input(i)
            rest = tuple(inp.shape)[1:]
            if any(d < 0 for d in rest):
                raise UserError(f"input {inp.name!r} has dynamic dimensions other than the batch: {tuple(inp.shape)}")
            prof.set_shape(inp.name, (profile[0], *rest), (profile[1], *rest), (profile[2], *rest))
        config.add_optimization_profile(prof)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise UserError("TensorRT failed to build the engine (see the TensorRT log above)")
        return bytes(plan)

    @classmethod
    def from_module(cls, module: nn.Module, example_inputs: Sequence[torch.Tensor], *, device="cuda",
                    input_names: Sequence[str] = ("input",), output_names: Sequence[str] = ("output",),
                    cache_dir: str | os.PathLike | None = None, opset: int | None = None, **kw: Any) -> "TensorRTEngine":
        """Export `module` to ONNX (cached) and build/load the TensorRT engine for it."""
        _require_tensorrt()  # fail before the (slow) export when TensorRT cannot run
        from .onnx_engine import DEFAULT_OPSET, export_onnx

        example_inputs = as_tuple(example_inputs)
        opset = opset or DEFAULT_OPSET
        shapes = ";".join(f"{tuple(x.shape[1:])}:{x.dtype}" for x in example_inputs)
        key = module_fingerprint(module, f"onnx|{opset}|{shapes}|{input_names}|{output_names}")
        onnx_path = cache_root() / "onnx" / f"{key}.onnx"
        if not onnx_path.is_file():
            export_onnx(module, example_inputs, onnx_path, input_names=input_names, output_names=output_names,
                        opset=opset)
        return cls(onnx_path, device=device, cache_dir=cache_dir, **kw)

    def run(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        trt = self.trt
        keep = []
        with torch.cuda.device(self.device):
            for name, x in zip(self.input_names, inputs):
                want = _TRT_TO_TORCH.get(self.engine.get_tensor_dtype(name).name, torch.float32)
                x = x.to(self.device, dtype=want).contiguous()
                keep.append(x)
                self.context.set_input_shape(name, tuple(x.shape))
                self.context.set_tensor_address(name, x.data_ptr())
            outs = []
            for name in self.output_names:
                shape = tuple(self.context.get_tensor_shape(name))
                dt = _TRT_TO_TORCH.get(self.engine.get_tensor_dtype(name).name, torch.float32)
                y = torch.empty(shape, dtype=dt, device=self.device)
                self.context.set_tensor_address(name, y.data_ptr())
                outs.append(y)
            stream = torch.cuda.current_stream(self.device)
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
            stream.synchronize()
        del keep, trt
        return tuple(o.float() if o.dtype == torch.float16 else o for o in outs)
