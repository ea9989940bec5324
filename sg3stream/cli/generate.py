"""`sg3stream generate`: images from seeds, like the reference gen_images.py."""
from __future__ import annotations

import re
from pathlib import Path

import typer

from ..errors import UserError
from ..report import make_reporter
from .app import app
from .common import DEBUG_HELP, reported_errors


def parse_seeds(text: str) -> list[int]:
    """'0-7', '1,5,9' or '0-3,10' -> list of seeds (ranges inclusive)."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise UserError(f"--seeds {text!r}: cannot read {part!r}; accepted: non-negative integers and ranges, "
                            f"e.g. 0-7 or 1,5,9 or 0-3,10")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise UserError(f"--seeds {text!r}: range {part!r} ends before it starts")
        seeds.extend(range(lo, hi + 1))
    return seeds


def parse_translate(text: str) -> tuple[float, float]:
    """'X,Y' -> (x, y)."""
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"--translate {text!r}: accepted: two numbers X,Y, e.g. 0.1,-0.05") from None
    return x, y


def generate_images(generator: str, seeds: list[int], outdir: Path, truncation_psi: float = 1.0,
                    rotate: float = 0.0, translate: tuple[float, float] = (0.0, 0.0), batch_size: int = 8,
                    device: str = "cpu") -> list[Path]:
    """Render one PNG per seed (z from np.random.RandomState(seed), like gen_images.py); returns the paths."""
    import cv2
    import numpy as np
    import torch

    from sg3stream.models import load_generator
    from sg3stream.models.stylegan3 import make_transform

    if batch_size < 1:
        raise UserError(f"--batch-size {batch_size}: accepted: an integer >= 1")
    G = load_generator(generator, device=device)
    if G.c_dim > 0:
        raise UserError(f"generator '{generator}' is conditional (c_dim={G.c_dim}); only unconditional generators "
                        f"are accepted by generate")
    transform = torch.from_numpy(np.linalg.inv(make_transform(translate, rotate))).float()
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(0, len(seeds), batch_size):
        chunk = seeds[start:start + batch_size]
        z = torch.from_numpy(np.concatenate([np.random.RandomState(s).randn(1, G.z_dim) for s in chunk])).to(device)
        with torch.no_grad():
            img = G(z, None, truncation_psi=truncation_psi, transform=transform)
        img = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()
        for seed, rgb in zip(chunk, img):
            path = outdir / f"seed{seed:04d}.png"
            if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1] if rgb.shape[-1] == 3 else rgb)):
                raise UserError(f"cannot write {path}")
            paths.append(path)
    return paths


@app.command()
def generate(
    generator: str = typer.Option("demo", "--generator", help="Generator file (.pkl, .pt, .safetensors) or a "
                                  "built-in name: demo, sg3-t-1024, sg3-r-1024."),
    seeds: str = typer.Option("0-7", help="Seeds, e.g. 0-7 or 1,5,9."),
    trunc: float = typer.Option(1.0, "--trunc", help="Truncation psi."),
    rotate: float = typer.Option(0.0, help="Rotation angle in degrees."),
    translate: str = typer.Option("0,0", help="Translation X,Y of the image."),
    outdir: Path = typer.Option(..., help="Where to write seedNNNN.png."),
    batch_size: int = typer.Option(8, help="Images per forward pass."),
    device: str = typer.Option("cpu", help="torch device, e.g. cpu or cuda."),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
) -> None:
    """Generate images from seeds (like StyleGAN3's gen_images.py)."""
    reporter = make_reporter("rich")  # shows the loader's warnings (the demo model says it is one)
    with reported_errors(reporter, debug), reporter.capturing_warnings():
        paths = generate_images(generator, parse_seeds(seeds), outdir, truncation_psi=trunc, rotate=rotate,
                                translate=parse_translate(translate), batch_size=batch_size, device=device)
    typer.echo(f"wrote {len(paths)} images to {outdir}")
