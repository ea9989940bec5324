"""`sg3stream run` and `probe` as a user meets them: outputs, logs, run.json, errors, interruption."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


BAD_INPUT_CASES = ["missing", "not a video", "output is input", "no output folder", "unwritable folder"]


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory):
    """Each case's command, started all at once (each one a separate process in a folder of its own, mostly busy
    with its imports), and waited for: {case: (folder, its listing before the run, the message expected, the
    finished process)}."""
    started = {}
    try:
        for case in BAD_INPUT_CASES:
            folder = tmp_path_factory.mktemp("bad_input")
            clip = write_clip(folder / "in.mp4", (numbered_frame(i, 96, 64) for i in range(40)), fps=30)
            source, output, message = bad_inputs(folder, clip)[case]
            before = sorted(os.listdir(folder))
            proc = subprocess.Popen(sg3stream_cmd("run", "--passthrough", str(source), "-o", str(output)),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            started[case] = (folder, before, message, proc)
        runs = {}
        for case, (folder, before, message, proc) in started.items():
            out, err = proc.communicate(timeout=60)
            runs[case] = (folder, before, message, subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
        return runs
    finally:
        for *_, proc in started.values():
            proc.kill()  # only one that did not finish in time is still there


@pytest.mark.parametrize("case", BAD_INPUT_CASES)
def test_bad_input_is_one_clear_line_and_nothing_is_written(bad_input_runs, case):
    folder, before, message, result = bad_input_runs[case]
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(folder)) == before


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
    proc.wait(timeout=60)  # a deadline against a hang, not a speed check
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


# --- stops and hangs, through the real command ----------------------------------------------------------------
# `sg3stream run --passthrough` in a subprocess whose chain is replaced by stand-in stages (tests/test_runner.py
# holds the picklable ones), so that a signal or an error arrives while a named stage is busy. With --log-format json
# stderr holds nothing but the error line.

STAND_IN = """
import os, signal, sys, threading
sys.path.insert(0, sys.argv[1])
import torch
import sg3stream.job as job
from sg3stream.cli import main
from sg3stream.pipeline.contract import Chain
from sg3stream.pipeline.stage import Stage
from sg3stream.video.encode import VideoWriter
import test_runner

class TorchBusy(Stage):
    '''Inversion stand-in: torch at work on its own threads, in calls of seconds each, for ever.'''
    name = "invert"

    def __init__(self, signal_self=0, times=1):
        self.signal_self, self.times = signal_self, times
        self.busy = threading.Event()

    def __call__(self, batch):
        torch.set_num_threads(2)  # the abort at exit needs torch's worker threads busy
        a = torch.rand(1500, 1500)
        self.busy.set()
        if self.signal_self:
            os.kill(os.getpid(), self.signal_self)
            for k in range(1, self.times):  # again (an impatient user) while the run is stopping
                threading.Timer(0.4 * k, os.kill, (os.getpid(), self.signal_self)).start()
        while True:
            torch.linalg.matrix_power(a, 1 << 20)

def signal_in_commit(sig):
    '''The signal arrives in the middle of the final write (after the flush, as the container is closed).'''
    close = VideoWriter._close
    def patched(self):
        VideoWriter._close = close
        os.kill(os.getpid(), sig)
        close(self)
    VideoWriter._close = patched

kind, args = sys.argv[2], sys.argv[3:]
stages = []
if kind.startswith("busy-signal-"):
    sig, times = kind.split("-")[2:]
    stages = [TorchBusy(int(sig), int(times))]
elif kind == "busy-error":
    busy = TorchBusy()
    stages = [test_runner.FailWhenBusy(busy), busy]
elif kind == "stopped-worker":  # landmarks in a process that stops responding
    stages = [test_runner.ProcessStopsItself(frame=4)]
elif kind.startswith("commit-signal-"):
    signal_in_commit(int(kind.rsplit("-", 1)[1]))
job.build_chain = lambda options, parts, **kwargs: Chain.unchecked(stages)
sys.argv = ["sg3stream", *args]
main()
"""


def stand_in(kind, *args):
    return subprocess.Popen([sys.executable, "-c", STAND_IN, str(Path(__file__).parent), kind, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=90):
    """Wait for the end (the deadline only catches a hang) and return (exit code, stderr lines)."""
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    return proc.returncode, err.strip().splitlines()


def work_dir(tmp_path):
    """A folder holding only the input: after a failure nothing else may be in it."""
    folder = tmp_path / "work"
    folder.mkdir()
    write_clip(folder / "in.mp4", (numbered_frame(i, 96, 64) for i in range(40)), fps=30)
    return folder


def process_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def stopped_child(pid):
    """A child of `pid` in state T (stopped), or None. Each thread lists the children it started."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += (task / "children").read_text().split()
        except FileNotFoundError:
            pass
    return next((int(c) for c in children if process_state(c) == "T"), None)


@pytest.mark.parametrize("sig, times", [(signal.SIGTERM, 1), (signal.SIGINT, 1), (signal.SIGINT, 4)])
def test_a_signal_while_inversion_is_busy_in_torch_exits_130(tmp_path, sig, times):
    """Was: the runner waited 10 s for the busy thread, then the exit aborted (134, 'terminate called ...').
    Ctrl-C pressed again while the run stops must not cut its cleanup short."""
    folder = work_dir(tmp_path)
    code, err = finish(stand_in(f"busy-signal-{int(sig)}-{times}", "run", "--passthrough", folder / "in.mp4", "-o",
                                folder / "out.mp4", "--batch-size", "4", "--log-format", "json"))
    assert code == 130, err
    assert err == ["error: interrupted; nothing was written to the output path"]
    assert sorted(p.name for p in folder.iterdir()) == ["in.mp4"]


def test_a_stage_error_while_inversion_is_busy_in_torch_exits_1(tmp_path):
    folder = work_dir(tmp_path)
    code, err = finish(stand_in("busy-error", "run", "--passthrough", folder / "in.mp4", "-o", folder / "out.mp4",
                                "--batch-size", "4", "--log-format", "json"))
    assert code == 1, err
    assert len(err) == 1 and err[0].startswith("error: stage 'landmarks' failed") and "boom" in err[0], err
    assert sorted(p.name for p in folder.iterdir()) == ["in.mp4"]


def test_a_stopped_landmark_worker_fails_the_run_after_the_stall_timeout(tmp_path, monkeypatch):
    """Was: the run hung for ever at 0 frames."""
    import multiprocessing

    import sg3stream.job
    from sg3stream.pipeline.contract import Chain
    from test_runner import ProcessStopsItself

    folder = work_dir(tmp_path)
    monkeypatch.setattr(sg3stream.job, "build_chain",
                        lambda *args, **kwargs: Chain.unchecked([ProcessStopsItself(frame=4)]))
    result = invoke("run", "--passthrough", folder / "in.mp4", "-o", folder / "out.mp4", "--batch-size", "2",
                    "--stall-timeout", "3", "--log-format", "json")  # 3 s: longer than starting the pool
    assert result.exit_code == 1, result.output
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: stage 'landmarks' failed (frames 4-5)"), err
    assert "no progress for 3 s" in err[0] and "--stall-timeout" in err[0]
    assert json.loads(result.stdout.splitlines()[-1])["event"] == "error"
    assert multiprocessing.active_children() == []  # the stopped worker was killed
    assert sorted(p.name for p in folder.iterdir()) == ["in.mp4"]


def test_sigterm_ends_a_run_whose_landmark_worker_is_stopped(tmp_path):
    """No watchdog (--stall-timeout 0): a signal must still end the run. Was: a hang in the pool's shutdown."""
    folder = work_dir(tmp_path)
    proc = stand_in("stopped-worker", "run", "--passthrough", folder / "in.mp4", "-o", folder / "out.mp4",
                    "--batch-size", "2", "--stall-timeout", "0", "--log-format", "json")
    deadline = time.monotonic() + 60
    stopped = None
    try:
        while proc.poll() is None and stopped is None and time.monotonic() < deadline:
            stopped = stopped_child(proc.pid)
            time.sleep(0.05)
        assert stopped is not None, "the worker never stopped"
        proc.send_signal(signal.SIGTERM)
        code, err = finish(proc)
    finally:
        proc.kill()
        if stopped is not None and process_state(stopped) == "T":
            os.kill(stopped, signal.SIGKILL)  # the test failed: leave no stopped process behind
    assert code == 130, err
    assert err == ["error: interrupted; nothing was written to the output path"]
    assert process_state(stopped) in (None, "Z")
    assert sorted(p.name for p in folder.iterdir()) == ["in.mp4"]


def test_sigterm_during_the_final_write_removes_the_partial_file(tmp_path):
    """Was: killed with 143, the hidden .partial file left beside the output (Ctrl-C already went this way)."""
    folder = work_dir(tmp_path)
    code, err = finish(stand_in(f"commit-signal-{int(signal.SIGTERM)}", "run", "--passthrough", folder / "in.mp4",
                                "-o", folder / "out.mp4", "--log-format", "json"))
    assert code == 130, err
    assert err == ["error: interrupted; nothing was written to the output path"]
    assert sorted(p.name for p in folder.iterdir()) == ["in.mp4"]


def test_disk_full_at_the_final_write_is_one_line_and_an_error_event(tmp_path, monkeypatch):
    """Was: a 46-line traceback and no `error` event. The container's index is written as it is closed."""
    import errno

    from sg3stream.video.encode import VideoWriter

    folder = work_dir(tmp_path)
    close = VideoWriter._close

    def full(self):
        close(self)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(VideoWriter, "_close", full)
    result = invoke("run", "--passthrough", folder / "in.mp4", "-o", folder / "out.mp4", "--log-format", "json")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "No space left on device" in lines[0], lines
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["event"] == "error" and "No space left on device" in events[-1]["message"]
    assert sorted(p.name for p in folder.iterdir()) == ["in.mp4"]


@pytest.mark.parametrize("debug", [False, True])
def test_an_unexpected_error_is_one_line_and_exit_1(debug, capsys):
    """Any exception, not only ours, ends as `error: ...` and exit 1; the traceback only with --debug."""
    import typer

    from sg3stream.cli.common import reported_errors
    from sg3stream.report import JsonReporter

    with pytest.raises(typer.Exit) as info:
        with reported_errors(JsonReporter(), debug=debug):
            raise MemoryError("cannot allocate 16 GB\nfor a tensor")
    assert info.value.exit_code == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["event"] == "error" and "MemoryError: cannot allocate 16 GB" in json.loads(out)["message"]
    error_lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and "MemoryError" in error_lines[0]
    assert ("Traceback" in err) == debug
    if not debug:
        assert len(err.strip().splitlines()) == 1


def test_typer_exits_and_usage_errors_pass_through():
    import typer

    from sg3stream.cli.common import reported_errors

    with pytest.raises(typer.Exit) as info:
        with reported_errors():
            raise typer.Exit(2)
    assert info.value.exit_code == 2
