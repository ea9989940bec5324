import json

import numpy as np
import pytest
from rich.console import Console
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
        assert [s["name"] for s in run["stages"]] == ["decode", "shots", "landmarks", "track", "align", "redecode-crop",
                                                      "crop", "invert", "smooth", "edit", "render", "redecode",
                                                      "paste", "encode"]
        assert run["gpu"]["available"] or run["gpu"]["reason"]  # GPU figures, or why there are none
        assert run["acceleration"] == {"hw_decoding": False, "codec": "libx264", "device": "cpu", "compiled": False,
                                       "ops": "torch", "engine": "torch",  # what this CPU can run
                                       "ops_choice": {"ops": {"upfirdn2d": "torch", "bias_act": "torch",
                                                              "filtered_lrelu": "torch"}, "reason": "cpu"}}
        # one face in every frame: as many faces as frames, so faces/s is frames/s, for the run and per face stage
        assert run["faces_inverted"] == run["frames"] and run["faces_per_s"] == pytest.approx(run["end_to_end_fps"])
        per_face = {s["name"]: s for s in run["stages"] if s["faces"] is not None}
        assert set(per_face) == {"invert", "smooth", "edit", "render", "paste"}
        assert all(s["faces"] == 8 and s["faces_per_s"] == pytest.approx(s["frames_per_s"]) for s in per_face.values())
    assert "short clip" in report["run"]["note"]  # 8 frames cannot show the overlap: the report says so
    ratio = report["run"]["speedup_vs_reference"]
    assert ratio == report["run"]["streaming"]["end_to_end_fps"] / report["run"]["reference"]["end_to_end_fps"]


def test_two_faces_give_twice_the_faces_per_second_of_the_frames(tmp_path):
    """A clip with two faces in every frame: the run inverts, renders and pastes 2 faces a frame, and says so."""
    from sg3stream.cli.bench import print_report
    from sg3stream.job import RunOptions, run_video
    from sg3stream.report import Reporter
    from sg3stream.synthetic import faces_frames, write_clip

    clip = write_clip(tmp_path / "two.mp4", faces_frames(6, 320, 240, faces=2), fps=25, audio=None)
    options = RunOptions(input=clip, output=tmp_path / "out.mp4", edits=["smile"], n_iters=1, landmark_workers=1,
                         batch_size=4, demo_label=False)
    summary = run_video(options, Reporter())
    assert summary["frames"] == 6 and summary["faces_inverted"] == 12
    assert summary["faces_per_s"] == pytest.approx(2 * summary["fps"])
    per_face = {s["name"]: s for s in summary["stages"] if s["faces"] is not None}
    assert {"invert", "render", "paste"} <= set(per_face)
    for s in per_face.values():
        assert s["faces"] == 12 and s["faces_per_s"] == pytest.approx(2 * s["frames_per_s"]), s
    assert all(s["faces_per_s"] is None for s in summary["stages"] if s["name"] in ("decode", "landmarks", "encode"))

    run = {"clip": "320x240, 2 faces", "generator": "demo", "acceleration": summary["acceleration"], "gpu": {},
           "frames": summary["frames"], "end_to_end_fps": summary["fps"], "faces_inverted": 12,
           "faces_per_s": summary["faces_per_s"], "stages": summary["stages"]}
    console = Console(record=True, width=200)
    print_report({"device": "cpu", "run": {"streaming": run, "reference": run, "speedup_vs_reference": 1.0}}, console)
    text = console.export_text()
    assert f"{summary['faces_per_s']:.2f} faces/s (12 faces in 6 frames)" in text and "faces/s" in text
    invert_row = next(line for line in text.splitlines() if "invert" in line)
    assert f"{per_face['invert']['faces_per_s']:.1f}" in invert_row


def test_the_two_face_clip_puts_each_face_where_it_says():
    from sg3stream.align.landmarks import LandmarkDetector
    from sg3stream.synthetic import face_places, faces_frames

    frames = list(faces_frames(6, 480, 270, faces=2, enters=(0, 3)))
    places = [face_places(i, 6, 480, 270, faces=2, enters=(0, 3)) for i in range(6)]
    assert [len(p) for p in places] == [1, 1, 1, 2, 2, 2]  # the second face enters at frame 3
    np.testing.assert_array_equal(frames[0], next(iter(faces_frames(1, 480, 270, faces=2, enters=(0, 3)))))
    detector = LandmarkDetector(max_faces=2)
    try:
        for i in (0, 5):
            landmarks, _ = detector.detect_chunk(frames[i][None])
            found = [face.mean(axis=0) for face in landmarks[0] if np.isfinite(face).all()]
            assert len(found) == len(places[i]), i
            for place in places[i]:  # each reported face has a detected face centred within 5% of its size
                nearest = min(np.hypot(*(c - place.centre)) for c in found)
                assert nearest < 0.05 * place.size, (i, place, found)
    finally:
        detector.close()
    # the faces move: each slot's centre follows its own path
    assert places[3][0].centre != places[5][0].centre and places[3][1].centre != places[5][1].centre


def test_bench_table():
    output = bench("--sections", "pipeline", "--frames", "8", "--sizes", "480p")
    assert "end to end" in output and "decode" in output


def test_bench_refuses_unknown_sections():
    result = CliRunner().invoke(app, ["bench", "--sections", "nope"])
    assert result.exit_code == 1


def test_gpu_monitor_summarises_the_samples_and_survives_a_failing_sampler():
    import threading
    import time

    from sg3stream.bench.gpu_monitor import GpuMonitor

    readings, calls, enough = [], [0], threading.Event()

    def sample():  # every third call fails; the others return made-up utilisation and used memory
        calls[0] += 1
        if calls[0] >= 12:
            enough.set()
        if calls[0] % 3 == 0:
            raise RuntimeError("NVML hiccup")
        reading = (float(calls[0] * 7 % 100), calls[0] * 2**28)
        readings.append(reading)
        return reading

    with GpuMonitor(sample, interval_s=0.001) as monitor:
        assert enough.wait(10)
    assert not monitor.running
    after_exit = calls[0]
    summary = monitor.summary()
    assert summary["available"] and summary["samples"] == len(readings) and summary["failed_samples"] == after_exit // 3
    assert summary["utilisation_mean_percent"] == sum(u for u, _ in readings) / len(readings)
    assert summary["utilisation_max_percent"] == max(u for u, _ in readings)
    assert summary["memory_max_used_gib"] == max(m for _, m in readings) / 2**30
    time.sleep(0.05)
    assert calls[0] == after_exit  # the thread has stopped sampling


def test_gpu_monitor_without_nvml_says_why(monkeypatch):
    import sys

    from sg3stream.bench.gpu_monitor import GpuMonitor

    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml now raises ImportError
    with GpuMonitor() as monitor:
        pass
    summary = monitor.summary()
    assert summary["available"] is False and "NVML" in summary["reason"]


def test_the_memory_bench_child_keeps_malloc_to_the_command_lines_heaps(monkeypatch, tmp_path):
    """The bench measures what `sg3stream run` does: its child limits the heaps before the job, as the CLI does."""
    import sg3stream.bench.memory as memory
    import sg3stream.job as job
    from sg3stream.pipeline import heap

    calls = []
    monkeypatch.setattr(heap, "limit_heaps", lambda count=heap.COMMAND_HEAPS: calls.append(("heaps", count)) or True)
    monkeypatch.setattr(job, "run_video", lambda options, reporter: calls.append("job") or
                        {"frames": 0, "faces_inverted": 0, "seconds": 0.0})
    memory._child([str(tmp_path / "in.mp4"), str(tmp_path / "out.mp4")])
    assert calls == [("heaps", heap.COMMAND_HEAPS), "job"]


def test_peak_memory_does_not_grow_with_the_clip_length():
    from sg3stream.bench.memory import bench_memory

    # One frame per batch, one batch per queue, a short smoothing look-ahead and the fixed crop (no crop smoothing
    # window) keep about 32 frames in flight, so that both clips are longer than that and the longer one only adds
    # frames that stream through (144 of them; 240 frames of model work in all). Measured: 2 MiB kept for every
    # frame fails the bound below (1035 MiB against 978); much smaller leaks hide in the noise.
    # Each length runs in a fresh child process of its own (its peak is its own ru_maxrss and its own workers'),
    # so the two are started side by side rather than one after the other: neither child keeps both cores busy.
    from concurrent.futures import ThreadPoolExecutor

    settings = dict(width=160, height=120, batch_size=1, queue_size=1, fine_window=4, n_iters=1, crop="fixed",
                    two_faces=False)  # (two faces: the test below)
    with ThreadPoolExecutor(2) as pool:
        (long,), (short,) = pool.map(lambda frames: bench_memory((frames,), **settings), (192, 48))
    assert (short["frames"], long["frames"]) == (48, 192)
    assert short["frames"] > long["frames_in_flight_max"], "the shorter clip does not fill the pipeline"
    # run-to-run noise of ru_maxrss (allocator, mediapipe) seen here: up to 50 MiB between two runs of one clip,
    # and 70 MiB between these two clips without any leak: hence the ratio as well
    slack_mib = 32
    assert long["peak_rss_mib"] <= 1.15 * short["peak_rss_mib"] + slack_mib, (short, long)
    assert 0 < long["workers_peak_rss_mib"] <= 1.15 * short["workers_peak_rss_mib"] + slack_mib, (short, long)


def test_the_memory_bench_puts_a_two_face_clip_beside_the_one_face_clip_of_its_length():
    from sg3stream.bench.memory import bench_memory
    from sg3stream.cli.bench import _print_memory

    rows = bench_memory((6,), 320, 240, batch_size=2, queue_size=1, fine_window=2, n_iters=1, crop="fixed")
    one, two = rows
    assert (one["faces"], two["faces"]) == (1, 2) and one["frames"] == two["frames"] == 6
    assert (one["faces_inverted"], two["faces_inverted"]) == (6, 12)  # both faces of every frame went through
    assert two["one_face_peak_rss_mib"] == one["peak_rss_mib"]
    assert two["peak_rss_vs_one_face"] == two["peak_rss_mib"] / one["peak_rss_mib"]
    console = Console(record=True, width=200)
    _print_memory(rows, console)
    (row,) = [line for line in console.export_text().splitlines() if line.startswith("│ 320x240 │ 2 ")]
    assert row.rstrip(" │").endswith(f"{two['peak_rss_vs_one_face']:.2f}")  # the two-face row, against one face


def test_the_eval_bench_times_eval_against_the_run_on_the_same_clip():
    from sg3stream.bench.eval_speed import bench_eval_speed

    report = bench_eval_speed(frames=8, width=320, height=240)
    assert report["clip"] == "320x240, 8 frames at 30 fps"
    assert report["run_s"] > 0 and report["eval_s"] > 0 and report["eval_from_artifacts_without_identity_s"] > 0
    assert report["eval_over_run"] == report["eval_s"] / report["run_s"]
