"""Hostile model files (issue 13, item 5): each is refused with one UserError line, without hanging, exhausting
memory or crashing the interpreter.

The files are crafted here (a few KB to a few MB each). They are loaded in a child process, one after the other,
with its address space capped: a loader that hangs is killed after a generous deadline (a hang guard, not a speed
requirement), one that crashes is seen by its exit code, and the cases after it still run.
"""
import io
import json
import queue
import re
import resource
import subprocess
import sys
import threading
import zipfile
from collections import OrderedDict

import pytest
import torch

from model_files import (MODULE_CLOSE, assembled_pickle, get, module, module_open, official_pickle_bytes,
                         persistent_tree, put, text)
from sg3stream.models.stylegan3 import Generator

SMALL = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3, channel_base=256, channel_max=16,
             num_layers=4, mapping_kwargs=dict(num_layers=3))
# Every value in range, but 4096 channels at 1024x1024: 2.3 billion parameters (the 16 GB allocation)
HUGE = dict(SMALL, img_resolution=1024, num_layers=14, channel_base=2 ** 22, channel_max=4096)
HANG_GUARD_S = 180
MEMORY_CAP = 6 << 30  # the child's address space (torch alone maps ~1 GB)


# -- crafted files ---------------------------------------------------------------------------------------------------

def shared_children(levels=60):
    # Each level holds the same child twice: 4.6 KB that a tree walk sees as 2^60 modules.
    node, slot = module("Leaf", []) + put(1), 1
    for _ in range(levels):
        node = module("Block", [("a", node), ("b", get(slot))])
        slot += 1
        node += put(slot)
    return assembled_pickle(module("Generator", [("synthesis", node)]))


def deep_modules(levels=100_000):
    opening = module_open("Generator") + text("m") + (module_open("Block") + text("m")) * levels
    return assembled_pickle(opening + b"N" + MODULE_CLOSE * (levels + 1))


def module_holding_itself():
    # A Generator whose _modules dict, filled in after the module exists, holds the module: a cycle.
    g = (get(0) + b"}(" + text("type") + text("class") + text("class_name") + text("Generator") + text("state")
         + b"}(" + text("_modules") + b"}" + put(1) + b"uu\x85R" + put(2))
    return assembled_pickle(g + get(1) + text("self") + get(2) + b"s0")


def shared_tuple_key(levels=60):
    # A dict key of 60 nested pairs of one tuple: hashing it visits 2^60 tuples.
    return b"N" + b"2\x86" * levels


def deep_tuple_key(levels=1_000_000):
    # hash() of a tuple nested a million levels deep overflows the C stack.
    return b"N" + b"\x85" * levels


class InflatedTensor:
    """A 1-element storage rebuilt as a 65536 x 65536 tensor (torch would grow the storage to 16 GB)."""

    def __reduce__(self):
        storage = torch.storage.TypedStorage(wrap_storage=torch.zeros(1).untyped_storage(), dtype=torch.float32,
                                             _internal=True)
        return torch._utils._rebuild_tensor_v2, (storage, 0, (65536, 65536), (65536, 1), False, OrderedDict())


def torch_zip_with_pickle(data_pkl: bytes) -> bytes:
    """A torch.save zip file whose data.pkl is replaced by `data_pkl`."""
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(1)}, buf)
    src, out = zipfile.ZipFile(io.BytesIO(buf.getvalue())), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for name in src.namelist():
            dst.writestr(name, data_pkl if name.endswith("/data.pkl") else src.read(name))
    return out.getvalue()


def tuple_bomb_data_pkl(levels=60) -> bytes:
    # A dict whose keys include t60, where t(i) = (t(i-1), t(i-1)): hashing it visits 2^60 tuples. Built through
    # the memo (torch's unpickler has no DUP or POP), so every level stays on the stack as a key or a value.
    pair = b"h\x00h\x00\x86q\x00"
    return b"\x80\x02}(" + b"Nq\x00" + pair * levels + b"h\x00" + b"u."


def safetensors_with_config(config: str) -> bytes:
    from safetensors.torch import save

    return save({"x": torch.zeros(1)}, metadata={"format": "sg3stream.generator", "config": config})


def write_cases(folder):
    small = Generator(**SMALL, seed=1).eval()
    files = {}  # case -> (loader, bytes, what the message says)

    files["shared-children-pickle"] = ("generator", shared_children(), "refers to its objects")
    files["deep-modules-pickle"] = ("generator", deep_modules(), "nested more than")
    files["module-cycle-pickle"] = ("generator", module_holding_itself(), "cycle")
    files["shared-tuple-key-pickle"] = ("generator", assembled_pickle(module("Generator", []),
                                                                      shared_tuple_key() + b"N"),
                                        "refers to its objects")
    files["deep-tuple-key-pickle"] = ("generator", assembled_pickle(module("Generator", []),
                                                                    deep_tuple_key() + b"N"), "nested more than")
    files["huge-config-pickle"] = ("generator", official_pickle_bytes(
        {"G_ema": persistent_tree(small, "Generator", HUGE)}), "parameters")
    files["inflated-tensor-pickle"] = ("generator", official_pickle_bytes(
        {"G_ema": persistent_tree(small, "Generator", SMALL), "extra": InflatedTensor()}), "beyond the 1 elements")
    files["huge-config-safetensors"] = ("generator", safetensors_with_config(json.dumps(HUGE)),
                                        "parameters")
    files["deep-json-config-safetensors"] = ("generator", safetensors_with_config("[" * 40_000 + "]" * 40_000),
                                             "nested too deeply")
    files["long-json-config-safetensors"] = ("generator", safetensors_with_config(" " * 10_000_000 + "{}"),
                                             "characters")

    buf = io.BytesIO()
    torch.save(dict(small.state_dict(), **{"synthesis.L999999999_16_3.weight": torch.zeros(1, 1, 1, 1)}), buf)
    files["huge-layer-index-pt"] = ("generator", buf.getvalue(), "layers")
    buf = io.BytesIO()
    torch.save(dict(small.state_dict(), **{"mapping.fc0.weight": torch.zeros(1_000_000, 0)}), buf)
    files["zero-size-huge-dims-pt"] = ("generator", buf.getvalue(), "z_dim|w_dim")
    files["tuple-bomb-pt"] = ("generator", torch_zip_with_pickle(tuple_bomb_data_pkl()), "refers to its objects")

    files["tuple-bomb-encoder-pt"] = ("encoder", torch_zip_with_pickle(tuple_bomb_data_pkl()),
                                      "refers to its objects")
    one = torch.zeros(0)
    buf = io.BytesIO()
    torch.save({"state_dict": {"encoder.input_layer.0.weight": torch.zeros(64, 6, 3, 3),
                               **{f"encoder.styles.{i}.linear.weight": one for i in range(10_000)}},
                "opts": {"encoder_type": "BackboneEncoder"}}, buf)
    files["many-styles-encoder-pt"] = ("encoder", buf.getvalue(), "styles")

    cases = {}
    for case, (loader, data, expected) in files.items():
        path = folder / f"{case}.bin"
        path.write_bytes(data)
        cases[case] = (loader, str(path), expected)
    return cases


# -- loading them in a child process -------------------------------------------------------------------------------

CHILD = r"""
import json, sys
from sg3stream.errors import UserError
from sg3stream.models import load_encoder, load_generator
for case, loader, path in json.load(sys.stdin):
    print(json.dumps({"case": case, "started": True}), flush=True)
    try:
        (load_generator if loader == "generator" else load_encoder)(path)
        result = {"error": None, "message": "loaded"}
    except UserError as e:
        result = {"error": "UserError", "message": str(e)}
    except BaseException as e:
        result = {"error": type(e).__name__, "message": str(e)[:500]}
    print(json.dumps({"case": case, **result}), flush=True)
"""


def _cap_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def load_all(cases: dict) -> dict:
    """case -> {"error": exception name | "hang" | "crash" | None, "message": ...}."""
    results, todo = {}, [(case, loader, path) for case, (loader, path, _) in cases.items()]
    while todo:
        proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, preexec_fn=_cap_memory)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout] + [lines.put(None)],
                         daemon=True).start()
        proc.stdin.write(json.dumps(todo))
        proc.stdin.close()
        current = todo[0][0]
        while True:
            try:
                line = lines.get(timeout=HANG_GUARD_S)
            except queue.Empty:
                proc.kill()
                results[current] = {"error": "hang", "message": f"no answer within {HANG_GUARD_S} s"}
                break
            if line is None:
                proc.wait()
                if current not in results:
                    results[current] = {"error": "crash", "message": f"the process died (exit {proc.returncode})"}
                break
            event = json.loads(line)
            current = event["case"]
            if not event.get("started"):
                results[current] = event
        proc.wait()
        todo = [t for t in todo if t[0] not in results]
    return results


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    cases = write_cases(tmp_path_factory.mktemp("hostile"))
    return cases, load_all(cases)


CASES = ["shared-children-pickle", "deep-modules-pickle", "module-cycle-pickle", "shared-tuple-key-pickle",
         "deep-tuple-key-pickle", "huge-config-pickle", "inflated-tensor-pickle", "huge-config-safetensors",
         "deep-json-config-safetensors", "long-json-config-safetensors", "huge-layer-index-pt",
         "zero-size-huge-dims-pt", "tuple-bomb-pt", "tuple-bomb-encoder-pt", "many-styles-encoder-pt"]


@pytest.mark.parametrize("case", CASES)
def test_hostile_model_file_is_refused_in_one_line(crafted, case):
    cases, results = crafted
    result = results[case]
    assert result["error"] == "UserError", result
    assert "\n" not in result["message"] and len(result["message"]) < 1500, result["message"]
    assert re.search(cases[case][2], result["message"]), result["message"]


def test_every_crafted_case_is_checked(crafted):
    assert sorted(crafted[0]) == sorted(CASES)
    assert len(shared_children()) < 6000  # the 4.6 KB file


class _InflatedView:
    """A 1-element storage viewed as 4096 x 4096 (64 MB): torch grows an old-format storage to fit."""

    def __init__(self):
        self.storage = torch.zeros(1).untyped_storage()

    def __reduce__(self):
        typed = torch.storage.TypedStorage(wrap_storage=self.storage, dtype=torch.float32, _internal=True)
        return torch._utils._rebuild_tensor_v2, (typed, 0, (4096, 4096), (4096, 1), False, OrderedDict())


def test_old_format_torch_files_load_and_their_tensors_must_fit_in_their_storage(tmp_path):
    from sg3stream.errors import UserError
    from sg3stream.models.checkpoints import safe_torch_load

    good = {"state_dict": {"encoder.w": torch.arange(6.0)}, "opts": {"encoder_type": "BackboneEncoder"}}
    torch.save(good, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    assert torch.equal(safe_torch_load(tmp_path / "old.pt")["state_dict"]["encoder.w"], torch.arange(6.0))
    torch.save({"w": _InflatedView()}, tmp_path / "inflated.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(UserError, match="not a readable torch checkpoint"):  # the grown storage fits no data
        safe_torch_load(tmp_path / "inflated.pt")
