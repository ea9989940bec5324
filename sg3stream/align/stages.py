"""The alignment stages of the pipeline: landmarks, then quads and transforms, then the crops.

Every per-face key has a face axis right after the frame axis: [N, F, ...], F face slots (LandmarkStage's
`max_faces`, from --faces). Empty slots are NaN, False or black. TrackStage keeps each face track in one slot for
its life; nothing here ever mixes two slots or two tracks: bridging, smoothing and the fixed crop are per track.

LandmarkStage (executor "process"): mediapipe face mesh in tracking mode over each batch (a contiguous chunk of
frames; the tracker restarts at every batch so batches are independent), with the full-range-detector fallback for
small faces (into slot 0, only when the mesh finds no face at all: with several slots, a small face beside one
the mesh finds is missed). Attaches:

  landmarks        [N,F,478,2] float32  source-frame pixels (OpenCV convention, pixel centres at integers), NaN if none
  detected         [N,F] bool           landmarks were found for this face
  landmark_source  [N,F] uint8          0 none, 1 face mesh, 2 fallback (full-range detector + mesh on the crop)

TrackStage (executor "thread"): links the detections into tracks (tracks.py), reorders the keys above so that a
track keeps its slot, and attaches `track_id` [N,F] int32 (-1: empty); a cut (`shot_start`) ends every track.

AlignStage (executor "thread"): needs the keys above. Bridges short gaps, smooths quads over a bounded window
(holds batches back until it has seen `lookahead` frames past them; `flush()` releases the rest), computes the
generator transforms and, unless `warp=False`, warps the aligned and the unaligned crops as CropStage does.
With `warp=False` it never reads the picture, so the picture need not ride through its window: the chain drops it
after the landmarks and decodes it again for CropStage (sg3stream/chain.py). Attaches (S = `size`):

  detected      [N,F] bool          unchanged: False for bridged frames too -> later stages pass the face through
  has_quad      [N,F] bool          detected or bridged: the quads/crops/transform below are valid.
                                    False -> quads and transform are NaN, images are black: pass the face through
  bridged       [N,F] bool          the quad was interpolated across a gap of at most `max_gap` frames
  aligned_quad  [N,F,4,2] float32   source pixels, FFHQ corner order TL, BL, BR, TR of the aligned image
  crop_quad     [N,F,4,2] float32   same, of the unaligned crop (axis-aligned square); paste-back warps the
                                    generator output back into the frame with this quad
  aligned       [N,F,S,S,3] uint8   the FFHQ-aligned crop (encoder input)
  aligned_gen   [N,F,R,R,3] uint8   the aligned crop at R = `gen_size`, only when asked (the oracle generator's
                                    faces: sg3stream/models/oracle.py)
  crop          [N,F,C,C,3] uint8   the unaligned crop, C = `crop_size` (what the generator renders with
                                    `transform`; PTI's target)
  transform     [N,F,3,3] float32   StyleGAN3 synthesis.input.transform: crop coords -> aligned coords (transforms.py)
  rotation_deg  [N,F] float32       reference-style angle (positive = face turned counter-clockwise on screen)
  translation   [N,F,2] float32     aligned centre in the crop, normalised crop units
  scale         [N,F] float32       aligned quad size / crop quad size
  face_outline  [N,F,64,2] float32  the convex hull of the face's landmarks, NaN-padded: the paste-back mask's
                                    outline, so that the 478 landmarks can be dropped here

CropStage (executor "thread"): the picture and the quads -> `aligned` (and `crop`, `aligned_gen` when asked).

Each stage declares these (`reads`, `writes`, `context_before`, `context_after`: sg3stream/pipeline/contract.py).
"""
from __future__ import annotations

import os
from typing import Literal

import numpy as np

from sg3stream.errors import UserError
from sg3stream.pipeline.batch import FrameBatch
from sg3stream.pipeline.contract import Key, widen
from sg3stream.pipeline.stage import Stage
from sg3stream.pipeline.window import Window, one_batch

from .artifacts import AlignmentWriter
from .ffhq import axis_aligned, ffhq_params, params_to_quad, warp_quads
from .gate import FaceGate
from .landmarks import NUM_LANDMARKS, OUTLINE_POINTS, LandmarkDetector, face_outline
from .ledger import FaceLedger
from .track import bridge_gaps, smooth, window_radius
from .tracks import Tracker, slot_order, take_slots
from .transforms import generator_transforms


def quiet_native_logs() -> None:
    """mediapipe's C++ side (absl, TFLite) writes several lines per chunk to stderr, over any progress bar.

    Lower what respects the environment; in a worker process (not the user's), send the rest of fd 2 to
    /dev/null: errors still reach the user, because the runner carries worker exceptions back to the parent.
    """
    import multiprocessing

    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if multiprocessing.parent_process() is not None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """Landmark processes by default: half the cores, at most 4. One mediapipe worker keeps up with about 150
    frames/s at 480p (`sg3stream bench --sections align`), so a few feed the GPU stages; the other cores stay free
    for decoding, paste-back and encoding, and each worker costs about 250 MB. On 2 cores one worker beat two."""
    return max(1, min(4, available_cores() // 2))


class LandmarkStage(Stage):
    """mediapipe face mesh landmarks, one contiguous batch at a time, in a pool of `workers` processes.

    workers: landmark processes (default: `default_workers()`, half the cores, at most 4).
    min_detection_confidence, min_tracking_confidence: mediapipe's thresholds.
    fallback: when the mesh finds no face, try the full-range detector and a mesh on the detected region.
    fallback_tiles: let the fallback detector also look at overlapping tiles of the frame (smaller faces, but a
        frame without any face then costs one detector run per tile).
    max_faces: face slots per frame (F of the per-face keys): the largest faces the mesh finds, up to this many.
    search_faces: how many faces the mesh looks for (default `max_faces`): more than `max_faces` keeps the largest
        of them, at the cost of mediapipe running its detector on frames with fewer faces than that.
    """

    name = "landmarks"
    executor = "process"
    reads = ("frames",)
    writes = (
        Key("landmarks", (NUM_LANDMARKS, 2), "float32", doc="mediapipe mesh, source-frame pixels; NaN: no face"),
        Key("detected", (), "bool", doc="landmarks were found for this face"),
        Key("landmark_source", (), "uint8", doc="0 none, 1 face mesh, 2 full-range detector fallback"),
    )

    def __init__(self, workers: int | None = None, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5, fallback: bool = True, fallback_tiles: bool = True,
                 max_faces: int = 1, search_faces: int | None = None):
        if workers is not None and workers < 1:
            raise UserError(f"the landmark worker count must be at least 1 (got {workers})")
        if max_faces < 1:
            raise UserError(f"the number of face slots must be at least 1 (got {max_faces})")
        self.max_faces = int(max_faces)
        self.search_faces = search_faces
        self.processes = workers or default_workers()
        self.min_detection_confidence = min_detection_confidence
        self.min_tracking_confidence = min_tracking_confidence
        self.fallback = fallback
        self.fallback_tiles = fallback_tiles
        self._detector: LandmarkDetector | None = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_detector"] = None  # the mediapipe graphs are built in each worker by setup()
        return state

    def setup(self) -> None:
        if self._detector is None:
            quiet_native_logs()
            self._detector = LandmarkDetector(self.min_detection_confidence, self.min_tracking_confidence,
                                              self.fallback, self.fallback_tiles, max_faces=self.max_faces,
                                              search_faces=self.search_faces)

    def __call__(self, batch: FrameBatch) -> FrameBatch:
        self.setup()
        landmarks, source = self._detector.detect_chunk(batch.frames)
        data = dict(batch.data)
        data["landmarks"] = landmarks
        data["detected"] = source > 0
        data["landmark_source"] = source
        return batch.replace(data=data)

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()
            self._detector = None


class TrackStage(Stage):
    """Links the faces of consecutive frames into tracks (sg3stream/align/tracks.py) and puts each track in one
    slot for its whole life: the per-face keys of LandmarkStage come out reordered, with `track_id` beside them.

    mediapipe lists a frame's faces in no stable order, so without this a slot could hold one face in a frame and
    the other in the next, and the per-slot bridging and smoothing after it would mix them. A cut (`shot_start`,
    from ShotStage) ends every track. The tracker is causal: no batch is held back.

    Its face axis holds the slots used so far, not all that the landmarks offer: a clip with one face at a time
    keeps one slot (F = 1) whatever `--faces` allows, and F grows (never shrinks) the first time more faces are on
    screen together; the windowed stages after it widen their state then. What every frame costs downstream
    (crops, codes, renders, the smoothing window's rows) is paid per slot.

    max_gap: frames a track survives without a detection (AlignStage's bridging: a bridged gap is one track).
    """

    name = "track"
    executor = "thread"
    reads = ("landmarks", "detected", "landmark_source", "shot_start")
    writes = (
        Key("landmarks", (NUM_LANDMARKS, 2), "float32", doc="as LandmarkStage's, one track per slot"),
        Key("detected", (), "bool", doc="as LandmarkStage's, one track per slot"),
        Key("landmark_source", (), "uint8", doc="as LandmarkStage's, one track per slot"),
        Key("track_id", (), "int32", doc="the face's track (new at every cut), -1: empty slot"),
    )

    def __init__(self, max_gap: int = 12):
        self.max_gap = int(max_gap)
        self.tracker: Tracker | None = None
        self.slots_used = 1

    def setup(self) -> None:
        self.tracker = Tracker(max_gap=self.max_gap)
        self.slots_used = 1

    def __call__(self, batch: FrameBatch) -> FrameBatch:
        if self.tracker is None:
            self.setup()
        landmarks = np.asarray(batch.data["landmarks"], dtype=np.float32)  # [N, F, 478, 2]
        detected = np.asarray(batch.data["detected"], dtype=bool)
        # only what LandmarkStage counts as detected is tracked
        rows = np.where(detected[..., None, None], landmarks, np.nan)
        index = np.asarray(batch.index, dtype=np.int64)
        cuts = index[np.asarray(batch.data["shot_start"], dtype=bool)]
        ids = self.tracker.push_chunk(rows, int(index[0]), cuts)
        order, track_id = slot_order(ids, self.tracker.slot_of, landmarks.shape[1])
        used = np.flatnonzero((track_id >= 0).any(axis=0))
        self.slots_used = max(self.slots_used, int(used[-1]) + 1 if len(used) else 1)
        order, track_id = order[:, :self.slots_used], track_id[:, :self.slots_used]
        out = batch.replace()
        out.data.update(landmarks=take_slots(landmarks, order, np.nan),
                        detected=take_slots(detected, order, False),
                        landmark_source=take_slots(np.asarray(batch.data["landmark_source"], np.uint8), order, 0),
                        track_id=track_id.astype(np.int32))
        return out


class AlignStage(Stage):
    """FFHQ alignment, unaligned crop and generator transforms, with gap bridging and temporal smoothing.

    size: side of the aligned crop (the encoder's input), default 256.
    crop_size: side of the unaligned crop; default `size`. PTI asks for the generator's resolution: it supervises
          the generator's full-size renders with it.
    crop: "smooth" (default) the crop follows the head: the aligned quad made axis-aligned, smoothed over time with
          `crop_smoothing`; "fixed" the first face's crop for the whole clip (the stylegan3-editing video
          reference).
    align_smoothing: sigma in frames of the smoothing of the aligned quads (0 = off).
    crop_smoothing: sigma in frames of the smoothing of the crop quad with crop="smooth" (0 = off).
    max_gap: longest run of frames without a face that is bridged by interpolating the neighbouring quads.
    artifacts_dir: where to write alignment.npz at the end of the stream (None: not written).
    crop_axis_aligned: True (default): the crop is the aligned quad without its rotation (stylegan3-editing's
          get_fixed_cropping_transformation), so the transform carries the head's roll. False: the crop is the
          aligned quad itself, rotation included (what the reference's video_handler does with the first frame).
    enable_padding: the FFHQ recipe's reflect-padding and blur where a quad leaves the frame.
    with_crop: warp the unaligned `crop` too (only PTI's collector reads it; False saves a warp per face).
    warp: warp the crops here (True), or leave them to a CropStage after it (False: no picture is read).
    gen_size: also warp the aligned quad at this side into `aligned_gen` (None: not written; the oracle generator
          renders these, at its resolution).
    tracks: read `track_id` (TrackStage): bridging, smoothing and the fixed crop run per track, so that nothing
          crosses a change of track within a slot (a cut, a slot taken over); bridged frames get their track's id.
          False: each slot is one track.
    gate: a `FaceGate` (gate.py): writes `passthrough` [N,F] uint8, why a face is not edited (too small, turned
          away, a track too short-lived in the window around the frame; 0: edited). None: every face is edited.
    faces: a `FaceLedger` (ledger.py) that counts each track's frames as they leave, for run.json's `faces`.
    """

    name = "align"
    executor = "thread"

    def __init__(self, size: int = 256, crop: Literal["fixed", "smooth"] = "smooth", align_smoothing: float = 1.0,
                 crop_smoothing: float = 6.0, max_gap: int = 12, artifacts_dir: str | os.PathLike | None = None,
                 crop_axis_aligned: bool = True, enable_padding: bool = True, require_face: bool = True,
                 crop_size: int | None = None, with_crop: bool = True, gen_size: int | None = None,
                 warp: bool = True, tracks: bool = False, gate: FaceGate | None = None,
                 faces: FaceLedger | None = None):
        if crop not in ("fixed", "smooth"):
            raise UserError(f"--crop must be 'fixed' or 'smooth' (got {crop!r})")
        # False: a stream without any face is not an error (a farm segment; the job checks the whole clip)
        self.require_face = require_face
        crop_size = size if crop_size is None else crop_size
        for side in (size, crop_size) + ((gen_size,) if gen_size is not None else ()):
            if not (isinstance(side, int) and 16 <= side <= 4096):
                raise UserError(f"the crop size must be an integer between 16 and 4096 (got {side!r})")
        if align_smoothing < 0 or crop_smoothing < 0:
            raise UserError("--align-smoothing and the crop smoothing must be 0 (off) or a positive number of frames")
        if align_smoothing > 50 or crop_smoothing > 50:
            raise UserError("smoothing sigmas above 50 frames are not supported (the window would hold too many "
                            "frames in memory)")
        if max_gap < 0:
            raise UserError(f"the maximum bridged gap must be 0 or more frames (got {max_gap})")
        self.size = size
        self.crop_size = crop_size
        self.crop = crop
        self.warp = warp
        self.align_smoothing = float(align_smoothing)
        self.crop_smoothing = float(crop_smoothing)
        self.max_gap = int(max_gap)
        self.artifacts_dir = artifacts_dir
        self.crop_axis_aligned = crop_axis_aligned
        self.enable_padding = enable_padding
        self.with_crop = with_crop
        self.gen_size = gen_size
        self.tracks = tracks
        self.gate = gate
        self.faces = faces
        self._reset()

    # --- what it reads and writes ------------------------------------------------------------------------------
    @property
    def reads(self) -> tuple[str, ...]:
        # landmark_source only goes into alignment.npz
        return ((("frames",) if self.warp else ()) + ("landmarks", "detected")
                + (("landmark_source",) if self.artifacts_dir is not None else ())
                + (("track_id",) if self.tracks else ()))

    @property
    def writes(self) -> tuple[Key, ...]:
        crops = crop_keys(self.size, self.crop_size, self.with_crop, self.gen_size) if self.warp else ()
        return (
            Key("detected", (), "bool", doc="landmarks found, not bridged: the face is inverted"),
            Key("has_quad", (), "bool", doc="detected or bridged over a gap: quads, crops and transforms are valid"),
            Key("bridged", (), "bool", doc="the quad was interpolated across a short gap"),
            Key("aligned_quad", (4, 2), "float32", doc="FFHQ quad (TL, BL, BR, TR), source pixels"),
            Key("crop_quad", (4, 2), "float32", doc="the unaligned crop's square, source pixels"),
            Key("face_outline", (OUTLINE_POINTS, 2), "float32", doc="convex hull of the landmarks, NaN-padded"),
            *crops,
            Key("transform", (3, 3), "float32", doc="generator input transform: crop -> aligned coordinates"),
            Key("rotation_deg", (), "float32", doc="the transform's angle"),
            Key("translation", (2,), "float32", doc="the transform's translation, normalised crop units"),
            Key("scale", (), "float32", doc="the transform's scale"),
            *((Key("track_id", (), "int32", doc="the face's track, bridged frames included; -1: none"),)
              if self.tracks else ()),
            *((Key("passthrough", (), "uint8", doc="why the face is not edited: 0 edited, 1 small, 2 profile, "
                   "3 short (gate.py)"),) if self.gate is not None else ()),
        )

    @property
    def context_before(self) -> int:
        return self.lookahead  # bridging and smoothing reach as far back as forward

    @property
    def context_after(self) -> int:
        return self.lookahead

    # --- bookkeeping -------------------------------------------------------------------------------------------
    @property
    def radius(self) -> int:
        crop_sigma = self.crop_smoothing if self.crop == "smooth" else 0.0
        return max(window_radius(self.align_smoothing), window_radius(crop_sigma))

    @property
    def lookahead(self) -> int:
        """Frames that must have been seen after a frame before it can be released."""
        return self.radius + self.max_gap + 1

    def _reset(self) -> None:
        self.window = Window(after=self.lookahead)  # the batches held back
        # raw FFHQ params [T, F, 4] from stream position `_win_start` on (NaN: no face); None until the first batch
        # says how many face slots there are
        self._params: np.ndarray | None = None
        self._tracks: np.ndarray | None = None  # [T, F] track id of each row of _params (-1: none)
        self._win_start = 0  # the released frames' history the next bridging and smoothing reach, then the held ones
        self._any_face = False
        self._fixed_crop: np.ndarray | None = None  # [F, 4] with crop="fixed": each track's first crop (NaN: none yet)
        self._fixed_track: np.ndarray | None = None  # [F] the track whose crop _fixed_crop holds
        self._writer: AlignmentWriter | None = None

    def setup(self) -> None:
        self._reset()
        if self.artifacts_dir is not None:
            self._writer = AlignmentWriter(self.artifacts_dir)

    def __call__(self, batch: FrameBatch) -> FrameBatch | None:
        if "landmarks" not in batch.data:
            raise RuntimeError("AlignStage needs the 'landmarks' of LandmarkStage")
        if self._writer is None and self.artifacts_dir is not None:
            self._writer = AlignmentWriter(self.artifacts_dir)
        lm = np.asarray(batch.data["landmarks"], dtype=np.float32)  # [N, F, 478, 2]
        detected = np.asarray(batch.data["detected"], dtype=bool)  # [N, F]
        params = np.full(detected.shape + (4,), np.nan)
        if detected.any():
            params[detected] = ffhq_params(lm[detected])
            detected = detected & np.isfinite(params).all(axis=-1)
            params[~detected] = np.nan
            self._any_face |= bool(detected.any())
        # without tracks, each slot is one track (0)
        tracks = (np.asarray(batch.data["track_id"], dtype=np.int64) if self.tracks
                  else np.zeros(detected.shape, np.int64))
        if self._params is None:
            self._params = np.zeros((0,) + params.shape[1:])
            self._tracks = np.zeros((0,) + detected.shape[1:], np.int64)
            self._fixed_crop = np.full(params.shape[1:], np.nan)
            self._fixed_track = np.full(detected.shape[1:], -1, np.int64)
        # The face axis only grows (TrackStage): widen what is held, and a narrower batch, with empty slots
        faces = max(self._params.shape[1], params.shape[1])
        self._params, params = widen(self._params, faces, np.nan), widen(params, faces, np.nan)
        self._tracks, tracks = widen(self._tracks, faces, -1), widen(tracks, faces, -1)
        self._fixed_crop = widen(self._fixed_crop[None], faces, np.nan)[0]
        self._fixed_track = widen(self._fixed_track[None], faces, -1)[0]
        self._params = np.concatenate([self._params, params])
        self._tracks = np.concatenate([self._tracks, tracks])
        self.window.push(batch)
        return one_batch(self._release(final=False))

    @property
    def found_face(self) -> bool:
        """Whether any frame so far had a face (in any slot)."""
        return self._any_face

    def flush(self) -> list[FrameBatch]:
        out = self._release(final=True)  # the held batches as they came in: no oversized last batch
        if not self._any_face and self.require_face:
            if self._writer is not None:
                self._writer.discard()
                self._writer = None
            raise UserError(f"no face was found in any of the {self.window.arrived} frames of the clip "
                            "(sg3stream needs a visible face; check the input video)")
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return out

    def close(self) -> None:
        if self._writer is not None:
            self._writer.discard()
            self._writer = None

    # --- the work ----------------------------------------------------------------------------------------------
    def _release(self, final: bool) -> list[FrameBatch]:
        """The held batches whose look-ahead has been seen (all of them when `final`), aligned, one out per in."""
        position = self.window.released  # stream position of the first ready frame
        ready = self.window.take(final)
        if not ready:
            return []

        raw = self._params  # [T, F, 4]
        bridged_params = raw.copy()
        bridged = np.zeros(raw.shape[:2], bool)
        aligned = np.full_like(raw, np.nan)
        smooth_crop = np.full_like(raw, np.nan)
        track_id = self._tracks.copy()  # bridged frames get the id of the track that bridges them
        for k in range(raw.shape[1]):  # one slot at a time, one track at a time: two faces never mix
            for tid in np.unique(self._tracks[:, k][self._tracks[:, k] >= 0]):
                mine = self._tracks[:, k] == tid
                params = np.where(mine[:, None], raw[:, k], np.nan)
                valid = np.isfinite(params).all(axis=1)
                # A gap that reaches the end of the window is not bridged unless the stream ended (bridge_gaps only
                # fills gaps with a face on both sides, so an open gap at the end stays NaN).
                filled, across = bridge_gaps(params, valid, self.max_gap)
                span = valid | across  # a track's frames in a slot are consecutive: its spans never overlap
                bridged_params[span, k] = filled[span]
                bridged[across, k] = True
                track_id[across, k] = tid
                aligned[span, k] = smooth(filled, span, self.align_smoothing)[span]
                if self.crop == "smooth":
                    base = axis_aligned(filled) if self.crop_axis_aligned else filled
                    smooth_crop[span, k] = smooth(base, span, self.crop_smoothing)[span]
        has_quad = np.isfinite(raw).all(axis=-1) | bridged
        track_frames, reach_frames = self._track_frames(np.isfinite(raw).all(axis=-1), track_id)
        out = []
        for batch in ready:
            lo = position - self._win_start
            # the batch's own slots: one that came before the face axis grew has no face in the new ones
            sl = (slice(lo, lo + len(batch)), slice(0, np.shape(batch.data["detected"])[1]))
            if self.crop == "smooth":
                crop = smooth_crop[sl]
            else:
                crop = np.full_like(aligned[sl], np.nan)
                for i, k in zip(*np.nonzero(has_quad[sl])):  # each track keeps the crop of its first frame
                    if self._fixed_track[k] != track_id[sl][i, k] or not np.isfinite(self._fixed_crop[k]).all():
                        p = aligned[sl][i, k]
                        self._fixed_crop[k] = axis_aligned(p) if self.crop_axis_aligned else p
                        self._fixed_track[k] = track_id[sl][i, k]
                    crop[i, k] = self._fixed_crop[k]
            out.append(self._outputs(batch, aligned[sl], crop, has_quad[sl], bridged[sl],
                                     track_id[sl] if self.tracks else None, track_frames[sl], reach_frames[sl[0]]))
            position += len(batch)

        # Keep the history the next frames' bridging and smoothing can reach: radius + max_gap + 1 frames.
        keep_from = max(self._win_start, position - self.lookahead)
        self._params = self._params[keep_from - self._win_start:]
        self._tracks = self._tracks[keep_from - self._win_start:]
        self._win_start = keep_from
        return out

    def _track_frames(self, detected: np.ndarray, track_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Detections [T, F] and tracks of the held rows -> (each face's track's detections among the frames up to
        `lookahead` before and after it [T, F]; how many frames of the stream that reach holds [T]: fewer near the
        stream's ends, so that a face seen in every frame of a clip shorter than --min-track-frames is not
        short-lived). The history keeps `lookahead` frames before the first frame released, and a frame is released
        once `lookahead` frames after it have arrived (or the stream ended), so the reach of a released frame is
        held."""
        reach = self.lookahead
        t = np.arange(len(detected))
        position = self._win_start + t
        lo, hi = np.maximum(t - reach, 0), np.minimum(t + reach + 1, len(t))
        available = 2 * reach + 1 - np.maximum(reach - position, 0) - np.maximum(t + reach + 1 - len(t), 0)
        count = np.zeros(detected.shape, np.int64)
        for k in range(detected.shape[1]):
            for tid in np.unique(track_id[:, k][track_id[:, k] >= 0]):
                mine = track_id[:, k] == tid
                sums = np.concatenate([[0], np.cumsum(detected[:, k] & mine)])
                count[mine, k] = (sums[hi] - sums[lo])[mine]
        return count, available

    def _outputs(self, batch: FrameBatch, aligned_params: np.ndarray, crop_params: np.ndarray,
                 has_quad: np.ndarray, bridged: np.ndarray, track_id: np.ndarray | None,
                 track_frames: np.ndarray, reach_frames: np.ndarray) -> FrameBatch:
        aligned_quad = params_to_quad(aligned_params).astype(np.float32)  # [n, F, 4, 2]
        crop_quad = params_to_quad(crop_params).astype(np.float32)
        aligned_quad[~has_quad] = np.nan
        crop_quad[~has_quad] = np.nan
        tf = generator_transforms(aligned_quad, crop_quad)
        data = dict(batch.data)
        detected = np.asarray(data["detected"], dtype=bool) & ~bridged
        data.update(
            detected=detected,
            has_quad=has_quad.copy(),
            bridged=bridged.copy(),
            aligned_quad=aligned_quad,
            crop_quad=crop_quad,
            face_outline=face_outline(data["landmarks"]),
            **tf,
        )
        if track_id is None:  # without tracks each slot is one track, numbered by its slot
            track_id = np.where(has_quad, np.arange(has_quad.shape[1])[None, :], -1)
        if self.tracks:
            data["track_id"] = track_id.astype(np.int32)
        passthrough = np.zeros(has_quad.shape, np.uint8)
        if self.gate is not None:
            side = np.linalg.norm(aligned_quad[..., 3, :] - aligned_quad[..., 0, :], axis=-1)  # TL -> TR
            passthrough = np.where(detected, self.gate.reasons(side, data["landmarks"], track_frames, reach_frames),
                                   0)
            data["passthrough"] = passthrough.astype(np.uint8)
        if self.faces is not None:
            self.faces.add(np.asarray(batch.index, np.int64), track_id, detected, has_quad, passthrough, aligned_quad)
        if self.warp:
            data.update(warp_crops(batch.frames, aligned_quad, crop_quad, has_quad, self.size, self.crop_size,
                                   self.with_crop, self.gen_size, self.enable_padding))
        if self._writer is not None:
            self._writer.append(dict(
                frame_index=np.asarray(batch.index, dtype=np.int64),
                track_id=track_id,
                detected=detected,
                has_quad=has_quad,
                passthrough=passthrough,
                landmark_source=np.asarray(data["landmark_source"], np.uint8),
                landmarks=np.asarray(data["landmarks"], dtype=np.float32),
                aligned_quad=aligned_quad,
                crop_quad=crop_quad,
                **tf,
            ))
        return batch.replace(data=data)


def crop_keys(size: int, crop_size: int, with_crop: bool, gen_size: int | None) -> tuple[Key, ...]:
    """The images cut from the picture with the quads (AlignStage with warp=True, or CropStage)."""
    return (
        Key("aligned", ("S", "S", 3), "uint8", doc=f"the FFHQ-aligned crop, S = {size}: the encoder's input"),
        *((Key("crop", ("C", "C", 3), "uint8", doc=f"the unaligned crop, C = {crop_size}: PTI's target"),)
          if with_crop else ()),
        *((Key("aligned_gen", ("R", "R", 3), "uint8", doc=f"the aligned crop, R = {gen_size}: the oracle's face"),)
          if gen_size is not None else ()),
    )


def warp_crops(frames: np.ndarray, aligned_quad: np.ndarray, crop_quad: np.ndarray, has_quad: np.ndarray, size: int,
               crop_size: int, with_crop: bool, gen_size: int | None, enable_padding: bool) -> dict[str, np.ndarray]:
    """The `crop_keys` images of every face: [N, F, side, side, 3] uint8, black where there is no quad."""
    out = {"aligned": warp_quads(frames, aligned_quad, size, has_quad, enable_padding)}
    if gen_size is not None:
        out["aligned_gen"] = (out["aligned"] if gen_size == size else
                              warp_quads(frames, aligned_quad, gen_size, has_quad, enable_padding))
    if with_crop:
        out["crop"] = warp_quads(frames, crop_quad, crop_size, has_quad, enable_padding)
    return out


class CropStage(Stage):
    """Cuts the faces out of the picture with the quads AlignStage(warp=False) computed: the same images as
    AlignStage(warp=True) writes, from a picture that did not wait in the alignment window (the chain decodes it
    again right before this stage)."""

    name = "crop"
    executor = "thread"
    reads = ("frames", "aligned_quad", "crop_quad", "has_quad")

    def __init__(self, size: int = 256, crop_size: int | None = None, with_crop: bool = True,
                 gen_size: int | None = None, enable_padding: bool = True):
        self.size = size
        self.crop_size = size if crop_size is None else crop_size
        self.with_crop = with_crop
        self.gen_size = gen_size
        self.enable_padding = enable_padding

    @property
    def writes(self) -> tuple[Key, ...]:
        return crop_keys(self.size, self.crop_size, self.with_crop, self.gen_size)

    def __call__(self, batch: FrameBatch) -> FrameBatch:
        out = batch.replace()
        out.data.update(warp_crops(batch.frames, batch.data["aligned_quad"], batch.data["crop_quad"],
                                   np.asarray(batch.data["has_quad"], bool), self.size, self.crop_size,
                                   self.with_crop, self.gen_size, self.enable_padding))
        return out
