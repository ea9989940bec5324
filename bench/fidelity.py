"""Bench: what the pipeline itself loses, per setting of the smoothing options.

The oracle generator (`--generator oracle`, sg3stream/models/oracle.py) renders each frame's own face through the
pipeline's transforms, so its output against the input holds only the pipeline's losses: misregistration from
the transforms and their smoothing, resampling, blending, encoding. Each generated clip of known motion (slow,
fast, a head rolling) runs once per setting, and `sg3stream.eval` scores the output against the clip in the face
region the run's own alignment.npz gives (the landmarks' hull as paste-back blends it, as `sg3stream eval
--artifacts` reads it):

    psnr_face          the whole clip's error in the face (one PSNR over all its pixels), dB: registration
    psnr_face_min      the worst frame's, dB: where the registration slips (the clip's ends, fast motion)
    warp_error_added   warp_error - warp_error_reference: the flicker the pipeline adds in the face
    seam               the gradient energy on the face's edge against the input's (1: no visible seam)

Smoothing more steadies a real generator's faces but drags the render away from a moving face: the table shows
how much registration each setting costs.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from sg3stream.eval import evaluate
from sg3stream.job import RunOptions, run_video
from sg3stream.report import Reporter
from sg3stream.synthetic import face_frames, write_clip

# face_frames' motion: the face moves ±8% of the width, ±4% of the height, rolls ±`roll` degrees and scales by
# ±13% over each cycle (at 480x360, 38 px of travel either way)
CLIPS = {
    "slow": dict(cycle=192),  # a cycle in 7.7 s at 25 fps: at most 1.3 px and 0.3° a frame
    "fast": dict(cycle=24),  # a cycle in a second: up to 10 px and 2° a frame
    "rolling": dict(cycle=48, roll=30.0),  # the head rolling ±30°: up to 4° a frame
}
# The settings of the smoothing options (RunOptions fields), by the flags a user would give.
SETTINGS = {
    "defaults": {},
    "--smooth-sigma 2": dict(smooth_sigma=2.0),
    "--align-smoothing 0": dict(align_smoothing=0.0),
    "--align-smoothing 3": dict(align_smoothing=3.0),
    "--crop fixed": dict(crop="fixed"),
}
WIDTH, HEIGHT, FPS = 480, 360, 25


def oracle_fidelity(clip: Path, folder: Path, **options) -> dict:
    """Run the oracle on `clip` with the given options (RunOptions fields) and score its output: the summary of
    `sg3stream.eval` (psnr_face, warp_error, warp_error_reference, seam, ...) plus psnr_face_min."""
    output, artifacts = folder / "oracle.mp4", folder / "artifacts"
    reporter = Reporter()
    with reporter.capturing_warnings():  # the oracle's notice goes to the reporter, not over the table
        run_video(RunOptions(input=clip, output=output, generator="oracle", artifacts=artifacts, **options),
                  reporter)
    result = evaluate(clip, output, artifacts=artifacts, id_model=False)  # identity: not what the oracle changes
    per_frame = [v for v in result.per_frame["psnr_face"] if v is not None]
    return {**result.summary, "psnr_face_min": float(min(per_frame)) if per_frame else None}


def bench_fidelity(frames: int = 48, clips: dict | None = None, settings: dict | None = None) -> list[dict]:
    """One row per clip and setting: clip, setting, frames, psnr_face, psnr_face_min, warp_error_added, seam
    (see the module's docstring). `clips` and `settings` default to CLIPS and SETTINGS (name -> keywords)."""
    clips = CLIPS if clips is None else clips
    settings = SETTINGS if settings is None else settings
    rows = []
    with tempfile.TemporaryDirectory(prefix="sg3stream-fidelity-") as tmp:
        for clip_name, motion in clips.items():
            # near-lossless, so that the clip's own coding noise stays out of the figures
            clip = write_clip(Path(tmp) / f"{clip_name}.mp4", face_frames(frames, WIDTH, HEIGHT, **motion), fps=FPS,
                              audio=None, options={"crf": "12"})
            for setting, options in settings.items():
                folder = Path(tmp) / f"{clip_name}-{len(rows)}"
                folder.mkdir()
                s = oracle_fidelity(clip, folder, **options)
                added = (s["warp_error"] - s["warp_error_reference"]
                         if s["warp_error"] is not None and s["warp_error_reference"] is not None else None)
                rows.append({"clip": clip_name, "setting": setting, "frames": s["frames"],
                             "psnr_face": s["psnr_face"], "psnr_face_min": s["psnr_face_min"],
                             "warp_error_added": added, "seam": s["seam"]})
    return rows
