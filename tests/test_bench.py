import json

from typer.testing import CliRunner

from sg3stream.cli import app


def test_bench_json_reports_stages_and_end_to_end():
    result = CliRunner().invoke(app, ["bench", "--json", "--frames", "12", "--sizes", "480p"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    (clip,) = report["pipeline"]
    assert clip["frames"] == 12 and clip["end_to_end_fps"] > 0
    assert [s["name"] for s in clip["stages"]] == ["decode", "encode"]
    assert all(s["frames_per_s"] > 0 and 0 <= s["busy_fraction"] <= 1 for s in clip["stages"])


def test_bench_table():
    result = CliRunner().invoke(app, ["bench", "--frames", "8", "--sizes", "480p"])
    assert result.exit_code == 0, result.output
    assert "end to end" in result.output and "decode" in result.output
