"""bench/device_check.py on the CPU: the dry run, the budget (with a fake clock), the wheel choice per Python, the
junit counts and the README summary rendered from a sample results file. The GPU parts themselves run only on a GPU
machine."""
import json

import pytest

from sg3stream.bench import device_check as dc


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_dry_run_passes_on_the_cpu_and_lists_at_most_64_mib(tmp_path, capsys):
    bundle = tmp_path / "bundle"
    (bundle / "wheels").mkdir(parents=True)
    (bundle / "wheels" / "av-18.1.0-cp311-abi3-manylinux_2_28_x86_64.whl").write_bytes(b"x" * 1000)
    (bundle / "landmarks.npz").write_bytes(b"y" * 500)
    assert dc.main(["--dry-run", "--bundle", str(bundle), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["prepared"] and report["fits"]
    assert report["total_bytes"] == report["tree_bytes"] + 1500 <= 64 * 2**20
    assert dict(report["files"]) == {"wheels/av-18.1.0-cp311-abi3-manylinux_2_28_x86_64.whl": 1000,
                                     "landmarks.npz": 500}
    assert not report["missing_test_files"]
    # unprepared: still exits 0 and says how to prepare
    assert dc.main(["--dry-run", "--bundle", str(tmp_path / "absent")]) == 0
    assert "not prepared" in capsys.readouterr().out


def test_dry_run_refuses_a_bundle_over_the_limit(tmp_path, monkeypatch):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "big.bin").write_bytes(b"z" * 2000)
    monkeypatch.setattr(dc, "CARRY_LIMIT_BYTES", 1000)
    report, status = dc.dry_run(bundle)
    assert status == 1 and not report["fits"]


def test_the_budget_skips_what_does_not_fit_and_stops_what_overruns(tmp_path):
    clock = FakeClock()
    budget = dc.Budget(100, clock=clock)
    parts = [dc.Part("a", cap_s=30, min_s=10, doc=""), dc.Part("b", cap_s=60, min_s=20, doc=""),
             dc.Part("c", cap_s=50, min_s=30, doc=""), dc.Part("d", cap_s=10, min_s=5, doc=""),
             dc.Part("e", cap_s=10, min_s=1, doc="")]
    granted, saved = {}, []

    def run_part(part, seconds):
        granted[part.name] = seconds
        if part.name == "b":  # runs its whole grant and is stopped
            clock.now += seconds
            raise dc.PartTimeout(f"stopped after {seconds:.0f} s")
        if part.name == "d":
            clock.now += 4
            raise RuntimeError("broken part")
        clock.now += 25
        return {"result": {"x": 1}}

    results = dc.run_parts(parts, budget, run_part, lambda r: saved.append(json.loads(json.dumps(r))))
    p = results["parts"]
    # a: 100 s left, capped at 30; b: 75 left, capped at 60; c: 15 left, needs 30; d: 15 left, capped at 10;
    # e: 11 left, capped at 10
    assert granted == {"a": 30, "b": 60, "d": 10, "e": 10}
    assert p["a"]["status"] == "ok" and p["a"]["seconds"] == 25 and p["a"]["result"] == {"x": 1}
    assert p["b"]["status"] == "timed_out" and p["b"]["granted_s"] == 60
    assert p["c"]["status"] == "skipped" and "15 s left" in p["c"]["reason"]
    assert p["d"]["status"] == "failed" and "broken part" in p["d"]["reason"]
    assert p["e"]["status"] == "ok"
    assert budget.left() == -14  # the fake part e took 25 s of its 10 (a real one is stopped at its grant)
    assert len(saved) == len(parts)  # the results file is rewritten after every part
    assert list(saved[0]["parts"]) == ["a"]


def test_the_budget_grants_no_more_than_is_left():
    clock = FakeClock()
    budget = dc.Budget(50, clock=clock)
    part = dc.Part("p", cap_s=40, min_s=20, doc="")
    assert budget.grant(part) == 40
    clock.now += 20
    assert budget.grant(part) == 30
    clock.now += 11
    assert budget.grant(part) is None


def test_the_wheels_for_this_python_are_chosen_by_tag(tmp_path):
    names = ["av-18.1.0-cp311-abi3-manylinux_2_28_x86_64.whl", "scenedetect-0.6.7.1-py3-none-any.whl",
             "siphash24-1.9-cp311-cp311-manylinux_2_17_x86_64.whl",
             "siphash24-1.9-cp312-cp312-manylinux_2_17_x86_64.whl", "pycuda-2026.1-cp312-cp312-linux_x86_64.whl"]
    wheels = [tmp_path / n for n in names]
    on_312 = sorted(w.name for w in dc.wheels_for_this_python(wheels, "cp312"))
    assert on_312 == sorted([names[0], names[1], names[3], names[4]])
    on_311 = sorted(w.name for w in dc.wheels_for_this_python(wheels, "cp311"))
    assert on_311 == sorted([names[0], names[1], names[2]])  # no pycuda wheel: the sdist is built there
    assert dc.python_tag("3.12.3") == "cp312"


def test_junit_counts(tmp_path):
    junit = tmp_path / "j.xml"
    junit.write_text("""<testsuites><testsuite>
      <testcase classname="tests.test_kernels_gpu" name="test_a"/>
      <testcase classname="tests.test_kernels_gpu" name="test_b">
        <skipped message="needs a CUDA device and pycuda"/></testcase>
      <testcase classname="tests.test_kernels_gpu" name="test_c">
        <skipped message="needs a CUDA device and pycuda"/></testcase>
      <testcase classname="tests.test_video_io" name="test_d"><failure message="assert False&#10;more"/></testcase>
    </testsuite></testsuites>""")
    counts = dc.junit_counts(junit)
    assert (counts["passed"], counts["failed"], counts["skipped"], counts["errors"]) == (1, 1, 2, 0)
    assert counts["skip_reasons"] == {"needs a CUDA device and pycuda": 2}
    assert counts["failures"] == ["tests.test_video_io::test_d: assert False"]


SAMPLE_RESULTS = {
    "started": "2026-12-01 10:00:00", "budget_s": 420,
    "machine": {"gpu": "NVIDIA H200", "torch": "2.11.0+cu130", "python": "3.12.3"},
    "parts": {
        "setup": {"status": "ok", "seconds": 8.1},
        "pycuda": {"status": "not_needed", "reason": "a carried pycuda wheel fits this Python"},
        "tests": {"status": "ok", "result": {"tests": {"passed": 58, "failed": 0, "errors": 0, "skipped": 1,
                                                        "failures": [], "skip_reasons": {"no nvcc": 1}}}},
        "video": {"status": "ok", "result": {"encode_h264_nvenc_fps": 410.0, "encode_h264_nvenc_psnr_db": 41.2,
                                             "encode_libx264_fps": 95.0, "encode_libx264_psnr_db": 43.0,
                                             "decode_cuda_fps": 520.0, "decode_none_fps": 240.0}},
        "synthesis": {"status": "ok", "result": {"rows": [
            {"ops": "cuda", "precision": "fp16", "batch_size": 8, "images_per_s": 150.5},
            {"ops": "torch", "precision": "fp32", "skipped": True, "reason": "time budget"}]}},
        "inversion": {"status": "ok", "result": {"rows": [{"engine": "torch", "batch": 8, "fps": 900.0}]}},
        "pti": {"status": "ok", "result": {"rows": [{"config": "sg3-r-1024", "ops": "cuda", "batch_size": 4,
                                                     "steps_per_s": 6.25, "peak_memory_gib": 21.5}]}},
        "run": {"status": "timed_out", "reason": "stopped after 150 s", "result": {
            "replayed": ["landmarks"], "streaming": {"end_to_end_fps": 48.2, "gpu": {
                "available": True, "utilisation_mean_percent": 91.0}}}},
        "compile": {"status": "skipped", "reason": "time budget: 20 s left, the part needs at least 60 s"},
    },
}


def test_the_summary_table_is_rendered_from_a_results_file(tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(SAMPLE_RESULTS))
    assert dc.main(["--summary", str(path)]) == 0
    table = capsys.readouterr().out
    assert table.startswith("GPU check (NVIDIA H200, torch 2.11.0+cu130, Python 3.12.3, 2026-12-01 10:00:00):")
    lines = table.splitlines()
    assert "| part | what | figure |" in lines
    expected = [
        "| tests | GPU tests | 58 passed, 0 failed, 1 skipped — skipped: no nvcc (1) |",
        "| video | encode 1080p, h264_nvenc | 410 frames/s, 41.2 dB |",
        "| video | decode 1080p, hwdec cuda | 520 frames/s |",
        "| synthesis | sg3-r-1024, cuda ops, fp16, batch 8 | 150.5 images/s |",
        "| synthesis | sg3-r-1024, torch ops, fp32 | not run: time budget |",
        "| inversion | encoder (torch), batch 8 | 900.0 frames/s |",
        "| pti | PTI sg3-r-1024, cuda ops, batch 4 | 6.25 steps/s, 21.5 GiB |",
        "| run | timed out | stopped after 150 s |",
        "| run | main job 1080p sg3-r-1024, streaming | 48.2 frames/s, GPU busy 91% |",
        "| run | replayed from the CPU | landmarks |",
        "| compile | skipped | time budget: 20 s left, the part needs at least 60 s |",
    ]
    assert [row for row in expected if row not in lines] == []
    assert all(line.count("|") == 4 for line in lines[2:])  # every row has three cells
