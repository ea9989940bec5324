"""Colour: what a stream's YUV values mean (matrix and range) and how it is tagged (primaries, transfer).

The pipeline works on RGB frames. They are decoded with the input's matrix and range and encoded back with the same
ones, and the output carries the input's tags, so that a player shows the output's colours as it showed the
input's. A file that says nothing gets what players assume (mpv's rule): BT.709 for HD (at least 1280 wide or
more than 576 lines), BT.601 for SD, limited range; the output is then tagged with it explicitly.

Tags are kept by FFmpeg's names ("bt709", "tv", "unknown"…); `codes` gives the numbers FFmpeg and PyAV use.
"""
from __future__ import annotations

import logging

log = logging.getLogger("sg3stream")

RANGES = {0: "unknown", 1: "tv", 2: "pc"}
PRIMARIES = {1: "bt709", 2: "unknown", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film",
             9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213"}
TRANSFERS = {1: "bt709", 2: "unknown", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear",
             9: "log100", 10: "log316", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1", 14: "bt2020-10",
             15: "bt2020-12", 16: "smpte2084", 17: "smpte428", 18: "arib-std-b67"}
MATRICES = {0: "gbr", 1: "bt709", 2: "unknown", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
            8: "ycgco", 9: "bt2020nc", 10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc",
            13: "chroma-derived-c", 14: "ictcp"}
TABLES = {"range": RANGES, "primaries": PRIMARIES, "transfer": TRANSFERS, "matrix": MATRICES}
# The codec context's and frame's attribute for each tag.
ATTRIBUTES = {"range": "color_range", "primaries": "color_primaries", "transfer": "color_trc", "matrix": "colorspace"}
# Matrices FFmpeg's scaler converts with (its Colorspace numbers), by name; the luma weights (Kr, Kb) of each.
SCALER_MATRICES = {"bt709": 1, "fcc": 4, "bt470bg": 5, "smpte170m": 5, "smpte240m": 7, "bt2020nc": 9}
WEIGHTS = {"bt709": (0.2126, 0.0722), "fcc": (0.30, 0.11), "bt470bg": (0.299, 0.114), "smpte170m": (0.299, 0.114),
           "smpte240m": (0.212, 0.087), "bt2020nc": (0.2627, 0.0593)}


def name(table: dict, code) -> str:
    return table.get(int(code), "unknown") if code is not None else "unknown"


def read_tags(codec_context) -> dict[str, str]:
    """A video stream's colour tags as the file gives them ("unknown" where it says nothing)."""
    return {key: name(TABLES[key], getattr(codec_context, ATTRIBUTES[key], None)) for key in TABLES}


def is_hd(width: int, height: int) -> bool:
    return width >= 1280 or height > 576


def resolve(tags: dict[str, str], width: int, height: int, pix_fmt: str | None = None) -> dict[str, str]:
    """What the values mean: the tags, with what players assume where they say nothing (or nothing we convert)."""
    hd = is_hd(width, height)
    guess = {"matrix": "bt709" if hd else "smpte170m",
             "primaries": "bt709" if hd else "bt470bg" if height == 576 else "smpte170m",
             "transfer": "bt709" if hd else "smpte170m",
             "range": "pc" if (pix_fmt or "").startswith("yuvj") else "tv"}
    colour = {key: tags.get(key, "unknown") for key in TABLES}
    for key in TABLES:
        if colour[key] == "unknown":
            colour[key] = guess[key]
    if colour["matrix"] not in SCALER_MATRICES:
        if colour["matrix"] != "gbr":  # RGB input has no matrix: the output's YUV gets the usual one
            log.warning("colour matrix %s is not supported: treating the video as %s", colour["matrix"],
                        guess["matrix"])
        colour["matrix"] = guess["matrix"]
    return colour


def codes(colour: dict[str, str]) -> dict[str, int]:
    """FFmpeg's numbers for the tags, by codec context / frame attribute name."""
    inverse = {key: {v: k for k, v in table.items()} for key, table in TABLES.items()}
    return {ATTRIBUTES[key]: inverse[key][colour[key]] for key in TABLES}


def scaler_args(colour: dict[str, str]) -> tuple[int, int]:
    """The scaler's (colorspace, range) for a resolved colour."""
    return SCALER_MATRICES[colour["matrix"]], 2 if colour["range"] == "pc" else 1



# ---------------------------------------------------------------------------------------------------------------
# Scene-linear pictures (EXR): the models see display-encoded values, 0-1, as in their training photos.

def encode_linear(linear, transfer: str):
    """Scene-linear values -> display encoding (0-1 for 0-1 light; above 1 stays above), float32, by `transfer`:
    srgb (IEC 61966-2-1), bt709 (BT.709's camera curve) or none (the values as they are)."""
    import numpy as np

    x = np.asarray(linear, np.float32)
    if transfer == "none":
        return x.copy()
    x = np.maximum(x, 0)  # negative light (out of gamut) has no encoding: it is clipped where the face is pasted
    if transfer == "srgb":
        return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055).astype(np.float32)
    if transfer == "bt709":
        return np.where(x < 0.018, 4.5 * x, 1.099 * np.power(x, 0.45) - 0.099).astype(np.float32)
    raise ValueError(f"unknown transfer {transfer!r}")


def decode_linear(encoded, transfer: str):
    """The inverse of `encode_linear`."""
    import numpy as np

    v = np.asarray(encoded, np.float32)
    if transfer == "none":
        return v.copy()
    if transfer == "srgb":
        return np.where(v <= 0.04045, v / 12.92, np.power((np.maximum(v, 0.04045) + 0.055) / 1.055, 2.4)
                        ).astype(np.float32)
    if transfer == "bt709":
        return np.where(v < 0.081, v / 4.5, np.power((np.maximum(v, 0.081) + 0.099) / 1.099, 1 / 0.45)
                        ).astype(np.float32)
    raise ValueError(f"unknown transfer {transfer!r}")
