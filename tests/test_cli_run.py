"""`sg3stream run` and `probe` as a user meets them: outputs, logs, run.json, errors, interruption."""
import json
import os
import signal
import subprocess
import time

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from sg3stream.cli import app
from sg3stream.synthetic import numbered_frame, write_clip

from conftest import sg3stream_cmd


@pytest.fixture
def clip(tmp_path):
    return write_clip(tmp_path / "in.mp4", (numbered_frame(i, 96, 64) for i in range(40)), fps=30)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def count_frames(path):
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_run_writes_every_frame_audio_and_run_json(tmp_path, clip):
    out, art = tmp_path / "out.mp4", tmp_path / "art"
    result = invoke("run", "--passthrough", clip, "-o", out, "--artifacts", art, "--batch-size", "3", "--queue-size", "1")
    assert result.exit_code == 0, result.output
    assert count_frames(out) == 40
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 1
    report = json.loads((art / "run.json").read_text())
    assert report["frames"] == 40 and report["complete"]
    assert report["options"]["batch_size"] == 3
    assert [s["name"] for s in report["stages"]] == ["decode", "encode"]
    assert all(s["frames"] == 40 and 0 <= s["busy_fraction"] <= 1 for s in report["stages"])
    assert report["video"]["width"] == 96 and report["warnings"] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "in.mp4", "out.mp4"]


def test_json_logs_are_one_object_per_line(tmp_path, clip):
    result = subprocess.run(sg3stream_cmd("run", "--passthrough", str(clip), "-o", str(tmp_path / "o.mp4"), "--log-format", "json"),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0]["event"] == "start" and events[0]["total"] == 40
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and set(progress[-1]["busy"]) == {"decode", "encode"}
    assert events[-1]["event"] == "summary" and events[-1]["frames"] == 40
    assert {"decode", "encode"} == {s["name"] for s in events[-1]["stages"]}


def test_truncated_input_warns_in_json_and_run_json(tmp_path):
    clip = write_clip(tmp_path / "in.mkv", (numbered_frame(i, 64, 48) for i in range(60)))
    data = clip.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    result = invoke("run", "--passthrough", cut, "-o", tmp_path / "o.mp4", "--log-format", "json", "--artifacts", tmp_path / "a")
    assert result.exit_code == 0, result.output
    warnings = [json.loads(line)["message"] for line in result.stdout.splitlines()
                if json.loads(line)["event"] == "warning"]
    frames = count_frames(tmp_path / "o.mp4")
    assert 0 < frames < 60
    assert any("truncated" in w and f"read {frames} frames" in w for w in warnings)
    assert json.loads((tmp_path / "a" / "run.json").read_text())["warnings"] == warnings


def bad_inputs(tmp_path, clip):
    text = tmp_path / "notes.mp4"
    text.write_text("hello\n" * 50)
    return {
        "missing": (tmp_path / "missing.mp4", tmp_path / "o.mp4", "not found"),
        "not a video": (text, tmp_path / "o.mp4", "not a readable video"),
        "output is input": (clip, clip, "is the input"),
        "no output folder": (clip, tmp_path / "nope" / "o.mp4", "does not exist"),
        "unwritable folder": (clip, "/proc/o.mp4", "not writable"),
    }


@pytest.mark.parametrize("case", ["missing", "not a video", "output is input", "no output folder",
                                  "unwritable folder"])
def test_bad_input_is_one_clear_line_and_nothing_is_written(tmp_path, clip, case):
    source, output, message = bad_inputs(tmp_path, clip)[case]
    before = sorted(os.listdir(tmp_path))
    result = subprocess.run(sg3stream_cmd("run", "--passthrough", str(source), "-o", str(output)), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(tmp_path)) == before


def test_debug_shows_the_traceback(tmp_path):
    result = subprocess.run(sg3stream_cmd("run", "--passthrough", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o.mp4"),
                                          "--debug"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_cleanly_without_output(tmp_path, sig):
    clip = write_clip(tmp_path / "long.mp4", (numbered_frame(i, 320, 240) for i in range(400)), audio=None)
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen(sg3stream_cmd("run", "--passthrough", str(clip), "-o", str(out), "--log-format", "json",
                                          "--preset", "veryslow", "--batch-size", "2"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # wait until frames are flowing
        if json.loads(line)["event"] == "progress":
            break
    proc.send_signal(sig)
    start = time.monotonic()
    proc.wait(timeout=20)
    assert time.monotonic() - start < 10
    assert proc.returncode == 130
    assert "interrupted" in proc.stderr.read()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4"]  # no output, no temporary file


def test_probe_prints_what_the_file_holds(tmp_path):
    clip = write_clip(tmp_path / "rot.mp4", (numbered_frame(i, 64, 48) for i in range(12)), fps=24, rotation=90)
    result = invoke("probe", clip, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert (info["width"], info["height"], info["rotation"], info["frames"]) == (48, 64, 90, 12)
    assert info["fps"] == pytest.approx(24) and info["duration"] == pytest.approx(0.5, abs=0.05)
    assert [s["type"] for s in info["streams"]] == ["video", "audio"]
    text = invoke("probe", clip)
    assert text.exit_code == 0 and "rotation 90" in text.output and "aac" in text.output


def test_decord_decoder_gives_the_same_output(tmp_path, clip):
    outs = []
    for decoder in ("pyav", "decord"):
        out = tmp_path / f"{decoder}.mp4"
        assert invoke("run", "--passthrough", clip, "-o", out, "--decoder", decoder).exit_code == 0
        with av.open(str(out)) as c:
            outs.append(np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]))
    assert outs[0].shape == outs[1].shape
    assert np.abs(outs[0].astype(int) - outs[1].astype(int)).mean() < 2


def test_corrupted_bytes_never_give_a_traceback_or_a_partial_output(tmp_path):
    clip = write_clip(tmp_path / "in.mkv", (numbered_frame(i, 64, 48) for i in range(60)))
    data = bytearray(clip.read_bytes())
    rng = np.random.default_rng(1)
    middle = len(data) // 2
    data[middle:middle + 3000] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(bytes(data))
    out = tmp_path / "o.mp4"
    result = subprocess.run(sg3stream_cmd("run", "--passthrough", str(bad), "-o", str(out)), capture_output=True, text=True,
                            timeout=60)
    assert "Traceback" not in result.stderr
    if result.returncode == 0:
        assert 0 < count_frames(out) <= 60
    else:
        assert result.returncode == 1 and not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]
