"""ReStyle inversion for StyleGAN3 (the encoders of "Third Time's the Charm?", Alaluf, Patashnik et al.).

Public API:

    enc = load_encoder("restyle_e4e_ffhq")            # or a path to an official .pt, or "demo"
    ws = enc.invert(images, n_iters=3)                 # images [B,3,256,256] in [-1,1] -> W+ [B,16,512]
    enc.generator                                      # the StyleGAN3 generator the codes belong to

The iterative scheme follows the reference (`utils/inference_utils.run_on_batch`, `inversion/models/{psp3,e4e3}.py`):

- iteration 0: the encoder sees [frame, average image] (6 channels) and its output is added to latent_avg;
- iteration i > 0: it sees [frame, previous reconstruction pooled to 256x256] and its output is added to the
  previous codes;
- reconstructions are rendered aligned (identity transform, as the reference sets on synthesis.input);
- the codes of the last iteration are the result.

The average image is the generator's render of latent_avg (one code repeated on all ws), adaptive-average-pooled
to 256x256 as the reference's face_pool; it is computed once per generator and cached.
"""
from __future__ import annotations

import argparse
import inspect
import logging
import math
import os
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sg3stream.errors import UserError

from .checkpoints import safe_torch_load
from .encoders import (ENCODER_CLASSES, BackboneEncoder, ProgressiveBackboneEncoder, ResNetProgressiveBackboneEncoder)

log = logging.getLogger(__name__)

__all__ = ["ReStyleEncoder", "load_encoder", "encoder_from_checkpoint", "build_demo_encoder", "detect_encoder_type",
           "ENCODER_TYPES", "ENCODER_RESOLUTION"]

ENCODER_RESOLUTION = 256
MAX_STYLES = 64     # codes an encoder may output (official: 16 or 18)
MAX_WIDTH = 4096    # channels of any encoder layer (official: at most 512)

# encoder_type (as in the reference's opts) -> (method, backbone)
ENCODER_TYPES: dict[str, tuple[str, str]] = {
    "BackboneEncoder": ("psp", "ir_se50"),
    "ProgressiveBackboneEncoder": ("e4e", "ir_se50"),
    "ResNetBackboneEncoder": ("psp", "resnet34"),
    "ResNetProgressiveBackboneEncoder": ("e4e", "resnet34"),
}
# opts keys that only the e4e training options have (used when encoder_type is missing)
_E4E_ONLY_OPTS = ("w_discriminator_lambda", "progressive_steps", "delta_norm_lambda", "use_w_pool",
                  "progressive_start", "progressive_step_every", "w_pool_size", "d_reg_every")

_PREFIX_ENC, _PREFIX_DEC = "encoder.", "decoder."


def _gen_attr(generator: Any, name: str) -> Any:
    v = getattr(generator, name, None)
    if v is None and hasattr(generator, "synthesis"):
        v = getattr(generator.synthesis, name, None)
    return v


class ReStyleEncoder(nn.Module):
    """A ReStyle encoder bound to its StyleGAN3 generator; `invert` runs the iterative inversion.

    encoder:      one of the classes in `encoders.py` (6 input channels, n_styles codes of style_dim)
    generator:    object with `.synthesis(ws, transform=None)`, `.num_ws`, `.w_dim`, `.img_resolution`
    latent_avg:   [w_dim], [1, w_dim] or [num_ws, w_dim]; the start point of iteration 0
    encoder_type: the reference's class name (see ENCODER_TYPES)
    """

    def __init__(self, encoder: nn.Module, generator: nn.Module, latent_avg: torch.Tensor | np.ndarray | None,
                 encoder_type: str, *, description: str = ""):
        super().__init__()
        if encoder_type not in ENCODER_TYPES:
            raise UserError(f"unknown encoder_type {encoder_type!r}; accepted: {', '.join(ENCODER_TYPES)}")
        self.encoder = encoder.eval()
        self.encoder_type = encoder_type
        self.method, self.backbone = ENCODER_TYPES[encoder_type]
        self.description = description
        self.n_styles = int(encoder.style_count)
        self.style_dim = int(encoder.style_dim)
        self._engine = None
        self._avg_cache: tuple[int, torch.Tensor] | None = None
        self.generator = generator
        if latent_avg is None:
            latent_avg = _generator_w_avg(generator)
            if latent_avg is None:
                raise UserError("the checkpoint has no latent_avg and the generator has no mapping.w_avg; "
                                "ReStyle needs the average latent to start from")
        self.register_buffer("latent_avg", self._check_latent_avg(torch.as_tensor(latent_avg).float()), persistent=False)

    # ------------------------------------------------------------------ setup and checks
    @property
    def generator(self) -> nn.Module:
        return self._generator

    def __setattr__(self, name: str, value: Any) -> None:
        # nn.Module.__setattr__ would register a Module value as a submodule and bypass the checks
        if name == "generator":
            self._set_generator(value)
        else:
            super().__setattr__(name, value)

    def _set_generator(self, g: nn.Module) -> None:
        self._check_generator(g)
        # stored outside _modules on purpose: state_dict() of the encoder stays the encoder's
        object.__setattr__(self, "_generator", g.eval() if hasattr(g, "eval") else g)
        self._avg_cache = None
        self._synth_takes_fp32 = None
        self._render_synthesis = None

    def set_render_synthesis(self, synthesis) -> None:
        """Render the reconstructions with `synthesis` (a stand-in for generator.synthesis with its signature, such
        as models.compiled.CompiledSynthesis) instead of the generator's own network; None restores it."""
        object.__setattr__(self, "_render_synthesis", synthesis)
        self._avg_cache = None
        self._synth_takes_fp32 = None

    def _check_generator(self, g: Any) -> None:
        if g is None or not hasattr(g, "synthesis"):
            raise UserError(f"the generator must be a StyleGAN3 Generator (with .synthesis), got {type(g).__name__}")
        num_ws, w_dim = _gen_attr(g, "num_ws"), _gen_attr(g, "w_dim")
        if num_ws is not None and int(num_ws) != self.n_styles:
            raise UserError(f"encoder and generator do not fit: the encoder predicts {self.n_styles} W+ codes but the "
                            f"generator takes num_ws={num_ws}; use a StyleGAN3 generator with {self.n_styles} ws "
                            f"(the FFHQ 1024 configs) or the encoder trained for it")
        if w_dim is not None and int(w_dim) != self.style_dim:
            raise UserError(f"encoder and generator do not fit: the encoder predicts {self.style_dim}-d codes but the "
                            f"generator has w_dim={w_dim}")

    def _check_latent_avg(self, la: torch.Tensor) -> torch.Tensor:
        if la.ndim == 1:
            la = la[None]
        if la.ndim != 2 or la.shape[-1] != self.style_dim or la.shape[0] not in (1, self.n_styles):
            raise UserError(f"latent_avg has shape {tuple(la.shape)}; accepted: [{self.style_dim}], "
                            f"[1, {self.style_dim}] or [{self.n_styles}, {self.style_dim}]")
        return la.expand(self.n_styles, self.style_dim).clone()

    @property
    def device(self) -> torch.device:
        return self.latent_avg.device

    def to(self, *args, **kwargs):  # move the generator along with the encoder
        super().to(*args, **kwargs)
        g = self._generator
        if hasattr(g, "to"):
            object.__setattr__(self, "_generator", g.to(*args, **kwargs))
        self._avg_cache = None
        return self

    # ------------------------------------------------------------------ engines
    def set_engine(self, engine: str | Any = "torch", **options: Any) -> "ReStyleEncoder":
        """Run the encoder network through an engine: "torch" (default), "onnx", "tensorrt", or an Engine object.

        The generator's reconstructions between iterations still run in torch.
        """
        if not isinstance(engine, str):
            self._engine = engine
            return self
        from sg3stream.engines.base import create_engine

        if engine == "torch" and not options:
            self._engine = None
            return self
        example = torch.zeros(1, self.encoder.input_nc, ENCODER_RESOLUTION, ENCODER_RESOLUTION)
        device = options.pop("device", self.device)
        self._engine = create_engine(self.encoder, engine, example_inputs=(example,), device=device,
                                     input_names=("x",), output_names=("codes",), **options)
        return self

    @property
    def engine(self) -> str:
        return "torch" if self._engine is None else self._engine.kind

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """One encoder pass: [B, 6, 256, 256] -> [B, n_styles, style_dim] (residual, before adding the base)."""
        if self._engine is None:
            return self.encoder(x)
        return self._engine(x).to(x.device, torch.float32)

    # ------------------------------------------------------------------ inversion
    def render_aligned(self, codes: torch.Tensor) -> torch.Tensor:
        """Generator render with the identity transform, pooled to 256x256 (the reference's face_pool)."""
        synth = self._render_synthesis if self._render_synthesis is not None else self._generator.synthesis
        if self._synth_takes_fp32 is None:
            try:
                params = inspect.signature(synth.forward if isinstance(synth, nn.Module) else synth).parameters
                self._synth_takes_fp32 = "force_fp32" in params
            except (TypeError, ValueError):
                self._synth_takes_fp32 = False
        # the reference renders its reconstructions with the identity transform and force_fp32=True
        if self._synth_takes_fp32:
            img = synth(codes, transform=None, force_fp32=True)
        else:
            img = synth(codes, transform=None)
        if img.shape[-1] != ENCODER_RESOLUTION or img.shape[-2] != ENCODER_RESOLUTION:
            img = F.adaptive_avg_pool2d(img, (ENCODER_RESOLUTION, ENCODER_RESOLUTION))
        return img.float()

    def average_image(self) -> torch.Tensor:
        """The render of latent_avg, [3, 256, 256]; computed once per generator and cached."""
        key = id(self._generator)
        if self._avg_cache is None or self._avg_cache[0] != key or self._avg_cache[1].device != self.device:
            with torch.no_grad():
                img = self.render_aligned(self.latent_avg[None].to(self.device))[0]
            self._avg_cache = (key, img)
        return self._avg_cache[1]

    def check_images(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Validate and convert inversion inputs: [B, 3, 256, 256] float in [-1, 1]."""
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images)
        if not isinstance(images, torch.Tensor):
            raise UserError(f"images must be a torch tensor or numpy array [B, 3, 256, 256], got {type(images).__name__}")
        if images.ndim == 3:
            images = images[None]
        want = f"[B, 3, {ENCODER_RESOLUTION}, {ENCODER_RESOLUTION}]"
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (ENCODER_RESOLUTION,) * 2:
            hint = ""
            if images.ndim == 4 and images.shape[-1] == 3:
                hint = " (looks channels-last: permute to [B, 3, H, W])"
            raise UserError(f"images have shape {tuple(images.shape)}; the encoder takes aligned faces {want}{hint}")
        if images.shape[0] == 0:
            raise UserError(f"images is empty; expected {want} with B >= 1")
        if not images.is_floating_point():
            raise UserError(f"images have dtype {images.dtype}; expected float in [-1, 1] "
                            f"(for uint8 frames use x.float() / 127.5 - 1)")
        images = images.to(self.device, torch.float32)
        if not torch.isfinite(images).all():
            raise UserError("images contain NaN or infinite values; expected finite floats in [-1, 1]")
        lo, hi = float(images.min()), float(images.max())
        if lo < -1.01 or hi > 1.01:
            hint = " (looks like 0..255: use x / 127.5 - 1)" if hi > 2 else ""
            raise UserError(f"images range over [{lo:.3g}, {hi:.3g}]; expected values in [-1, 1]{hint}")
        return images

    @torch.no_grad()
    def invert(self, images: torch.Tensor | np.ndarray, n_iters: int = 3, *, return_steps: bool = False,
               batch_size: int | None = None) -> torch.Tensor | list[torch.Tensor]:
        """ReStyle iterative inversion of aligned faces.

        images: [B, 3, 256, 256] float in [-1, 1] (aligned crops). n_iters >= 1 (3 as in the paper).
        Returns W+ codes [B, n_styles, style_dim] float32 on the encoder's device, or with return_steps the
        list of the codes after every iteration. batch_size splits B into chunks (None = all at once).
        """
        if not isinstance(n_iters, (int, np.integer)) or n_iters < 1:
            raise UserError(f"n_iters must be an integer >= 1, got {n_iters!r}")
        x = self.check_images(images)
        if batch_size and x.shape[0] > batch_size:
            parts = [self.invert(x[i:i + batch_size], n_iters, return_steps=True)
                     for i in range(0, x.shape[0], batch_size)]
            steps = [torch.cat([p[s] for p in parts], 0) for s in range(n_iters)]
            return steps if return_steps else steps[-1]
        b = x.shape[0]
        steps = []
        codes = None
        for it in range(n_iters):
            if it == 0:
                prev = self.average_image()[None].expand(b, -1, -1, -1)
                base = self.latent_avg[None].expand(b, -1, -1)
            else:
                prev = self.render_aligned(codes)
                base = codes
            codes = self.encode(torch.cat([x, prev.to(x.dtype)], dim=1)) + base
            steps.append(codes)
        return steps if return_steps else steps[-1]

    def forward(self, images: torch.Tensor, n_iters: int = 3) -> torch.Tensor:
        return self.invert(images, n_iters)

    def __repr__(self) -> str:
        return (f"ReStyleEncoder({self.encoder_type}: {self.method}/{self.backbone}, {self.n_styles}x{self.style_dim}, "
                f"engine={self.engine}{', ' + self.description if self.description else ''})")


def _generator_w_avg(generator: Any) -> torch.Tensor | None:
    mapping = getattr(generator, "mapping", None)
    w_avg = getattr(mapping, "w_avg", None) if mapping is not None else None
    return None if w_avg is None else torch.as_tensor(w_avg).detach().float().cpu()


# ---------------------------------------------------------------------- checkpoints
def _opts_dict(opts: Any) -> dict:
    if opts is None:
        return {}
    if isinstance(opts, argparse.Namespace):
        return dict(vars(opts))
    if isinstance(opts, Mapping):
        return dict(opts)
    return {}


def detect_encoder_type(state_dict: Mapping[str, Any], opts: Mapping[str, Any] | None = None) -> str:
    """The reference class name of a checkpoint's encoder: from opts['encoder_type'], else from the keys.

    Keys tell the backbone (IR-SE50: input_layer.*, ResNet34: conv1.*); pSp and e4e have identical keys, so the
    method comes from e4e-only training options when encoder_type is missing. Raises UserError when it cannot tell.
    """
    opts = dict(opts or {})
    et = opts.get("encoder_type")
    if et is not None:
        et = str(et)
        if et not in ENCODER_TYPES:
            raise UserError(f"checkpoint's opts name encoder_type={et!r}, which is not a ReStyle StyleGAN3 encoder; "
                            f"accepted: {', '.join(ENCODER_TYPES)}")
        return et
    enc_keys = [k[len(_PREFIX_ENC):] for k in state_dict if k.startswith(_PREFIX_ENC)]
    if any(k.startswith("input_layer.") for k in enc_keys):
        backbone = "ir_se50"
    elif any(k.startswith("conv1.") for k in enc_keys):
        backbone = "resnet34"
    else:
        raise UserError("cannot tell the encoder's backbone from the checkpoint's keys (neither encoder.input_layer.* "
                        "for IR-SE50 nor encoder.conv1.* for ResNet34)")
    if any(k in opts for k in _E4E_ONLY_OPTS):
        method = "e4e"
    elif opts:
        method = "psp"  # pSp training options without any e4e-only key
    else:
        raise UserError("the checkpoint does not say whether it is ReStyle-e4e or ReStyle-pSp (no opts; both have the "
                        "same keys); pass encoder_type= one of " + ", ".join(ENCODER_TYPES))
    for name, (m, bb) in ENCODER_TYPES.items():
        if m == method and bb == backbone:
            return name
    raise AssertionError("unreachable")


def _split_state_dict(ckpt: Any, source: str) -> tuple[dict, dict, Any, dict]:
    """(encoder sd, decoder sd, latent_avg, opts) of a loaded checkpoint, or UserError saying what it is instead."""
    accepted = ("a ReStyle checkpoint (.pt) holding 'state_dict' with encoder.* (and decoder.*) keys, "
                "'latent_avg' and 'opts', as released with the paper")
    if not isinstance(ckpt, Mapping):
        raise UserError(f"{source} is not a ReStyle checkpoint (it holds a {type(ckpt).__name__}); expected {accepted}")
    sd = ckpt.get("state_dict", ckpt)
    if not isinstance(sd, Mapping):
        raise UserError(f"{source}: 'state_dict' is a {type(sd).__name__}, not a dict; expected {accepted}")
    enc = {k[len(_PREFIX_ENC):]: v for k, v in sd.items() if isinstance(k, str) and k.startswith(_PREFIX_ENC)}
    dec = {k[len(_PREFIX_DEC):]: v for k, v in sd.items() if isinstance(k, str) and k.startswith(_PREFIX_DEC)}
    if not enc:
        keys = [str(k) for k in list(sd.keys())[:5]]
        what = ""
        if any(str(k) in ("G_ema", "G", "D") for k in ckpt) or any(str(k).startswith(("synthesis.", "mapping."))
                                                                   for k in sd):
            what = " It looks like a generator checkpoint: pass it as generator=, not as the encoder."
        raise UserError(f"{source} has no encoder.* weights (first keys: {keys}).{what} Expected {accepted}")
    bad = [k for k, v in enc.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise UserError(f"{source}: encoder entries that are not tensors: {bad[:3]}")
    return enc, dec, ckpt.get("latent_avg"), _opts_dict(ckpt.get("opts"))


def _build_encoder(encoder_type: str, enc_sd: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    first = enc_sd.get("input_layer.0.weight", enc_sd.get("conv1.weight"))
    if first is None or first.ndim != 4:
        raise UserError(f"{source}: the encoder's first conv weight is missing; cannot build {encoder_type}")
    input_nc = int(first.shape[1])
    if input_nc != 6:
        raise UserError(f"{source}: the encoder takes {input_nc} input channels; ReStyle encoders take 6 "
                        f"(the frame and the current reconstruction)")
    n_styles = len({k.split(".")[1] for k in enc_sd if k.startswith("styles.")})
    lin = enc_sd.get("styles.0.linear.weight")
    style_dim = int(lin.shape[0]) if lin is not None and lin.ndim == 2 else 512
    # Sizes come from key names and tensor shapes (a zero-size tensor can claim any width): bound them before
    # building anything. Official encoders: 16 or 18 styles of 512.
    if not 1 <= n_styles <= MAX_STYLES or not 1 <= style_dim <= MAX_WIDTH:
        raise UserError(f"{source}: the encoder has {n_styles} styles of {style_dim} values; accepted: 1 to "
                        f"{MAX_STYLES} styles of at most {MAX_WIDTH} (official: 16 or 18 of 512)")
    cls = ENCODER_CLASSES[encoder_type]
    if cls in (BackboneEncoder, ProgressiveBackboneEncoder):
        enc = cls(50, "ir_se", n_styles=n_styles, input_nc=input_nc, style_dim=style_dim)
    else:
        # widths from the weights (the reference sizes for official checkpoints; smaller for the demo layout)
        try:
            widths = tuple(int(enc_sd[f"body.{i}.conv1.weight"].shape[0]) for i in (0, 3, 7, 13))
            mid = int(enc_sd["styles.0.convs.0.weight"].shape[0])
        except (KeyError, IndexError) as e:
            raise UserError(f"{source}: the ResNet34 encoder weights are incomplete (no {e.args[0]})") from None
        if not all(1 <= w <= MAX_WIDTH for w in (*widths, mid)):
            raise UserError(f"{source}: the encoder's widths {widths} / {mid} are outside 1 to {MAX_WIDTH}")
        enc = cls(n_styles=n_styles, input_nc=input_nc, style_dim=style_dim, widths=widths,
                  style_mid=None if mid == style_dim else mid)
    result = enc.load_state_dict(dict(enc_sd), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise UserError(f"{source}: the encoder weights do not match {encoder_type} (IR-SE50 or ResNet34, "
                        f"{n_styles} styles): missing {result.missing_keys[:4]}, unexpected "
                        f"{result.unexpected_keys[:4]}")
    return enc.eval()


def encoder_from_checkpoint(ckpt: Any, generator: Any = None, *, encoder_type: str | None = None,
                            source: str = "checkpoint") -> ReStyleEncoder:
    """Build a ReStyleEncoder from an already loaded checkpoint dict (see `load_encoder`)."""
    enc_sd, dec_sd, latent_avg, opts = _split_state_dict(ckpt, source)
    et = encoder_type or detect_encoder_type({_PREFIX_ENC + k: v for k, v in enc_sd.items()}, opts)
    if et not in ENCODER_TYPES:
        raise UserError(f"encoder_type={et!r} is not accepted; accepted: {', '.join(ENCODER_TYPES)}")
    try:
        encoder = _build_encoder(et, enc_sd, source)
    except RuntimeError as e:  # shape mismatches from load_state_dict
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise UserError(f"{source}: the encoder weights do not fit {et}: {' '.join(lines[:2])[:400]}") from None
    if generator is None:
        if not dec_sd:
            raise UserError(f"{source} has no decoder.* weights; pass generator= (a Generator, a path or a name)")
        from .loading import generator_from_state_dict

        generator = generator_from_state_dict(dec_sd)
    elif isinstance(generator, (str, os.PathLike)):
        from .loading import load_generator

        generator = load_generator(generator)
    if latent_avg is not None and not isinstance(latent_avg, (torch.Tensor, np.ndarray)):
        raise UserError(f"{source}: latent_avg is a {type(latent_avg).__name__}, expected a tensor")
    desc = f"from {source}"
    return ReStyleEncoder(encoder, generator, latent_avg, et, description=desc)


def load_encoder(path_or_name: str | os.PathLike, generator: Any = None, device: str | torch.device = "cpu", *,
                 encoder_type: str | None = None, engine: str = "torch", warn_demo: bool = True,
                 **engine_options: Any) -> ReStyleEncoder:
    """Load a ReStyle encoder and its generator.

    path_or_name: a path to an official ReStyle checkpoint (.pt), a registry name already in the cache
                  (e.g. "restyle_e4e_ffhq", see sg3stream.models.registry), or "demo" (see build_demo_encoder);
                  names are resolved by resolve.resolve_model.
    generator:    overrides the checkpoint's decoder: a Generator object, or a path/name for load_generator.
    device:       where the encoder and generator run.
    encoder_type: force the reference class name when the checkpoint's opts do not say it.
    engine:       "torch" | "onnx" | "tensorrt" for the encoder network (engine_options go to the backend).
    warn_demo:    log one warning on the `sg3stream` logger when the demo encoder or generator is used (random
                  weights); callers that have already said so (the run command) pass False.
    """
    from .configs import warn_demo_model
    from .resolve import resolve_model

    source = resolve_model(path_or_name, "encoder")
    uses_demo = source.is_demo or (isinstance(generator, (str, os.PathLike)) and str(generator) == "demo")
    if isinstance(generator, (str, os.PathLike)):
        from .loading import load_generator

        generator = load_generator(generator, warn_demo=False)
    if source.is_demo:
        enc = build_demo_encoder(generator, warn_demo=False)
    else:
        ckpt = safe_torch_load(source.path, what="encoder checkpoint")
        enc = encoder_from_checkpoint(ckpt, generator, encoder_type=encoder_type, source=str(source.path))
    if uses_demo and warn_demo:
        warn_demo_model()
    enc = enc.to(device)
    if engine != "torch" or engine_options:
        enc.set_engine(engine, device=device, **engine_options)
    return enc


# ---------------------------------------------------------------------- demo
DEMO_SEED = 20220131  # arXiv date of the paper; any fixed value works
DEMO_WIDTHS = (16, 32, 64, 128)
DEMO_DELTA_STD = 0.02


def build_demo_encoder(generator: Any = None, *, seed: int = DEMO_SEED, warn_demo: bool = True) -> ReStyleEncoder:
    """A small ReStyle-e4e encoder with weights from a fixed seed (no file), bound to `load_generator("demo")`.

    THIS IS NOT A REAL INVERSION. The weights are random: the codes it returns stay close to the generator's
    latent_avg (each iteration adds a small, input-dependent delta) so renders look like the average face, and the
    whole pipeline (align -> invert -> edit -> render) can run and be tested without downloading checkpoints.
    It uses the ResNet34 layout at a quarter of the width (16/32/64/128 channels, 128-channel style heads) so that
    it runs at several frames per second on a CPU. For real inversions load an official checkpoint.
    warn_demo: log the demo warning on the `sg3stream` logger (once, for the encoder and its default generator).
    """
    if warn_demo:
        from .configs import warn_demo_model

        warn_demo_model()
    if generator is None:
        from .loading import load_generator

        generator = load_generator("demo", warn_demo=False)
    num_ws = int(_gen_attr(generator, "num_ws") or 16)
    w_dim = int(_gen_attr(generator, "w_dim") or 512)
    g = torch.Generator().manual_seed(seed)
    enc = ResNetProgressiveBackboneEncoder(n_styles=num_ws, input_nc=6, style_dim=w_dim, widths=DEMO_WIDTHS,
                                           style_mid=DEMO_WIDTHS[-1])
    with torch.no_grad():
        for mod in enc.modules():
            if isinstance(mod, nn.Conv2d):
                fan_in = mod.weight[0].numel()
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
                if mod.bias is not None:
                    mod.bias.zero_()
            elif isinstance(mod, nn.BatchNorm2d):
                mod.weight.fill_(1.0)
                mod.bias.zero_()
                mod.running_mean.zero_()
                mod.running_var.fill_(1.0)
                mod.eval()
        for s in enc.styles:
            s.linear.weight.copy_(torch.randn(s.linear.weight.shape, generator=g))
            s.linear.bias.zero_()
        # calibrate: scale the heads so that a typical input gives deltas of std DEMO_DELTA_STD
        probe = torch.rand((1, 6, ENCODER_RESOLUTION, ENCODER_RESOLUTION), generator=g) * 2 - 1
        enc.eval()
        feat = enc.features(probe)
        for s in enc.styles:
            std = float(s(feat).std())
            s.linear.weight.mul_(DEMO_DELTA_STD / max(std, 1e-8))
    latent_avg = _generator_w_avg(generator)
    return ReStyleEncoder(enc, generator, latent_avg, "ResNetProgressiveBackboneEncoder",
                          description="demo: random weights, not a real inversion")
