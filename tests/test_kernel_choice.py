"""Issue 18, item 3: on CUDA, get_ops("auto") takes per op the faster of the CUDA kernels and the torch ops, measured on
the synthesis network's own calls at its first forward pass, and cached (sg3stream/ops/choice.py).

On the CPU, with fake clocks: the "kernels" and "torch" op sets below compute nothing and advance a fake clock by a
set cost per call, so which one is faster is decided by the test, and nothing depends on this machine's speed.
"CUDA" is simulated by monkeypatching the kernels' loading, the device's identity and its clock; the recording
pass runs the real torch ops on a small synthesis network on the CPU."""
import json
import logging
import weakref
from types import SimpleNamespace

import pytest
import torch

import sg3stream.kernels as kernels
import sg3stream.ops as ops_module
from sg3stream.ops import TORCH_OPS, OpSet, choice, get_ops
from sg3stream.ops.choice import MEASURED_OPS, NOT_CALLED, TIME_CAP, OpCall

IDENTITY = {"gpu": "Fake GPU", "capability": [9, 0], "driver": "550.1", "cuda": "12.4", "torch": "2.13",
            "kernels": "abc"}


class FakeClock:
    """Seconds that pass only when a fake op says so."""

    def __init__(self):
        self.now = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def fake_ops(name: str, clock: FakeClock, costs: dict, calls: list | None = None) -> OpSet:
    """An op set whose ops take costs[op] seconds of `clock` and compute nothing (each call noted in `calls`)."""
    def op(which):
        def run(*args, **kwargs):
            clock.now += costs[which]
            if calls is not None:
                calls.append((name, which))
        return run
    return OpSet(name, modulated_conv2d=TORCH_OPS.modulated_conv2d, **{o: op(o) for o in MEASURED_OPS})


def tensor(*shape, dtype="float32"):
    return {"tensor": list(shape), "dtype": dtype}


# one call of each op, as the recording op set describes them
CALLS = [
    OpCall("upfirdn2d", [tensor(2, 4, 8, 8), tensor(4)], {"up": 2, "padding": 1}, count=2),
    OpCall("bias_act", [tensor(2, 4, 8, 8), tensor(4)], {"act": "lrelu"}),
    OpCall("filtered_lrelu", [tensor(2, 4, 8, 8)], {"fu": tensor(12), "fd": tensor(12), "up": 2, "down": 2,
                                                    "padding": [5, 4, 5, 4], "gain": 1.4, "clamp": 256}),
]


@pytest.fixture
def fresh_choices(monkeypatch):
    """No choice made yet in this process (choice.py's state is process-wide)."""
    monkeypatch.setattr(choice, "_BY_NETWORK", weakref.WeakKeyDictionary())
    monkeypatch.setattr(choice, "_BY_KEY", {})
    monkeypatch.setattr(choice, "_NO_TRIAL", {})


@pytest.fixture(scope="module")
def synthesis():
    """A small synthesis network of the demo generator's class (4 layers, up to 10x10 pixels and 4 channels, radial
    down filters as sg3-r's, a ToRGB layer): the demo's own recording pass takes seconds on a busy CPU."""
    from sg3stream.models.stylegan3 import SynthesisNetwork

    return SynthesisNetwork(w_dim=8, img_resolution=8, img_channels=3, channel_base=64, channel_max=4, num_layers=3,
                            num_critical=1, margin_size=1, use_radial_filters=True,
                            rng=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------------------------------------------------------
# The trial, the choice and the cache (choice.choose, with injected op sets and clock)

def test_faster_kernels_for_one_op_and_slower_for_another_give_a_mixed_op_set(tmp_path):
    clock = FakeClock()
    kernel_ops = fake_ops("cuda", clock, {"upfirdn2d": 1e-3, "bias_act": 5e-3, "filtered_lrelu": 2e-3})
    torch_ops = fake_ops("torch", clock, {"upfirdn2d": 3e-3, "bias_act": 1e-3, "filtered_lrelu": 2e-3})
    chosen = choice.choose(CALLS, {"torch": torch_ops, "cuda": kernel_ops}, clock=clock, key="k",
                           cache_file=tmp_path / "choice.json")
    assert chosen.source == "measured"
    # per forward pass: upfirdn2d is called twice per pass (count=2); filtered_lrelu ties: the torch ops
    assert chosen.ops == {"upfirdn2d": {"impl": "cuda", "ms": {"torch": 6.0, "cuda": 2.0}},
                          "bias_act": {"impl": "torch", "ms": {"torch": 1.0, "cuda": 5.0}},
                          "filtered_lrelu": {"impl": "torch", "ms": {"torch": 2.0, "cuda": 2.0}}}
    ops = chosen.op_set
    assert ops.name == "mixed"
    assert ops.upfirdn2d is kernel_ops.upfirdn2d and ops.bias_act is torch_ops.bias_act
    assert ops.filtered_lrelu is torch_ops.filtered_lrelu and ops.modulated_conv2d is TORCH_OPS.modulated_conv2d
    # the trial: one warm-up and REPEATS calls of each distinct call with each implementation
    assert chosen.trial_s == pytest.approx((1 + choice.REPEATS) * (3 + 1 + 1 + 5 + 2 + 2) * 1e-3)
    assert "upfirdn2d cuda 2 ms (torch 6 ms); bias_act torch 1 ms (cuda 5 ms)" in choice.summary(chosen.ops)


def test_one_implementation_faster_everywhere_is_handed_out_as_it_is(tmp_path):
    clock = FakeClock()
    kernel_ops = fake_ops("cuda", clock, dict.fromkeys(MEASURED_OPS, 1e-3))
    torch_ops = fake_ops("torch", clock, dict.fromkeys(MEASURED_OPS, 2e-3))
    chosen = choice.choose(CALLS, {"torch": torch_ops, "cuda": kernel_ops}, clock=clock, key="k", cache_file=None)
    assert chosen.op_set is kernel_ops


def test_the_choice_is_cached_and_read_back_without_measuring(tmp_path):
    cache = tmp_path / "cache" / "choice.json"
    clock = FakeClock()
    seen = []
    candidates = {"torch": fake_ops("torch", clock, dict.fromkeys(MEASURED_OPS, 2e-3), seen),
                  "cuda": fake_ops("cuda", clock, {"upfirdn2d": 1e-3, "bias_act": 3e-3, "filtered_lrelu": 1e-3},
                                   seen)}
    first = choice.choose(CALLS, candidates, clock=clock, key="key-1", cache_file=cache, identity=IDENTITY)
    data = json.loads(cache.read_text())
    assert data["version"] == choice.CACHE_VERSION and data["entries"]["key-1"]["ops"] == first.ops
    assert data["entries"]["key-1"]["identity"] == IDENTITY
    assert not list(cache.parent.glob(".*.tmp"))  # written under a temporary name, then renamed

    def no_clock():
        raise AssertionError("a cached choice is not measured")
    seen.clear()
    second = choice.choose(CALLS, candidates, clock=no_clock, key="key-1", cache_file=cache)
    assert second.source == "cache" and second.ops == first.ops and not seen
    assert second.op_set.bias_act is candidates["torch"].bias_act
    assert second.op_set.filtered_lrelu is candidates["cuda"].filtered_lrelu

    third = choice.choose(CALLS, candidates, clock=clock, key="key-2", cache_file=cache)  # another key: measured
    assert third.source == "measured" and seen
    assert set(json.loads(cache.read_text())["entries"]) == {"key-1", "key-2"}


def test_the_cache_key_changes_with_the_gpu_the_driver_the_versions_and_the_shapes():
    candidates = {"torch": TORCH_OPS, "cuda": TORCH_OPS}
    key = choice.cache_key(IDENTITY, CALLS, candidates)
    assert key == choice.cache_key(dict(IDENTITY), list(CALLS), candidates)
    for field, value in [("gpu", "Other GPU"), ("driver", "560.0"), ("cuda", "12.8"), ("torch", "2.14"),
                         ("kernels", "def")]:
        assert choice.cache_key(dict(IDENTITY, **{field: value}), CALLS, candidates) != key, field
    other_shape = [OpCall("upfirdn2d", [tensor(4, 4, 8, 8), tensor(4)], {"up": 2, "padding": 1}, count=2)] + CALLS[1:]
    assert choice.cache_key(IDENTITY, other_shape, candidates) != key
    half = [OpCall(c.op, [tensor(2, 4, 8, 8, dtype="float16")] + c.args[1:], c.kwargs, c.count) for c in CALLS]
    assert choice.cache_key(IDENTITY, half, candidates) != key


@pytest.mark.parametrize("content", ["{not json", '{"version": 1, "entries": []}', "\xff\xfe"])
def test_a_corrupt_cache_file_is_ignored_with_one_warning_and_measured_again(tmp_path, caplog, content):
    cache = tmp_path / "choice.json"
    cache.write_text(content, encoding="latin-1")
    clock = FakeClock()
    candidates = {"torch": fake_ops("torch", clock, dict.fromkeys(MEASURED_OPS, 2e-3)),
                  "cuda": fake_ops("cuda", clock, dict.fromkeys(MEASURED_OPS, 1e-3))}
    with caplog.at_level(logging.WARNING, logger="sg3stream"):
        chosen = choice.choose(CALLS, candidates, clock=clock, key="k", cache_file=cache)
    assert chosen.source == "measured" and clock.reads > 0
    assert caplog.text.count("WARNING") == 1 and "ignoring the kernel choice cache" in caplog.text
    assert json.loads(cache.read_text())["entries"]["k"]["ops"] == chosen.ops  # replaced by a valid file
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sg3stream"):
        again = choice.choose(CALLS, candidates, clock=clock, key="k", cache_file=cache)
    assert again.source == "cache" and not caplog.text


def test_a_cache_entry_naming_an_unknown_implementation_is_measured_again(tmp_path, caplog):
    cache = tmp_path / "choice.json"
    ops = {op: {"impl": "gone"} for op in MEASURED_OPS}
    cache.write_text(json.dumps({"version": choice.CACHE_VERSION, "entries": {"k": {"ops": ops}}}))
    clock = FakeClock()
    candidates = {"torch": fake_ops("torch", clock, dict.fromkeys(MEASURED_OPS, 2e-3)),
                  "cuda": fake_ops("cuda", clock, dict.fromkeys(MEASURED_OPS, 1e-3))}
    with caplog.at_level(logging.WARNING, logger="sg3stream"):
        chosen = choice.choose(CALLS, candidates, clock=clock, key="k", cache_file=cache)
    assert chosen.source == "measured" and chosen.op_set is candidates["cuda"]
    assert caplog.text.count("WARNING") == 1 and "unreadable entry" in caplog.text


def test_the_trial_stops_at_its_time_cap():
    """Each call takes 1/8 s of fake time: with 12 filtered_lrelu shapes, 1 of upfirdn2d and a 2 s cap, the trial
    stops after 2 s plus at most one (warm-up + repeats) of one call, and chooses on what it measured."""
    clock = FakeClock()
    costs = dict.fromkeys(MEASURED_OPS, 0.125)
    candidates = {"torch": fake_ops("torch", clock, costs), "cuda": fake_ops("cuda", clock, costs)}
    calls = [OpCall("upfirdn2d", [tensor(1, 2, 4, 4), None], {})]
    calls += [OpCall("filtered_lrelu", [tensor(1, 2, 4 + i, 4 + i)], {}) for i in range(12)]
    unit = (1 + 3) * 0.125  # one warm-up and 3 repeats
    seconds, measured = choice.time_calls(calls, candidates, clock, budget_s=2.0, repeats=3)
    assert 2.0 <= clock.now <= 2.0 + unit
    # interleaved: upfirdn2d's only call came first, then filtered_lrelu's calls while time was left
    assert measured == {"upfirdn2d": 1, "filtered_lrelu": 1}
    ops = choice.pick(calls, seconds, measured)
    assert ops["upfirdn2d"] == {"impl": "torch", "ms": {"torch": 125.0, "cuda": 125.0}}
    assert ops["filtered_lrelu"]["note"] == ("measured on 1 of 12 shapes: the trial's time cap came first")
    assert ops["bias_act"] == {"impl": "torch", "note": NOT_CALLED}

    clock.now = 0.0
    seconds, measured = choice.time_calls(calls, candidates, clock, budget_s=0.0, repeats=3)
    assert measured == {} and clock.now == 0.0
    assert choice.pick(calls, seconds, measured)["upfirdn2d"] == {"impl": "torch", "note": TIME_CAP}


# ---------------------------------------------------------------------------------------------------------------
# The recorded calls: a real forward pass

def expected_calls(net, batch: int) -> list[dict]:
    """What each layer hands filtered_lrelu (SynthesisLayer.forward), as the recording op set describes it."""
    def maybe(f):
        return None if f is None else tensor(*f.shape)
    calls = []
    for name in net.layer_names:
        layer = getattr(net, name)
        side = layer.in_size + layer.conv_kernel - 1  # the modulated conv pads by conv_kernel - 1
        calls.append({"op": "filtered_lrelu", "args": [tensor(batch, layer.out_channels, side, side)],
                      "kwargs": {"b": tensor(layer.out_channels), "fu": maybe(layer.up_filter),
                                 "fd": maybe(layer.down_filter), "up": layer.up_factor, "down": layer.down_factor,
                                 "padding": layer.padding, "gain": 1 if layer.is_torgb else 2 ** 0.5,
                                 "slope": 1 if layer.is_torgb else 0.2, "clamp": layer.conv_clamp}})
    return calls


def test_the_recorded_calls_are_those_of_a_synthesis_forward_pass(synthesis):
    calls = choice.record_calls(synthesis, 4, force_fp32=False)
    assert {c.op for c in calls} == {"filtered_lrelu"}  # the only one of the three the synthesis network calls
    recorded = sorted(json.dumps(dict(c.as_dict(), count=1), sort_keys=True)
                      for c in calls for _ in range(c.count))
    assert recorded == sorted(json.dumps(dict(c, count=1), sort_keys=True) for c in expected_calls(synthesis, 4))
    assert any(c.count > 1 for c in calls)  # identical layers are one call, counted
    assert synthesis.ops_impl == "auto"  # the recording copy's op set did not leak into the network


# ---------------------------------------------------------------------------------------------------------------
# get_ops("auto") on a simulated CUDA device

@pytest.fixture
def simulated_cuda(monkeypatch, tmp_path, fresh_choices):
    """cuda:0 with kernels that load, a fake clock and identity, the cache under tmp_path. Kernel filtered_lrelu
    1 ms a call, torch 2 ms: the kernels win the only op the synthesis network calls."""
    clock = FakeClock()
    sim = SimpleNamespace(clock=clock, identity=dict(IDENTITY), seen=[], cache=tmp_path / "kernels" / "choice.json")
    sim.kernels = fake_ops("cuda", clock, dict.fromkeys(MEASURED_OPS, 1e-3), sim.seen)
    sim.torch = fake_ops("torch", clock, dict.fromkeys(MEASURED_OPS, 2e-3), sim.seen)
    monkeypatch.setenv("SG3STREAM_CACHE", str(tmp_path))
    monkeypatch.setattr(kernels, "pycuda_available", lambda: True)
    monkeypatch.setattr(kernels, "_LOADED", {})
    monkeypatch.setattr(kernels, "_load", lambda device: sim.kernels)
    monkeypatch.setattr(ops_module, "_KERNELS_WARNED", False)
    monkeypatch.setattr(ops_module, "TORCH_OPS", sim.torch)
    monkeypatch.setattr(choice, "cuda_clock", lambda device: clock)
    monkeypatch.setattr(choice, "device_identity", lambda device: dict(sim.identity))
    return sim


def test_auto_on_cuda_measures_at_the_first_forward_pass_and_reports_it(simulated_cuda, synthesis):
    sim = simulated_cuda
    ops = get_ops("auto", "cuda:0", synthesis=synthesis, batch_size=3, force_fp32=False)
    assert ops.name == "mixed" and ops.filtered_lrelu is sim.kernels.filtered_lrelu
    assert ops.upfirdn2d is sim.torch.upfirdn2d and ops.bias_act is sim.torch.bias_act
    assert {op for _, op in sim.seen} == {"filtered_lrelu"}  # the trial replays the recorded calls only
    reads = sim.clock.reads
    assert get_ops("auto", "cuda:0", synthesis=synthesis, batch_size=4) is ops  # same bucket: chosen already
    assert get_ops("auto", "cuda:0") is ops  # no network to measure on: the latest choice on the device
    assert sim.clock.reads == reads

    distinct = len(choice.record_calls(synthesis, 4, force_fp32=False))
    used = choice.report("cuda:0")
    assert used["ops"] == {"upfirdn2d": "torch", "bias_act": "torch", "filtered_lrelu": "cuda"}
    assert used["reason"] == "measured"
    (trial,) = used["trials"]
    assert trial["device"] == "cuda:0" and trial["batch_size"] == 4 and trial["force_fp32"] is False
    assert trial["source"] == "measured" and trial["trial_s"] > 0
    assert trial["ops"]["filtered_lrelu"] == {"impl": "cuda", "ms": {"torch": pytest.approx(2.0 * 4),
                                                                     "cuda": pytest.approx(1.0 * 4)}}
    assert trial["ops"]["upfirdn2d"] == {"impl": "torch", "note": NOT_CALLED}
    assert distinct < 4  # 4 layers, some identical: each distinct call measured once, weighted by its count
    assert json.loads(sim.cache.read_text())["entries"]  # the cache root of the kernels' cubins

    # run.json's acceleration says it
    from sg3stream.job import acceleration

    renderer = SimpleNamespace(device=torch.device("cuda:0"), describe=lambda: {
        "device": "cuda:0", "compiled": False, "ops": get_ops("auto", "cuda:0").name, "engine": "torch"})
    used = acceleration(renderer, SimpleNamespace(hw_decoding=False), "libx264")
    assert used["ops"] == "mixed" and used["ops_choice"] == choice.report("cuda:0")
    json.dumps(used)  # run.json is JSON


def test_a_second_run_reads_the_cache_and_another_driver_or_batch_size_measures_again(simulated_cuda, synthesis,
                                                                                       monkeypatch):
    sim = simulated_cuda
    first = get_ops("auto", "cuda:0", synthesis=synthesis, batch_size=2)
    # a new process: nothing chosen in memory, the same cache on disk
    monkeypatch.setattr(choice, "_BY_NETWORK", weakref.WeakKeyDictionary())
    monkeypatch.setattr(choice, "_BY_KEY", {})
    reads = sim.clock.reads
    second = get_ops("auto", "cuda:0", synthesis=synthesis, batch_size=2)
    assert sim.clock.reads == reads  # not measured
    assert second.filtered_lrelu is first.filtered_lrelu
    assert choice.report("cuda:0")["reason"] == "cache"
    assert choice.report("cuda:0")["trials"][0]["ops"]["filtered_lrelu"]["ms"]["cuda"] == pytest.approx(4.0)

    get_ops("auto", "cuda:0", synthesis=synthesis, batch_size=8)  # other shapes: measured
    assert sim.clock.reads > reads and choice.report("cuda:0")["trials"][-1]["source"] == "measured"

    monkeypatch.setattr(choice, "_BY_NETWORK", weakref.WeakKeyDictionary())
    sim.identity["driver"] = "560.0"  # the same shapes after a driver update: measured again
    reads = sim.clock.reads
    get_ops("auto", "cuda:0", synthesis=synthesis, batch_size=2)
    assert sim.clock.reads > reads
    assert len(json.loads(sim.cache.read_text())["entries"]) == 3


def test_auto_does_not_measure_when_the_kernels_do_not_load(simulated_cuda, synthesis, monkeypatch, caplog):
    monkeypatch.setattr(kernels, "_load", lambda device: (_ for _ in ()).throw(RuntimeError("nvcc failed")))
    monkeypatch.setattr(choice, "record_calls", lambda *a, **k: pytest.fail("no trial without kernels"))
    with caplog.at_level(logging.WARNING, logger="sg3stream"):
        for batch in (1, 2, 8):
            assert get_ops("auto", "cuda:0", synthesis=synthesis, batch_size=batch) is simulated_cuda.torch
    assert caplog.text.count("CUDA kernels unavailable (RuntimeError: nvcc failed); using the torch ops") == 1
    assert caplog.text.count("WARNING") == 1 and simulated_cuda.clock.reads == 0
    assert choice.report("cuda:0") == {"ops": {"upfirdn2d": "torch", "bias_act": "torch", "filtered_lrelu": "torch"},
                                       "reason": "kernels unavailable (RuntimeError)"}


def test_without_pycuda_auto_runs_the_torch_ops_and_says_why(simulated_cuda, synthesis, monkeypatch, caplog):
    monkeypatch.setattr(kernels, "pycuda_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="sg3stream"):
        assert get_ops("auto", "cuda:0", synthesis=synthesis, batch_size=2) is simulated_cuda.torch
    assert not caplog.text and simulated_cuda.clock.reads == 0
    assert choice.report("cuda:0")["reason"] == "pycuda is not installed"


def test_a_failing_trial_warns_once_and_runs_the_torch_ops(simulated_cuda, synthesis, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("cuLaunchKernel failed")
    monkeypatch.setattr(choice, "time_calls", broken)
    with caplog.at_level(logging.WARNING, logger="sg3stream"):
        for batch in (2, 8):
            assert get_ops("auto", "cuda:0", synthesis=synthesis, batch_size=batch) is simulated_cuda.torch
    assert caplog.text.count("WARNING") == 1 and "RuntimeError: cuLaunchKernel failed" in caplog.text
    assert choice.report("cuda:0")["reason"] == "trial failed (RuntimeError: cuLaunchKernel failed)"
    assert not simulated_cuda.cache.exists()  # a failure is not cached: the next run tries again


# ---------------------------------------------------------------------------------------------------------------
# The CPU, the network's call and the reports

def test_on_the_cpu_auto_is_the_torch_ops_without_a_trial(fresh_choices, synthesis, monkeypatch):
    monkeypatch.setattr(choice, "record_calls", lambda *a, **k: pytest.fail("no trial on the CPU"))
    assert get_ops("auto", "cpu", synthesis=synthesis, batch_size=2) is TORCH_OPS
    assert choice.report("cpu") == {"ops": {"upfirdn2d": "torch", "bias_act": "torch", "filtered_lrelu": "torch"},
                                    "reason": "cpu"}
    from sg3stream.job import acceleration

    renderer = SimpleNamespace(device=torch.device("cpu"), describe=lambda: {
        "device": "cpu", "compiled": False, "ops": "torch", "engine": "torch"})
    used = acceleration(renderer, SimpleNamespace(hw_decoding=False), "libx264")
    assert used["ops_choice"] == choice.report("cpu")
    oracle = SimpleNamespace(device=torch.device("cpu"), describe=lambda: {"device": "cpu", "ops": "none"})
    assert "ops_choice" not in acceleration(oracle, SimpleNamespace(hw_decoding=False), "libx264")


def test_the_synthesis_network_hands_its_forward_pass_to_get_ops(synthesis, monkeypatch):
    import sg3stream.models.stylegan3 as stylegan3

    asked = []

    def spy(impl, device=None, **kwargs):
        asked.append(kwargs)
        return get_ops(impl, device, **kwargs)
    monkeypatch.setattr(stylegan3, "get_ops", spy)
    ws = torch.randn(3, synthesis.num_ws, synthesis.w_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        synthesis(ws, force_fp32=True)
    assert {"synthesis": synthesis, "batch_size": 3, "force_fp32": True} in asked


def test_bench_shows_the_choice_in_its_synthesis_section(simulated_cuda, synthesis):
    from rich.console import Console

    from sg3stream.bench.generator import _ops_choice
    from sg3stream.cli.bench import print_report

    G = SimpleNamespace(synthesis=synthesis)
    assert _ops_choice(G, "cpu", 8, "auto") == {"ops_chosen": "torch (cpu)"}
    assert _ops_choice(G, "cuda:0", 8, "torch") == {}
    get_ops("auto", "cuda:0", synthesis=synthesis, batch_size=8)
    row = {"config": "demo", "device": "cuda:0", "batch_size": 8, "ops": "auto", "images_per_s": 10.0,
           **_ops_choice(G, "cuda:0", 8, "auto")}
    assert row["ops_choice"]["ops"]["filtered_lrelu"]["impl"] == "cuda" and row["ops_choice"]["source"] == "measured"
    assert row["ops_chosen"] == ("filtered_lrelu cuda 4 ms (torch 8 ms); upfirdn2d, bias_act torch (not called) "
                                 "[measured]")
    console = Console(record=True, width=250)
    print_report({"device": "Fake GPU", "synthesis": [row]}, console)
    assert "filtered_lrelu cuda 4 ms (torch 8 ms)" in console.export_text()
