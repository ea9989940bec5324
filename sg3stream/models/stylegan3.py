"""The StyleGAN3 generator ("Alias-Free Generative Adversarial Networks"), as plain torch modules.

Parameter and buffer names are those of the official NVlabs `training/networks_stylegan3.py`, so official state
dicts load with `load_state_dict` (their `synthesis.input.transform` entry is not a buffer here and is ignored).

Differences from the official API, on purpose:
- The user transform of the Fourier input is an argument of each call, not a mutable buffer:
  `G.synthesis(ws, transform=T)` with T None (identity), [3, 3] (shared) or [B, 3, 3] (one per sample), with the
  semantics of the official `synthesis.input.transform` buffer (an inverse transform wrt. the resulting image).
- StyleSpace: `G.synthesis.styles(ws)` returns {layer name: S} with the affine outputs of every layer, the `input`
  layer's [B, 4] (rotation/translation) included; `G.synthesis(styles=S, transform=T)` renders from them.
- Which op implementation runs is `G.synthesis.ops_impl` ("auto", "torch", "naive"; see sg3stream.ops.get_ops),
  and `G.synthesis.force_fp32` turns off the fp16 layers that the official code uses on CUDA.
"""
from __future__ import annotations

import numpy as np
import scipy.signal
import scipy.special
import torch

from sg3stream.align.transforms import make_transform  # noqa: F401  (numpy only; the generator's users want it here)
from sg3stream.ops import get_ops

# Names of the StyleSpace entry of the Fourier-feature input layer.
INPUT_LAYER = "input"


def _randn(shape, rng):
    return torch.randn(shape, generator=rng)


def _rand(shape, rng):
    return torch.rand(shape, generator=rng)


class FullyConnectedLayer(torch.nn.Module):
    """Linear layer with equalized learning rate (weights scaled at runtime) and an optional activation."""

    def __init__(self, in_features, out_features, activation="linear", bias=True, lr_multiplier=1.0,
                 weight_init=1.0, bias_init=0.0, rng=None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.weight = torch.nn.Parameter(_randn([out_features, in_features], rng) * (weight_init / lr_multiplier))
        if bias:
            bias_init = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features])
            self.bias = torch.nn.Parameter(torch.from_numpy(bias_init / lr_multiplier))
        else:
            self.bias = None

    def forward(self, x, ops=None):
        ops = ops or get_ops("auto")
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return ops.bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class MappingNetwork(torch.nn.Module):
    """Z (+ optional class label) -> W, broadcast to num_ws, with truncation towards w_avg."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=2, lr_multiplier=0.01, w_avg_beta=0.998,
                 freeze_layers=0, freeze_embed=False, rng=None):
        super().__init__()
        del freeze_layers, freeze_embed  # training-only options of the official code
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        self.embed = FullyConnectedLayer(c_dim, w_dim, rng=rng) if c_dim > 0 else None
        features = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation="lrelu",
                                        lr_multiplier=lr_multiplier, rng=rng)
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None):
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [batch, {self.z_dim}], got {tuple(z.shape)}")
        if truncation_cutoff is None:
            truncation_cutoff = self.num_ws
        x = z.to(torch.float32)
        x = x * (x.square().mean(1, keepdim=True) + 1e-8).rsqrt()
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(f"this generator is conditional: c must have shape [batch, {self.c_dim}]")
            y = self.embed(c.to(torch.float32))
            y = y * (y.square().mean(1, keepdim=True) + 1e-8).rsqrt()
            x = torch.cat([x, y], dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x

    def extra_repr(self):
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"


def batch_transforms(transform, batch, device) -> torch.Tensor:
    """None | [3, 3] | [B, 3, 3] -> [B, 3, 3] float32 (the per-sample user inverse transform)."""
    if transform is None:
        return torch.eye(3, device=device).expand(batch, 3, 3)
    transform = torch.as_tensor(transform, dtype=torch.float32, device=device)
    if transform.shape == (3, 3):
        return transform.expand(batch, 3, 3)
    if transform.shape == (batch, 3, 3):
        return transform
    raise ValueError(f"transform must be None, [3, 3] or [{batch}, 3, 3], got {tuple(transform.shape)}")


class SynthesisInput(torch.nn.Module):
    """Fourier features at fixed random frequencies, rotated/translated by the first w and a user transform."""

    def __init__(self, w_dim, channels, size, sampling_rate, bandwidth, rng=None):
        super().__init__()
        self.w_dim = w_dim
        self.channels = channels
        self.size = int(size)
        self.sampling_rate = sampling_rate
        self.bandwidth = bandwidth

        # Random frequencies from a 2-D disc of radius `bandwidth` (official initialisation).
        freqs = _randn([channels, 2], rng)
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs /= radii * radii.square().exp().pow(0.25)
        freqs *= bandwidth
        phases = _rand([channels], rng) - 0.5

        self.weight = torch.nn.Parameter(_randn([channels, channels], rng))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0], rng=rng)
        self.register_buffer("freqs", freqs)    # [channels, 2]
        self.register_buffer("phases", phases)  # [channels]
        # Sample coordinates along x and along y, as F.affine_grid(align_corners=False) computes them for the
        # official theta = diag(size / (2 * sampling_rate)): the same float32 numbers, but a constant (affine_grid
        # has no ONNX export below opset 20). Not persistent: official state dicts do not have it.
        coords = torch.linspace(-1, 1, self.size) * (self.size - 1) / self.size
        self.register_buffer("coords", coords * (0.5 * self.size / sampling_rate), persistent=False)  # [size]

    def style(self, w, ops=None):
        """StyleSpace vector of this layer: t = (r_c, r_s, t_x, t_y), [B, 4]."""
        return self.affine(w, ops)

    def forward(self, t, transform=None):
        batch = t.shape[0]
        device = t.device
        user = batch_transforms(transform, batch, device)

        # Rotation and translation from t, then the user-specified inverse transform.
        # Built with stack rather than in-place writes into eye(3): same matrices, and a plain graph when exported.
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        zero, one = torch.zeros_like(t[:, 0]), torch.ones_like(t[:, 0])
        m_r = torch.stack([t[:, 0], -t[:, 1], zero, t[:, 1], t[:, 0], zero, zero, zero, one], 1).reshape(-1, 3, 3)
        m_t = torch.stack([one, zero, -t[:, 2], zero, one, -t[:, 3], zero, zero, one], 1).reshape(-1, 3, 3)
        transforms = m_r @ m_t @ user

        freqs = self.freqs.unsqueeze(0)
        phases = self.phases.unsqueeze(0) + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]

        # Dampen frequencies that the user transform pushed out of band.
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)

        # grid[h, w] = (x_w, y_h), the official affine_grid output.
        n = self.size
        grid = torch.stack([self.coords.unsqueeze(0).expand(n, n), self.coords.unsqueeze(1).expand(n, n)], 2)

        x = torch.einsum("hwk,bck->bhwc", grid, freqs)
        x = x + phases.unsqueeze(1).unsqueeze(2)
        x = torch.sin(x * (np.pi * 2))
        x = x * amplitudes.unsqueeze(1).unsqueeze(2)
        x = x @ (self.weight / np.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)

    def extra_repr(self):
        return (f"w_dim={self.w_dim}, channels={self.channels}, size={self.size}, "
                f"sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}")


def design_lowpass_filter(numtaps, cutoff, width, fs, radial=False):
    """Kaiser low-pass filter: None for 1 tap, 1-D separable, or 2-D radially symmetric (jinc)."""
    if numtaps == 1:
        return None
    if not radial:
        f = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
        return torch.as_tensor(f, dtype=torch.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    f = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    w = np.kaiser(numtaps, beta)
    f *= np.outer(w, w)
    f /= np.sum(f)
    return torch.as_tensor(f, dtype=torch.float32)


class SynthesisLayer(torch.nn.Module):
    """Modulated conv -> bias -> upsample, leaky ReLU, downsample (filtered_lrelu); or the final ToRGB."""

    def __init__(self, w_dim, is_torgb, is_critically_sampled, use_fp16, in_channels, out_channels, in_size,
                 out_size, in_sampling_rate, out_sampling_rate, in_cutoff, out_cutoff, in_half_width, out_half_width,
                 conv_kernel=3, filter_size=6, lrelu_upsampling=2, use_radial_filters=False, conv_clamp=256,
                 magnitude_ema_beta=0.999, rng=None):
        super().__init__()
        self.w_dim = w_dim
        self.is_torgb = is_torgb
        self.is_critically_sampled = is_critically_sampled
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = int(in_size)
        self.out_size = int(out_size)
        self.in_sampling_rate = in_sampling_rate
        self.out_sampling_rate = out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff = in_cutoff
        self.out_cutoff = out_cutoff
        self.in_half_width = in_half_width
        self.out_half_width = out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1, rng=rng)
        self.weight = torch.nn.Parameter(_randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel], rng))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        # Upsampling filter (in_cutoff), downsampling filter (out_cutoff), at the temporary sampling rate.
        self.up_factor = int(np.rint(self.tmp_sampling_rate / in_sampling_rate))
        assert in_sampling_rate * self.up_factor == self.tmp_sampling_rate
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.register_buffer("up_filter", design_lowpass_filter(
            numtaps=self.up_taps, cutoff=in_cutoff, width=in_half_width * 2, fs=self.tmp_sampling_rate))
        self.down_factor = int(np.rint(self.tmp_sampling_rate / out_sampling_rate))
        assert out_sampling_rate * self.down_factor == self.tmp_sampling_rate
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer("down_filter", design_lowpass_filter(
            numtaps=self.down_taps, cutoff=out_cutoff, width=out_half_width * 2, fs=self.tmp_sampling_rate,
            radial=self.down_radial))

        # Padding so that sample locations follow the symmetric interpretation (paper, Appendix C.3).
        pad_total = (self.out_size - 1) * self.down_factor + 1
        pad_total -= (self.in_size + self.conv_kernel - 1) * self.up_factor
        pad_total += self.up_taps + self.down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = [int(pad_lo), int(pad_hi), int(pad_lo), int(pad_hi)]

    def style(self, w, ops=None):
        """StyleSpace vector of this layer (the affine output, before ToRGB's weight gain): [B, in_channels]."""
        return self.affine(w, ops)

    def forward(self, x, styles, ops=None, force_fp32=False):
        ops = ops or get_ops("auto", x.device)
        if x.shape[1:] != (self.in_channels, self.in_size, self.in_size):
            raise ValueError(f"layer input must be [B, {self.in_channels}, {self.in_size}, {self.in_size}], "
                             f"got {tuple(x.shape)}")
        input_gain = self.magnitude_ema.rsqrt()
        if self.is_torgb:
            styles = styles * (1 / np.sqrt(self.in_channels * (self.conv_kernel ** 2)))

        use_fp16 = self.use_fp16 and not force_fp32 and x.device.type == "cuda"
        dtype = torch.float16 if use_fp16 else torch.float32
        x = ops.modulated_conv2d(x.to(dtype), self.weight, styles, demodulate=not self.is_torgb,
                                 padding=self.conv_kernel - 1, input_gain=input_gain)
        gain = 1 if self.is_torgb else np.sqrt(2)
        slope = 1 if self.is_torgb else 0.2
        x = ops.filtered_lrelu(x, fu=self.up_filter, fd=self.down_filter, b=self.bias.to(x.dtype),
                               up=self.up_factor, down=self.down_factor, padding=self.padding, gain=gain,
                               slope=slope, clamp=self.conv_clamp)
        return x

    def extra_repr(self):
        return (f"w_dim={self.w_dim}, is_torgb={self.is_torgb}, is_critically_sampled={self.is_critically_sampled}, "
                f"use_fp16={self.use_fp16}, in_sampling_rate={self.in_sampling_rate:g}, "
                f"out_sampling_rate={self.out_sampling_rate:g}, in_size={self.in_size}, out_size={self.out_size}, "
                f"in_channels={self.in_channels}, out_channels={self.out_channels}")


def synthesis_layer_specs(img_resolution, img_channels, channel_base=32768, channel_max=512, num_layers=14,
                          num_critical=2, first_cutoff=2, first_stopband=2 ** 2.1, last_stopband_rel=2 ** 0.3,
                          margin_size=10, num_fp16_res=4):
    """Per-layer cutoffs, stopbands, sampling rates, sizes and channels (index 0 = the Fourier input)."""
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    use_fp16 = sampling_rates * (2 ** num_fp16_res) > img_resolution
    return dict(cutoffs=cutoffs, stopbands=stopbands, sampling_rates=sampling_rates, half_widths=half_widths,
                sizes=sizes, channels=channels, use_fp16=use_fp16)


class SynthesisNetwork(torch.nn.Module):
    """ws [B, num_ws, w_dim] (or StyleSpace S) -> image [B, img_channels, R, R]."""

    def __init__(self, w_dim, img_resolution, img_channels, channel_base=32768, channel_max=512, num_layers=14,
                 num_critical=2, first_cutoff=2, first_stopband=2 ** 2.1, last_stopband_rel=2 ** 0.3,
                 margin_size=10, output_scale=0.25, num_fp16_res=4, rng=None, **layer_kwargs):
        super().__init__()
        self.w_dim = w_dim
        self.num_ws = num_layers + 2
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_layers = num_layers
        self.num_critical = num_critical
        self.margin_size = margin_size
        self.output_scale = output_scale
        self.num_fp16_res = num_fp16_res
        self.ops_impl = "auto"     # which sg3stream.ops implementation runs (see get_ops)
        self.force_fp32 = False    # True: no fp16 layers on CUDA

        spec = synthesis_layer_specs(img_resolution, img_channels, channel_base, channel_max, num_layers,
                                     num_critical, first_cutoff, first_stopband, last_stopband_rel, margin_size,
                                     num_fp16_res)
        cutoffs, rates, sizes, channels = spec["cutoffs"], spec["sampling_rates"], spec["sizes"], spec["channels"]
        self.input = SynthesisInput(w_dim=w_dim, channels=int(channels[0]), size=int(sizes[0]),
                                    sampling_rate=rates[0], bandwidth=cutoffs[0], rng=rng)
        self.layer_names = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                w_dim=w_dim, is_torgb=(idx == num_layers), is_critically_sampled=(idx >= num_layers - num_critical),
                use_fp16=bool(spec["use_fp16"][idx]),
                in_channels=int(channels[prev]), out_channels=int(channels[idx]),
                in_size=int(sizes[prev]), out_size=int(sizes[idx]),
                in_sampling_rate=int(rates[prev]), out_sampling_rate=int(rates[idx]),
                in_cutoff=cutoffs[prev], out_cutoff=cutoffs[idx],
                in_half_width=spec["half_widths"][prev], out_half_width=spec["half_widths"][idx],
                rng=rng, **layer_kwargs)
            name = f"L{idx}_{layer.out_size}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    @property
    def style_names(self) -> list[str]:
        """Keys of the StyleSpace dict, in order: 'input', then the layer names."""
        return [INPUT_LAYER] + list(self.layer_names)

    def styles(self, ws) -> dict[str, torch.Tensor]:
        """W+ [B, num_ws, w_dim] -> StyleSpace {name: S}: 'input' [B, 4], each layer [B, in_channels]."""
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must have shape [batch, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        ops = get_ops(self.ops_impl, ws.device)
        ws = ws.to(torch.float32).unbind(dim=1)
        out = {INPUT_LAYER: self.input.style(ws[0], ops)}
        for name, w in zip(self.layer_names, ws[1:]):
            out[name] = getattr(self, name).style(w, ops)
        return out

    def forward(self, ws=None, transform=None, *, styles=None, force_fp32=None):
        """Render from W+ `ws`, or from StyleSpace `styles` (a dict as returned by `styles()`), not both.

        transform: None, [3, 3] or [B, 3, 3] inverse transform of the Fourier input (official buffer semantics).
        """
        if (ws is None) == (styles is None):
            raise ValueError("give exactly one of ws and styles")
        if styles is None:
            styles = self.styles(ws)
        missing = [n for n in self.style_names if n not in styles]
        if missing:
            raise ValueError(f"styles is missing the layers {missing}")
        force_fp32 = self.force_fp32 if force_fp32 is None else force_fp32
        t = styles[INPUT_LAYER].to(torch.float32)
        # "auto" on CUDA measures the kernels on this network's calls at its first pass (sg3stream/ops/choice.py)
        ops = get_ops(self.ops_impl, t.device, synthesis=self, batch_size=t.shape[0], force_fp32=force_fp32)

        x = self.input(t, transform)
        for name in self.layer_names:
            x = getattr(self, name)(x, styles[name].to(torch.float32), ops=ops, force_fp32=force_fp32)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(torch.float32)

    def extra_repr(self):
        return (f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
                f"img_channels={self.img_channels}, num_layers={self.num_layers}, num_critical={self.num_critical}, "
                f"margin_size={self.margin_size}, output_scale={self.output_scale:g}, num_fp16_res={self.num_fp16_res}")


class SynthesisWrapper(torch.nn.Module):
    """(ws [B, num_ws, w_dim], transform [B, 3, 3]) -> image [B, img_channels, R, R], both inputs batch-first.

    The synthesis network with the per-frame transform as a plain second input, which is what an exported graph
    (ONNX, TensorRT) or an engine needs. Renders W+ codes only; StyleSpace input stays with `synthesis(styles=...)`.
    """

    def __init__(self, synthesis: SynthesisNetwork):
        super().__init__()
        self.synthesis = synthesis

    def forward(self, ws, transform):
        return self.synthesis(ws, transform=transform)


class Generator(torch.nn.Module):
    """z [B, z_dim] (+ c) -> image [B, img_channels, R, R]; `mapping` and `synthesis` are usable on their own.

    Constructor arguments are the official ones (so an official pickle's init kwargs build it), plus `seed`: with
    a seed, the official random initialisation is drawn from a private generator (deterministic, no global RNG).
    """

    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs=None, *, seed=None,
                 **synthesis_kwargs):
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        rng = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.init_kwargs = dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                                img_channels=img_channels, mapping_kwargs=dict(mapping_kwargs), **synthesis_kwargs)
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          rng=rng, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, rng=rng,
                                      **mapping_kwargs)

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, transform=None, **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, transform=transform, **synthesis_kwargs)

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """As torch's, ignoring the official `synthesis.input.transform` buffer (here a per-call argument)."""
        state_dict = {k: v for k, v in state_dict.items() if k != "synthesis.input.transform"}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
