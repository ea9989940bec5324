"""Reading official NVlabs network pickles without executing anything they carry.

Official pickles store each network as `torch_utils.persistence._reconstruct_persistent_obj(meta)`, where meta
holds the Python source of the defining module (which the official loader exec()s), the class name and the
object state (init kwargs, parameters, buffers, submodules). Here a restricted unpickler resolves only the few
globals such a pickle needs to safe stand-ins: a persistent object becomes a `PersistentObject` record (its
module source is never looked at), tensors are rebuilt by torch's own safe loader. Any other global is refused.

The work a file can cause is bounded (limits.py): every pickle, the outer one and each tensor's storage record, is
scanned before it is unpickled (depth, unrolled size, no cycles), a tensor must fit in the storage the file holds,
and the walk over the modules refuses shared or deeply nested submodules.
"""
from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch

from sg3stream.errors import UserError

from .limits import MAX_KEY_NESTING, check_pickle, check_tensor_view

MAX_STATE_TENSORS = 100_000  # official G_ema: ~250 parameters and buffers


@dataclass
class PersistentObject:
    """A network from an official pickle, as data: class name, constructor arguments and state."""
    class_name: str
    init_args: tuple
    init_kwargs: dict
    state: dict = field(repr=False)

    def submodule(self, name: str) -> "PersistentObject | None":
        module = (self.state.get("_modules") or {}).get(name)
        return module if isinstance(module, PersistentObject) else None

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters and persistent buffers of this object and its submodules, with torch's dotted names.

        Walked iteratively, each module once: a module met twice (shared, or holding itself), more than
        MAX_KEY_NESTING levels deep, or more than MAX_STATE_TENSORS tensors is refused.
        """
        out: dict[str, torch.Tensor] = {}
        seen: set[int] = set()
        todo: list[tuple[str, PersistentObject]] = [("", self)]
        while todo:
            prefix, obj = todo.pop()
            if id(obj) in seen:
                raise UserError(f"the network uses the module {prefix.rstrip('.')!r} twice (shared or holding "
                                f"itself), which a StyleGAN3 network never does")
            seen.add(id(obj))
            if prefix.count(".") > MAX_KEY_NESTING:
                raise UserError(f"the network's modules are nested more than {MAX_KEY_NESTING} levels deep")
            state = obj.state
            non_persistent = _entries(state, "_non_persistent_buffers_set", prefix, (set, frozenset, list, tuple))
            for name, value in _entries(state, "_parameters", prefix).items():
                if value is not None:
                    out[prefix + _name(name, prefix)] = _tensor(value, prefix + str(name)).detach()
            for name, value in _entries(state, "_buffers", prefix).items():
                if value is not None and name not in non_persistent:
                    out[prefix + _name(name, prefix)] = _tensor(value, prefix + str(name))
            if len(out) > MAX_STATE_TENSORS:
                raise UserError(f"the network holds more than {MAX_STATE_TENSORS} tensors")
            children = []
            for name, module in _entries(state, "_modules", prefix).items():
                if isinstance(module, PersistentObject):
                    children.append((prefix + _name(name, prefix) + ".", module))
                elif module is not None:
                    raise UserError(f"unexpected submodule {prefix + str(name)!r} of type {type(module).__name__} "
                                    f"in the pickle")
            todo.extend(reversed(children))  # depth first, in the stored order
        return out


def _entries(state: dict, key: str, prefix: str, types=(dict,)):
    value = state.get(key)
    if value is None:
        return types[0]()
    if not isinstance(value, types):
        raise UserError(f"the module {prefix.rstrip('.') or 'G_ema'!r} has a {key} of type {type(value).__name__}")
    return value


def _name(name, prefix: str) -> str:
    if not isinstance(name, str) or not name or "." in name:
        raise UserError(f"the module {prefix.rstrip('.') or 'G_ema'!r} has an entry named {str(name)[:40]!r}")
    return name


def _tensor(value, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise UserError(f"{name!r} in the pickle is a {type(value).__name__}, not a tensor")
    return value


class EasyDict(dict):
    """Stand-in for dnnlib.EasyDict: a dict whose keys are also attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value


def _reconstruct_persistent_obj(meta) -> PersistentObject:
    # The embedded module source (meta['module_src']) is deliberately ignored.
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise UserError("the pickle holds a persistent object in a format this loader does not know")
    state = dict(meta["state"])
    return PersistentObject(class_name=str(meta.get("class_name")), init_args=tuple(state.get("_init_args") or ()),
                            init_kwargs=dict(state.get("_init_kwargs") or {}), state=state)


LEGACY_STORAGE_PICKLES = 5  # torch's legacy format: magic number, protocol, sys info, the storage, storage keys


def _load_storage_from_bytes(data: bytes):
    # torch.storage._load_from_bytes would run torch.load with full unpickling; weights_only is the safe subset.
    # Its pickles are scanned first: torch's weights-only unpickler has no bound on the work a pickle causes.
    if not isinstance(data, bytes):
        raise UserError("the pickle holds a tensor storage that is not a byte string")
    stream = io.BytesIO(data)
    for _ in range(LEGACY_STORAGE_PICKLES):
        check_pickle(stream, "a tensor storage record in the pickle")
    storage = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    if not isinstance(storage, torch.storage.TypedStorage):
        raise UserError(f"a tensor storage record in the pickle holds a {type(storage).__name__}")
    return storage


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    # torch would grow a storage too small for the view the pickle asks for (to any size): refuse instead.
    if not isinstance(storage, torch.storage.TypedStorage):
        raise UserError("the pickle builds a tensor on something that is not a storage")
    numel = storage._untyped_storage.nbytes() // torch._utils._element_size(storage.dtype)
    check_tensor_view(numel, storage_offset, size, stride, "a tensor in the pickle")
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, OrderedDict())


def _rebuild_parameter(data, requires_grad, backward_hooks=None, *args):
    return torch.nn.Parameter(data, requires_grad=requires_grad)


def _numpy_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise UserError("the pickle builds a numpy array of an unexpected type")
    # numpy pickles start from an empty array (shape (0,)) and fill it with __setstate__, which checks the data.
    if not isinstance(shape, tuple) or len(shape) > 1 or not all(isinstance(n, int) and 0 <= n <= 1 for n in shape):
        raise UserError("the pickle builds a numpy array with an unexpected initial shape")
    return np.core.multiarray._reconstruct(np.ndarray, shape, dtype)


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UserError("the pickle builds a numpy scalar of an object type")
    return np.core.multiarray.scalar(dtype, data)


_NUMPY_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")

ALLOWED_GLOBALS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch", "Size"): torch.Size,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    **{(module, "_reconstruct"): _numpy_reconstruct for module in _NUMPY_MULTIARRAY},
    **{(module, "scalar"): _numpy_scalar for module in _NUMPY_MULTIARRAY},
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only ALLOWED_GLOBALS; anything else raises UserError naming the global."""

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UserError(
                f"refusing to load the pickle: it references the global '{module}.{name}', which a StyleGAN3 "
                f"network pickle does not need (allowed: tensors, numpy arrays, OrderedDict, EasyDict and "
                f"torch_utils.persistence objects)") from None

    def persistent_load(self, pid):
        raise UserError("refusing to load the pickle: it uses persistent ids (a torch.save zip/legacy file, "
                        "not an official network pickle)")


def read_official_pickle(data: bytes) -> object:
    """Unpickle official network pickle bytes with the restricted unpickler (the top-level dict).

    The pickle's structure is checked first (limits.check_pickle): hashing or walking what it builds stays bounded.
    """
    check_pickle(io.BytesIO(data), "the pickle")
    return RestrictedUnpickler(io.BytesIO(data)).load()
