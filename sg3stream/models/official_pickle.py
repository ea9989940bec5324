"""Reading official NVlabs network pickles without executing anything they carry.

Official pickles store each network as `torch_utils.persistence._reconstruct_persistent_obj(meta)`, where meta
holds the Python source of the defining module (which the official loader exec()s), the class name and the
object state (init kwargs, parameters, buffers, submodules). Here a restricted unpickler resolves only the few
globals such a pickle needs to safe stand-ins: a persistent object becomes a `PersistentObject` record (its
module source is never looked at), tensors are rebuilt by torch's own safe loader. Any other global is refused.
"""
from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch

from sg3stream.errors import UserError


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

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameters and persistent buffers of this object and its submodules, with torch's dotted names."""
        out: dict[str, torch.Tensor] = {}
        non_persistent = set(self.state.get("_non_persistent_buffers_set") or ())
        for name, value in (self.state.get("_parameters") or {}).items():
            if value is not None:
                out[prefix + name] = value.detach()
        for name, value in (self.state.get("_buffers") or {}).items():
            if value is not None and name not in non_persistent:
                out[prefix + name] = value
        for name, module in (self.state.get("_modules") or {}).items():
            if isinstance(module, PersistentObject):
                out.update(module.state_dict(prefix + name + "."))
            elif module is not None:
                raise UserError(f"unexpected submodule {prefix + name!r} of type {type(module).__name__} in the pickle")
        return out


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


def _load_storage_from_bytes(data: bytes):
    # torch.storage._load_from_bytes would run torch.load with full unpickling; weights_only is the safe subset.
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, OrderedDict())


def _rebuild_parameter(data, requires_grad, backward_hooks=None, *args):
    return torch.nn.Parameter(data, requires_grad=requires_grad)


def _numpy_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise UserError("the pickle builds a numpy array of an unexpected type")
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
    """Unpickle official network pickle bytes with the restricted unpickler (the top-level dict)."""
    return RestrictedUnpickler(io.BytesIO(data)).load()
