"""Bounds on the work a model file can cause: pickle structure, tensor sizes, generator configurations.

A hostile or broken file must be refused quickly with one UserError line, never hang, exhaust memory or crash
the interpreter. Three checks run before anything large is built:

- `check_pickle(stream)` reads one pickle opcode by opcode (pickletools, nothing is unpickled) and rebuilds the
  shape of the object graph it would make. The graph may be at most MAX_PICKLE_DEPTH levels deep and, unrolled
  as a tree (shared objects counted once per reference, as hash() or a naive walk sees them), have at most
  MAX_PICKLE_TREE nodes; reference cycles are refused. This stops sharing bombs (60 levels of two references to
  one child are 2^60 paths), deep nesting (hash() of a deeply nested tuple overflows the C stack) and cycles.
- `check_tensor_view(...)`: a tensor rebuilt from a pickle must fit in the storage the file holds (torch would
  otherwise grow the storage to whatever size the pickle names).
- `check_generator_config(config)`: a generator's constructor arguments are known names with values in sane
  ranges, and the parameter count they imply is computed (cheaply, from the layer schedule) before any tensor
  is allocated.
"""
from __future__ import annotations

import math
import pickletools

import numpy as np

from sg3stream.errors import UserError

# The official FFHQ 1024 network pickles have depth ~30 and unroll to a few hundred thousand nodes (G, D, G_ema).
MAX_PICKLE_DEPTH = 200
MAX_PICKLE_TREE = 20_000_000
MAX_PICKLE_STACK = 1_000_000  # items waiting on the unpickler's stack (a 1000-item SETITEMS batch holds 2000)

MAX_TENSOR_DIMS = 8

# Generator configurations. Official: resolution 256-1024, channels <= 1024, 14 layers, ~30 M parameters.
MAX_RESOLUTION = 4096
MAX_DIM = 4096            # z_dim, w_dim, c_dim, channel_max
MAX_CHANNEL_BASE = 1 << 22
MAX_LAYERS = 64           # synthesis layers
MAX_MAPPING_LAYERS = 32
MAX_PARAMETERS = 500_000_000
MAX_CONFIG_CHARS = 100_000  # the project format's JSON config
MAX_KEY_NESTING = 16      # module levels of a state dict key (official: 4, e.g. synthesis.L0_36_512.affine.weight)

class UnreadablePickle(UserError):
    """The pickle is truncated or corrupt (as opposed to readable but out of bounds)."""


_MUTATORS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}
_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET = {"GET", "BINGET", "LONG_BINGET"}


def check_pickle(stream, what: str = "the pickle") -> tuple[int, int]:
    """Read one pickle from `stream` (left just after it) and refuse it when its object graph is out of bounds.

    Returns the graph's depth and unrolled size.
    Every opcode that builds an object makes a node whose children are the objects it consumed; opcodes that
    fill a container (APPEND, SETITEMS, BUILD...) add children to it; the memo shares nodes, as the unpickler
    shares objects.
    """
    kids: list[list[int] | None] = []   # node -> the nodes it holds (None: none)
    stack: list[int] = []
    marks: list[int] = []               # stack lengths at each open MARK
    memo: dict[int, int] = {}
    root = None
    try:
        for op, arg, _ in pickletools.genops(stream):
            name = op.name
            if name in _PUT:
                memo[arg] = stack[-1]
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name in _GET:
                stack.append(memo[arg])
            elif name == "DUP":
                stack.append(stack[-1])
            elif name == "MARK":
                marks.append(len(stack))
                if len(marks) > MAX_PICKLE_DEPTH:
                    raise UserError(f"{what} is nested more than {MAX_PICKLE_DEPTH} levels deep")
            elif name == "STOP":
                root = stack.pop()
                break
            else:
                before = op.stack_before
                if pickletools.markobject in before:
                    below = before.index(pickletools.markobject)  # items under the mark (APPENDS: the list)
                    start = marks.pop() - below
                else:
                    start = len(stack) - len(before)
                if start < 0:
                    raise IndexError("stack underflow")
                popped = stack[start:]
                del stack[start:]
                if not op.stack_after:
                    continue
                if name in _MUTATORS:
                    target = popped[0]
                    if popped[1:]:
                        kids[target] = (kids[target] or []) + popped[1:]
                    stack.append(target)
                else:
                    kids.append(popped or None)
                    stack.append(len(kids) - 1)
                if len(stack) > MAX_PICKLE_STACK:
                    raise UserError(f"{what} holds more than {MAX_PICKLE_STACK} objects at one level")
    except UserError:
        raise
    except Exception as e:  # unknown opcode, bad argument, end of data, a memo index never stored
        raise UnreadablePickle(f"{what} is truncated or corrupt ({type(e).__name__}: {e})") from None
    if root is None:
        raise UnreadablePickle(f"{what} is truncated or corrupt (it ends before its STOP opcode)")
    return _check_graph(kids, root, what)


def _check_graph(kids: list[list[int] | None], root: int, what: str) -> tuple[int, int]:
    """Depth and unrolled size of the graph below `root`, by an iterative depth-first walk (each node once)."""
    state = bytearray(len(kids))  # 0 unseen, 1 open (its children are being walked), 2 done
    depth = [0] * len(kids)
    size = [0] * len(kids)
    todo = [root]
    while todo:
        node = todo[-1]
        if state[node] == 2:
            todo.pop()
            continue
        children = kids[node] or ()
        if state[node] == 0:
            state[node] = 1
            for child in children:
                if state[child] == 1:  # an open node is an ancestor of this one
                    raise UserError(f"{what} holds a reference cycle, which no model file needs")
                if state[child] == 0:
                    todo.append(child)
            continue
        todo.pop()
        state[node] = 2
        depth[node] = 1 + max((depth[c] for c in children), default=0)
        size[node] = min(1 + sum(size[c] for c in children), MAX_PICKLE_TREE + 1)
        if depth[node] > MAX_PICKLE_DEPTH:
            raise UserError(f"{what} is nested more than {MAX_PICKLE_DEPTH} levels deep")
        if size[node] > MAX_PICKLE_TREE:
            raise UserError(f"{what} refers to its objects more than {MAX_PICKLE_TREE} times (objects shared "
                            f"over and over, as in a decompression bomb)")
    return depth[root], size[root]


def check_tensor_view(storage_numel: int, offset, size, stride, what: str = "a tensor") -> None:
    """A tensor of `size`/`stride` at `offset` must lie inside a storage of `storage_numel` elements."""
    size, stride = tuple(size), tuple(stride)
    if not all(isinstance(v, int) for v in (offset, *size, *stride)):
        raise UserError(f"{what} has a size, stride or offset that is not an integer")
    if len(size) != len(stride) or len(size) > MAX_TENSOR_DIMS:
        raise UserError(f"{what} has {len(size)} dimensions and {len(stride)} strides")
    if offset < 0 or min(size, default=0) < 0 or min(stride, default=0) < 0:
        raise UserError(f"{what} has a negative size, stride or offset")
    if 0 in size:
        return
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage_numel:
        raise UserError(f"{what} of size {list(size)} reaches element {last}, beyond the {storage_numel} elements "
                        f"the file stores for it")


# ---------------------------------------------------------------------------------------------------------------
# Generator configurations

# name -> (types, low, high); None as low/high: no bound on that side. Booleans are ints in Python: allowed.
_NUMBER = (int, float)
_GENERATOR_ARGS = {
    "z_dim": (int, 1, MAX_DIM), "c_dim": (int, 0, MAX_DIM), "w_dim": (int, 1, MAX_DIM),
    "img_resolution": (int, 4, MAX_RESOLUTION), "img_channels": (int, 1, 4),
    "channel_base": (_NUMBER, 1, MAX_CHANNEL_BASE), "channel_max": (_NUMBER, 1, MAX_DIM),
    "num_layers": (int, 2, MAX_LAYERS), "num_critical": (int, 0, MAX_LAYERS),
    "first_cutoff": (_NUMBER, 1e-3, MAX_RESOLUTION), "first_stopband": (_NUMBER, 1e-3, MAX_RESOLUTION),
    "last_stopband_rel": (_NUMBER, 1.0, 16.0), "margin_size": (int, 0, 256),
    "output_scale": (_NUMBER, None, None), "num_fp16_res": (int, 0, 16),
    "conv_kernel": (int, 1, 7), "filter_size": (int, 1, 16), "lrelu_upsampling": (int, 1, 4),
    "use_radial_filters": (bool, None, None), "conv_clamp": ((int, float, type(None)), None, None),
    "magnitude_ema_beta": (_NUMBER, None, None),
}
_MAPPING_ARGS = {
    "num_layers": (int, 1, MAX_MAPPING_LAYERS), "lr_multiplier": (_NUMBER, None, None),
    "w_avg_beta": (_NUMBER, None, None), "freeze_layers": (int, 0, MAX_MAPPING_LAYERS),
    "freeze_embed": (bool, None, None),
}
_REQUIRED = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")


def _check_values(values: dict, allowed: dict, where: str) -> None:
    for key, value in values.items():
        if key not in allowed:
            raise UserError(f"{where}: unknown argument {str(key)[:60]!r} (known: {', '.join(allowed)})")
        types, low, high = allowed[key]
        if not isinstance(value, types) or (isinstance(value, float) and not math.isfinite(value)):
            raise UserError(f"{where}: {key} = {str(value)[:40]} ({type(value).__name__}) is not a finite value of "
                            f"the expected type")
        if value is not None and ((low is not None and value < low) or (high is not None and value > high)):
            raise UserError(f"{where}: {key} = {value} is outside the range this program accepts "
                            f"({low} to {high})")


def check_generator_config(config, where: str = "generator config") -> dict:
    """Validate StyleGAN3 Generator constructor arguments and their implied size; returns them as a plain dict.

    Raises UserError when an argument is unknown, missing, of the wrong type or out of range, or when the network
    they describe would exceed MAX_PARAMETERS parameters (the check allocates nothing).
    """
    if not isinstance(config, dict):
        raise UserError(f"{where}: expected a mapping of constructor arguments, got {type(config).__name__}")
    config = dict(config)
    mapping = config.get("mapping_kwargs") or {}
    if not isinstance(mapping, dict):
        raise UserError(f"{where}: mapping_kwargs is a {type(mapping).__name__}, expected a mapping")
    missing = [k for k in _REQUIRED if k not in config]
    if missing:
        raise UserError(f"{where}: missing {', '.join(missing)}")
    _check_values({k: v for k, v in config.items() if k != "mapping_kwargs"}, _GENERATOR_ARGS, where)
    _check_values(mapping, _MAPPING_ARGS, where + " (mapping_kwargs)")
    num_layers = config.get("num_layers", 14)
    if config.get("num_critical", 2) >= num_layers:
        raise UserError(f"{where}: num_critical must be smaller than num_layers ({num_layers})")
    params = _parameter_count(config, mapping)
    if params > MAX_PARAMETERS:
        raise UserError(f"{where}: the network would have {params:.3g} parameters, more than the "
                        f"{MAX_PARAMETERS:.0e} this program accepts (official StyleGAN3 generators have ~30 M)")
    return config


def _parameter_count(config: dict, mapping: dict) -> int:
    """Parameters and largest buffers the Generator would allocate (from the layer schedule; no tensors)."""
    from .stylegan3 import synthesis_layer_specs

    z_dim, c_dim, w_dim = config["z_dim"], config["c_dim"], config["w_dim"]
    num_layers = config.get("num_layers", 14)
    with np.errstate(all="ignore"):
        spec = synthesis_layer_specs(
            config["img_resolution"], config["img_channels"], config.get("channel_base", 32768),
            config.get("channel_max", 512), num_layers, config.get("num_critical", 2), config.get("first_cutoff", 2),
            config.get("first_stopband", 2 ** 2.1), config.get("last_stopband_rel", 2 ** 0.3),
            config.get("margin_size", 10), config.get("num_fp16_res", 4))
    channels, sizes, rates = spec["channels"], spec["sizes"], spec["sampling_rates"]
    if not (np.all(np.isfinite(channels)) and np.all(np.isfinite(sizes)) and channels.min() >= 1
            and rates.min() >= 1):
        raise UserError("the generator config gives a layer schedule without channels or with sampling rates "
                        "below 1")
    kernel = config.get("conv_kernel", 3)
    filter_size = config.get("filter_size", 6)
    upsampling = config.get("lrelu_upsampling", 2)
    radial = config.get("use_radial_filters", False)
    total = (z_dim + (w_dim if c_dim else 0)) * w_dim + c_dim * w_dim + (mapping.get("num_layers", 2) - 1) * w_dim ** 2
    total += w_dim * 4 + int(channels[0]) ** 2 + int(sizes[0])  # Fourier input (and its sample coordinates)
    for i in range(num_layers + 1):  # layer i maps schedule entry max(i - 1, 0) to entry i; the last is ToRGB
        prev = max(i - 1, 0)
        torgb = i == num_layers
        c_in, c_out = int(channels[prev]), int(channels[i])
        k = 1 if torgb else kernel
        total += w_dim * c_in + c_in * c_out * k * k + c_out
        # The low-pass filters: filter_size taps per up/down factor, squared when radial.
        tmp_rate = max(rates[prev], rates[i]) * (1 if torgb else upsampling)
        up, down = round(tmp_rate / rates[prev]), round(tmp_rate / rates[i])
        up_taps = filter_size * up if up > 1 and not torgb else 1
        down_taps = filter_size * down if down > 1 and not torgb else 1
        critical = i >= num_layers - config.get("num_critical", 2)
        total += up_taps + (down_taps ** 2 if radial and not critical else down_taps)
    return int(total)
