"""Loading generators: built-in names, official NVlabs pickles, official-key state dicts, the project format.

Accepted inputs of `load_generator(path_or_name)`, recognised by content (not by extension):
- a built-in name (see configs.BUILTIN_GENERATORS): "demo", "sg3-t-1024", "sg3-r-1024"
- an official network pickle (`*.pkl`, NVlabs torch_utils.persistence format), read by the restricted unpickler
  of official_pickle (never executes the code such pickles embed); its `G_ema` is used
- a torch.save'd state dict with the official key names (e.g. the paper's sg3-r-ffhq-1024.pt), read with
  `torch.load(weights_only=True)`; also {"G_ema": state_dict}. The architecture is inferred from names and shapes.
- the project's format (`convert_generator` writes it): one safetensors file whose metadata holds
  {"format": "sg3stream.generator", "config": JSON of the Generator constructor arguments}.
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

from .configs import BUILTIN_GENERATORS, build_builtin
from .official_pickle import PersistentObject, read_official_pickle
from .stylegan3 import Generator, synthesis_layer_specs

PROJECT_FORMAT = "sg3stream.generator"
ACCEPTED = ("accepted: a built-in name (" + ", ".join(BUILTIN_GENERATORS) + "), an official NVlabs StyleGAN3 "
            "pickle (.pkl with G_ema), a StyleGAN3 state dict with the official key names (.pt), or a file "
            "written by `sg3stream models convert` (.safetensors)")
IGNORED_KEYS = ("synthesis.input.transform",)
_LAYER_KEY = re.compile(r"^synthesis\.L(\d+)_(\d+)_(\d+)\.weight$")


def load_generator(path_or_name, device="cpu", force_fp32=False) -> Generator:
    """The generator named or stored at `path_or_name`, in eval mode without gradients, on `device`.

    force_fp32: never use the fp16 layers (which otherwise run on CUDA like the official code).
    """
    name = str(path_or_name)
    if name in BUILTIN_GENERATORS:
        G = build_builtin(name)
    else:
        path = Path(name).expanduser()
        if not path.is_file():
            raise UserError(f"generator '{name}': no such file or built-in generator; {ACCEPTED}")
        G = _load_generator_file(path)
    G = G.eval().requires_grad_(False).to(device)
    G.synthesis.force_fp32 = bool(force_fp32)
    return G


def convert_generator(src, dst) -> Path:
    """Load any accepted generator from `src` and write it to `dst` in the project format (safetensors)."""
    from safetensors.torch import save_file

    G = load_generator(src)
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
        keys = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise UserError(f"generator '{path}': the pickle has no 'G_ema' network (it holds {keys}); {ACCEPTED}")
    net = data["G_ema"]
    if not isinstance(net, PersistentObject) or net.class_name != "Generator":
        raise UserError(f"generator '{path}': 'G_ema' is not a generator network; {ACCEPTED}")
    state_dict = net.state_dict()
    _check_is_stylegan3(state_dict, path)
    try:
        G = Generator(*net.init_args, **net.init_kwargs)
    except TypeError as e:
        raise UserError(f"generator '{path}': its constructor arguments are not those of a StyleGAN3 generator "
                        f"({e}); {ACCEPTED}") from None
    _load_state_strict(G, state_dict, path)
    return G


def _load_torch_file(path: Path) -> Generator:
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
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
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
    try:
        G = Generator(**json.loads(metadata["config"]))
    except (TypeError, ValueError) as e:
        raise UserError(f"generator '{path}': its stored config is invalid ({e}); {ACCEPTED}") from None
    _load_state_strict(G, state_dict, path)
    return G


# ---------------------------------------------------------------------------------------------------------------
# State dicts

def generator_from_state_dict(state_dict) -> Generator:
    """A Generator built from the architecture inferred from the official key names and shapes, with the weights."""
    _check_is_stylegan3(state_dict)
    G = Generator(**infer_generator_config(state_dict))
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
    if sorted(layers) != list(range(num_layers + 1)):
        raise UserError(f"the synthesis layers are not numbered L0..L{num_layers} (found {sorted(layers)})")
    sizes = [layers[i][0] for i in range(num_layers + 1)]
    channels = [layers[i][1] for i in range(num_layers + 1)]
    img_resolution, img_channels = sizes[-1], channels[-1]
    conv_kernel = int(state_dict[layers[0][2]].shape[-1])
    input_channels = int(state_dict["synthesis.input.freqs"].shape[0])
    use_radial = any(k.endswith(".down_filter") and state_dict[k].ndim == 2 for k in state_dict)

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
