"""A roofline of the `sg3-r-1024` synthesis network on an H100 and an H200, on paper: per op, FLOPs and bytes moved,
arithmetic intensity, which limit binds (compute or HBM bandwidth), and what that allows in frames/s per stage at a
given batch size, in fp16 (the generator's own mixed precision) and fp32. The GPU check (bench/device_check.py)
measures what these numbers predict.

    python bench/roofline.py [--config sg3-r-1024] [--batch 8] [--json] [--markdown]

The figures come from the synthesis network's actual layers (built from the configuration, walked layer by layer),
not from a hand-written list. What is counted, per layer:

- modulated_conv2d: the convolution, 2*N*Cout*Cin*k*k*H*W FLOPs (H, W: its output); the style and demodulation
  arithmetic (N*Cout*Cin more) is left out. Bytes: input read, weights read, output written once (fused); the torch
  ops (sg3stream/ops/modulated_conv2d.py) read and write the input and the output once more each (x*s, x*d).
- upfirdn2d: the filter passes of filtered_lrelu as the torch ops run them (sg3stream/ops/filtered_lrelu.py): the
  upsampling as two separable transposed convolutions (fu taps per input sample and pass), the downsampling as two
  separable strided convolutions (fd taps per output sample and pass) or, for the radial filters of sg3-r, one 2-D
  pass (fd*fd taps per output sample). Each pass reads its input and writes its output.
- filtered_lrelu (fused): the same arithmetic plus bias, leaky ReLU, gain and clamp, with one read of the input and
  one write of the output, as the official fused CUDA kernel (and ours, kernels/filtered_lrelu.cu) does it. The
  torch path's extra traffic (bias, leaky ReLU, gain and clamp each a pass over the largest tensor) is in the
  "torch ops" bytes.

Peaks (NVIDIA's datasheets; dense = the datasheets' "with sparsity" tensor figures halved):
  H100 SXM: FP32 67 TFLOP/s, TF32 tensor 494.7, FP16 tensor 989.4, HBM3 3.35 TB/s
            https://www.nvidia.com/en-us/data-center/h100/ (H100 Tensor Core GPU datasheet)
  H200 SXM: FP32 67 TFLOP/s, TF32 tensor 494.7, FP16 tensor 989.4, HBM3e 4.8 TB/s
            https://www.nvidia.com/en-us/data-center/h200/ (H200 Tensor Core GPU datasheet)
Which peak an op gets: the convolutions of fp16 layers the FP16 tensor rate; of fp32 layers the TF32 tensor rate
(cuDNN's default for float32 convolutions in PyTorch, torch.backends.cudnn.allow_tf32); the filters (depthwise)
run on the CUDA cores: the FP32 rate in both precisions (the datasheets give no non-tensor FP16 rate; the filters
are bandwidth-bound either way).

Stages per frame (README, "The H100 targets"): render = one synthesis; inversion = two syntheses (ReStyle's
intermediate reconstructions at full resolution) plus three passes of the IR-SE50 encoder at 256x256 (its FLOPs
counted with torch.utils.flop_counter on the meta device, bound by the TF32 rate: the encoder runs in float32).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository's root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATE = "2026-11-30"
TFLOP, TB = 1e12, 1e12

# Peak rates, dense (NVIDIA datasheets; sources in the module's docstring).
PEAKS = {
    "H100 SXM": {"fp32_tflops": 67.0, "tf32_tflops": 494.7, "fp16_tflops": 989.4, "hbm_tb_s": 3.35,
                 "source": "https://www.nvidia.com/en-us/data-center/h100/ (H100 datasheet)"},
    "H200 SXM": {"fp32_tflops": 67.0, "tf32_tflops": 494.7, "fp16_tflops": 989.4, "hbm_tb_s": 4.8,
                 "source": "https://www.nvidia.com/en-us/data-center/h200/ (H200 datasheet)"},
}
OPS = ("modulated_conv2d", "upfirdn2d", "filtered_lrelu")
RESTYLE_ITERATIONS = 3      # --n-iters' default: encoder passes per frame
SYNTHESES_IN_INVERSION = 2  # full-resolution reconstructions inside ReStyle's iterations per frame


@dataclass
class OpCost:
    """One op of one layer, for a call of `batch` images."""

    layer: str
    kind: str          # the layer kind: "LAYER_NAME up U down D [radial]"
    op: str            # modulated_conv2d | upfirdn2d | filtered_lrelu
    dtype: str         # float16 | float32 (in the fp16 mode the generator's fp16 layers, else float32)
    unit: str          # which peak applies: tensor (convolutions) or cuda_cores (filters, elementwise)
    flops: float
    bytes_fused: float  # one read of the inputs and weights, one write of the output
    bytes_torch: float  # what the torch ops move (every pass reads and writes)


def modulated_conv_flops(batch: int, c_out: int, c_in: int, k: int, h: int, w: int) -> float:
    """FLOPs of the convolution of a modulated conv: a multiply and an add per weight per output pixel."""
    return 2.0 * batch * c_out * c_in * k * k * h * w


def _size_after_up(size: int, up: int, taps: int, pad_lo: int, pad_hi: int) -> int:
    return size * up + pad_lo + pad_hi - taps + 1


def layer_ops(name: str, layer, batch: int, fp16: bool) -> list[OpCost]:
    """The ops of one SynthesisLayer (sg3stream/models/stylegan3.py) for a batch: its modulated convolution and its
    filtered_lrelu, the latter both as the torch ops' upfirdn2d passes and as one fused kernel."""
    use_fp16 = fp16 and layer.use_fp16
    dtype = "float16" if use_fp16 else "float32"
    e = 2 if use_fp16 else 4
    n, c_in, c_out, k = batch, layer.in_channels, layer.out_channels, layer.conv_kernel
    h_in = layer.in_size
    h_conv = h_in + k - 1  # padding k-1 on each side
    up, down = layer.up_factor, layer.down_factor
    fu, fd = layer.up_taps, layer.down_taps
    radial = layer.down_radial and fd > 1
    kind = f"{layer.in_size}->{layer.out_size} px, {c_in}->{c_out} ch, up {up} down {down}" + (
        ", radial" if radial else "")

    conv_in, conv_out, weights = n * c_in * h_in * h_in, n * c_out * h_conv * h_conv, c_out * c_in * k * k
    ops = [OpCost(name, kind, "modulated_conv2d", dtype, "tensor",
                  modulated_conv_flops(n, c_out, c_in, k, h_conv, h_conv),
                  e * (conv_in + weights + conv_out), e * (3 * conv_in + weights + 3 * conv_out))]

    # filtered_lrelu on [n, c_out, h_conv, h_conv]: sizes as sg3stream/ops/filtered_lrelu.py computes them
    px0, px1, _, _ = layer.padding
    h = h_conv
    h_up = _size_after_up(h, up, fu, px0, px1)  # after the upsampling pass (with the layer's padding)
    h_out = layer.out_size
    planes = n * c_out
    up_macs = (h * h * fu + h * h_up * fu) if fu > 1 else 0  # transposed conv along x, then along y
    if fd <= 1:
        down_macs = 0
    elif radial:
        down_macs = h_out * h_out * fd * fd
    else:
        down_macs = h_up * h_out * fd + h_out * h_out * fd  # strided conv along x, then along y
    elementwise = h * h + 3 * h_up * h_up  # bias; leaky ReLU, gain, clamp
    # torch path bytes per plane: each upfirdn2d pass reads its input and writes its output
    up_bytes = (h * h + h * h_up) + (h * h_up + h_up * h_up) if fu > 1 else 0
    if fd <= 1:
        down_bytes = 0
    elif radial:
        down_bytes = h_up * h_up + h_out * h_out
    else:
        down_bytes = (h_up * h_up + h_up * h_out) + (h_up * h_out + h_out * h_out)
    if up_macs or down_macs:
        ops.append(OpCost(name, kind, "upfirdn2d", dtype, "cuda_cores", 2.0 * planes * (up_macs + down_macs),
                          e * planes * (h * h + h_out * h_out), e * planes * (up_bytes + down_bytes)))
    bias_act_bytes = 2 * h * h + 3 * 2 * h_up * h_up  # bias out of place; leaky ReLU, gain, clamp: one pass each
    ops.append(OpCost(name, kind, "filtered_lrelu", dtype, "cuda_cores",
                      2.0 * planes * (up_macs + down_macs) + planes * elementwise,
                      e * planes * (h * h + h_out * h_out), e * planes * (up_bytes + down_bytes + bias_act_bytes)))
    return ops


def synthesis_network(config: str = "sg3-r-1024"):
    """The built-in generator's synthesis network (its layers' configuration; weights are irrelevant here)."""
    from sg3stream.models.configs import BUILTIN_GENERATORS
    from sg3stream.models.stylegan3 import SynthesisNetwork

    spec = dict(BUILTIN_GENERATORS[config].init_kwargs)
    for key in ("z_dim", "c_dim", "mapping_kwargs", "magnitude_ema_beta"):
        spec.pop(key, None)
    return SynthesisNetwork(**spec)


def synthesis_ops(network, batch: int, fp16: bool) -> list[OpCost]:
    """Every op of every layer of `network`, in order."""
    out = []
    for name in network.layer_names:
        out += layer_ops(name, getattr(network, name), batch, fp16)
    return out


def encoder_flops_per_image() -> float:
    """FLOPs of one pass of the full-size ReStyle encoder (IR-SE50, 6 input channels, 256x256), counted by
    torch.utils.flop_counter on the meta device (no arithmetic is done)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from sg3stream.models.encoders import ENCODER_CLASSES

    with torch.device("meta"):
        net = ENCODER_CLASSES["ProgressiveBackboneEncoder"](50, "ir_se", n_styles=16, input_nc=6)
        with FlopCounterMode(display=False) as counter:
            net(torch.zeros(1, 6, 256, 256))
    return float(counter.get_total_flops())


def op_seconds(op: OpCost, peaks: dict, fused: bool = True) -> tuple[float, str]:
    """The op's lower bound on time and what binds it ("compute" or "memory")."""
    if op.unit == "tensor":
        rate = peaks["fp16_tflops"] if op.dtype == "float16" else peaks["tf32_tflops"]
    else:
        rate = peaks["fp32_tflops"]
    compute = op.flops / (rate * TFLOP)
    memory = (op.bytes_fused if fused else op.bytes_torch) / (peaks["hbm_tb_s"] * TB)
    return max(compute, memory), ("compute" if compute >= memory else "memory")


def roofline(config: str = "sg3-r-1024", batch: int = 8, with_encoder: bool = True) -> dict:
    """Per op kind and precision: FLOPs, bytes, intensity and the bound on each GPU; per stage: frames/s bounds."""
    network = synthesis_network(config)
    encoder = encoder_flops_per_image() if with_encoder else None
    result = {"date": DATE, "config": config, "batch": batch, "peaks": PEAKS,
              "encoder_gflop_per_pass": encoder / 1e9 if encoder else None, "precisions": {}}
    for precision in ("fp16", "fp32"):
        ops = synthesis_ops(network, batch, fp16=precision == "fp16")
        totals = {}
        for kind in OPS:
            chosen = [o for o in ops if o.op == kind]
            flops = sum(o.flops for o in chosen)
            fused, torch_bytes = sum(o.bytes_fused for o in chosen), sum(o.bytes_torch for o in chosen)
            row = {"flops": flops, "bytes_fused": fused, "bytes_torch": torch_bytes,
                   "intensity_fused": flops / fused, "intensity_torch": flops / torch_bytes}
            for gpu, peaks in PEAKS.items():
                times = [op_seconds(o, peaks) for o in chosen]
                row[gpu] = {"seconds": sum(t for t, _ in times),
                            "bound": _binding([b for _, b in times], [t for t, _ in times]),
                            "seconds_torch": sum(op_seconds(o, peaks, fused=False)[0] for o in chosen)}
            totals[kind] = row
        stages = {}
        for gpu, peaks in PEAKS.items():
            # a synthesis: the modulated convolutions plus the filters, fused (kernels) or as the torch ops run them
            kernels = sum(op_seconds(o, peaks)[0] for o in ops if o.op != "upfirdn2d")
            torch_ops = sum(op_seconds(o, peaks, fused=False)[0] for o in ops if o.op != "upfirdn2d")
            encoder_s = (RESTYLE_ITERATIONS * batch * encoder / (peaks["tf32_tflops"] * TFLOP)) if encoder else 0.0
            stages[gpu] = {}
            for ops_name, synthesis_s in (("kernels", kernels), ("torch ops", torch_ops)):
                render_fps = batch / synthesis_s
                invert_s = SYNTHESES_IN_INVERSION * synthesis_s + encoder_s
                stages[gpu][ops_name] = {"synthesis_images_per_s": render_fps, "render_fps": render_fps,
                                         "inversion_fps": batch / invert_s,
                                         "gpu_bound_end_to_end_fps": batch / (synthesis_s + invert_s)}
        result["precisions"][precision] = {
            "synthesis_gflop_per_image": sum(o.flops for o in ops if o.op != "upfirdn2d") / batch / 1e9,
            "ops": totals, "stages": stages, "layers": [asdict(o) for o in ops]}
    return result


def _binding(bounds: list[str], times: list[float]) -> str:
    """Which limit holds most of the time of a group of ops."""
    memory = sum(t for b, t in zip(bounds, times) if b == "memory")
    return "memory" if memory >= sum(times) / 2 else "compute"


def markdown(result: dict) -> str:
    """The README's tables: per op kind, and per stage."""
    b = result["batch"]
    lines = [f"Roofline of `{result['config']}` synthesis at batch {b} (bench/roofline.py, {result['date']}); "
             "FLOPs and bytes per batch; bound: the slower of compute and HBM at the datasheet peaks.", "",
             "| precision | op | GFLOP | MB moved (fused / torch ops) | FLOP/byte (fused / torch) | "
             "H100 ms (bound) | H200 ms (bound) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for precision, data in result["precisions"].items():
        for kind, row in data["ops"].items():
            cells = [f"{row[g]['seconds'] * 1e3:.2f} ({row[g]['bound']})" for g in PEAKS]
            lines.append(f"| {precision} | {kind} | {row['flops'] / 1e9:,.0f} | {row['bytes_fused'] / 1e6:,.0f} / "
                         f"{row['bytes_torch'] / 1e6:,.0f} | {row['intensity_fused']:.0f} / "
                         f"{row['intensity_torch']:.0f} | {cells[0]} | {cells[1]} |")
    lines += ["", f"Bounds in frames/s at batch {b} (a synthesis = modulated convolutions + filtered_lrelu; "
              "inversion = 2 syntheses + 3 encoder passes):", "",
              "| precision | ops | GPU | synthesis = render | inversion | GPU-bound end to end |",
              "| --- | --- | --- | --- | --- | --- |"]
    for precision, data in result["precisions"].items():
        for gpu in PEAKS:
            for ops_name, s in data["stages"][gpu].items():
                lines.append(f"| {precision} | {ops_name} | {gpu} | {s['render_fps']:.0f} | "
                             f"{s['inversion_fps']:.0f} | {s['gpu_bound_end_to_end_fps']:.0f} |")
    return "\n".join(lines)


def per_layer_table(result: dict, precision: str = "fp16") -> str:
    lines = ["| layer | op | dtype | GFLOP | MB fused | MB torch | FLOP/byte fused | H100 µs | H200 µs |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for o in result["precisions"][precision]["layers"]:
        op = OpCost(**o)
        times = [op_seconds(op, PEAKS[g])[0] * 1e6 for g in PEAKS]
        lines.append(f"| {op.layer} | {op.op} | {op.dtype} | {op.flops / 1e9:.1f} | {op.bytes_fused / 1e6:.1f} | "
                     f"{op.bytes_torch / 1e6:.1f} | {op.flops / op.bytes_fused:.0f} | {times[0]:.0f} | "
                     f"{times[1]:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="sg3-r-1024")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
    parser.add_argument("--markdown", action="store_true", help="print only the README's tables")
    parser.add_argument("--no-encoder", action="store_true", help="leave the encoder out of the inversion stage")
    args = parser.parse_args(argv)
    try:
        result = roofline(args.config, args.batch, with_encoder=not args.no_encoder)
    except KeyError:
        print(f"unknown built-in generator {args.config!r}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.markdown:
        print(markdown(result))
    else:
        print(markdown(result))
        print(f"\nPer layer, fp16 mode, batch {args.batch}:\n")
        print(per_layer_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
