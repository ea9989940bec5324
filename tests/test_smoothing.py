"""Temporal smoothing: the reference's math where it applies, no frame lost, bounded memory."""
from fractions import Fraction

import numpy as np
import pytest

from sg3stream.align.transforms import transform_from_params
from sg3stream.edit.smoothing import SmoothStage, temporal_kernel
from sg3stream.pipeline.batch import FrameBatch


def reference_smooth_ws(ws):
    """stylegan3-editing's smooth_ws (drops two frames at each end)."""
    return (ws[2:-2] + 0.75 * ws[3:-1] + 0.75 * ws[1:-3] + 0.25 * ws[:-4] + 0.25 * ws[4:]) / 3


def make_batches(latents, angles, translations, scales, valid, batch_size):
    n = len(latents)
    for start in range(0, n, batch_size):
        sl = slice(start, min(start + batch_size, n))
        idx = np.arange(start, sl.stop)
        yield FrameBatch(np.zeros((len(idx), 2, 2, 3), np.uint8), idx, idx, Fraction(1, 25), data={  # one face slot
            "latents": latents[sl, None], "has_latents": valid[sl, None], "rotation_deg": angles[sl, None],
            "translation": translations[sl, None], "scale": scales[sl, None]})


def cat(batches, key):
    """A per-face key over the batches, face slot 0."""
    return np.concatenate([b.data[key][:, 0] for b in batches])


def run_stage(stage, batches):
    out = []
    for b in batches:
        r = stage(b)
        if r is not None:
            out.append(r)
    out += stage.flush()
    return out


def clip(n, seed=0):
    rng = np.random.default_rng(seed)
    latents = rng.normal(size=(n, 16, 8)).astype(np.float32)
    angles = (10 * np.sin(np.arange(n) / 5) + rng.normal(0, 1, n)).astype(np.float32)
    translations = rng.normal(0, 0.02, (n, 2)).astype(np.float32)
    scales = (1 + rng.normal(0, 0.01, n)).astype(np.float32)
    return latents, angles, translations, scales, np.ones(n, bool)


@pytest.mark.parametrize("batch_size", [1, 3, 8, 40])
def test_every_frame_kept_and_result_independent_of_batch_size(batch_size):
    data = clip(40)
    ref = run_stage(SmoothStage(), make_batches(*data, batch_size=40))
    out = run_stage(SmoothStage(), make_batches(*data, batch_size=batch_size))
    idx = np.concatenate([b.index for b in out])
    assert list(idx) == list(range(40))
    a = cat(out, "latents_smoothed")
    b = cat(ref, "latents_smoothed")
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_short_clip_matches_the_reference_post_processing():
    latents, angles, translations, scales, valid = clip(30)
    out = run_stage(SmoothStage(fine_window=60), make_batches(latents, angles, translations, scales, valid, 4))
    ours = cat(out, "latents_smoothed")
    ref = latents.astype(np.float64).copy()
    ref[:, 9:] = ref[:, 9:].mean(axis=0)  # fine layers: clip mean
    ref = reference_smooth_ws(ref)
    np.testing.assert_allclose(ours[2:-2], ref, rtol=1e-5, atol=1e-6)
    assert np.isfinite(ours).all()  # the two frames at each end exist too


def test_transforms_smoothed_as_angle_translation_scale():
    n = 20
    angles = np.full(n, 179.0, np.float32)
    angles[1::2] = -179.0  # jitter across the +-180 seam: the mean must be 180, not 0
    translations = np.tile([[0.1, -0.05]], (n, 1)).astype(np.float32)
    out = run_stage(SmoothStage(), make_batches(np.zeros((n, 16, 4), np.float32), angles, translations,
                                                 np.ones(n, np.float32), np.ones(n, bool), 5))
    t = cat(out, "transform_smoothed")
    expected = transform_from_params(np.full(n, 180.0), translations, np.ones(n))
    np.testing.assert_allclose(t[5:15], expected[5:15], atol=0.02)
    # a rotation matrix stays a rotation (no shrinking from averaging matrices)
    np.testing.assert_allclose(np.linalg.det(t[:, :2, :2]), 1.0, atol=1e-5)


def test_frames_without_latents_stay_empty_and_are_skipped_by_neighbours():
    latents, angles, translations, scales, valid = clip(20)
    valid[7] = False
    latents[7] = 1e6  # must not leak into neighbours
    out = run_stage(SmoothStage(), make_batches(latents, angles, translations, scales, valid, 4))
    ours = cat(out, "latents_smoothed")
    assert np.isnan(ours[7]).all()
    assert np.abs(ours[[5, 6, 8, 9]]).max() < 100


def test_memory_stays_bounded_on_a_long_clip():
    stage = SmoothStage(sigma=2.0, fine_window=10)
    longest = 0
    rng = np.random.default_rng(0)
    for start in range(0, 2000, 8):
        idx = np.arange(start, start + 8)
        b = FrameBatch(np.zeros((8, 1, 1, 3), np.uint8), idx, idx, Fraction(1, 25), data={
            "latents": rng.normal(size=(8, 1, 16, 4)), "has_latents": np.ones((8, 1), bool),
            "rotation_deg": np.zeros((8, 1)), "translation": np.zeros((8, 1, 2)), "scale": np.ones((8, 1))})
        stage(b)
        longest = max(longest, len(stage.rows["latents"]), stage.window.frames_held)
    assert longest < 60


def test_gaussian_widens_the_kernel():
    assert len(temporal_kernel(0)) == 5
    k = temporal_kernel(2.0)
    assert len(k) > 5 and k.sum() == pytest.approx(1.0) and np.argmax(k) == len(k) // 2


def test_a_segment_with_enough_context_reproduces_the_whole_clip():
    """What the farm relies on: smoothing is local, so overlapping segments join without a seam."""
    latents, angles, translations, scales, valid = clip(200, seed=3)
    stage_args = dict(sigma=1.5, fine_window=20)
    whole = run_stage(SmoothStage(**stage_args), make_batches(latents, angles, translations, scales, valid, 8))
    whole = cat(whole, "latents_smoothed")
    start = 80
    context = SmoothStage(**stage_args).context
    seg = run_stage(SmoothStage(**stage_args), make_batches(latents[start:], angles[start:], translations[start:],
                                                            scales[start:], valid[start:], 8))
    seg = cat(seg, "latents_smoothed")
    np.testing.assert_allclose(seg[context:], whole[start + context:], rtol=1e-5, atol=1e-6)
    assert not np.allclose(seg[:2], whole[start:start + 2])  # without context the first frames differ
