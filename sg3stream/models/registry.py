"""Known official weights: names, where they come from, and what to check after downloading.

Sizes and sha256 digests are recorded only where they are known; this registry was written offline, so for the
entries below they are None, and the download's checksum check is skipped for them (the download still verifies
the size the server announces, and records the sha256 it computed next to the file as NAME.sha256 so later
corruption is detectable). Fill them in (`ModelEntry.sha256`) once a file has been fetched from the official source.

Google Drive entries use the direct-download endpoint (drive.usercontent.google.com ... &confirm=t). Drive folders
(the InterFaceGAN boundaries) cannot be fetched as one file: those entries have `url=None` and name the folder page
in `page`, so the user downloads them by hand and passes the path.
"""
from __future__ import annotations

from dataclasses import dataclass

from sg3stream.errors import UserError

__all__ = ["ModelEntry", "REGISTRY", "get_entry", "known_names"]


def _gdrive(file_id: str) -> str:
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"


_NGC = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str                  # "encoder" | "generator" | "boundaries"
    filename: str
    url: str | None            # direct download URL, None when only a folder page exists
    page: str                  # where a human finds it
    description: str
    size: int | None = None    # bytes, when known
    sha256: str | None = None  # hex digest, when known (None: checksum check skipped)


REGISTRY: dict[str, ModelEntry] = {e.name: e for e in [
    ModelEntry("restyle_e4e_ffhq", "encoder", "restyle_e4e_ffhq.pt", _gdrive("1z_cB187QOc6aqVBdLvYvBjoc93-_EuRm"),
               "https://github.com/yuval-alaluf/stylegan3-editing#stylegan3-encoder",
               "ReStyle-e4e (IR-SE50) trained on FFHQ over the aligned StyleGAN3-R FFHQ 1024 generator; "
               "the checkpoint includes the generator (decoder.*)"),
    ModelEntry("restyle_psp_ffhq", "encoder", "restyle_pSp_ffhq.pt", _gdrive("12WZi2a9ORVg-j6d9x4eF-CKpLaURC2W-"),
               "https://github.com/yuval-alaluf/stylegan3-editing#stylegan3-encoder",
               "ReStyle-pSp (IR-SE50) trained on FFHQ over the aligned StyleGAN3-R FFHQ 1024 generator; "
               "the checkpoint includes the generator (decoder.*)"),
    ModelEntry("sg3-r-ffhq-1024", "generator", "sg3-r-ffhq-1024.pt", _gdrive("13q6m-bpe3Ws9en9y45JEx2PHQirStt8N"),
               "https://github.com/yuval-alaluf/stylegan3-editing#stylegan3-encoder",
               "StyleGAN3-R FFHQ (aligned) 1024x1024, the paper's .pt conversion"),
    ModelEntry("sg3-r-ffhqu-1024", "generator", "sg3-r-ffhqu-1024.pt", _gdrive("1Xfi0mBgiDb8AUazWok9eKSRQon9YVMMW"),
               "https://github.com/yuval-alaluf/stylegan3-editing#stylegan3-encoder",
               "StyleGAN3-R FFHQ-U (unaligned) 1024x1024, the paper's .pt conversion"),
    ModelEntry("stylegan3-r-ffhq-1024x1024", "generator", "stylegan3-r-ffhq-1024x1024.pkl",
               _NGC + "stylegan3-r-ffhq-1024x1024.pkl", "https://github.com/NVlabs/stylegan3#using-networks-from-python",
               "NVlabs StyleGAN3-R FFHQ 1024 (official network pickle)"),
    ModelEntry("stylegan3-t-ffhq-1024x1024", "generator", "stylegan3-t-ffhq-1024x1024.pkl",
               _NGC + "stylegan3-t-ffhq-1024x1024.pkl", "https://github.com/NVlabs/stylegan3#using-networks-from-python",
               "NVlabs StyleGAN3-T FFHQ 1024 (official network pickle)"),
    ModelEntry("stylegan3-r-ffhqu-1024x1024", "generator", "stylegan3-r-ffhqu-1024x1024.pkl",
               _NGC + "stylegan3-r-ffhqu-1024x1024.pkl", "https://github.com/NVlabs/stylegan3#using-networks-from-python",
               "NVlabs StyleGAN3-R FFHQ-U 1024 (official network pickle)"),
    ModelEntry("stylegan3-t-ffhqu-1024x1024", "generator", "stylegan3-t-ffhqu-1024x1024.pkl",
               _NGC + "stylegan3-t-ffhqu-1024x1024.pkl", "https://github.com/NVlabs/stylegan3#using-networks-from-python",
               "NVlabs StyleGAN3-T FFHQ-U 1024 (official network pickle)"),
    ModelEntry("stylegan3-r-ffhqu-256x256", "generator", "stylegan3-r-ffhqu-256x256.pkl",
               _NGC + "stylegan3-r-ffhqu-256x256.pkl", "https://github.com/NVlabs/stylegan3#using-networks-from-python",
               "NVlabs StyleGAN3-R FFHQ-U 256 (official network pickle)"),
    ModelEntry("stylegan3-t-ffhqu-256x256", "generator", "stylegan3-t-ffhqu-256x256.pkl",
               _NGC + "stylegan3-t-ffhqu-256x256.pkl", "https://github.com/NVlabs/stylegan3#using-networks-from-python",
               "NVlabs StyleGAN3-T FFHQ-U 256 (official network pickle)"),
    ModelEntry("interfacegan_aligned_ffhq", "boundaries", "interfacegan_aligned", None,
               "https://drive.google.com/drive/folders/1tzlY5MY2P6dr9dCnBc7a-9RUs6zUxh3E",
               "InterFaceGAN boundaries (age, pose, smile, 40 CelebA attributes) for the aligned FFHQ StyleGAN3 "
               "(a Drive folder: download by hand)"),
    ModelEntry("interfacegan_unaligned_ffhq", "boundaries", "interfacegan_unaligned", None,
               "https://drive.google.com/drive/folders/1AwVxrJe5Pm5GWdqiG-sSfUDzDjidO4cE",
               "InterFaceGAN boundaries for the unaligned FFHQ-U StyleGAN3 (a Drive folder: download by hand)"),
]}


def known_names(kind: str | None = None) -> list[str]:
    return [n for n, e in REGISTRY.items() if kind is None or e.kind == kind]


def get_entry(name: str) -> ModelEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown model {name!r}; known: {', '.join(REGISTRY)}") from None
