"""PTI for a whole clip inside `sg3stream run`: the first of two passes.

The pipeline streams in bounded memory, but tuning needs the pivots of the whole clip before anything can be
rendered. So with `--pti-steps N > 0` a run has two passes:

  pass 1: decode -> landmarks -> align -> invert -> smooth -> collect
          `FrameCollector` keeps, for frames with a face, the unaligned `crop`, `latents_smoothed` and
          `transform_smoothed` of at most 2 x `--pti-frames` evenly spread frames (it halves what it holds whenever
          it reaches that bound, so memory is bounded whatever the clip's length: 2 x 64 crops at the generator's
          resolution, 25 MB at 256x256, 400 MB at 1024x1024),
          then picks `--pti-frames` evenly spread ones;
  train:  sg3stream.pti.train on those samples (checkpoints, --resume);
  pass 2: the normal run; the render stage gets a renderer of the run's kind (eager, compiled, ONNX: the tuned
          weights are exported again) over the tuned generator, while inversion keeps the original one (the pivots
          come from it, as in the reference). Pass 2 redoes landmarks and inversion: they
          are deterministic, so its pivots are those pass 1 trained on.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..pipeline.batch import FrameBatch
from .train import PTIConfig, PTISamples, train_pti

log = logging.getLogger("sg3stream")


class FrameCollector:
    """Sink of pass 1: keeps an evenly spread, bounded subset of the faces (every face slot of a frame that has
    latents is a sample; the slots are the axes of `has_latents` after the frame axis).

    Every face track of the clip is a sample source, so one generator is tuned on several identities (what PTI's
    multi-identity variant does; the reference tunes on one face); `track` (--pti-track) keeps one track's faces.
    """

    def __init__(self, max_frames: int, track: int | None = None):
        if max_frames < 1:
            raise UserError("--pti-frames must be at least 1")
        self.max_frames = max_frames
        self.track = track
        self.stride = 1       # keep every stride-th face
        self.seen = 0         # faces seen so far
        self.kept: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []

    def __call__(self, batch: FrameBatch) -> None:
        has = np.asarray(batch.data["has_latents"], bool)
        if self.track is not None:
            has = has & (np.asarray(batch.data["track_id"]) == self.track)
        for face in map(tuple, np.argwhere(has)):  # (frame, slot) pairs, frame by frame
            transform = batch.data["transform_smoothed"][face]
            latents = batch.data["latents_smoothed"][face]
            if not (np.isfinite(transform).all() and np.isfinite(latents).all()):
                continue
            if self.seen % self.stride == 0:
                self.kept.append((int(batch.index[face[0]]), batch.data["crop"][face].copy(),
                                  latents.astype(np.float32), transform.astype(np.float32)))
                if len(self.kept) >= 2 * self.max_frames:
                    self.kept = self.kept[::2]
                    self.stride *= 2
            self.seen += 1

    def samples(self) -> PTISamples:
        if not self.kept:
            which = f" of face track {self.track} (--pti-track)" if self.track is not None else ""
            raise UserError(f"PTI: no frame with a face{which} to tune the generator on")
        pick = np.unique(np.linspace(0, len(self.kept) - 1, min(self.max_frames, len(self.kept))).round().astype(int))
        rows = [self.kept[i] for i in pick]
        return PTISamples(frames=np.array([r[0] for r in rows]), crops=np.stack([r[1] for r in rows]),
                          latents=np.stack([r[2] for r in rows]), transforms=np.stack([r[3] for r in rows]))


def checkpoint_dir_for(options) -> Path:
    """Where PTI checkpoints go: `<artifacts>/pti/`, else the hidden folder `.<output name>.pti/` beside the output."""
    if options.pti_checkpoint_dir is not None:
        return Path(options.pti_checkpoint_dir)
    if options.artifacts is not None:
        return Path(options.artifacts) / "pti"
    output = Path(options.output)
    return output.with_name(f".{output.name}.pti")


def pti_config(options) -> PTIConfig:
    config = PTIConfig(steps=options.pti_steps, lr=options.pti_lr, batch=options.pti_batch, seed=options.pti_seed,
                       reg_interval=options.pti_reg_every, checkpoint_every=options.pti_checkpoint_every)
    config.check()
    return config


def collect_samples(options, parts) -> PTISamples:
    """Pass 1: the run's chain cut after smoothing, with the run's models, keeping the training frames."""
    from ..chain import build_chain, model_batch
    from ..pipeline.runner import Pipeline
    from ..video.decode import FrameReader

    chain = build_chain(options, parts, purpose="pti")
    collector = FrameCollector(options.pti_frames, track=options.pti_track)
    reader = FrameReader(options.input, batch_size=model_batch(options), decoder=options.decoder, hwdec=options.hwdec,
                         fps=options.fps, allow_gaps=options.allow_gaps, transfer=options.linear_transfer)
    Pipeline(reader, chain, collector, queue_size=options.queue_size, sink_name="collect",
             stall_timeout_s=options.stall_timeout).run()
    return collector.samples()


def tune_generator(options, parts, reporter=None):
    """Pass 1 and training; returns what renders the run: a renderer of the same kind as `parts.renderer` over the
    tuned generator (also saved to --save-generator when given)."""
    config = pti_config(options)
    started = time.perf_counter()
    renderer = parts.renderer
    samples = collect_samples(options, parts)
    if reporter is not None:
        reporter.info(f"PTI: tuning the generator on {len(samples)} frames, {config.steps} steps")
    checkpoints = checkpoint_dir_for(options)
    last_report = [time.perf_counter()]

    def on_step(step: int, loss: float) -> None:
        now = time.perf_counter()
        if reporter is not None and (now - last_report[0] > 10 or step == config.steps):
            reporter.info(f"PTI: step {step}/{config.steps}, loss {loss:.4f}")
            last_report[0] = now

    from .losses import ReconstructionLoss, perceptual_loss

    loss = ReconstructionLoss(perceptual_loss(options.lpips_weights))
    tuned = train_pti(renderer.generator, samples, config, loss=loss, device=renderer.device,
                      checkpoint_dir=checkpoints, resume=options.resume, on_step=on_step)
    if options.save_generator is not None:
        from .save import save_generator

        save_generator(tuned, options.save_generator, tuned_from=options.generator or options.encoder or "demo")
    tuned_renderer = renderer.with_generator(tuned.to(renderer.device))
    log.info("PTI: done in %.1f s", time.perf_counter() - started)
    return tuned_renderer
