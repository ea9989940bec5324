"""Everything to run on a lent GPU machine (one H100 or H200, minutes of device time), as one command.

    python bench/device_check.py --prepare [--bundle DIR]     on the CPU, here: build the bundle to carry
    python bench/device_check.py --dry-run [--bundle DIR]     what would travel, with sizes; CPU checks; exits 0
    python bench/device_check.py [--out results.json] [--budget-s 420] [--bundle DIR]    on the GPU machine

The bundle (default build/gpu-check, ignored by git: carry it by name) holds what the GPU machine's image lacks:
- wheels/: PyAV (one abi3 wheel for every CPython from 3.11: decoding, encoding, NVDEC, NVENC), PySceneDetect and
  platformdirs (the shots stage), pycuda's pure-Python needs (pytools, mako, platformdirs) and siphash24 (binary:
  one wheel per Python version, the matching one is picked at run time), pycuda itself as a wheel for the Python
  versions it was built for here (`--pycuda-python`) and as its sdist, built on the GPU machine when no wheel
  matches (minutes: its own part of the budget);
- a generated 1080p face clip and the mediapipe landmarks and shot cuts computed on it here (landmarks.npz):
  mediapipe does not install there, so the end-to-end run replays the landmarks (the `landmarks` stage reads them
  by frame number instead of running the face mesh; everything else is the real chain, shots included when
  PySceneDetect installs). What the landmarks cost on a CPU is measured here and written to the manifest.
- manifest.json: what each file is, its size, the Python versions the binary wheels are for.

On the GPU machine each part runs in its own process with a time limit taken from one budget (`--budget-s`,
default 420 s, under 8 minutes with the machine's start): a part that does not fit in what is left is skipped
with the reason, one that overruns is stopped, and the results file is rewritten after every part, so an
interrupted check still leaves what it measured. Exit status: 0 every part that ran passed; 1 a part failed or
timed out (or, with --dry-run / --prepare, the bundle is over the limit or could not be made); 2 usage errors.

Parts, in order: setup (install the wheels), pycuda (build from the sdist only when needed), tests (pytest on the
GPU tests: kernels against the torch ops and gradcheck, NVDEC against the CPU decoder, CUDA graphs), video (NVENC
and NVDEC at 1080p), synthesis (sg3-r-1024, CUDA kernels and torch ops, fp16 and fp32, batch 1 and 8), inversion,
pti, run (the main job at 1080p with sg3-r-1024, streaming and reference mode), compile (torch.compile with CUDA
graphs, batch 8). The markdown summary for the README is printed at the end, and by `--summary results.json`.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: `sg3stream` from this checkout
    sys.path.insert(0, str(REPO))

DEFAULT_BUNDLE = REPO / "build" / "gpu-check"  # build/ is ignored by git: the bundle is carried, never committed
CARRY_LIMIT_BYTES = 64 * 2**20  # the device tool's limit on the tree and the carried paths together
SITE = Path(tempfile.gettempdir()) / "sg3stream-gpu-site"  # where the carried wheels are installed
DEFAULT_BUDGET_S = 420.0
CONFIG = "sg3-r-1024"  # random weights: speed does not depend on them
CLIP_SIZE = (1920, 1080)
CLIP_FRAMES = 240
CLIP_FPS = 30

# What the GPU machine's image lacks (it has torch with CUDA, numpy, scipy, opencv, typer, rich, onnx, onnxruntime).
AV_REQUIREMENT = "av==18.1.0"  # cp311-abi3: one wheel for CPython 3.11 and later
PURE_REQUIREMENTS = ("scenedetect==0.6.7.1", "platformdirs==4.14.9", "pytools==2026.1.1", "mako==1.4.3")
PER_PYTHON_REQUIREMENTS = ("siphash24==1.9",)  # pytools needs it
PYCUDA_REQUIREMENT = "pycuda==2026.1"
PYTHON_VERSIONS = ("3.11", "3.12", "3.13")  # the device's is not known in advance (3.12 was seen there)
MANYLINUX = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")

GPU_TESTS = ("tests/test_kernels_gpu.py",)  # needs pycuda (skips without it)
GPU_TESTS_WITH_PYAV = ("tests/test_video_io.py::test_gpu_decoding_gives_the_cpu_decoders_frames",
                       "tests/test_compiled_synthesis.py::test_cuda_graphs_render_the_eager_images")


@dataclass(frozen=True)
class Part:
    name: str
    cap_s: float  # the most it may take
    min_s: float  # the least worth starting it with
    doc: str


PARTS = (
    Part("setup", 60, 5, "install the carried wheels"),
    Part("pycuda", 240, 150, "build pycuda from its sdist (only where no carried wheel fits this Python)"),
    Part("tests", 150, 40, "pytest on the GPU tests"),
    Part("video", 40, 15, "NVENC and NVDEC at 1080p"),
    Part("synthesis", 110, 30, f"{CONFIG} synthesis: auto / kernels / torch ops, fp16 / fp32, batch 1 / 8"),
    Part("inversion", 40, 15, "ReStyle encoder, batch 1 / 8 / 32"),
    Part("pti", 60, 25, f"PTI steps on {CONFIG}, kernels / torch ops"),
    Part("run", 150, 70, f"main job, 1080p, {CONFIG}, streaming and reference mode"),
    Part("compile", 120, 60, f"{CONFIG} synthesis through torch.compile (CUDA graphs), batch 8"),
)


class PartTimeout(Exception):
    """A part ran past its share of the budget and was stopped."""


class Budget:
    """Seconds left of the whole check; `clock` is replaceable (tests use a fake one)."""

    def __init__(self, total_s: float, clock: Callable[[], float] = time.monotonic):
        self.total_s = float(total_s)
        self.clock = clock
        self.started = clock()

    def left(self) -> float:
        return self.total_s - (self.clock() - self.started)

    def grant(self, part: Part) -> float | None:
        """Seconds the part may take, or None when what is left is below its minimum."""
        left = self.left()
        return None if left < part.min_s else min(part.cap_s, left)


# ---------------------------------------------------------------------------------------------------------- the check

def run_parts(parts, budget: Budget, run_part: Callable[[Part, float], dict], save: Callable[[dict], None],
              results: dict | None = None) -> dict:
    """Run each part with its grant of the budget; skip what does not fit, stop what overruns; save after each."""
    results = results if results is not None else {}
    results.setdefault("parts", {})
    for part in parts:
        granted = budget.grant(part)
        if granted is None:
            results["parts"][part.name] = {"status": "skipped", "reason": f"time budget: {max(budget.left(), 0):.0f} s "
                                           f"left, the part needs at least {part.min_s:.0f} s"}
            save(results)
            continue
        started = budget.clock()
        entry: dict = {"granted_s": round(granted, 1)}
        try:
            outcome = run_part(part, granted) or {}
            entry.update(outcome)
            entry.setdefault("status", "ok")
        except PartTimeout as e:
            entry.update(status="timed_out", reason=str(e), **getattr(e, "partial", {}))
        except Exception as e:  # a broken part must not cost the others their turn
            entry.update(status="failed", reason=f"{type(e).__name__}: {e}")
        entry["seconds"] = round(budget.clock() - started, 1)
        results["parts"][part.name] = entry
        save(results)
    return results


def run_check(bundle: Path, out: Path, budget_s: float) -> int:
    budget = Budget(budget_s)
    results = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "budget_s": budget_s, "machine": machine(),
               "bundle": bundle_summary(bundle)}

    def save(r: dict) -> None:
        r["elapsed_s"] = round(budget.total_s - budget.left(), 1)
        write_json(out, r)

    def run_part(part: Part, seconds: float) -> dict:
        if part.name == "setup":
            return setup_site(bundle, seconds)
        if part.name == "pycuda":
            return build_pycuda(bundle, seconds, results["parts"].get("setup", {}))
        return run_child(part.name, bundle, seconds)

    run_parts(PARTS, budget, run_part, save, results)
    print(summary_markdown(results))
    print(f"\nresults: {out}")
    failed = [n for n, p in results["parts"].items() if p["status"] in ("failed", "timed_out")]
    return 1 if failed else 0


def machine() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        import torch

        info.update(torch=torch.__version__, cuda=torch.version.cuda, gpu=torch.cuda.get_device_name(0)
                    if torch.cuda.is_available() else None)
    except Exception as e:  # the check still reports what it can
        info["torch_error"] = f"{type(e).__name__}: {e}"
    return info


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def python_tag(version: str | None = None) -> str:
    major, minor = (version or platform.python_version()).split(".")[:2]
    return f"cp{major}{minor}"


def wheels_for_this_python(wheels: list[Path], tag: str) -> list[Path]:
    """The carried wheels this interpreter can install: pure ones, abi3 ones for an older or equal CPython, and
    binary ones of exactly this version; one per project (pycuda's sdist is handled apart)."""
    version = int(tag[2:])
    chosen: dict[str, Path] = {}
    for wheel in sorted(wheels):
        fields = wheel.stem.split("-")  # name-version[-build]-python-abi-platform
        name, py, abi = fields[0].lower(), fields[-3], fields[-2]
        if py.startswith("py3") or (abi == "abi3" and int(py[2:]) <= version) or py == tag:
            chosen.setdefault(name, wheel)
    return list(chosen.values())


def setup_site(bundle: Path, seconds: float) -> dict:
    """pip-install the carried wheels that fit this Python into SITE (no index, no network)."""
    tag = python_tag()
    wheels = wheels_for_this_python(list((bundle / "wheels").glob("*.whl")), tag)
    result = {"python": platform.python_version(), "site": str(SITE), "wheels": [w.name for w in wheels]}
    if not wheels:
        return dict(result, status="failed", reason=f"no carried wheel in {bundle / 'wheels'} (run --prepare)")
    shutil.rmtree(SITE, ignore_errors=True)
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--no-cache-dir", "--target", str(SITE), *map(str, wheels)]
    done = run_command(command, seconds)
    result["pycuda_wheel"] = any(w.name.startswith("pycuda-") for w in wheels)
    if done.returncode != 0:
        return dict(result, status="failed", reason=done.stdout[-2000:])
    return result


def build_pycuda(bundle: Path, seconds: float, setup: dict) -> dict:
    """Build pycuda from the carried sdist with this machine's nvcc, when no carried wheel fitted."""
    if setup.get("pycuda_wheel"):
        return {"status": "not_needed", "reason": "a carried pycuda wheel fits this Python"}
    sdists = sorted((bundle / "wheels").glob("pycuda-*.tar.gz"))
    if not sdists:
        return {"status": "failed", "reason": "no pycuda wheel for this Python and no sdist carried"}
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return {"status": "failed", "reason": "nvcc is not on the PATH"}
    work = Path(tempfile.mkdtemp(prefix="pycuda-build-"))
    shutil.unpack_archive(str(sdists[0]), str(work))
    source = next(p for p in work.iterdir() if p.is_dir())
    cuda_root = Path(nvcc).resolve().parents[1]
    stub = libcuda_stub(work / "stub")  # the driver's folder may hold libcuda.so.1 alone, which -lcuda misses
    configure = run_command([sys.executable, "configure.py", f"--cuda-root={cuda_root}", f"--cudadrv-lib-dir={stub}",
                             "--no-cuda-enable-curand"], 60, cwd=source)
    if configure.returncode != 0:
        return {"status": "failed", "reason": configure.stdout[-2000:]}
    done = run_command([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-build-isolation",
                        "--target", str(SITE), "."], seconds - 5, cwd=source)
    if done.returncode != 0:
        return {"status": "failed", "reason": done.stdout[-2000:]}
    return {"built_from": sdists[0].name}


def run_command(command: list[str], seconds: float, cwd: Path | None = None,
                env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command in its own process group; past `seconds` the whole group is killed and PartTimeout raised."""
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        stdout, _ = process.communicate(timeout=max(seconds, 1))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        stdout, _ = process.communicate()
        error = PartTimeout(f"stopped after {seconds:.0f} s")
        error.output = stdout
        raise error
    return subprocess.CompletedProcess(command, process.returncode, stdout, "")


def child_env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(SITE), str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def run_child(name: str, bundle: Path, seconds: float) -> dict:
    """One part in a process of its own (`--part NAME`): a hang or a crash costs that part alone."""
    part_out = Path(tempfile.mkdtemp(prefix=f"sg3-{name}-")) / "part.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--part", name, "--part-out", str(part_out),
               "--bundle", str(bundle), "--part-seconds", str(int(seconds))]
    try:
        done = run_command(command, seconds, cwd=REPO, env=child_env())
    except PartTimeout as e:
        e.partial = {"result": _read(part_out), "log_tail": (getattr(e, "output", "") or "")[-3000:]}
        raise
    outcome = _read(part_out)
    outcome["log_tail"] = done.stdout[-3000:]
    if done.returncode != 0 and outcome.get("status") in (None, "ok"):
        outcome["status"] = "failed"
        outcome.setdefault("reason", f"exit status {done.returncode}")
    return outcome


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# ------------------------------------------------------------------------------- parts, each in a process of its own

class PartialResult:
    """What a part has measured so far, written after each step so that a stopped part still reports it."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict = {"status": "ok", "result": {}}

    def add(self, key: str, value) -> None:
        self.data["result"][key] = value
        write_json(self.path, self.data)

    def fail(self, reason: str) -> None:
        self.data.update(status="failed", reason=reason)
        write_json(self.path, self.data)


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _error(e: Exception) -> dict:
    return {"skipped": True, "reason": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}


def part_tests(out: PartialResult, bundle: Path, seconds: float) -> None:
    tests = list(GPU_TESTS)
    if have("av"):
        tests += GPU_TESTS_WITH_PYAV
    else:
        out.add("not_run", {t: "needs PyAV (not installed: carry the bundle)" for t in GPU_TESTS_WITH_PYAV})
    out.add("pycuda", have("pycuda"))
    junit = out.path.with_name("junit.xml")
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", f"--junitxml={junit}", *tests]
    try:
        done = run_command(command, seconds - 10, cwd=REPO, env=child_env())
    except PartTimeout:
        out.fail("pytest ran out of time")
        return
    counts = junit_counts(junit)
    out.add("tests", counts)
    if done.returncode not in (0, 5) or counts.get("failed") or counts.get("errors"):
        out.fail(f"{counts.get('failed', 0)} failed, {counts.get('errors', 0)} errors")


def junit_counts(path: Path) -> dict:
    """passed / failed / skipped counts from pytest's junit XML, the failures' first lines and the skip reasons."""
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError) as e:
        return {"errors": 1, "failures": [f"no junit report: {e}"]}
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failures": [], "skip_reasons": {}}
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = next(iter(case), None)
        if outcome is None or outcome.tag in ("system-out", "system-err", "properties"):
            counts["passed"] += 1
        elif outcome.tag == "skipped":
            counts["skipped"] += 1
            reason = outcome.get("message", "")
            counts["skip_reasons"][reason] = counts["skip_reasons"].get(reason, 0) + 1
        else:
            counts["failed" if outcome.tag == "failure" else "errors"] += 1
            counts["failures"].append(f"{name}: {(outcome.get('message') or '').splitlines()[0][:200]}"
                                      if outcome.get("message") else name)
    return counts


def part_video(out: PartialResult, bundle: Path, seconds: float) -> None:
    """NVENC against libx264 (speed, and the NVENC output's PSNR against its source) and NVDEC against the CPU
    decoder (speed, and the mean difference of their frames) on the carried 1080p clip."""
    import numpy as np

    from sg3stream.synthetic import face_frames, write_clip
    from sg3stream.video.decode import FrameReader
    from sg3stream.video.encode import resolve_codec

    out.add("auto_codec", resolve_codec("auto"))
    clip = bundle / "clip_1080p.mp4"
    frames = {}
    for hwdec in ("none", "cuda"):
        try:
            started = time.perf_counter()
            reader = FrameReader(clip, batch_size=8, hwdec=hwdec)
            frames[hwdec] = np.concatenate([b.frames for b in reader])
            out.add(f"decode_{hwdec}_fps", len(frames[hwdec]) / (time.perf_counter() - started))
        except Exception as e:
            out.add(f"decode_{hwdec}", _error(e))
    if len(frames) == 2:
        out.add("nvdec_mean_abs_difference", float(np.abs(frames["cuda"].astype(np.int16)
                                                          - frames["none"].astype(np.int16)).mean()))
    source = list(face_frames(96, *CLIP_SIZE))
    for codec in ("libx264", "h264_nvenc"):
        path = out.path.with_name(f"{codec}.mp4")
        try:
            started = time.perf_counter()
            write_clip(path, iter(source), fps=CLIP_FPS, codec=codec, audio=None)
            out.add(f"encode_{codec}_fps", len(source) / (time.perf_counter() - started))
            decoded = np.concatenate([b.frames for b in FrameReader(path, batch_size=8, hwdec="none")])
            mse = float(((decoded.astype(np.float32) - np.stack(source).astype(np.float32)) ** 2).mean())
            out.add(f"encode_{codec}_psnr_db", float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10))))
        except Exception as e:
            out.add(f"encode_{codec}", _error(e))


def part_synthesis(out: PartialResult, bundle: Path, seconds: float) -> None:
    import torch

    from sg3stream.bench.generator import bench_synthesis

    out.add("cudnn_allow_tf32", torch.backends.cudnn.allow_tf32)  # float32 convolutions on TF32 tensor cores
    deadline = time.perf_counter() + seconds - 10
    # "auto" picks per op between the kernels and the torch ops (sg3stream/ops/choice.py), then each forced
    combos = [("auto", "fp16")] + [(ops, precision) for ops in ("cuda", "torch") for precision in ("fp16", "fp32")]
    rows = []
    for i, (ops, precision) in enumerate(combos):
        share = (deadline - time.perf_counter()) / (len(combos) - i)
        if share < 5:
            rows.append({"ops": ops, "precision": precision, "skipped": True, "reason": "time budget"})
            continue
        try:
            for row in bench_synthesis(CONFIG, batch_sizes=(1, 8), device="cuda", time_budget_s=share,
                                       compare_naive=False, ops_impl=ops, force_fp32=precision == "fp32"):
                rows.append(dict(row, precision=precision))
        except Exception as e:  # "cuda" without pycuda: get_ops raises
            rows.append(dict(_error(e), ops=ops, precision=precision))
        out.add("rows", rows)
    out.add("rows", rows)


def part_compile(out: PartialResult, bundle: Path, seconds: float) -> None:
    import torch

    from sg3stream.models import load_generator
    from sg3stream.models.compiled import CompiledSynthesis

    G = load_generator(CONFIG, device="cuda")
    synthesis = CompiledSynthesis(G.synthesis, min_rows=8)
    ws = torch.randn([8, G.num_ws, G.w_dim], device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    with torch.no_grad():
        started = time.perf_counter()
        synthesis(ws)
        torch.cuda.synchronize()
        out.add("first_call_s", time.perf_counter() - started)  # compiling and capturing the graphs
        out.add("compiled", synthesis.compiled)
        times = []
        for _ in range(5):
            started = time.perf_counter()
            synthesis(ws)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
    out.add("images_per_s", 8 / min(times))
    out.add("batch_size", 8)


def part_inversion(out: PartialResult, bundle: Path, seconds: float) -> None:
    from sg3stream.bench.inversion import bench_inversion

    out.add("rows", bench_inversion("torch", (1, 8, 32), "cuda"))


def part_pti(out: PartialResult, bundle: Path, seconds: float) -> None:
    from sg3stream.bench.pti import bench_pti

    out.add("rows", bench_pti(CONFIG, (1, 4), "cuda", ops_impl=["cuda", "torch"], steps=5,
                              time_budget_s=max(seconds - 20, 5)))


def replay_recorded_faces(recorded: Path, shots_too: bool) -> None:
    """Make the run's chain read the landmarks (and, without PySceneDetect, the shot cuts) recorded on the CPU
    instead of computing them: the stage keeps its name, reads and writes, so the rest of the chain is unchanged."""
    import numpy as np

    import sg3stream.align as align
    import sg3stream.video.shots as shots
    from sg3stream.align.stages import LandmarkStage
    from sg3stream.pipeline.stage import Stage

    data = np.load(recorded)
    landmarks, source, shot_start = data["landmarks"], data["landmark_source"], data["shot_start"]

    class ReplayedLandmarks(Stage):
        name, executor, reads, writes = "landmarks", "thread", ("frames",), LandmarkStage.writes

        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, batch):
            rows = np.asarray(batch.index, np.int64)
            data = dict(batch.data, landmarks=landmarks[rows], detected=source[rows] > 0,
                        landmark_source=source[rows])
            return batch.replace(data=data)

    class ReplayedShots(Stage):
        name, reads, writes = "shots", ("frames",), shots.ShotStage.writes

        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, batch):
            return batch.replace(data=dict(batch.data, shot_start=shot_start[np.asarray(batch.index, np.int64)]))

    align.LandmarkStage = ReplayedLandmarks
    if shots_too:
        shots.ShotStage = ReplayedShots


def part_run(out: PartialResult, bundle: Path, seconds: float) -> None:
    from sg3stream.bench.run import bench_run

    manifest = _read(bundle / "manifest.json")
    shots_replayed = not have("scenedetect")
    replay_recorded_faces(bundle / "landmarks.npz", shots_too=shots_replayed)
    out.add("replayed", ["landmarks"] + (["shots"] if shots_replayed else []))
    out.add("landmarks_cpu_fps_when_prepared", manifest.get("landmarks_cpu_fps"))
    frames = manifest.get("clip_frames", CLIP_FRAMES)
    runs = {}
    for mode in ("streaming", "reference"):
        result = bench_run(frames, "1080p", clip=bundle / "clip_1080p.mp4", generator=CONFIG, codec="auto",
                           reference_mode=mode == "reference")
        runs[mode] = result
        out.add(mode, result)
    out.add("speedup_vs_reference", runs["streaming"]["end_to_end_fps"] / runs["reference"]["end_to_end_fps"])


CHILD_PARTS = {"tests": part_tests, "video": part_video, "synthesis": part_synthesis, "compile": part_compile,
               "inversion": part_inversion, "pti": part_pti, "run": part_run}


def run_part_here(name: str, part_out: Path, bundle: Path, seconds: float) -> int:
    out = PartialResult(part_out)
    write_json(part_out, out.data)
    try:
        CHILD_PARTS[name](out, bundle, seconds)
    except Exception as e:
        import traceback

        out.fail(f"{type(e).__name__}: {e}\n{traceback.format_exc()[-2000:]}")
        return 1
    return 0 if out.data["status"] == "ok" else 1


# ------------------------------------------------------------------------------------------------- summary for README

def summary_markdown(results: dict) -> str:
    """The README's table: one row per measured figure, and one per part that did not run or failed."""
    m = results.get("machine", {})
    lines = [f"GPU check ({m.get('gpu') or 'no GPU'}, torch {m.get('torch', '?')}, Python {m.get('python', '?')}, "
             f"{results.get('started', '')}):", "", "| part | what | figure |", "| --- | --- | --- |"]
    parts = results.get("parts", {})

    def row(part: str, what: str, figure: str) -> None:
        lines.append(f"| {part} | {what} | {figure} |")

    for name, entry in parts.items():
        status = entry.get("status")
        if status in ("skipped", "failed", "timed_out"):
            row(name, status.replace("_", " "), (entry.get("reason") or "").splitlines()[0][:160] if entry.get(
                "reason") else "")
        result = entry.get("result") or {}
        if name == "tests" and "tests" in result:
            t = result["tests"]
            reasons = "; ".join(f"{k} ({v})" for k, v in t.get("skip_reasons", {}).items())
            row(name, "GPU tests", f"{t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped"
                + (f" — skipped: {reasons}" if reasons else ""))
        if name == "video":
            for codec in ("h264_nvenc", "libx264"):
                if f"encode_{codec}_fps" in result:
                    row(name, f"encode 1080p, {codec}", f"{result[f'encode_{codec}_fps']:.0f} frames/s, "
                        f"{result.get(f'encode_{codec}_psnr_db', float('nan')):.1f} dB")
            for hwdec in ("cuda", "none"):
                if f"decode_{hwdec}_fps" in result:
                    row(name, f"decode 1080p, hwdec {hwdec}", f"{result[f'decode_{hwdec}_fps']:.0f} frames/s")
        if name in ("synthesis", "inversion", "pti"):
            for r in result.get("rows", []):
                label = _row_label(name, r)
                if r.get("skipped"):
                    row(name, label, f"not run: {r.get('reason', '')[:120]}")
                elif name == "synthesis":
                    row(name, label, f"{r['images_per_s']:.1f} images/s")
                elif name == "inversion":
                    row(name, label, f"{r['fps']:.1f} frames/s")
                else:
                    row(name, label, f"{r['steps_per_s']:.2f} steps/s" + (
                        f", {r['peak_memory_gib']:.1f} GiB" if "peak_memory_gib" in r else ""))
        if name == "compile" and "images_per_s" in result:
            row(name, f"{CONFIG} synthesis, torch.compile, batch 8", f"{result['images_per_s']:.1f} images/s "
                f"(first call {result.get('first_call_s', 0):.0f} s)")
        if name == "run":
            for mode in ("streaming", "reference"):
                if mode in result:
                    r = result[mode]
                    gpu = r.get("gpu", {})
                    busy = (f", GPU busy {gpu['utilisation_mean_percent']:.0f}%" if gpu.get("available") else "")
                    row(name, f"main job 1080p {CONFIG}, {mode}", f"{r['end_to_end_fps']:.1f} frames/s{busy}")
            if "speedup_vs_reference" in result:
                row(name, "streaming / reference", f"{result['speedup_vs_reference']:.2f}x")
            if result.get("replayed"):
                row(name, "replayed from the CPU", ", ".join(result["replayed"]))
    return "\n".join(lines)


def _row_label(part: str, r: dict) -> str:
    if part == "synthesis":
        return f"{CONFIG}, {r.get('ops')} ops, {r.get('precision')}" + (
            f", batch {r['batch_size']}" if "batch_size" in r else "")
    if part == "inversion":
        return f"encoder ({r.get('engine')}), batch {r.get('batch')}"
    return f"PTI {r.get('config', CONFIG)}, {r.get('ops')} ops, batch {r.get('batch_size')}"


# ------------------------------------------------------------------------------------- prepare and dry run (the CPU)

def tree_bytes() -> int:
    """Bytes of the working tree that travels: tracked and untracked-not-ignored files (git's view of it)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                                capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        return 0
    return sum((REPO / f).stat().st_size for f in listed if f and (REPO / f).is_file())


def bundle_files(bundle: Path) -> list[tuple[str, int]]:
    if not bundle.is_dir():
        return []
    return sorted((str(p.relative_to(bundle)), p.stat().st_size) for p in bundle.rglob("*") if p.is_file())


def bundle_summary(bundle: Path) -> dict:
    files = bundle_files(bundle)
    return {"path": str(bundle), "files": len(files), "bytes": sum(s for _, s in files)}


def dry_run(bundle: Path) -> tuple[dict, int]:
    """What would travel and what the GPU machine needs; the checks possible on the CPU."""
    files = bundle_files(bundle)
    tree = tree_bytes()
    total = tree + sum(s for _, s in files)
    checks = {}
    for module in ("torch", "numpy", "cv2", "av", "scenedetect", "mediapipe", "pycuda"):
        checks[module] = have(module)
    test_files = {t.split("::")[0] for t in GPU_TESTS + GPU_TESTS_WITH_PYAV}
    missing_tests = sorted(t for t in test_files if not (REPO / t).is_file())
    names = [n for n, _ in files]
    needs = {
        "PyAV": "wheels/av-*-cp311-abi3-*.whl (CPython 3.11 or later)",
        "siphash24 (pytools)": f"one wheel per Python: {', '.join(python_tag(v) for v in PYTHON_VERSIONS)}",
        "pycuda": "a wheel for the device's Python (cp312 seen there), else the sdist, built there in the 'pycuda' "
                  "part (minutes)",
        "landmarks": "landmarks.npz (mediapipe does not install there)",
    }
    report = {"bundle": str(bundle), "prepared": bool(files), "files": files, "tree_bytes": tree, "total_bytes": total,
              "limit_bytes": CARRY_LIMIT_BYTES, "fits": total <= CARRY_LIMIT_BYTES, "needs_on_device": needs,
              "cpu_has": checks, "missing_test_files": missing_tests,
              "pycuda_wheels": sorted(n for n in names if n.startswith("wheels/pycuda-") and n.endswith(".whl")),
              "parts": [(p.name, p.cap_s, p.min_s, p.doc) for p in PARTS]}
    return report, 0 if report["fits"] and not missing_tests else 1


def print_dry_run(report: dict) -> None:
    print(f"bundle {report['bundle']}: " + ("prepared" if report["prepared"] else
                                            "not prepared (run: python bench/device_check.py --prepare)"))
    for name, size in report["files"]:
        print(f"  {size / 2**20:8.2f} MiB  {name}")
    print(f"  {report['tree_bytes'] / 2**20:8.2f} MiB  the working tree (tracked and untracked, not ignored)")
    print(f"total {report['total_bytes'] / 2**20:.2f} MiB of {report['limit_bytes'] / 2**20:.0f} MiB: "
          + ("fits" if report["fits"] else "TOO LARGE"))
    print("the GPU machine needs:")
    for what, how in report["needs_on_device"].items():
        print(f"  {what}: {how}")
    print("pycuda wheels carried: " + (", ".join(report["pycuda_wheels"]) or "none (the sdist is built there)"))
    print("importable here: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in report["cpu_has"].items()))
    if report["missing_test_files"]:
        print("missing test files: " + ", ".join(report["missing_test_files"]))
    print("parts (cap s, min s): " + "; ".join(f"{n} ({c:.0f}, {m:.0f})" for n, c, m, _ in report["parts"]))
    print(f"carry: {report['bundle']} (run with --bundle if it is not {DEFAULT_BUNDLE.relative_to(REPO)})")


def pip_download(args: list[str], dest: Path) -> None:
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(dest), *args]
    subprocess.run(command, check=True)


def prepare(bundle: Path, frames: int, pycuda_pythons: list[str]) -> int:
    """Build the bundle here, on the CPU: the wheels, the clip, its landmarks and shots, the manifest."""
    wheels = bundle / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    platforms = [a for p in MANYLINUX for a in ("--platform", p)]
    binary = ["--only-binary=:all:", "--implementation", "cp", *platforms]
    print("downloading wheels ...", flush=True)
    pip_download(binary + ["--python-version", "3.11", AV_REQUIREMENT, *PURE_REQUIREMENTS], wheels)
    for version in PYTHON_VERSIONS:
        pip_download(binary + ["--python-version", version, *PER_PYTHON_REQUIREMENTS], wheels)
    # the sdist as it is: its metadata step runs here without build isolation (nothing is compiled)
    pip_download(["--no-binary", "pycuda", "--no-build-isolation", PYCUDA_REQUIREMENT], wheels)
    for python in pycuda_pythons:
        build_pycuda_wheel(python, wheels)
    manifest = make_clip_and_landmarks(bundle, frames)
    files = bundle_files(bundle)
    manifest.update(made=time.strftime("%Y-%m-%d %H:%M:%S"), files=dict(files),
                    python_tags={n: n.split("-")[-3] for n, _ in files if n.endswith(".whl")})
    write_json(bundle / "manifest.json", manifest)
    report, status = dry_run(bundle)
    print_dry_run(report)
    return status


def build_pycuda_wheel(python: str, wheels: Path) -> None:
    """A pycuda wheel for `python` (an interpreter of the device's version with numpy, setuptools and wheel),
    built against this machine's CUDA headers. The driver library is linked by its soname through an empty stand-in
    (the real libcuda.so.1 is the GPU machine's); curand is left out (not used)."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise SystemExit("--pycuda-python needs nvcc (the CUDA headers) here")
    with tempfile.TemporaryDirectory(prefix="pycuda-") as tmp:
        tmp = Path(tmp)
        stub = libcuda_stub(tmp / "stub")
        sdist = sorted(wheels.glob("pycuda-*.tar.gz"))[0]
        shutil.unpack_archive(str(sdist), str(tmp))
        source = next(p for p in tmp.iterdir() if p.name.startswith("pycuda-") and p.is_dir())
        subprocess.run([python, "configure.py", f"--cuda-root={Path(nvcc).resolve().parents[1]}",
                        f"--cudadrv-lib-dir={stub}", "--no-cuda-enable-curand"], cwd=source, check=True)
        subprocess.run([python, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                        "."], cwd=source, check=True)


def libcuda_stub(folder: Path) -> Path:
    """An empty libcuda.so named libcuda.so.1: pycuda links to the driver by that name, and the process finds the
    real one (torch has loaded it by the time pycuda is imported)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.c").write_text("")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(folder / "libcuda.so"),
                    str(folder / "empty.c")], check=True)
    return folder


def make_clip_and_landmarks(bundle: Path, frames: int) -> dict:
    """The 1080p face clip and what mediapipe and the shot detector find on it, frame by frame, as the run's
    stages would (the same landmark stage settings as `sg3stream run --faces all`)."""
    import numpy as np

    from sg3stream.align.stages import LandmarkStage
    from sg3stream.options import MAX_FACES, face_slots
    from sg3stream.synthetic import face_frames, write_clip
    from sg3stream.video.decode import FrameReader
    from sg3stream.video.shots import ShotDetector

    clip = bundle / "clip_1080p.mp4"
    print(f"writing {clip} ({frames} frames) ...", flush=True)
    write_clip(clip, face_frames(frames, *CLIP_SIZE), fps=CLIP_FPS, options={"preset": "veryfast", "crf": "23"})
    stage = LandmarkStage(workers=1, max_faces=face_slots("all"), search_faces=MAX_FACES)
    reader = FrameReader(clip, batch_size=8, hwdec="none")
    detector = ShotDetector(fps=reader.info.fps)
    landmarks, sources, cuts = [], [], []
    seconds = 0.0
    print("landmarks ...", flush=True)
    for batch in reader:
        started = time.perf_counter()
        found = stage(batch)
        seconds += time.perf_counter() - started
        landmarks.append(found.data["landmarks"])
        sources.append(found.data["landmark_source"])
        cuts += detector.push(batch.frames, int(batch.index[0]))
    stage.close()
    cuts += detector.finish()
    count = sum(len(s) for s in sources)
    shot_start = np.zeros(count, bool)
    shot_start[[c for c in cuts if c < count]] = True
    np.savez_compressed(bundle / "landmarks.npz", landmarks=np.concatenate(landmarks),
                        landmark_source=np.concatenate(sources), shot_start=shot_start)
    return {"clip": clip.name, "clip_frames": count, "clip_size": list(CLIP_SIZE), "clip_fps": CLIP_FPS,
            "landmarks_cpu_fps": count / seconds, "landmarks_cpu": f"{platform.processor() or platform.machine()}, "
            f"one worker", "faces_found": int((np.concatenate(sources) > 0).sum())}


# ------------------------------------------------------------------------------------------------------------ main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The GPU check: prepare its bundle on the CPU, run it on the GPU.")
    parser.add_argument("--out", type=Path, default=Path("device_check_results.json"), help="results JSON")
    parser.add_argument("--dry-run", action="store_true", help="list what travels, check what the CPU can, exit")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S, help="seconds for the whole check")
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="the carried folder")
    parser.add_argument("--prepare", action="store_true", help="build the bundle here (CPU, network to PyPI)")
    parser.add_argument("--frames", type=int, default=CLIP_FRAMES, help="frames of the prepared clip")
    parser.add_argument("--pycuda-python", action="append", default=[],
                        help="with --prepare: also build a pycuda wheel with this interpreter (repeatable)")
    parser.add_argument("--summary", type=Path, help="print the markdown summary of a results JSON and exit")
    parser.add_argument("--json", action="store_true", help="with --dry-run: print the report as JSON")
    parser.add_argument("--part", choices=sorted(CHILD_PARTS), help=argparse.SUPPRESS)
    parser.add_argument("--part-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--part-seconds", type=float, default=60, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part:
        return run_part_here(args.part, args.part_out, args.bundle, args.part_seconds)
    if args.summary:
        print(summary_markdown(json.loads(args.summary.read_text())))
        return 0
    if args.dry_run:
        report, status = dry_run(args.bundle)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print_dry_run(report)
        return status
    if args.prepare:
        return prepare(args.bundle, args.frames, args.pycuda_python)
    if args.budget_s <= 0:
        parser.error("--budget-s must be positive")
    return run_check(args.bundle, args.out, args.budget_s)


if __name__ == "__main__":
    sys.exit(main())
