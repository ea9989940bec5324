"""`sg3stream models list|convert|download` as a user meets them, and the names they accept."""
import json
import re

import pytest
import torch
from typer.testing import CliRunner

from sg3stream.cli import app
from sg3stream.errors import UserError
from sg3stream.models.loading import load_generator
from sg3stream.models.restyle import load_encoder


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


# -- one resolver for model names (issue 13, item 13) ----------------------------------------------------------------

def test_models_list_fits_80_columns_with_every_name_whole(tmp_path, monkeypatch):
    from sg3stream.models.configs import BUILTIN_GENERATORS
    from sg3stream.models.registry import REGISTRY

    monkeypatch.setenv("SG3STREAM_CACHE", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "80")
    result = invoke("models", "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80, result.output
    for name in [*REGISTRY, *BUILTIN_GENERATORS]:
        assert any(f" {name} " in f" {line} " for line in lines), name  # whole, on one line


def test_models_list_shows_the_sizes_and_checksums_it_knows(tmp_path, monkeypatch):
    from dataclasses import replace

    from sg3stream.models.registry import REGISTRY

    monkeypatch.setenv("SG3STREAM_CACHE", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "80")
    official = "ab" * 32
    monkeypatch.setitem(REGISTRY, "restyle_psp_ffhq", replace(REGISTRY["restyle_psp_ffhq"], size=3 * 2 ** 20,
                                                              sha256=official))
    # a downloaded file: its size on disk and the sha256 the download recorded beside it
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "restyle_e4e_ffhq.pt").write_bytes(bytes(5 * 2 ** 20))
    (tmp_path / "models" / "restyle_e4e_ffhq.pt.sha256").write_text("cd" * 32 + "  restyle_e4e_ffhq.pt\n")
    result = invoke("models", "list")
    assert result.exit_code == 0, result.output
    e4e = next(line for line in result.output.splitlines() if " restyle_e4e_ffhq " in f" {line} ")
    psp = next(line for line in result.output.splitlines() if " restyle_psp_ffhq " in f" {line} ")
    assert "5 MiB" in e4e and "cdcdcdcd" in e4e and e4e.split()[-1] == "yes"  # cached
    assert "3 MiB" in psp and "abababab" in psp and "yes" not in psp
    listed = {row["name"]: row for row in json.loads(invoke("models", "list", "--json").output)}
    assert listed["restyle_psp_ffhq"]["sha256"] == official and listed["restyle_e4e_ffhq"]["sha256"] == "cd" * 32
    assert listed["restyle_e4e_ffhq"]["size"] == 5 * 2 ** 20 and listed["demo"]["kind"] == "built-in"


def test_a_listed_name_that_is_not_downloaded_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SG3STREAM_CACHE", str(tmp_path))
    name = "stylegan3-r-ffhq-1024x1024"
    expected = f"{name} is not downloaded: run `sg3stream models download {name}`, or pass the file's path"
    with pytest.raises(UserError, match=re.escape(expected)):
        load_generator(name)
    result = invoke("generate", "--generator", name, "--outdir", tmp_path / "out")
    assert result.exit_code == 1 and expected in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_builtin_names_are_accepted_everywhere(tmp_path, monkeypatch):
    from sg3stream.job import weights_file
    from sg3stream.models.download import resolve_weights
    from sg3stream.models.resolve import resolve_model

    monkeypatch.setenv("SG3STREAM_CACHE", str(tmp_path))
    for name in ("demo", "sg3-t-1024", "sg3-r-1024"):
        assert resolve_model(name, "generator").builtin == name
        assert weights_file(name) is None  # the run command's direction lookup: no file, no error
    with pytest.raises(UserError, match="sg3-r-1024 is a built-in generator, not an encoder"):
        load_encoder("sg3-r-1024")
    with pytest.raises(UserError, match="built-in"):
        resolve_weights("sg3-r-1024")


def test_a_downloaded_name_loads_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SG3STREAM_CACHE", str(tmp_path))
    from sg3stream.models.stylegan3 import Generator

    small = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3, channel_base=256,
                      channel_max=16, num_layers=4, mapping_kwargs=dict(num_layers=3), seed=1)
    (tmp_path / "models").mkdir()
    torch.save(small.state_dict(), tmp_path / "models" / "sg3-r-ffhq-1024.pt")
    G = load_generator("sg3-r-ffhq-1024")
    assert G.img_resolution == 16 and torch.equal(G.mapping.fc0.weight, small.mapping.fc0.weight)


def test_names_of_the_wrong_kind_and_unknown_names_say_what_to_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("SG3STREAM_CACHE", str(tmp_path))
    with pytest.raises(UserError, match="restyle_e4e_ffhq is an encoder, not a generator: pass it as the encoder"):
        load_generator("restyle_e4e_ffhq")
    with pytest.raises(UserError, match="stylegan3-r-ffhq-1024x1024 is a generator, not an encoder"):
        load_encoder("stylegan3-r-ffhq-1024x1024")
    with pytest.raises(UserError) as info:
        load_generator("no-such-generator")
    message = str(info.value)
    assert "neither a file nor a generator name" in message and "sg3stream models list" in message
    assert "demo" in message and "stylegan3-r-ffhq-1024x1024" in message and "restyle_e4e_ffhq" not in message
    with pytest.raises(UserError, match="generator file not found: .*nope.pkl"):
        load_generator(tmp_path / "nope.pkl")
