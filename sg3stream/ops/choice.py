"""How `get_ops("auto")` chooses, on CUDA, between the custom kernels and the torch ops: it measures them.

The kernels filter with 2-D outer-product taps in one fused pass; the torch ops run cuDNN's separable convolutions.
Which is faster depends on the GPU, the shapes and the dtype, so auto times both on the generator's own calls:
at the first forward pass of a synthesis network on a CUDA device, per batch size (rounded up to a power of two)
and per fp16/fp32 mode, it
 1. records the op calls of one forward pass at that batch size (`record_calls`: a recording op set runs the torch
    ops and notes each call's op, tensor shapes and dtypes, and other arguments; identical calls are counted once);
 2. looks the calls up in the cache, keyed by the GPU's name and capability, the driver, CUDA and torch versions,
    the kernels' sources and the calls; a hit is used as it is, nothing is measured;
 3. otherwise times every distinct call with each implementation on random inputs of the recorded shapes (one
    warm-up, then REPEATS calls between two reads of a clock that waits for the GPU), TRIAL_BUDGET_S at most in all,
    and picks per op (upfirdn2d, bias_act, filtered_lrelu) the faster over one forward pass (ties: the torch ops);
 4. writes the choice to the cache and hands out an OpSet taking each op from the implementation chosen for it.
An op the trial did not measure (the synthesis network does not call it, or the time cap came first) runs the torch
ops: auto takes a kernel only where it measured it faster. modulated_conv2d is the same torch op in both sets.

The trial times forward passes only (rendering); PTI's backward passes run whatever the forward choice took.

Cache: `<cache root>/kernels/choice.json` (the folder of the compiled kernels, kernels/build.py's `cache_dir()`:
$SG3STREAM_CACHE, else $XDG_CACHE_HOME/sg3stream, else ~/.cache/sg3stream), written under a temporary name and
renamed. An unreadable file or entry is ignored with one warning, and measured again.

Not for --compile: the compiled network runs the torch ops through inductor, which fuses them across op boundaries
and replays the whole network as CUDA graphs; an op timed on its own says nothing about its cost inside that graph,
and the pycuda kernels would be opaque calls that break it. The compiled path stays on the torch ops.

Process-wide, on purpose (as the kernels' loading): a choice is made once per network, device, batch bucket and
mode; `report(device)` says what was chosen on a device and how (run.json's acceleration["ops_choice"]).
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import OpSet
from .bias_act import bias_act
from .filtered_lrelu import filtered_lrelu
from .modulated_conv2d import modulated_conv2d
from .upfirdn2d import upfirdn2d

log = logging.getLogger("sg3stream")

MEASURED_OPS = ("upfirdn2d", "bias_act", "filtered_lrelu")
TRIAL_BUDGET_S = 3.0   # the whole trial of one batch bucket, both implementations
REPEATS = 3            # timed calls per (call, implementation), after one warm-up call
CACHE_VERSION = 1
NOT_CALLED = "not called by the synthesis network"
TIME_CAP = "not measured: the trial's time cap came first"

# The recording pass runs the torch reference ops themselves (not whatever get_ops hands out).
REFERENCE_OPS = OpSet("torch", upfirdn2d, bias_act, filtered_lrelu, modulated_conv2d)

_LOCK = threading.RLock()  # one trial at a time; other threads wait for its choice
# network -> {(device, rows, force_fp32): Choice}: the cheap look-up of every forward pass after the first
_BY_NETWORK: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_BY_KEY: dict[str, "Choice"] = {}  # cache key -> Choice, in the order made: what `report` lists
_NO_TRIAL: dict[str, str] = {}     # device -> why the kernels did not load there (auto: the torch ops, unmeasured)


@dataclass(frozen=True)
class OpCall:
    """One distinct op call of a forward pass. Arguments are described, not held: a tensor is
    {"tensor": shape, "dtype": name}, anything else its (JSON) value."""
    op: str
    args: list
    kwargs: dict
    count: int = 1  # how many times one forward pass makes this call

    def as_dict(self) -> dict:
        return {"op": self.op, "args": self.args, "kwargs": self.kwargs, "count": self.count}


@dataclass
class Choice:
    """The op set auto hands out for one (device, batch bucket, mode), and how it was chosen.

    source: "measured" (timed now), "cache" (timed by an earlier run) or why neither ("trial failed: ...").
    ops: per op {"impl": name, "ms": {impl: milliseconds per forward pass}} for a measured op, or
    {"impl": name, "note": why it was not measured}. context: device, batch_size, force_fp32 (for the report).
    """
    op_set: OpSet
    source: str
    ops: dict
    trial_s: float | None = None
    context: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        out = dict(self.context, source=self.source, ops=self.ops)
        if self.trial_s is not None:
            out["trial_s"] = round(self.trial_s, 3)
        return out


# ---------------------------------------------------------------------------------------------------------------
# Recording the calls of a forward pass

def _describe(value):
    if isinstance(value, torch.Tensor):
        return {"tensor": list(value.shape), "dtype": str(value.dtype).replace("torch.", "")}
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _materialise(description, device, gen: torch.Generator):
    """A described argument back as a value: random normal values of a described tensor's shape and dtype."""
    if isinstance(description, dict) and "tensor" in description:
        values = torch.randn(description["tensor"], generator=gen, device=device)
        return values.to(getattr(torch, description["dtype"]))
    if isinstance(description, list):
        return [_materialise(d, device, gen) for d in description]
    return description


class _Recorder:
    """An op set that runs `ops` and notes every call of the measured ops."""

    def __init__(self, ops: OpSet):
        self.ops = ops
        self._calls: dict[str, OpCall] = {}

    def op_set(self) -> OpSet:
        wrapped = {op: self._wrap(op) for op in MEASURED_OPS}
        return OpSet("recording", modulated_conv2d=self.ops.modulated_conv2d, **wrapped)

    def _wrap(self, op: str) -> Callable:
        run = getattr(self.ops, op)

        def recorded(*args, **kwargs):
            call = OpCall(op, _describe(args), {k: _describe(v) for k, v in sorted(kwargs.items())})
            signature = json.dumps(call.as_dict(), sort_keys=True)
            seen = self._calls.get(signature)
            self._calls[signature] = OpCall(op, call.args, call.kwargs, seen.count + 1 if seen else 1)
            return run(*args, **kwargs)
        return recorded

    def calls(self) -> list[OpCall]:
        return list(self._calls.values())


def record_calls(synthesis, batch_size: int, force_fp32: bool, ops: OpSet = REFERENCE_OPS) -> list[OpCall]:
    """The distinct op calls (with their counts) of one forward pass of `synthesis` at `batch_size`, run with `ops`
    on random W+ codes where the network's parameters are."""
    recorder = _Recorder(ops)
    runner = copy.copy(synthesis)  # shares the parameters; only its op set differs
    runner.ops_impl = recorder.op_set()
    device = next(synthesis.parameters()).device
    ws = torch.randn([batch_size, synthesis.num_ws, synthesis.w_dim], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        runner(ws.to(device), force_fp32=force_fp32)
    return recorder.calls()


# ---------------------------------------------------------------------------------------------------------------
# The trial

def _interleaved(calls: list[OpCall]) -> list[OpCall]:
    """The calls op by op in turn (the first call of each op, then the second...), so that a trial cut short by
    its time cap has measured every op on some shapes."""
    per_op = [[c for c in calls if c.op == op] for op in MEASURED_OPS]
    return [group[i] for i in range(max(map(len, per_op), default=0)) for group in per_op if i < len(group)]


def time_calls(calls: list[OpCall], candidates: dict[str, OpSet], clock: Callable[[], float], *, device="cpu",
               budget_s: float = TRIAL_BUDGET_S, repeats: int = REPEATS) -> tuple[dict, dict]:
    """Seconds per forward pass of each op with each candidate, {op: {impl: s}}, over the calls measured, and how
    many distinct calls of each op were measured, {op: n}.

    `clock()` returns seconds once the work queued before it is done (on CUDA: synchronize, then a clock). The trial
    stops at the first check past `budget_s`: the checks come before each implementation's warm-up, so it overruns
    by one (warm-up + repeats) of one call at most; a call not measured with every candidate is left out."""
    gen = torch.Generator(device=device).manual_seed(0)
    seconds: dict[str, dict[str, float]] = {}
    measured: dict[str, int] = {}
    start = clock()
    with torch.no_grad():
        for call in _interleaved(calls):
            args = _materialise(call.args, device, gen)
            kwargs = {k: _materialise(v, device, gen) for k, v in call.kwargs.items()}
            per_impl = {}
            for impl, ops in candidates.items():
                if clock() - start >= budget_s:
                    return seconds, measured
                run = getattr(ops, call.op)
                run(*args, **kwargs)  # warm-up: allocations, cuDNN's algorithm search, a kernel's first launch
                began = clock()
                for _ in range(repeats):
                    run(*args, **kwargs)
                per_impl[impl] = (clock() - began) / repeats
            for impl, s in per_impl.items():
                seconds.setdefault(call.op, {}).setdefault(impl, 0.0)
                seconds[call.op][impl] += s * call.count
            measured[call.op] = measured.get(call.op, 0) + 1
    return seconds, measured


def pick(calls: list[OpCall], seconds: dict, measured: dict) -> dict:
    """Per op: the implementation with the least time per forward pass (the torch ops on a tie or when the op was
    not measured), {"impl", "ms"} or {"impl", "note"}."""
    ops = {}
    for op in MEASURED_OPS:
        distinct = sum(1 for c in calls if c.op == op)
        if distinct == 0:
            ops[op] = {"impl": "torch", "note": NOT_CALLED}
        elif op not in measured:
            ops[op] = {"impl": "torch", "note": TIME_CAP}
        else:
            times = seconds[op]
            fastest = min(times, key=lambda impl: (times[impl], impl != "torch"))
            ops[op] = {"impl": fastest, "ms": {impl: round(s * 1e3, 4) for impl, s in times.items()}}
            if measured[op] < distinct:
                ops[op]["note"] = f"measured on {measured[op]} of {distinct} shapes: the trial's time cap came first"
    return ops


def mixed_op_set(ops: dict, candidates: dict[str, OpSet]) -> OpSet:
    """The op set taking each op from the implementation chosen for it (one implementation: that op set itself)."""
    chosen = {ops[op]["impl"] for op in MEASURED_OPS}
    if len(chosen) == 1:
        return candidates[chosen.pop()]
    return OpSet("mixed", modulated_conv2d=candidates["torch"].modulated_conv2d,
                 **{op: getattr(candidates[ops[op]["impl"]], op) for op in MEASURED_OPS})


def choose(calls: list[OpCall], candidates: dict[str, OpSet], *, clock: Callable[[], float], key: str,
           cache_file: Path | None, identity: dict | None = None, device="cpu", budget_s: float = TRIAL_BUDGET_S,
           repeats: int = REPEATS) -> Choice:
    """The choice for `calls` between `candidates` ({name: OpSet}, "torch" among them): from the cache entry `key`
    when `cache_file` has a valid one, else measured (`time_calls`) and written there. `device`: where the trial's
    inputs are made."""
    entries = _read_cache(cache_file) if cache_file is not None else {}
    entry = entries.get(key)
    if entry is not None:
        if _valid_entry(entry, candidates):
            return Choice(mixed_op_set(entry["ops"], candidates), "cache", entry["ops"], entry.get("trial_s"))
        log.warning("ignoring an unreadable entry of the kernel choice cache %s: measuring again", cache_file)
    began = clock()
    seconds, measured = time_calls(calls, candidates, clock, device=device, budget_s=budget_s, repeats=repeats)
    trial_s = clock() - began
    ops = pick(calls, seconds, measured)
    if cache_file is not None:
        entries[key] = {"ops": ops, "trial_s": round(trial_s, 3), "identity": identity or {},
                        "calls": len(calls)}
        _write_cache(cache_file, entries)
    return Choice(mixed_op_set(ops, candidates), "measured", ops, trial_s)


# ---------------------------------------------------------------------------------------------------------------
# The cache

def cache_file_path() -> Path:
    from sg3stream.kernels.build import cache_dir

    return cache_dir() / "choice.json"


def cache_key(identity: dict, calls: list[OpCall], candidates: dict[str, OpSet]) -> str:
    text = json.dumps({"identity": identity, "candidates": sorted(candidates),
                       "calls": [c.as_dict() for c in calls]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _read_cache(path: Path) -> dict:
    """The cache's entries; {} (with one warning when the file exists but cannot be used) otherwise."""
    try:
        data = json.loads(path.read_text())
        if not (isinstance(data, dict) and data.get("version") == CACHE_VERSION
                and isinstance(data.get("entries"), dict)):
            raise ValueError(f"not a version {CACHE_VERSION} choice cache")
        return data["entries"]
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        log.warning("ignoring the kernel choice cache %s (%s: %s): measuring again", path, type(e).__name__, e)
        return {}


def _valid_entry(entry, candidates: dict) -> bool:
    ops = entry.get("ops") if isinstance(entry, dict) else None
    return isinstance(ops, dict) and all(isinstance(ops.get(op), dict) and ops[op].get("impl") in candidates
                                         for op in MEASURED_OPS)


def _write_cache(path: Path, entries: dict) -> None:
    """Written under a temporary name and renamed: a concurrent reader sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=1))
        os.replace(tmp, path)
    except OSError as e:  # a read-only cache: the run goes on, the next one measures again
        tmp.unlink(missing_ok=True)
        log.warning("could not write the kernel choice cache %s (%s)", path, e)


# ---------------------------------------------------------------------------------------------------------------
# On a CUDA device (what get_ops("auto") calls)

def cuda_clock(device) -> Callable[[], float]:
    """Seconds, read once the device's queued work is done: two reads bracket the GPU time of what ran between."""
    def clock() -> float:
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return clock


def _driver_version() -> str:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:
        pass
    try:
        import pycuda.driver

        return f"CUDA driver API {pycuda.driver.get_driver_version()}"
    except Exception:
        return "unknown"


def _kernel_sources() -> str:
    """A hash of the kernels' sources: edited kernels are measured again."""
    from sg3stream.kernels.build import HEADERS, KERNEL_DIR, SOURCES

    h = hashlib.sha256()
    for name in (*SOURCES, *HEADERS):
        h.update((KERNEL_DIR / name).read_bytes())
    return h.hexdigest()[:20]


def device_identity(device) -> dict:
    """What the measured times depend on besides the shapes: the GPU, its driver, CUDA, torch, the kernels."""
    return {"gpu": torch.cuda.get_device_name(device), "capability": list(torch.cuda.get_device_capability(device)),
            "driver": _driver_version(), "cuda": torch.version.cuda, "torch": torch.__version__,
            "kernels": _kernel_sources()}


def device_name(device) -> str:
    """"cuda:N" for a CUDA device given with or without its index."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(device)


def batch_bucket(batch_size: int) -> int:
    """The batch size a choice is made for: the next power of two (a clip's short last batch reuses it)."""
    return 1 << max(int(batch_size) - 1, 0).bit_length()


def no_trial(device, reason: str) -> None:
    """Notes why auto runs the torch ops on `device` without measuring (the kernels did not load)."""
    with _LOCK:
        _NO_TRIAL.setdefault(device_name(device), reason)


def auto_op_set(kernels: OpSet, torch_ops: OpSet, device, synthesis=None, batch_size: int | None = None,
                force_fp32: bool = False) -> OpSet:
    """What get_ops("auto") hands out on a CUDA device where the kernels loaded: the choice for `synthesis` at
    `batch_size` (made now at the first call: recorded, then taken from the cache or measured). Without a network
    to measure on: the latest choice made on the device, else the kernels (auto's choice before any trial)."""
    name = device_name(device)
    with _LOCK:
        failed = _BY_KEY.get(_failed_key(name))
        if failed is not None:  # a trial failed on this device: not tried again
            return failed.op_set
        if synthesis is None or batch_size is None:
            made = [c for c in _BY_KEY.values() if c.context["device"] == name]
            return made[-1].op_set if made else kernels
        per_network = _BY_NETWORK.setdefault(synthesis, {})
        slot = (name, batch_bucket(batch_size), bool(force_fp32))
        if slot not in per_network:
            per_network[slot] = _choice_for(synthesis, *slot, {"torch": torch_ops, kernels.name: kernels})
        return per_network[slot].op_set


def _choice_for(synthesis, device: str, rows: int, force_fp32: bool, candidates: dict[str, OpSet]) -> Choice:
    context = {"device": device, "batch_size": rows, "force_fp32": force_fp32}
    try:
        calls = record_calls(synthesis, rows, force_fp32)
        identity = device_identity(device)
        key = cache_key(identity, calls, candidates)
        if key not in _BY_KEY:  # else another network of the same shapes (PTI's tuned copy): chosen already
            choice = choose(calls, candidates, clock=cuda_clock(device), key=key, cache_file=cache_file_path(),
                            identity=identity, device=next(synthesis.parameters()).device)
            choice.context = context
            _BY_KEY[key] = choice
            log.info("ops for %s, batch %d%s: %s (%s)", device, rows, ", fp32" if force_fp32 else "",
                     summary(choice.ops), choice.source)
        return _BY_KEY[key]
    except Exception as e:  # the run goes on with the torch ops, as when the kernels do not load
        what = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        log.warning("measuring the CUDA kernels against the torch ops failed (%s); using the torch ops", what)
        choice = Choice(candidates["torch"], f"trial failed ({what})", {op: {"impl": "torch"} for op in MEASURED_OPS},
                        context=context)
        _BY_KEY[_failed_key(device)] = choice
        return choice


def _failed_key(device: str) -> str:
    return f"trial failed on {device}"


# ---------------------------------------------------------------------------------------------------------------
# Reporting

def summary(ops: dict) -> str:
    """One line: "filtered_lrelu cuda 1.2 ms (torch 3.4 ms); upfirdn2d, bias_act torch (not called)"."""
    parts, unmeasured = [], {}
    for op in MEASURED_OPS:
        entry = ops[op]
        if "ms" in entry:
            others = ", ".join(f"{impl} {ms:.3g} ms" for impl, ms in entry["ms"].items() if impl != entry["impl"])
            parts.append(f"{op} {entry['impl']} {entry['ms'][entry['impl']]:.3g} ms ({others})")
        else:
            why = "not called" if entry.get("note") == NOT_CALLED else "not measured"
            unmeasured.setdefault(f"{entry['impl']} ({why})", []).append(op)
    parts += [f"{', '.join(names)} {what}" for what, names in unmeasured.items()]
    return "; ".join(parts)


def report(device) -> dict:
    """run.json's acceleration["ops_choice"] for a renderer on `device`: {"ops": {op: implementation}, "reason"}
    and, where auto measured or read the cache, "trials" (one per batch bucket and mode: see Choice)."""
    device = torch.device(device)
    torch_everywhere = {op: "torch" for op in MEASURED_OPS}
    if device.type != "cuda":
        return {"ops": torch_everywhere, "reason": "cpu" if device.type == "cpu" else f"{device.type} device"}
    name = device_name(device)
    with _LOCK:
        made = [c for c in _BY_KEY.values() if c.context["device"] == name]
        why_not = _NO_TRIAL.get(name)
    if made:
        return {"ops": {op: made[-1].ops[op]["impl"] for op in MEASURED_OPS}, "reason": made[-1].source,
                "trials": [c.as_dict() for c in made]}
    if why_not:
        return {"ops": torch_everywhere, "reason": why_not}
    return {"reason": "not measured: nothing rendered on this device in eager torch with ops_impl auto"}


def choice_for(synthesis, device, batch_size: int, force_fp32: bool) -> Choice | None:
    """The choice auto made for `synthesis` at `batch_size` on `device`, if it made one (bench reports it)."""
    if torch.device(device).type != "cuda":
        return None
    with _LOCK:
        made = _BY_NETWORK.get(synthesis, {})
        return made.get((device_name(device), batch_bucket(batch_size), bool(force_fp32)))
