"""Loading generators: built-in names, official NVlabs pickles, official-key state dicts, the project format.

Accepted inputs of `load_generator(path_or_name)`, recognised by content (not by extension):
- a built-in name (see configs.BUILTIN_GENERATORS): "demo", "sg3-t-1024", "sg3-r-1024"
- an official network pickle (`*.pkl`, NVlabs torch_utils.persistence format), read by the restricted unpickler
  of official_pickle (never executes the code such pickles embed); its `G_ema` is used
- a torch.save'd state dict with the official key names (e.g. the paper's sg3-r-ffhq-1024.pt), read with
  `torch.load(weights_only=True)`; also {"G_ema": state_dict}. The architecture is inferred from names and shapes.
- the project's format (`convert_generator` writes it): one safetensors file whose metadata holds
  {"format": "sg3stream.generator", "config": JSON of the Generator constructor arguments}.
- a name from `sg3stream models list` whose file is in the cache (names are resolved by resolve.resolve_model).

Whatever the file, the work it can cause is bounded (limits.py) and every failure is one UserError line: pickles are
scanned before they are unpickled, and a configuration (stored or inferred from tensor shapes) is checked against
sane ranges and its parameter count before the Generator is built.
"""
from __future__ import annotations

import json
import re
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch

from sg3stream.errors import UserError

from .configs import BUILTIN_GENERATORS, build_builtin, warn_demo_model
from .limits import MAX_CONFIG_CHARS, MAX_LAYERS, check_generator_config
from .official_pickle import PersistentObject, read_official_pickle
from .resolve import resolve_model
from .stylegan3 import Generator, synthesis_layer_specs

PROJECT_FORMAT = "sg3stream.generator"
ACCEPTED = ("accepted: a built-in name (" + ", ".join(BUILTIN_GENERATORS) + "), a downloaded name from "
            "`sg3stream models list`, an official NVlabs StyleGAN3 "
            "pickle (.pkl with G_ema), a StyleGAN3 state dict with the official key names (.pt), or a file "
            "written by `sg3stream models convert` (.safetensors)")
IGNORED_KEYS = ("synthesis.input.transform",)
# Numbers of at most 9 digits: int() of a 10^5-digit name would raise (and cost) more than a refusal.
_LAYER_KEY = re.compile(r"^synthesis\.L(\d{1,9})_(\d{1,9})_(\d{1,9})\.weight$")


def load_generator(path_or_name, device="cpu", force_fp32=False, *, warn_demo=True) -> Generator:
    """The generator named or stored at `path_or_name`, in eval mode without gradients, on `device`.

    force_fp32: never use the fp16 layers (which otherwise run on CUDA like the official code).
    warn_demo: log a warning on the `sg3stream` logger when this is the demo generator (random weights); callers
               that have already said so (the run command) pass False.
    """
    source = resolve_model(path_or_name, "generator")
    if source.builtin == "oracle":  # a renderer of the run's own faces (oracle.py), not a network
        raise UserError("the oracle is not a network: it only renders in `sg3stream run --generator oracle`")
    if source.builtin is not None:
        if source.is_demo and warn_demo:
            warn_demo_model()
        G = build_builtin(source.builtin)
    else:
        G = _load_generator_file(source.path)
    G = G.eval().requires_grad_(False).to(device)
    G.synthesis.force_fp32 = bool(force_fp32)
    return G


def convert_generator(src, dst) -> Path:
    """Load any accepted generator from `src` and write it to `dst` in the project format (safetensors)."""
    from safetensors.torch import save_file

    G = load_generator(src, warn_demo=False)  # a conversion renders nothing
    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise UserError(f"output '{dst}': the project format is a .safetensors file; give a name ending in .safetensors")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in G.state_dict().items()}
    metadata = {"format": PROJECT_FORMAT, "config": json.dumps(G.init_kwargs, default=_json_default)}
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(dst), metadata=metadata)
    return dst


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in the generator config")


# ---------------------------------------------------------------------------------------------------------------
# Files

def _load_generator_file(path: Path) -> Generator:
    try:
        return _read_generator_file(path)
    except (RecursionError, MemoryError) as e:  # the limits should prevent these; still one line if they do not
        need = "nesting" if isinstance(e, RecursionError) else "memory"
        raise UserError(f"generator '{path}': the file needs more {need} than this program allows for a model; "
                        f"{ACCEPTED}") from None


def _read_generator_file(path: Path) -> Generator:
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) < 8:
        raise UserError(f"generator '{path}': the file is empty or truncated; {ACCEPTED}")
    if head.startswith(b"PK\x03\x04"):
        return _load_torch_file(path)
    if head[:1] == b"\x80":
        return _load_official_pickle(path)
    if _looks_like_safetensors(head):
        return _load_project_file(path)
    raise UserError(f"generator '{path}': not a file kind this program reads; {ACCEPTED}")


def _looks_like_safetensors(head: bytes) -> bool:
    header_len = struct.unpack("<Q", head[:8])[0]
    return 0 < header_len < 100_000_000 and head[8:9] == b"{"


def _load_official_pickle(path: Path) -> Generator:
    try:
        data = read_official_pickle(path.read_bytes())
    except UserError as e:
        raise UserError(f"generator '{path}': {e}") from None
    except Exception as e:  # truncated or corrupt pickles fail in many ways
        raise UserError(f"generator '{path}': the pickle is truncated or corrupt ({type(e).__name__}: {e}); "
                        f"{ACCEPTED}") from None
    if not isinstance(data, dict) or "G_ema" not in data:
        # keys only by name: printing hostile objects could be unbounded work
        keys = sorted(k if isinstance(k, str) else type(k).__name__ for k in data)[:10] if isinstance(data, dict) \
            else type(data).__name__
        raise UserError(f"generator '{path}': the pickle has no 'G_ema' network (it holds {keys}); {ACCEPTED}")
    net = data["G_ema"]
    if not isinstance(net, PersistentObject) or net.class_name != "Generator":
        raise UserError(f"generator '{path}': 'G_ema' is not a generator network; {ACCEPTED}")
    try:
        state_dict = net.state_dict()
    except UserError as e:
        raise UserError(f"generator '{path}': {e}") from None
    _check_is_stylegan3(state_dict, path)
    if len(net.init_args) > len(_POSITIONAL_ARGS):
        raise UserError(f"generator '{path}': its constructor has {len(net.init_args)} positional arguments; "
                        f"a StyleGAN3 generator takes at most {len(_POSITIONAL_ARGS)}")
    config = dict(zip(_POSITIONAL_ARGS, net.init_args), **net.init_kwargs)
    G = _build_generator(config, f"generator '{path}'")
    _load_state_strict(G, state_dict, path)
    return G


_POSITIONAL_ARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs")


def _build_generator(config, where: str) -> Generator:
    """Generator(**config) once the config is within limits; any failure of the constructor is a UserError."""
    config = check_generator_config(_plain(config), f"{where}: its configuration")
    try:
        return Generator(**config)
    except Exception as e:  # a config that passes the range checks but still makes no network
        raise UserError(f"{where}: its configuration does not make a StyleGAN3 generator "
                        f"({type(e).__name__}: {str(e)[:200]}); {ACCEPTED}") from None


def _plain(value):
    """numpy scalars (as pickles may hold them) as Python numbers and dict subclasses (EasyDict) as dicts, in a config
    and its mapping_kwargs (two levels: deeper values are refused by the config check anyway)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: {kk: _plain_value(vv) for kk, vv in v.items()} if isinstance(v, dict) else _plain_value(v)
                for k, v in value.items()}
    return value


def _plain_value(value):
    return value.item() if isinstance(value, np.generic) else value


def _load_torch_file(path: Path) -> Generator:
    from .checkpoints import check_torch_pickles

    check_torch_pickles(path, what=f"generator '{path}'")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise UserError(f"generator '{path}': the torch file is truncated or corrupt, or holds objects other "
                        f"than tensors ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                        f"{ACCEPTED}") from None
    except Exception as e:  # e.g. pickle.UnpicklingError for non-tensor objects
        raise UserError(f"generator '{path}': cannot read it as a state dict ({type(e).__name__}); {ACCEPTED}") from None
    if isinstance(obj, dict) and isinstance(obj.get("G_ema"), dict):
        obj = obj["G_ema"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in obj.items()):
        raise UserError(f"generator '{path}': the torch file does not hold a state dict of tensors; {ACCEPTED}")
    try:
        return generator_from_state_dict(obj)
    except UserError as e:
        raise UserError(f"generator '{path}': {e}") from None


def _load_project_file(path: Path) -> Generator:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state_dict = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise UserError(f"generator '{path}': the safetensors file is truncated or corrupt ({e}); {ACCEPTED}") from None
    if metadata.get("format") != PROJECT_FORMAT or "config" not in metadata:
        # A safetensors file without our config: try to infer the architecture like for a state dict.
        try:
            return generator_from_state_dict(state_dict)
        except UserError as e:
            raise UserError(f"generator '{path}': {e}") from None
    text = metadata["config"]
    if len(text) > MAX_CONFIG_CHARS:
        raise UserError(f"generator '{path}': its stored config has {len(text)} characters (a generator's has a few "
                        f"hundred); {ACCEPTED}")
    try:
        config = json.loads(text)
    except RecursionError:
        raise UserError(f"generator '{path}': its stored config is nested too deeply; {ACCEPTED}") from None
    except ValueError as e:
        raise UserError(f"generator '{path}': its stored config is not valid JSON ({e}); {ACCEPTED}") from None
    G = _build_generator(config, f"generator '{path}'")
    _load_state_strict(G, state_dict, path)
    return G


# ---------------------------------------------------------------------------------------------------------------
# State dicts

def generator_from_state_dict(state_dict) -> Generator:
    """A Generator built from the architecture inferred from the official key names and shapes, with the weights."""
    _check_is_stylegan3(state_dict)
    G = _build_generator(infer_generator_config(state_dict), "the state dict")
    _load_state_strict(G, state_dict)
    return G


def _check_is_stylegan3(state_dict, path=None) -> None:
    where = f"generator '{path}': " if path else ""
    keys = list(state_dict)
    if any(k.startswith("synthesis.b4.") or k.endswith(".const") for k in keys):
        raise UserError(f"{where}this is a StyleGAN2 (or StyleGAN-ADA) generator, which this program does not run; "
                        f"{ACCEPTED}")
    required = ["mapping.fc0.weight", "synthesis.input.affine.weight", "synthesis.input.freqs"]
    missing = [k for k in required if k not in state_dict]
    if missing or not any(_LAYER_KEY.match(k) for k in keys):
        raise UserError(f"{where}not a StyleGAN3 generator state dict (missing {missing or 'synthesis.L* layers'}; "
                        f"it has {len(keys)} keys, e.g. {keys[:3]}); {ACCEPTED}")


def infer_generator_config(state_dict) -> dict:
    """Generator constructor arguments from official tensor names and shapes.

    Inferred: z/c/w dims, mapping depth, resolution, image channels, number of layers, kernel size (T: 3, R: 1),
    radial filters, channel_base/channel_max and margin. Assumed at the official defaults (not stored in weights):
    the cutoff/stopband schedule, num_critical, output_scale, mapping lr_multiplier, num_fp16_res, conv_clamp.
    """
    for key, value in state_dict.items():  # the shapes read below, before reading them
        ndim = 4 if _LAYER_KEY.match(key) else 2 if key in ("mapping.fc0.weight", "mapping.embed.weight",
                                                             "synthesis.input.freqs") else None
        if ndim is not None and value.ndim != ndim:
            raise UserError(f"{key} has shape {list(value.shape)}; StyleGAN3's is {ndim}-D")
    fc0 = state_dict["mapping.fc0.weight"]
    w_dim = int(fc0.shape[0])
    c_dim = int(state_dict["mapping.embed.weight"].shape[1]) if "mapping.embed.weight" in state_dict else 0
    z_dim = int(fc0.shape[1]) - (w_dim if c_dim > 0 else 0)
    mapping_layers = 0
    while f"mapping.fc{mapping_layers}.weight" in state_dict:
        mapping_layers += 1

    layers = {}
    for key in state_dict:
        m = _LAYER_KEY.match(key)
        if m:
            layers[int(m.group(1))] = (int(m.group(2)), int(m.group(3)), key)
    num_layers = max(layers)
    if num_layers > MAX_LAYERS:
        raise UserError(f"the synthesis layers go up to L{num_layers} (at most L{MAX_LAYERS} accepted; official: L14)")
    if sorted(layers) != list(range(num_layers + 1)):
        raise UserError(f"the synthesis layers are not numbered L0..L{num_layers} (found {sorted(layers)})")
    sizes = [layers[i][0] for i in range(num_layers + 1)]
    channels = [layers[i][1] for i in range(num_layers + 1)]
    img_resolution, img_channels = sizes[-1], channels[-1]
    conv_kernel = int(state_dict[layers[0][2]].shape[-1])
    input_channels = int(state_dict["synthesis.input.freqs"].shape[0])
    use_radial = any(k.endswith(".down_filter") and state_dict[k].ndim == 2 for k in state_dict)

    # Check the sizes read from names and shapes before computing with them.
    check_generator_config(dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                                img_channels=img_channels, num_layers=num_layers, conv_kernel=conv_kernel,
                                channel_max=max(channels[:-1]), mapping_kwargs=dict(num_layers=max(mapping_layers, 1))),
                           "the inferred configuration")
    base_spec = synthesis_layer_specs(img_resolution, img_channels, num_layers=num_layers, margin_size=0)
    margin = (sizes[0] - int(base_spec["sampling_rates"][0])) // 2
    if input_channels != channels[0]:
        raise UserError(f"the Fourier input has {input_channels} channels but L0 has {channels[0]}")
    channel_base, channel_max = _infer_channel_base_max(channels, img_resolution, img_channels, num_layers)
    config = dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                  mapping_kwargs=dict(num_layers=mapping_layers), channel_base=channel_base, channel_max=channel_max,
                  num_layers=num_layers, margin_size=margin)
    if conv_kernel != 3:
        config["conv_kernel"] = conv_kernel
    if use_radial:
        config["use_radial_filters"] = True

    spec = synthesis_layer_specs(img_resolution, img_channels, channel_base, channel_max, num_layers,
                                 margin_size=margin)
    if [int(s) for s in spec["sizes"]] != sizes:
        raise UserError(f"the layer sizes {sizes} do not follow the official StyleGAN3 schedule for "
                        f"{img_resolution}x{img_resolution} with {num_layers} layers")
    return config


def _infer_channel_base_max(channels, img_resolution, img_channels, num_layers):
    """channel_base/channel_max reproducing the per-layer output channels (last = ToRGB)."""
    cutoffs = synthesis_layer_specs(img_resolution, img_channels, num_layers=num_layers)["cutoffs"]
    channel_max = max(channels[:-1])
    # Uncapped layers have channels = rint(channel_base / 2 / cutoff): try the values each layer suggests.
    # Powers of two first: every official config uses one, and several values can give the same channels.
    powers = [2 ** k for k in range(6, 21)]
    candidates = powers + sorted({int(round(2 * c * f)) for c, f in zip(channels[:-1], cutoffs)} - set(powers))
    for channel_base in candidates:
        spec = synthesis_layer_specs(img_resolution, img_channels, channel_base, channel_max, num_layers)
        if [int(c) for c in spec["channels"]] == channels:
            return channel_base, channel_max
    raise UserError(f"the layer channels {channels} do not follow the official StyleGAN3 channel schedule")


def _load_state_strict(G: Generator, state_dict, path=None) -> None:
    where = f"generator '{path}': " if path else ""
    state_dict = {k: v for k, v in state_dict.items() if k not in IGNORED_KEYS}
    expected = G.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        raise UserError(f"{where}the weights do not match the StyleGAN3 architecture: missing keys {missing[:5]}"
                        f"{' ...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
                        f"{' ...' if len(unexpected) > 5 else ''}; {ACCEPTED}")
    wrong = [f"{k} {tuple(v.shape)} (expected {tuple(expected[k].shape)})" for k, v in state_dict.items()
             if tuple(v.shape) != tuple(expected[k].shape)]
    if wrong:
        raise UserError(f"{where}tensor shapes do not match the architecture: {wrong[:3]}; {ACCEPTED}")
    # The low-pass filters are designed from the (assumed) schedule: differing values mean a non-default config.
    for k, v in state_dict.items():
        if k.endswith(("up_filter", "down_filter")) and not torch.allclose(v.float(), expected[k], atol=1e-6):
            raise UserError(f"{where}the filter {k} differs from the one the inferred configuration designs "
                            f"(non-default cutoff/stopband settings are not supported for state dicts)")
    G.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state_dict.items()})
