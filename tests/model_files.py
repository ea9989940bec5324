"""Model files written by the tests: official-format network pickles, and pickles assembled opcode by opcode.

Official pickles hold `torch_utils.persistence._reconstruct_persistent_obj(meta)` for each network; the tests
fake that function by name while pickling, so no NVlabs code is needed.
"""
import pickle
import struct
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np


def _fake_reconstruct(meta):
    raise AssertionError("never called when writing")


class Persistent:
    """Pickles as an official persistent object of `class_name` with `state`."""

    def __init__(self, class_name, state):
        self.class_name, self.state = class_name, state

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src="# placeholder", class_name=self.class_name, state=self.state)
        return _fake_reconstruct, (meta,)


def persistent_tree(module, class_name, init_kwargs=None):
    """A torch module as official pickles store it (with only the persistent buffers, as the official code has)."""
    buffers = OrderedDict((k, v) for k, v in module._buffers.items() if k not in module._non_persistent_buffers_set)
    state = {"training": False, "_parameters": OrderedDict(module._parameters), "_buffers": buffers,
             "_non_persistent_buffers_set": set(), "_init_args": (), "_init_kwargs": init_kwargs or {},
             "_modules": OrderedDict((n, persistent_tree(m, type(m).__name__)) for n, m in module._modules.items()),
             "size": np.asarray([4, 4]), "gain": np.float64(0.5)}
    return Persistent(class_name, state)


def official_pickle_bytes(top: dict) -> bytes:
    persistence = types.ModuleType("torch_utils.persistence")
    persistence._reconstruct_persistent_obj = _fake_reconstruct
    _fake_reconstruct.__module__ = "torch_utils.persistence"
    _fake_reconstruct.__qualname__ = "_reconstruct_persistent_obj"
    saved = {k: sys.modules.get(k) for k in ("torch_utils", "torch_utils.persistence")}
    sys.modules["torch_utils"] = types.ModuleType("torch_utils")
    sys.modules["torch_utils.persistence"] = persistence
    try:
        return pickle.dumps(top, protocol=4)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def write_official_pickle(path, top: dict):
    Path(path).write_bytes(official_pickle_bytes(top))


# -- pickles assembled from opcodes (for shapes pickle.dumps cannot write: 10^5 levels, shared graphs, cycles) ----

RECONSTRUCT = 0  # memo slot of the persistence reconstructor in `assembled_pickle`


def text(s: str) -> bytes:
    b = s.encode()
    if len(b) < 256:
        return b"\x8c" + bytes([len(b)]) + b  # SHORT_BINUNICODE
    return b"X" + struct.pack("<I", len(b)) + b  # BINUNICODE


def put(i: int) -> bytes:
    return b"r" + struct.pack("<I", i)  # LONG_BINPUT


def get(i: int) -> bytes:
    return b"j" + struct.pack("<I", i)  # LONG_BINGET


def module_open(class_name: str) -> bytes:
    """The start of a persistent module up to its `_modules` dict, left open for (name, child) pairs."""
    return (get(RECONSTRUCT) + b"}(" + text("type") + text("class") + text("class_name") + text(class_name)
            + text("state") + b"}(" + text("_modules") + b"}(")


MODULE_CLOSE = b"uuu\x85R"  # close _modules, state and meta (SETITEMS), then reconstruct(meta)


def module(class_name: str, children: list[tuple[str, bytes]]) -> bytes:
    return module_open(class_name) + b"".join(text(n) + c for n, c in children) + MODULE_CLOSE


def assembled_pickle(g_ema: bytes, extra: bytes = b"") -> bytes:
    """{'G_ema': <g_ema>, <extra key/value opcodes>} with the persistence reconstructor in memo slot 0."""
    reconstruct = b"c" + b"torch_utils.persistence\n_reconstruct_persistent_obj\n" + put(RECONSTRUCT) + b"0"
    return b"\x80\x04" + reconstruct + b"}(" + text("G_ema") + g_ema + extra + b"u."
