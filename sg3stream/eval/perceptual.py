"""LPIPS in the face, when its weights are at hand (nothing is downloaded).

The weights are found as PTI finds them (sg3stream/pti/losses.py): the backbone's torchvision weights in the torch
hub cache and LPIPS's linear heads; eval takes the heads from the installed `lpips` package
(`lpips/weights/v0.1/alex.pth`, else `vgg.pth`). AlexNet first: LPIPS's authors recommend it as a forward metric.
The distance is measured on the square around the face's box, resized to 256x256.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

SIDE = 256
NOTE = ("lpips_face: no LPIPS weights (pip install lpips for its heads, and put alexnet-owt-7be5be79.pth or "
        "vgg16-397923af.pth in the torch hub cache's checkpoints folder)")


def find_lpips_weights() -> tuple[Path, str] | None:
    """(heads file, backbone name) when both the heads and the backbone's weights are present, else None."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1"
    from ..pti.losses import find_backbone

    for net in ("alex", "vgg"):
        if (folder / f"{net}.pth").is_file() and find_backbone(net) is not None:
            return folder / f"{net}.pth", net
    return None


class FaceLPIPS:
    """LPIPS between the squares around the face in two frames."""

    def __init__(self, heads: Path, net: str):
        import torch

        from ..pti.losses import load_lpips

        # on the GPU when there is one: on a CPU the network costs hundreds of ms a frame
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = load_lpips(heads, net).to(self.device)

    def __call__(self, reference: np.ndarray, edited: np.ndarray, box: tuple[int, int, int, int]) -> float:
        import torch

        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0)
        left, top = (x0 + x1 - side) // 2, (y0 + y1 - side) // 2
        # the square around the box (black beyond the frame), then area-resized to SIDE
        m = np.array([[1.0, 0, -left], [0, 1.0, -top]])
        crops = [cv2.resize(cv2.warpAffine(img, m, (side, side), flags=cv2.INTER_NEAREST,
                                           borderMode=cv2.BORDER_CONSTANT), (SIDE, SIDE), interpolation=cv2.INTER_AREA)
                 for img in (reference, edited)]
        x = torch.from_numpy(np.stack(crops)).to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.no_grad():
            return float(self.model(x[:1], x[1:]))


def find_lpips():
    """(FaceLPIPS or None, note or None)."""
    found = find_lpips_weights()
    if found is None:
        return None, NOTE
    return FaceLPIPS(*found), None
