"""load_generator: every accepted format, safe unpickling, and clear errors for bad input."""
import os
import pickle
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from model_files import persistent_tree, write_official_pickle
from sg3stream.errors import UserError
from sg3stream.models import convert_generator, generator_from_state_dict, infer_generator_config, load_generator
from sg3stream.models.configs import BUILTIN_GENERATORS
from sg3stream.models.stylegan3 import Generator

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "stylegan3"
SMALL = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3, channel_base=256, channel_max=16,
             num_layers=4, mapping_kwargs=dict(num_layers=3))


@pytest.fixture(scope="module")
def small():
    return Generator(**SMALL, seed=1).eval()


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- accepted formats ---------------------------------------------------------------------------------------------

def test_official_pickle_written_here(tmp_path, small):
    write_official_pickle(tmp_path / "g.pkl", {"G_ema": persistent_tree(small, "Generator", SMALL), "D": None})
    G = load_generator(tmp_path / "g.pkl")
    assert _same_weights(G, small) and not G.training


@pytest.mark.skipif(not (FIXTURES / "sg3r-64.pkl").is_file(), reason="fixtures (../shared) not available")
def test_fixture_pickle_and_state_dict_and_project_format_agree(tmp_path):
    G = load_generator(FIXTURES / "sg3r-64.pkl")
    state = dict(G.state_dict(), **{"synthesis.input.transform": torch.eye(3) * 2})  # as official .pt files hold it
    torch.save(state, tmp_path / "g.pt")
    G_pt = load_generator(tmp_path / "g.pt")
    assert _same_weights(G_pt, G)
    assert G_pt.synthesis.L0_36_128.conv_kernel == 1 and G_pt.synthesis.L0_36_128.down_radial
    convert_generator(FIXTURES / "sg3r-64.pkl", tmp_path / "g.safetensors")
    G_st = load_generator(tmp_path / "g.safetensors", force_fp32=True)
    assert _same_weights(G_st, G) and G_st.synthesis.force_fp32
    ws = torch.randn(1, G.num_ws, G.w_dim)
    with torch.no_grad():
        torch.testing.assert_close(G_st.synthesis(ws), G.synthesis(ws))


@pytest.mark.parametrize("name", ["sg3-t-1024", "sg3-r-1024"])
def test_config_inference_recovers_official_1024_configs(name):
    spec = BUILTIN_GENERATORS[name].init_kwargs
    G = Generator(**spec)
    config = infer_generator_config(G.state_dict())
    for key in ["z_dim", "w_dim", "img_resolution", "channel_base", "channel_max", "mapping_kwargs"]:
        assert config[key] == spec[key], key
    assert config.get("conv_kernel", 3) == spec.get("conv_kernel", 3)
    assert config.get("use_radial_filters", False) == spec.get("use_radial_filters", False)
    assert G.num_ws == 16


def test_state_dict_roundtrip_and_wrapped_state_dict(tmp_path, small):
    assert _same_weights(generator_from_state_dict(small.state_dict()), small)
    torch.save({"G_ema": small.state_dict()}, tmp_path / "wrapped.pt")
    assert _same_weights(load_generator(tmp_path / "wrapped.pt"), small)


# -- safety ---------------------------------------------------------------------------------------------------------

class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickle_with_shell_command_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"G_ema": _Evil(marker)}, protocol=4))
    with pytest.raises(UserError, match=r"refusing .*system"):
        load_generator(tmp_path / "evil.pkl")
    assert not marker.exists()


def test_pt_file_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"G_ema": _Evil(marker)}, tmp_path / "evil.pt")
    with pytest.raises(UserError):
        load_generator(tmp_path / "evil.pt")
    assert not marker.exists()


# -- bad input -------------------------------------------------------------------------------------------------------

def test_missing_file_or_unknown_name(tmp_path):
    with pytest.raises(UserError, match="neither a file nor a generator name.*sg3stream models list"):
        load_generator("no-such-generator")
    with pytest.raises(UserError, match="generator file not found"):
        load_generator(tmp_path / "g.pkl")


def test_truncated_and_corrupt_files(tmp_path, small):
    write_official_pickle(tmp_path / "g.pkl", {"G_ema": persistent_tree(small, "Generator", SMALL)})
    data = (tmp_path / "g.pkl").read_bytes()
    (tmp_path / "trunc.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_generator(tmp_path / "trunc.pkl")
    torch.save(small.state_dict(), tmp_path / "g.pt")
    data = (tmp_path / "g.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_generator(tmp_path / "trunc.pt")
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(UserError, match="empty or truncated"):
        load_generator(tmp_path / "empty.pkl")
    convert_generator("demo", tmp_path / "d.safetensors")
    data = (tmp_path / "d.safetensors").read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_generator(tmp_path / "trunc.safetensors")


def test_file_of_another_kind(tmp_path):
    (tmp_path / "image.pkl").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(UserError, match="not a file kind.*accepted"):
        load_generator(tmp_path / "image.pkl")


def test_pickle_without_g_ema(tmp_path):
    (tmp_path / "d.pkl").write_bytes(pickle.dumps({"D": None, "training_set_kwargs": None}, protocol=4))
    with pytest.raises(UserError, match="no 'G_ema'"):
        load_generator(tmp_path / "d.pkl")


def test_state_dict_with_missing_or_unexpected_keys(tmp_path, small):
    state = small.state_dict()
    dropped = f"synthesis.{small.synthesis.layer_names[1]}.affine.bias"
    torch.save({k: v for k, v in state.items() if k != dropped}, tmp_path / "missing.pt")
    with pytest.raises(UserError, match=f"missing keys .*{dropped}"):
        load_generator(tmp_path / "missing.pt")
    torch.save(dict(state, **{"synthesis.extra": torch.zeros(1)}), tmp_path / "extra.pt")
    with pytest.raises(UserError, match="unexpected keys .*synthesis.extra"):
        load_generator(tmp_path / "extra.pt")
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a StyleGAN3 generator"):
        load_generator(tmp_path / "other.pt")


def _stylegan2_like():
    synthesis = torch.nn.Module()
    synthesis.b4 = torch.nn.Module()
    synthesis.b4.const = torch.nn.Parameter(torch.zeros(8, 4, 4))
    G = torch.nn.Module()
    G.mapping = torch.nn.Module()
    G.mapping.fc0 = torch.nn.Linear(8, 8)
    G.synthesis = synthesis
    return G


def test_stylegan2_pickle_and_state_dict_are_refused(tmp_path):
    G2 = _stylegan2_like()
    write_official_pickle(tmp_path / "sg2.pkl", {"G_ema": persistent_tree(G2, "Generator", {"z_dim": 8})})
    with pytest.raises(UserError, match="StyleGAN2"):
        load_generator(tmp_path / "sg2.pkl")
    torch.save(G2.state_dict(), tmp_path / "sg2.pt")
    with pytest.raises(UserError, match="StyleGAN2"):
        load_generator(tmp_path / "sg2.pt")


# -- generate command ------------------------------------------------------------------------------------------------

def test_generate_command(tmp_path, small):
    from sg3stream.cli.app import app
    import sg3stream.cli.generate  # noqa: F401  (registers the command)

    convert_generator_path = tmp_path / "small.pt"
    torch.save(small.state_dict(), convert_generator_path)
    result = CliRunner().invoke(app, ["generate", "--generator", str(convert_generator_path), "--seeds", "0-2,5",
                                      "--trunc", "0.7", "--rotate", "10", "--translate", "0.1,-0.05",
                                      "--outdir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "seed0000.png", "seed0001.png", "seed0002.png", "seed0005.png"]
    bad = CliRunner().invoke(app, ["generate", "--translate", "1", "--outdir", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "X,Y" in bad.output


# -- bench ------------------------------------------------------------------------------------------------------------

def test_bench_synthesis_reports_images_per_s_and_naive_ratio(tmp_path, small):
    from sg3stream.bench.generator import bench_synthesis

    torch.save(small.state_dict(), tmp_path / "small.pt")
    rows = bench_synthesis(str(tmp_path / "small.pt"), batch_sizes=(1, 2), time_budget_s=30, repeats=1)
    assert [r["batch_size"] for r in rows] == [1, 2]
    for r in rows:
        assert r["images_per_s"] > 0 and r["naive_images_per_s"] > 0 and r["speedup_vs_naive"] > 0
    skipped = bench_synthesis(str(tmp_path / "small.pt"), batch_sizes=(1, 10 ** 6), time_budget_s=0.0, repeats=1,
                              compare_naive=False)
    assert skipped[1]["skipped"] and "budget" in skipped[1]["reason"]


# -- the demo says it is the demo (issue 13, item 12) -----------------------------------------------------------------

def _demo_warnings(caplog):
    return [r for r in caplog.records if r.name.startswith("sg3stream") and r.levelname == "WARNING"
            and "demo model" in r.getMessage()]


def test_the_python_api_warns_once_when_it_loads_the_demo(caplog, tmp_path, small):
    from sg3stream.models import load_encoder

    caplog.set_level("WARNING", logger="sg3stream")
    for load in (lambda: load_generator("demo"), lambda: load_encoder("demo"),
                 lambda: load_encoder("demo", generator="demo")):
        caplog.clear()
        load()
        (record,) = _demo_warnings(caplog)
        assert "fixed-seed random weights" in record.getMessage() and "not real results" in record.getMessage()
    caplog.clear()
    torch.save(small.state_dict(), tmp_path / "small.pt")
    load_generator(tmp_path / "small.pt")
    assert _demo_warnings(caplog) == []


def test_a_run_on_the_demo_warns_once(caplog):
    from sg3stream.models.bundle import Models

    caplog.set_level("WARNING", logger="sg3stream")
    for models in (Models(device="cpu"), Models(device="cpu", generator="demo")):
        caplog.clear()
        models.encoder()
        assert len(_demo_warnings(caplog)) == 1, [r.getMessage() for r in caplog.records]
