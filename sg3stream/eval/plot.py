"""`--plot FILE.png`: the per-frame curves of an evaluation, one panel per kind of measure, in one PNG."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .result import EvalResult


def _curve(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)  # gaps where undefined


def _fmt(value, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def plot_per_frame(result: EvalResult, path: str | Path) -> Path:
    """Write the curves of `result` to `path` (PNG): PSNR, SSIM, warping error (EDITED against REFERENCE's own)
    and seam, over frame numbers, each panel titled with its overall score."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("--plot needs matplotlib (pip install 'sg3stream[eval]')") from None
    path = Path(path)
    s, pf = result.summary, result.per_frame
    frames = np.arange(s["frames"])
    fig = Figure(figsize=(10, 10), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # no pyplot: no global state, no display
    ax_psnr, ax_ssim, ax_warp, ax_seam = fig.subplots(4, 1, sharex=True)

    ax_psnr.plot(frames, _curve(pf["psnr_face"]), label=f"face (overall {_fmt(s['psnr_face'])} dB)")
    ax_psnr.plot(frames, _curve(pf["psnr_outside"]), label=f"outside (overall {_fmt(s['psnr_outside'])} dB)")
    ax_psnr.set_ylabel("PSNR (dB)")
    ax_psnr.set_title("Fidelity: higher is closer to the reference (100 = identical)", loc="left", fontsize=10)

    ax_ssim.plot(frames, _curve(pf["ssim_face"]), color="tab:green",
                 label=f"face (mean {_fmt(s['ssim_face'], 4)})")
    ax_ssim.set_ylabel("SSIM")

    ax_warp.plot(frames, _curve(pf["warp_error_reference"]), color="tab:gray", linestyle="--",
                 label=f"reference (mean {_fmt(s['warp_error_reference'], 4)})")
    ax_warp.plot(frames, _curve(pf["warp_error"]), color="tab:red", linewidth=1.2,
                 label=f"edited (mean {_fmt(s['warp_error'], 4)})")
    ax_warp.set_ylabel("warping error")
    ax_warp.set_title("Flicker: edited above reference = flicker the edit added", loc="left", fontsize=10)

    ax_seam.plot(frames, _curve(pf["seam"]), color="tab:purple", label=f"seam (overall {_fmt(s['seam'], 3)})")
    ax_seam.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
    ax_seam.set_ylabel("seam (1 = none)")
    ax_seam.set_xlabel("frame")

    for ax in (ax_psnr, ax_ssim, ax_warp, ax_seam):
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=9)
    ids = f"TL-ID {_fmt(s['tl_id'], 3)}, TG-ID {_fmt(s['tg_id'], 3)}, LPIPS {_fmt(s['lpips_face'], 3)}"
    fig.suptitle(f"{Path(result.edited).name} against {Path(result.reference).name}: {s['frames']} frames, "
                 f"{s['frames_with_face']} with a face; {ids}", fontsize=11)
    try:
        fig.savefig(path, format="png")
    except OSError as e:
        raise UserError(f"--plot {path}: cannot write it ({e.strerror or e})") from None
    return path
