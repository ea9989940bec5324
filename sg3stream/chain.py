"""The chain of stages, built in one place for `sg3stream run`, for PTI's first pass and for the farm's segments.

    run, segment:  decode -> shots -> landmarks -> track -> align [-> redecode-crop -> crop] -> invert -> smooth
                   -> edit -> render [-> redecode] -> paste [-> label] -> encode
                   (in brackets: where the input is a file, decoded again for the crops and for the paste, so
                   that no picture waits in the alignment or smoothing window; otherwise align cuts the crops)
    pti:           decode -> shots -> landmarks -> track -> align -> invert -> smooth -> collect
                   (the same chain, cut after smooth)
    plan:          the run's chain, never run: the farm asks it for its context before any model loads
    api:           the run's chain for `sg3stream.Editor.edit`: the frames and their faces' results go to the caller,
                   and a clip without a face is not an error

`build_chain` returns a checked `Chain` (sg3stream/pipeline/contract.py): every key a stage reads is written before
it, and each key is dropped after its last reader. What the stages need besides the options (the models, the
resolved edits, the generator's resolution) is chosen once by the caller and handed in as `ChainParts`; no stage
is looked up or changed after the chain is built.

Faces (`--faces`): the landmarks find up to that many faces per frame, one slot each on the face axis; the
tracker keeps each face in its slot, and a cut (shots) ends every track, so that no bridging, smoothing or mean
mixes two faces or two shots.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from .errors import UserError
from .pipeline.batch import FrameBatch
from .pipeline.contract import Chain
from .pipeline.stage import Stage

PURPOSES = ("run", "segment", "pti", "plan", "api")
# What PTI's collector (sg3stream/pti/clip.py) keeps of each frame: the first pass's sink.
PTI_SINK_READS = ("crop", "latents_smoothed", "transform_smoothed", "has_latents", "track_id")
# A farm segment's sink writes the frames and says whether the segment held any face.
SEGMENT_SINK_READS = ("frames", "has_latents")
# The Python API (sg3stream/api.py) hands each frame back with its faces: their quads, transforms and codes.
API_SINK_READS = ("frames", "has_latents", "track_id", "aligned_quad", "crop_quad", "transform_smoothed",
                  "latents_smoothed", "ws_edit")


@dataclass
class ChainParts:
    """What the chain is built from, besides the options.

    inverter, renderer: what inverts and what renders (sg3stream/models/components.py, chosen once from --engine
        and --compile); with PTI the renderer renders the tuned generator, the inverter keeps the original.
    edits: the resolved `Edit`s. resolution: the generator's output size (paste geometry, PTI's crops).
    demo: the output shows the demo model (a caption is burned in unless --no-demo-label).
    """

    inverter: Any = None
    renderer: Any = None
    edits: list = field(default_factory=list)
    resolution: int = 0
    demo: bool = False
    recorded: Any = None  # `run --from`: the recorded run (sg3stream/reedit.py) whose faces are edited again


def model_batch(options) -> int:
    """Frames per batch: one in the reference mode (the paper's frame-at-a-time loop)."""
    return 1 if options.reference_mode else options.batch_size


# Faces per encoder or generator call on a CPU. The demo's calls at 4 rows ran as fast as at 8 on the 2-core
# machine, or faster (invert 2.4 vs 3.0 s, render 0.7 vs 1.0 s for 8 faces), and need half the working memory:
# a call at 8 rows held 150-250 MB of buffers at its peak, the largest transient of a CPU run.
CPU_CALL_ROWS = 4


def model_call_rows(options, device) -> int:
    """Faces per encoder or generator call: the batch, at most CPU_CALL_ROWS on a CPU."""
    rows = model_batch(options)
    return min(rows, CPU_CALL_ROWS) if getattr(device, "type", device) == "cpu" else rows


def build_chain(options, parts: ChainParts, *, purpose: str = "run", artifacts=None, total_frames: int | None = None,
                redecode: Callable[[], Iterable[FrameBatch]] | None = None) -> Chain:
    """The checked chain for `purpose` (see the module's docstring).

    artifacts: the run's `Artifacts` (alignment.npz, latents*.npy), or None.
    redecode: opens a second reader of the input (same range and batches) for the paste, so that the pictures
              can be dropped after alignment instead of riding through the smoothing window; None: they ride.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}")
    if options.passthrough:
        return Chain([])
    from .edit.stage import EditStage
    from .models.oracle import is_oracle_renderer
    from .render.expand import Expansion
    from .render.oracle import OracleRenderStage
    from .render.stages import PasteStage, RenderStage
    from .video.redecode import RedecodeStage
    from .video.source_pixels import LOSSLESS_CODECS

    batch = model_batch(options)
    oracle = is_oracle_renderer(parts.renderer)  # --generator oracle: renders the aligned faces at its resolution
    if parts.recorded is not None:
        # `run --from`: the faces come from the recorded run, frame by frame; nothing is held, so the pictures ride
        stages: list[Stage] = [parts.recorded.stage()]
        redecode, faces = None, None
    else:
        stages, faces = face_stages(options, parts, purpose, artifacts, redecode, batch, oracle)
    if purpose == "pti":
        return with_faces(Chain(stages, sink_reads=PTI_SINK_READS, sink_name="collect"), faces)
    expansion = Expansion.parse(options.expand)
    render = OracleRenderStage if oracle else RenderStage
    stages += [
        EditStage(parts.edits, ramp=options.edit_ramp, total_frames=total_frames),
        render(parts.renderer, expansion, max_batch=model_call_rows(options, getattr(parts.renderer, "device", None)),
               one_call_per_batch=not options.reference_mode,
               with_reconstruction=options.output_mode == "side-by-side"),
    ]
    if redecode is not None:
        stages.append(RedecodeStage(redecode))
    # The redecoded pictures belong to their batch alone: the paste blends into them instead of into copies.
    # --matte (and the layer mode's alpha): the paste's blend weights go to the sink
    # and a lossless output copies the input's own samples wherever it is 0 (video/source_pixels.py)
    keeps_source = options.output_mode == "full" and options.codec in LOSSLESS_CODECS
    matte = (options.matte is not None or options.output_mode == "layer" or keeps_source) and purpose == "run"
    stages.append(PasteStage(parts.resolution, expansion, mode=options.output_mode, in_place=redecode is not None,
                             track=options.track, matte=matte))
    if parts.demo and options.demo_label:
        from .render.label import DemoLabelStage

        # the paste's output is always a picture of its own; the caption's box goes into the matte, or the layer's
        # alpha: it is opaque there (not the input)
        stages.append(DemoLabelStage(in_place=True, matte=matte))
    sink_reads = {"segment": SEGMENT_SINK_READS, "api": API_SINK_READS}.get(purpose, ("frames",) + (
        ("matte",) if matte else ()))
    chain = Chain(stages, sink_reads=sink_reads)
    if redecode is not None:
        # Pictures large enough to decode again are too large to queue: the queues that carry them (to the
        # landmarks, around the crops, and from the paste's decode on) hold one batch; the light queues between
        # keep the run's --queue-size.
        chain.picture_queue_size = 1
    return with_faces(chain, faces)


def face_stages(options, parts: ChainParts, purpose: str, artifacts, redecode, batch: int, oracle: bool):
    """From the pictures to each face's smoothed code and transform: shots, landmarks, tracks, alignment (and the
    crops), inversion, smoothing; and the `FaceLedger` the alignment counts the tracks in."""
    from .align import AlignStage, LandmarkStage
    from .align.gate import FaceGate
    from .align.ledger import FaceLedger
    from .align.stages import CropStage, TrackStage
    from .edit.smoothing import SmoothStage
    from .invert.stage import InvertStage
    from .options import MAX_FACES, face_slots
    from .video.redecode import RedecodeStage
    from .video.shots import ShotStage

    artifacts_dir = artifacts.folder if artifacts is not None and purpose == "run" else None
    # The encoder takes 256² aligned crops; PTI supervises the generator at its own resolution, and its crop is
    # PTI's target (the run renders its own); the oracle renders the aligned faces at its resolution.
    crops = dict(size=256, crop_size=parts.resolution if purpose == "pti" else None, with_crop=purpose == "pti",
                 gen_size=parts.resolution if oracle else None)
    max_gap = 12  # AlignStage's default: a gap the alignment bridges is one track
    gate = FaceGate(min_face=options.min_face, max_yaw=options.max_yaw, min_track_frames=options.min_track_frames)
    faces = FaceLedger()  # run.json's `faces`: what the alignment saw of each track
    stages: list[Stage] = [
        ShotStage(),  # first: it reads the pictures, which the landmarks drop when they are decoded again
        # --faces largest or N: look for as many faces as `all` does and keep the largest
        LandmarkStage(workers=options.landmark_workers, max_faces=face_slots(options.faces), search_faces=MAX_FACES),
        TrackStage(max_gap=max_gap),
        # With a second decoder the alignment window holds quads, not pictures: the faces are cut from the picture
        # decoded again once their quads are known.
        AlignStage(crop=options.crop, align_smoothing=options.align_smoothing, artifacts_dir=artifacts_dir,
                   require_face=purpose == "run",  # a farm segment may hold no face: the job checks the clip
                   warp=redecode is None, max_gap=max_gap, tracks=True, gate=gate, faces=faces, **crops),
    ]
    if redecode is not None:
        stages += [RedecodeStage(redecode, name="redecode-crop"), CropStage(**crops)]
    stages += [
        InvertStage(parts.inverter, n_iters=options.n_iters, max_batch=model_call_rows(options, getattr(parts.inverter, "device", None)),
                    artifacts=artifacts if purpose == "run" else None, gated=True),
        SmoothStage(sigma=options.smooth_sigma, fine_from=options.fine_layers, fine_window=options.fine_window,
                    artifacts=artifacts if purpose == "run" else None, tracks=True),
    ]
    return stages, faces


def with_faces(chain: Chain, faces) -> Chain:
    """The chain with its `FaceLedger` (`chain.faces`): each face track's frames, for run.json and the summary."""
    chain.faces = faces
    return chain


def plan_chain(options) -> Chain:
    """The run's chain as the options make it, without models: for its context (the farm plans segments with it)."""
    return build_chain(options, ChainParts(), purpose="plan")


def chain_context(chain: Chain) -> int:
    """Frames of context a frame needs on either side: what a farm segment decodes around its core."""
    return max(chain.context)


def frame_budget(options, chain: Chain) -> int:
    """Frames the run may hold between decode and encode (`--max-frames-in-flight`, 0 = this default).

    The least that lets every windowed stage release a batch: each holds its look-ahead rounded up to whole
    batches, plus the batch at hand, plus one at the source. The default adds one batch per stage at work.
    """
    batch = model_batch(options)
    held = sum((math.ceil(link.context_after / batch) + 1) * batch for link in chain.links if link.context_after)
    least = held + batch
    if options.max_frames_in_flight:
        if options.max_frames_in_flight < least:
            raise UserError(f"--max-frames-in-flight must be at least {least} for this chain (its windows hold "
                            f"{held} frames at batch size {batch})")
        return options.max_frames_in_flight
    return least + batch * len(chain.links)


def describe_chain(purpose: str = "run") -> dict:
    """The default options' chain for `purpose`, as `sg3stream chain` shows it: for a run on a file, with the
    picture decoded again for the crops and for the paste, and the demo caption (frames handed to the Python API
    ride instead: alignment cuts the crops, and the `redecode-crop`, `crop` and `redecode` rows are left out)."""
    from .job import RunOptions

    if purpose not in ("run", "pti", "segment"):
        raise UserError(f"--purpose must be run, pti or segment (got {purpose!r})")
    options = RunOptions(input="input.mp4", output="output.mp4")
    chain = build_chain(options, ChainParts(demo=purpose == "run", resolution=1024), purpose=purpose,
                        redecode=(lambda: iter(())) if purpose == "run" else None)
    return {"purpose": purpose, "context": list(chain.context), "sink": chain.sink_name,
            "sink_reads": list(chain.sink_reads), "stages": chain.table()}
