"""Rendering and paste-back stages.

RenderStage renders the edited codes of the faces (every face slot of every frame that has one), with their smoothed
transforms, many faces (and all their field-of-view copies) per synthesis call. PasteStage puts the results back
into the frame, or lays out the crop / the side-by-side review.
"""
from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import torch

from ..models.components import model_call_lock
from ..pipeline.batch import FrameBatch
from ..pipeline.contract import FRAMES, Key
from ..pipeline.stage import Stage
from .expand import Expansion, render_expanded
from .paste import blend_into, face_layer, paste, render_to_frame, stored_values

OUTPUT_MODES = ("full", "crop", "side-by-side", "layer")


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B,3,H,W] in [-1,1] -> [B,H,W,3] uint8."""
    x = (images.clamp(-1, 1) + 1) * 127.5
    return x.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class RenderStage(Stage):
    """Attaches `render` [N,F,H,W,3] uint8 (H = res + top + bottom, W = res + left + right; black where no face),
    and `render_recon` (the unedited reconstruction) when `with_reconstruction`.

    `renderer` (sg3stream/models/components.py, chosen once for the run) renders every call: eager, compiled, ONNX
    or TensorRT; with an engine, StyleSpace edits take the renderer's own torch path.
    """

    name = "render"

    def __init__(self, renderer, expansion: Expansion = Expansion(), max_batch: int = 8,
                 with_reconstruction: bool = False, one_call_per_batch: bool = True):
        self.renderer = renderer
        self.one_call_per_batch = one_call_per_batch  # False: each expansion copy in its own call (reference mode)
        self.expansion = expansion
        self.max_batch = max_batch
        self.with_reconstruction = with_reconstruction
        self.generator = None

    @property
    def reads(self) -> tuple[str, ...]:
        recon = ("latents_smoothed",) if self.with_reconstruction else ()
        return ("has_latents", "transform_smoothed", "ws_edit", "style_offsets") + recon

    @property
    def writes(self) -> tuple[Key, ...]:
        shape = ("render_h", "render_w", 3)  # the generator's resolution plus the field-of-view expansion
        recon = (Key("render_recon", shape, "uint8", doc="the unedited reconstruction"),)
        return (Key("render", shape, "uint8", doc="the edited face; black where none"),
                *(recon if self.with_reconstruction else ()))

    def setup(self) -> None:
        self.generator = self.renderer.generator  # the weights that render: their resolution sizes the canvas

    @torch.no_grad()
    def _render(self, ws: np.ndarray, offsets: dict[str, np.ndarray], transforms: np.ndarray) -> np.ndarray:
        device = self.renderer.device
        res = self.renderer.resolution
        ws_t = torch.from_numpy(np.ascontiguousarray(ws)).to(device)
        t = torch.from_numpy(np.ascontiguousarray(transforms)).to(device)

        def synthesize(repeats: int, all_t: torch.Tensor) -> torch.Tensor:
            w = ws_t.repeat_interleave(repeats, dim=0)
            styles = {layer: torch.from_numpy(d).to(device).repeat_interleave(repeats, dim=0)
                      for layer, d in offsets.items()}
            with model_call_lock(device):
                return self.renderer.render(w, all_t, styles)

        return to_uint8(render_expanded(synthesize, len(ws), t, res, self.expansion, one_call=self.one_call_per_batch))

    def _render_all(self, ws, offsets, transforms, sel) -> np.ndarray:
        """The faces `sel` [N,F] selects, `max_batch` (frame, slot) pairs per call -> [N,F,H,W,3], black elsewhere."""
        res = self.generator.img_resolution
        h, w = self.expansion.canvas(res)
        out = np.zeros(sel.shape + (h, w, 3), np.uint8)
        ws, transforms = ws[sel], transforms[sel]  # the faces to render, frame by frame
        offsets = {k: v[sel] for k, v in offsets.items()}
        rendered = np.zeros((len(ws), h, w, 3), np.uint8)
        for start in range(0, len(ws), self.max_batch):
            r = slice(start, start + self.max_batch)
            rendered[r] = self._render(ws[r], {k: v[r] for k, v in offsets.items()}, transforms[r])
        out[sel] = rendered
        return out

    def __call__(self, batch: FrameBatch) -> FrameBatch:
        sel = np.asarray(batch.data["has_latents"], bool)
        transforms = np.nan_to_num(batch.data["transform_smoothed"]).astype(np.float32)
        out = batch.replace()
        out.data["render"] = self._render_all(batch.data["ws_edit"], batch.data["style_offsets"], transforms, sel)
        if self.with_reconstruction:
            recon = np.nan_to_num(batch.data["latents_smoothed"]).astype(np.float32)
            out.data["render_recon"] = self._render_all(recon, {}, transforms, sel)
        return out


class PasteStage(Stage):
    """Replaces `frames` by the output picture: the edited frame, the edited crop, or input | reconstruction | edit.

    `full` pastes every face slot's render into the frame, larger faces last (where two faces overlap, the nearer
    one is on top). Faces without latents (none, bridged over a gap, or passed through by the gate) are left
    unchanged. The crop modes show one face per frame: the track `track` (`--track N`; then `track_id` is read),
    or the largest face of each frame when None; where that face is not edited they show its crop region
    unchanged, and where it has no crop, the whole frame letterboxed.
    """

    name = "paste"

    def __init__(self, res: int, expansion: Expansion = Expansion(), mode: Literal["full", "crop", "side-by-side"]
                 = "full", colour_match: bool = True, in_place: bool = False, track: int | None = None,
                 matte: bool = False, transfer: str = "srgb"):
        if mode not in OUTPUT_MODES:
            raise ValueError(f"output mode must be one of {OUTPUT_MODES}")
        self.res, self.expansion, self.mode, self.colour_match = res, expansion, mode, colour_match
        # Paste into the batch's own pictures instead of copies: only where nobody else holds them (the chain says
        # so when they were decoded again for the paste); a 4K batch is 200 MB.
        self.in_place = in_place
        self.track = track
        self.transfer = transfer  # float (scene-linear) pictures are blended in this encoding (render/paste.py)
        # `matte` [N,H,W] uint16: the blend weights of every face (--matte), and the alpha of the layer mode
        self.matte = (matte and mode == "full") or mode == "layer"

    @property
    def reads(self) -> tuple[str, ...]:
        outline = ("face_outline",) if self.mode in ("full", "layer") else ()  # the blend mask
        recon = ("render_recon",) if self.mode == "side-by-side" else ()
        track = ("track_id",) if self.mode != "full" and self.track is not None else ()
        return ("frames", "has_latents", "crop_quad", "render") + outline + recon + track

    @property
    def writes(self) -> tuple[Key, ...]:
        matte = Key("matte", ("H", "W"), "uint16", per_face=False, doc="the blend's weight, 0-65535 (--matte)")
        return (FRAMES,) + ((matte,) if self.matte else ())

    def _shown_slot(self, batch: FrameBatch, i: int) -> int | None:
        """The face slot the crop modes show in frame i: the chosen track's, else the largest face's."""
        quads = batch.data["crop_quad"][i]  # [F, 4, 2]
        if self.track is not None:
            slots = np.flatnonzero(np.asarray(batch.data["track_id"][i]) == self.track)
            return int(slots[0]) if len(slots) else None
        has = np.isfinite(quads).all(axis=(1, 2))
        if not has.any():
            return None
        sides = np.where(has, np.linalg.norm(np.nan_to_num(quads[:, 3] - quads[:, 0]), axis=-1), -1.0)
        return int(np.argmax(sides))

    def _source_crop(self, frame: np.ndarray, quad: np.ndarray) -> np.ndarray:
        h, w = self.expansion.canvas(self.res)
        if not np.isfinite(quad).all():
            return letterbox(frame, w, h)
        affine = render_to_frame(quad, self.res, self.expansion)
        return cv2.warpAffine(frame, affine, (w, h), flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT)

    def __call__(self, batch: FrameBatch) -> FrameBatch:
        edited = np.asarray(batch.data["has_latents"], bool)  # [N, F]
        crop_quad = batch.data["crop_quad"]
        mattes = np.zeros(batch.frames.shape[:3], np.uint16) if self.matte else None
        if self.mode == "full" and self.in_place:
            frames = batch.frames
            for i in range(len(frames)):
                for k in paste_order(crop_quad[i], edited[i]):
                    paste(frames[i], batch.data["render"][i, k], crop_quad[i, k], batch.data["face_outline"][i, k],
                          self.res, self.expansion, colour_match=self.colour_match, out=frames[i],
                          matte=mattes[i] if mattes is not None else None, transfer=self.transfer)
            return self._with_matte(batch.replace(frames=frames), mattes)
        if self.mode == "layer":
            return self._layers(batch, edited, mattes)
        frames = []
        for i, frame in enumerate(batch.frames):
            if self.mode == "full":
                for k in paste_order(crop_quad[i], edited[i]):
                    frame = paste(frame, batch.data["render"][i, k], crop_quad[i, k], batch.data["face_outline"][i, k],
                                  self.res, self.expansion, colour_match=self.colour_match,
                                  matte=mattes[i] if mattes is not None else None, transfer=self.transfer)
                frames.append(frame)
                continue
            k = self._shown_slot(batch, i)
            source = self._source_crop(frame, crop_quad[i, k] if k is not None else np.full((4, 2), np.nan))
            shown = k is not None and edited[i, k]
            edit = batch.data["render"][i, k] if shown else source
            if self.mode == "crop":
                frames.append(edit)
            else:
                recon = batch.data["render_recon"][i, k] if shown else source
                frames.append(np.concatenate([source, recon, edit], axis=1))
        return self._with_matte(batch.replace(frames=np.stack(frames)), mattes)

    def _layers(self, batch: FrameBatch, edited: np.ndarray, alphas: np.ndarray) -> FrameBatch:
        """--output-mode layer: each frame's edited faces alone, premultiplied by their alpha (`matte`), so that
        layer + input x (1 - alpha) is the full output: the faces are laid one over the other as the full mode
        pastes them (smaller first, each colour-matched to the frame as pasted so far)."""
        layers = np.zeros_like(batch.frames)
        colour = np.empty(batch.frames.shape[1:], np.float32)  # one frame's, reused for every frame of the batch
        alpha = np.empty(batch.frames.shape[1:3], np.float32)
        for i, frame in enumerate(batch.frames):
            pasted = frame.copy()
            colour.fill(0)
            alpha.fill(0)
            for k in paste_order(batch.data["crop_quad"][i], edited[i]):
                layer = face_layer(pasted, batch.data["render"][i, k], batch.data["crop_quad"][i, k],
                                   batch.data["face_outline"][i, k], self.res, self.expansion, self.colour_match,
                                   transfer=self.transfer)
                if layer is None:
                    continue
                region, face, a = layer
                blend_into(pasted, pasted, region, face, a, self.transfer)
                colour[region] = colour[region] * (1 - a[..., None]) + face * a[..., None]  # "over"
                alpha[region] = alpha[region] * (1 - a) + a
            layers[i] = premultiplied(colour, alpha, layers.dtype, self.transfer)
            alphas[i] = np.rint(alpha * 65535).astype(np.uint16)
        return self._with_matte(batch.replace(frames=layers), alphas)

    @staticmethod
    def _with_matte(batch: FrameBatch, mattes: np.ndarray | None) -> FrameBatch:
        if mattes is not None:
            batch.data["matte"] = mattes
        return batch


def premultiplied(colour: np.ndarray, alpha: np.ndarray, dtype, transfer: str) -> np.ndarray:
    """The layer's premultiplied colour (blend units, see render/paste.py) stored in the pictures' dtype; a float
    (scene-linear) layer is premultiplied in linear light, as compositors expect."""
    if np.dtype(dtype).kind != "f":
        return stored_values(colour, dtype)
    covered = alpha > 0
    straight = np.divide(colour, alpha[..., None], out=np.zeros_like(colour), where=covered[..., None])
    return stored_values(straight, dtype, transfer) * alpha[..., None]


def paste_order(crop_quads: np.ndarray, edited: np.ndarray) -> list[int]:
    """The slots of one frame to paste, smaller faces (crop side) first, so that larger ones end on top."""
    slots = np.flatnonzero(edited)
    sides = np.linalg.norm(crop_quads[slots, 3] - crop_quads[slots, 0], axis=-1)
    return slots[np.argsort(sides, kind="stable")].tolist()


def letterbox(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """The whole frame scaled to fit width x height, centred on black."""
    fh, fw = frame.shape[:2]
    scale = min(width / fw, height / fh)
    nw, nh = max(1, int(round(fw * scale))), max(1, int(round(fh * scale)))
    out = np.zeros((height, width, 3), np.uint8)
    y, x = (height - nh) // 2, (width - nw) // 2
    out[y:y + nh, x:x + nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA)
    return out
