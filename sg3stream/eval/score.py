"""`evaluate(reference, edited)`: both inputs read in step, a few frames at a time, every measure taken frame by
frame and pooled at the end. Memory stays a few frames whatever the clip's length (plus one embedding a frame)."""
from __future__ import annotations

import time
from itertools import islice
from typing import Callable

import cv2
import numpy as np

from ..errors import UserError
from . import metrics
from .faces import face_source
from .identity import FaceGeometry, find_recogniser
from .perceptual import find_lpips
from .regions import Regions
from .result import PER_FRAME_KEYS, EvalResult
from .sources import length_mismatch, open_source, size_mismatch

CHUNK = 8  # frames read from each input at a time (and one mediapipe tracking run)
FLOW_MARGIN = 0.1  # the flow is computed on the face's box grown by this fraction of the face size (at least 16 px)
# DIS's "fast" preset: on this CPU 7 ms per direction on a 720p face's box, against 67 ms for "medium"; both
# videos are warped with the same flow, so its errors add to warp_error and warp_error_reference alike
DIS_PRESET = cv2.DISOPTICAL_FLOW_PRESET_FAST


def evaluate(reference, edited, *, artifacts=None, id_model=None, face_masks=None,
             progress: Callable[[int, int | None], None] | None = None) -> EvalResult:
    """Score EDITED against REFERENCE, frame by frame and overall.

    reference, edited: video paths, or sequences of [H, W, 3] uint8 RGB frames (a [T, H, W, 3] array too).
    artifacts: a run's artifacts folder: the face region from its alignment.npz instead of mediapipe.
    id_model: an ArcFace ONNX model for TL-ID / TG-ID (default: dlib's model when installed; False: neither, as
        when a caller only wants the pixel measures: dlib costs about 0.2 s a face on a CPU).
    face_masks: [T, H, W] bool (the face; the outside is the rest) or float blend weights in [0, 1]: the face
        region given directly (no landmarks; the identity crops then use the face's box).
    progress: called as progress(frames done, total frames or None) after each few frames.
    Raises UserError when the inputs differ in size or length.
    """
    started = time.perf_counter()
    ref, edit = open_source(reference, "REFERENCE"), open_source(edited, "EDITED")
    if ref.size and edit.size and ref.size != edit.size:
        raise size_mismatch(ref, edit, ref.size, edit.size)
    if ref.length is not None and edit.length is not None and ref.length != edit.length:
        raise length_mismatch(ref, edit, ref.length, edit.length)
    recogniser, id_note = find_recogniser(id_model)  # a bad --id-model fails here, before any work
    lpips, lpips_note = find_lpips()
    faces = face_source(face_masks, artifacts)
    known = ref.length if ref.length is not None else edit.length
    if face_masks is not None and known is not None and faces.length != known:
        raise UserError(f"face_masks has {faces.length} frames, the videos {known}")
    scorer = Scorer(recogniser, lpips)
    done, first = 0, None
    try:
        while True:
            rc, ec = list(islice(ref.frames, CHUNK)), list(islice(edit.frames, CHUNK))
            if len(rc) != len(ec):
                raise length_mismatch(ref, edit, done + len(rc) + ref.count_rest(), done + len(ec) + edit.count_rest())
            if not rc:
                break
            for k, (r, e) in enumerate(zip(rc, ec)):
                first = first or r.shape
                if r.shape != e.shape:
                    raise size_mismatch(ref, edit, (r.shape[1], r.shape[0]), (e.shape[1], e.shape[0]))
                if r.shape != first:
                    raise UserError(f"REFERENCE frame {done + k} is {r.shape[1]}x{r.shape[0]}, frame 0 was "
                                    f"{first[1]}x{first[0]}: eval needs one frame size")
            if done == 0:
                faces.check((first[1], first[0]))
            for r, e, (regions, geometry) in zip(rc, ec, faces.chunk(done, rc)):
                scorer.add(r, e, regions, geometry)
            done += len(rc)
            if progress is not None:
                progress(done, known)
    finally:
        faces.close()
    if done == 0:
        raise UserError(f"REFERENCE {ref.label} has no frames")
    notes = faces.finish(done) + [n for n in (id_note, lpips_note) if n]
    result = scorer.result(notes)
    result.reference, result.edited, result.face_source = ref.label, edit.label, faces.description
    result.seconds = time.perf_counter() - started
    return result


class Scorer:
    """Takes the frames one pair at a time (with the reference's regions) and keeps the sums and the curves."""

    def __init__(self, recogniser=None, lpips=None):
        self.recogniser = recogniser
        self.lpips = lpips
        self.dis = cv2.DISOpticalFlow_create(DIS_PRESET)
        self.per_frame: dict[str, list] = {k: [] for k in PER_FRAME_KEYS}
        self.frames = 0
        self.with_face = 0
        self.face_sse, self.face_n = 0.0, 0
        self.out_sse, self.out_n = 0.0, 0
        self.seam_edit, self.seam_ref = 0.0, 0.0
        self.lpips_values: list[float] = []
        self.embeddings: list[tuple[int, np.ndarray, np.ndarray]] = []  # (frame, reference's, edited's)
        self.prev: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, ref: np.ndarray, edit: np.ndarray, regions: Regions | None, geometry: FaceGeometry | None) -> None:
        row = dict.fromkeys(PER_FRAME_KEYS)
        sse, n = metrics.squared_error(ref, edit)
        if regions is not None:
            self.with_face += 1
            ys, xs = regions.slices
            rb, eb = ref[ys, xs], edit[ys, xs]
            face_sse, face_n = metrics.squared_error(rb, eb, regions.face)
            near_sse, near_n = metrics.squared_error(rb, eb, regions.near)
            self.face_sse += face_sse
            self.face_n += face_n
            sse, n = max(0.0, sse - near_sse), n - near_n  # the outside: the frame less the face and its surround
            row["psnr_face"] = metrics.psnr(face_sse, face_n)
            inner = regions.around_face()
            row["ssim_face"] = metrics.ssim(rb[inner], eb[inner], regions.face[inner])
            row["seam"] = self._seam(rb[inner], eb[inner], regions.band[inner])
            if self.prev is not None:
                row["warp_error"], row["warp_error_reference"] = self._warp(ref, edit, regions)
            if self.recogniser is not None and geometry is not None:
                e_ref, e_edit = self.recogniser.embed([ref, edit], geometry)
                self.embeddings.append((self.frames, e_ref, e_edit))
            if self.lpips is not None:
                self.lpips_values.append(self.lpips(ref, edit, regions.face_box))
        self.out_sse += sse
        self.out_n += n
        row["psnr_outside"] = metrics.psnr(sse, n)
        for k, v in row.items():
            self.per_frame[k].append(v)
        self.frames += 1
        self.prev = (ref, edit)

    def _seam(self, rb: np.ndarray, eb: np.ndarray, band: np.ndarray) -> float | None:
        if not band.any():
            return None
        g_edit, g_ref = metrics.gradient_energy(eb, band), metrics.gradient_energy(rb, band)
        self.seam_edit += g_edit
        self.seam_ref += g_ref
        return g_edit / g_ref if g_ref > 0 else None

    def _warp(self, ref: np.ndarray, edit: np.ndarray, regions: Regions) -> tuple[float | None, float | None]:
        """Frame t against frame t-1 warped by the REFERENCE's flow, around the face (its box grown for the
        motion)."""
        prev_ref, prev_edit = self.prev
        m = max(16, int(round(FLOW_MARGIN * regions.size)))
        h, w = ref.shape[:2]
        x0, y0, x1, y1 = regions.face_box
        x0, y0, x1, y1 = max(0, x0 - m), max(0, y0 - m), min(w, x1 + m), min(h, y1 + m)
        sl = slice(y0, y1), slice(x0, x1)
        flow, valid = metrics.reference_flow(cv2.cvtColor(prev_ref[sl], cv2.COLOR_RGB2GRAY),
                                             cv2.cvtColor(ref[sl], cv2.COLOR_RGB2GRAY), self.dis)
        # the face (box-local) where it overlaps the flow's area: all of it, since the face lies in its own box
        bx0, by0, bx1, by1 = regions.box
        ix0, iy0, ix1, iy1 = max(x0, bx0), max(y0, by0), min(x1, bx1), min(y1, by1)
        mask = np.zeros_like(valid)
        mask[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = regions.face[iy0 - by0:iy1 - by0, ix0 - bx0:ix1 - bx0]
        mask &= valid
        return (metrics.warp_error(prev_edit[sl], edit[sl], flow, mask),
                metrics.warp_error(prev_ref[sl], ref[sl], flow, mask))

    def result(self, notes: list[str]) -> EvalResult:
        notes = list(notes)
        pf = self.per_frame

        def mean(key):
            values = [v for v in pf[key] if v is not None]
            return float(np.mean(values)) if values else None

        summary = {
            "frames": self.frames,
            "frames_with_face": self.with_face,
            "psnr_face": metrics.psnr(self.face_sse, self.face_n),
            "ssim_face": mean("ssim_face"),
            "psnr_outside": metrics.psnr(self.out_sse, self.out_n),
            "warp_error": mean("warp_error"),
            "warp_error_reference": mean("warp_error_reference"),
            "tl_id": None,
            "tg_id": None,
            "seam": self.seam_edit / self.seam_ref if self.seam_ref > 0 else None,
            "lpips_face": float(np.mean(self.lpips_values)) if self.lpips_values else None,
        }
        if self.embeddings:
            summary["tl_id"], summary["tg_id"] = self._identity()
        if self.with_face == 0:
            notes.append("no face in the reference: psnr_face, ssim_face, warp_error, seam, tl_id, tg_id and "
                         "lpips_face need one")
        else:
            if summary["warp_error"] is None:
                notes.append("warp_error: needs a face in a frame after the first (and flow there that passes the "
                             "forward-backward check)")
            if summary["seam"] is None:
                notes.append("seam: the reference has no gradient along the face's edge to compare with")
            if self.recogniser is not None and (summary["tl_id"] is None or summary["tg_id"] is None):
                notes.append("tl_id, tg_id: need a face (with landmarks or a mask) in at least two frames, "
                             "adjacent ones for tl_id")
        if summary["psnr_outside"] is None:
            notes.append("psnr_outside: the face region covers every frame entirely")
        return EvalResult(summary={**summary, "notes": notes}, per_frame=pf)

    def _identity(self) -> tuple[float | None, float | None]:
        present = np.zeros(self.frames, bool)
        dim = len(self.embeddings[0][1])
        ref, edit = np.zeros((self.frames, dim)), np.zeros((self.frames, dim))
        for t, e_ref, e_edit in self.embeddings:
            present[t], ref[t], edit[t] = True, e_ref, e_edit
        return metrics.tl_id(edit, ref, present), metrics.tg_id(edit, ref, present)

