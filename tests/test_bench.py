import json

from typer.testing import CliRunner

from sg3stream.cli import app


def bench(*args):
    result = CliRunner().invoke(app, ["bench", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_bench_json_reports_stages_and_end_to_end():
    report = json.loads(bench("--json", "--sections", "pipeline", "--frames", "12", "--sizes", "480p"))
    (clip,) = report["pipeline"]
    assert clip["frames"] == 12 and clip["end_to_end_fps"] > 0
    assert [s["name"] for s in clip["stages"]] == ["decode", "encode"]
    assert all(s["frames_per_s"] > 0 and 0 <= s["busy_fraction"] <= 1 for s in clip["stages"])


def test_bench_of_the_main_job_covers_every_stage():
    report = json.loads(bench("--json", "--sections", "run", "--frames", "8", "--sizes", "480p"))
    for mode in ("streaming", "reference"):
        run = report["run"][mode]
        assert run["frames"] == 8 and run["end_to_end_fps"] > 0 and run["mode"] == mode
        assert [s["name"] for s in run["stages"]] == ["decode", "landmarks", "align", "invert", "smooth", "edit",
                                                      "render", "paste", "encode"]
    ratio = report["run"]["speedup_vs_reference"]
    assert ratio == report["run"]["streaming"]["end_to_end_fps"] / report["run"]["reference"]["end_to_end_fps"]


def test_bench_table():
    output = bench("--sections", "pipeline", "--frames", "8", "--sizes", "480p")
    assert "end to end" in output and "decode" in output


def test_bench_refuses_unknown_sections():
    result = CliRunner().invoke(app, ["bench", "--sections", "nope"])
    assert result.exit_code == 1
