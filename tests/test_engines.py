"""Engines: torch, ONNX (export with dynamic batch, checked against torch with onnxruntime), TensorRT (GPU only)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_restyle import fill_state_dict
from torch import nn

from sg3stream.engines.base import cache_root, create_engine
from sg3stream.errors import UserError
from sg3stream.models.encoders import ProgressiveBackboneEncoder, ResNetProgressiveBackboneEncoder

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "restyle"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SG3STREAM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_root_env(monkeypatch, tmp_path):
    monkeypatch.delenv("SG3STREAM_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "sg3stream"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "sg3stream"
    monkeypatch.setenv("SG3STREAM_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"


def test_unknown_engine():
    with pytest.raises(UserError, match="torch, onnx, tensorrt"):
        create_engine(nn.Identity(), "openvino", example_inputs=torch.zeros(1, 3))


def test_torch_engine_matches_module():
    torch.manual_seed(0)
    m = ResNetProgressiveBackboneEncoder(widths=(8, 8, 8, 16), style_mid=16).eval()
    x = torch.rand(2, 6, 256, 256) * 2 - 1
    eng = create_engine(m, "torch", example_inputs=x[:1])
    assert eng.kind == "torch" and not eng.compiled  # compile is off by default on the CPU
    with torch.no_grad():
        assert torch.equal(eng(x), m(x))


@pytest.mark.skipif(not (FIXTURES / "keys.json").is_file(), reason="restyle fixtures not present")
def test_onnx_encoder_matches_torch_and_reference(private_cache):
    pytest.importorskip("onnxruntime")
    meta = json.loads((FIXTURES / "keys.json").read_text())
    exp = np.load(FIXTURES / "expected.npz")
    m = ProgressiveBackboneEncoder(50, "ir_se", n_styles=16, input_nc=6).eval()
    m.load_state_dict(fill_state_dict(meta["e4e"]["keys"], meta["salt"]))
    # exported with batch 1, run with batch 2: the batch dimension is dynamic
    eng = create_engine(m, "onnx", example_inputs=torch.zeros(1, 6, 256, 256), input_names=("x",),
                        output_names=("codes",))
    assert eng.input_names == ("x",) and eng.output_names == ("codes",)
    x = torch.from_numpy(exp["e4e_input"])
    out = eng(x)
    with torch.no_grad():
        ref_torch = m(x)
    diff = float((out - ref_torch).abs().max())
    ref = exp["e4e_output"]
    err = float(np.abs(out.numpy() - ref).max() / np.abs(ref).max())
    print(f"onnx vs torch max abs diff {diff:.3g}; onnx vs reference rel err {err:.3g}")
    assert out.shape == (2, 16, 512)
    assert diff <= 1e-4 * float(ref_torch.abs().max())
    assert err <= 1e-4
    # the export is cached by the module's fingerprint
    cached = list((private_cache / "onnx").glob("*.onnx"))
    assert len(cached) == 1


class TwoInputs(nn.Module):
    """Stands in for the synthesis network: codes and a per-frame 3x3 transform, both batch-first."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 12)

    def forward(self, ws, transform):
        t = transform[:, :2, :].reshape(transform.shape[0], 6)
        return torch.tanh(self.lin(ws.mean(1))).reshape(-1, 3, 2, 2) + t[:, :3, None, None]


def test_generic_export_two_inputs_dynamic_batch(tmp_path):
    pytest.importorskip("onnxruntime")
    from sg3stream.engines.onnx_engine import OnnxEngine, export_onnx

    m = TwoInputs().eval()
    ex = (torch.zeros(1, 4, 8), torch.eye(3)[None])
    path = export_onnx(m, ex, tmp_path / "g.onnx", input_names=("ws", "transform"), output_names=("img",))
    assert path.is_file() and not list(tmp_path.glob("*.part"))
    eng = OnnxEngine(path)
    ws, tr = torch.randn(5, 4, 8), torch.randn(5, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(eng(ws, tr), m(ws, tr), rtol=1e-5, atol=1e-5)
    with pytest.raises(UserError, match="takes 2 inputs"):
        eng(ws)


def test_restyle_encoder_with_onnx_engine():
    pytest.importorskip("onnxruntime")
    from sg3stream.models.restyle import ReStyleEncoder

    torch.manual_seed(0)
    net = ResNetProgressiveBackboneEncoder(widths=(8, 8, 8, 16), style_mid=16).eval()

    class Gen(nn.Module):
        num_ws, w_dim, img_resolution = 16, 512, 32

        def __init__(self):
            super().__init__()
            self.synthesis = lambda ws, transform=None: torch.tanh(ws[:, :3, :32]).unsqueeze(-1).expand(-1, -1, -1, 32)

    enc = ReStyleEncoder(net, Gen(), torch.zeros(512), "ResNetProgressiveBackboneEncoder")
    images = torch.rand(2, 3, 256, 256) * 2 - 1
    ref = enc.invert(images, 2)
    enc.set_engine("onnx")
    assert enc.engine == "onnx"
    torch.testing.assert_close(enc.invert(images, 2), ref, rtol=1e-4, atol=1e-4)


def test_tensorrt_unavailable_is_a_user_error():
    from sg3stream.engines.tensorrt_engine import tensorrt_available

    ok, why = tensorrt_available()
    if ok:
        pytest.skip("TensorRT is available here; covered by test_tensorrt_engine")
    with pytest.raises(UserError, match="tensorrt"):
        create_engine(nn.Linear(3, 3), "tensorrt", example_inputs=torch.zeros(1, 3), device="cuda")


def test_tensorrt_engine_cache_key(tmp_path):
    from sg3stream.engines.tensorrt_engine import engine_cache_path

    a = engine_cache_path(b"graph", fp16=True, profile=(1, 4, 8), gpu_name="NVIDIA H100 80GB HBM3",
                          trt_version="10.3.0", cache_dir=tmp_path)
    b = engine_cache_path(b"graph", fp16=True, profile=(1, 4, 8), gpu_name="NVIDIA A10",
                          trt_version="10.3.0", cache_dir=tmp_path)
    c = engine_cache_path(b"graph2", fp16=True, profile=(1, 4, 8), gpu_name="NVIDIA A10",
                          trt_version="10.3.0", cache_dir=tmp_path)
    assert len({a, b, c}) == 3 and a.parent == tmp_path and "H100" in a.name and "trt10.3.0" in a.name


def test_tensorrt_default_cache_dir(monkeypatch, tmp_path):
    from sg3stream.engines.tensorrt_engine import engine_cache_path

    monkeypatch.delenv("SG3STREAM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    p = engine_cache_path(b"g", fp16=True, profile=(1, 1, 1), gpu_name="x", trt_version="10")
    assert p.parent == tmp_path / "sg3stream" / "trt"


def test_tensorrt_engine():
    from sg3stream.engines.tensorrt_engine import tensorrt_available

    ok, why = tensorrt_available()
    if not ok:
        pytest.skip(why)
    torch.manual_seed(0)
    m = ResNetProgressiveBackboneEncoder(widths=(8, 8, 8, 16), style_mid=16).eval()
    eng = create_engine(m, "tensorrt", example_inputs=torch.zeros(1, 6, 256, 256), device="cuda",
                        min_batch=1, opt_batch=2, max_batch=4)
    x = torch.rand(6, 6, 256, 256) * 2 - 1  # > max_batch: split
    with torch.no_grad():
        ref = m(x)
    out = eng(x.cuda()).cpu()
    assert float((out - ref).abs().max()) <= 2e-2 * float(ref.abs().max())  # fp16
    assert eng.cache_path.is_file()
