"""`sg3stream models list|convert|download` as a user meets them."""
import torch
from typer.testing import CliRunner

from sg3stream.cli import app
from sg3stream.models.loading import load_generator


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_list_names_the_official_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("SG3STREAM_CACHE", str(tmp_path))
    result = invoke("models", "list")
    assert result.exit_code == 0, result.output
    for name in ("restyle_e4e_ffhq", "restyle_psp_ffhq", "sg3-r-ffhq-1024"):
        assert name in result.output
    assert str(tmp_path) in result.output.replace("\n", "")


def test_convert_writes_the_project_format_that_loads_back_the_same(tmp_path):
    source = tmp_path / "demo.pt"
    g = load_generator("demo")
    torch.save(g.state_dict(), source)
    target = tmp_path / "demo.safetensors"
    result = invoke("models", "convert", source, target)
    assert result.exit_code == 0, result.output
    back = load_generator(target)
    ws = g.mapping(torch.randn(1, g.z_dim, generator=torch.Generator().manual_seed(0)), None)
    with torch.no_grad():
        assert torch.equal(g.synthesis(ws), back.synthesis(ws))


def test_download_of_an_unknown_name_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SG3STREAM_CACHE", str(tmp_path))
    result = invoke("models", "download", "no-such-model")
    assert result.exit_code == 1
    assert "unknown model" in result.output
