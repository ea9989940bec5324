"""Face tracking and FFHQ alignment on synthetic clips: the bundled face photo moved by known similarity transforms."""
from fractions import Fraction

import cv2
import numpy as np
import pytest

from sg3stream.align.ffhq import axis_aligned, ffhq_params, params_to_quad, quad_to_params, warp_quad
from sg3stream.align.landmarks import (LEFT_EYE_CONTOUR, MOUTH_LEFT_CORNER, MOUTH_RIGHT_CORNER, RIGHT_EYE_CONTOUR,
                                       SOURCE_FALLBACK, LandmarkDetector)
from sg3stream.align.stages import AlignStage, LandmarkStage
from sg3stream.align.track import bridge_gaps, smooth
from sg3stream.align.transforms import generator_transforms, make_transform, render_with_transform
from sg3stream.errors import UserError
from sg3stream.pipeline.batch import FrameBatch
from sg3stream.synthetic import face_photo

W, H = 480, 360
N = 24
BLANK = (10, 11)  # blank frames inside the clip (bridged with the default max_gap)


def _photo() -> np.ndarray:
    return face_photo()


def _motion(k: int, n: int = N):
    """Known similarity of frame k: photo pixels -> frame pixels (rotation about the photo centre, degrees CCW)."""
    a = k / (n - 1)
    theta = -15 + 30 * a
    scale = 0.7 + 0.2 * a
    m = cv2.getRotationMatrix2D((200, 200), theta, scale)
    m[:, 2] += np.array([200 + 60 * a, 170.0]) - (200, 200)
    return theta, m


def _make_clip(photo, n=N, blank=BLANK, size=(W, H)):
    frames, ms, thetas = [], [], []
    for k in range(n):
        theta, m = _motion(k, n)
        f = cv2.warpAffine(photo, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if k in blank:
            f[:] = 128
        frames.append(f)
        ms.append(m)
        thetas.append(theta)
    return np.stack(frames), np.stack(ms), np.array(thetas)


def _batches(frames, data=None, sizes=(5,)):
    out, i, j = [], 0, 0
    while i < len(frames):
        s = sizes[j % len(sizes)]
        sl = slice(i, min(i + s, len(frames)))
        d = {k: v[sl] for k, v in (data or {}).items()}
        idx = np.arange(sl.start, sl.stop)
        out.append(FrameBatch(frames=frames[sl], index=idx, pts=idx * 1000, time_base=Fraction(1, 30000), data=d))
        i, j = sl.stop, j + 1
    return out


def _run_align(stage: AlignStage, batches):
    stage.setup()
    out = [b for b in (stage(b) for b in batches) if b is not None]
    out += stage.flush()
    stage.close()
    return out


def _cat(batches, key):
    """A per-face key over the batches, face slot 0 (the clips here have one face)."""
    return np.concatenate([b.data[key][:, 0] for b in batches])


def _apply(m, pts):
    return pts @ m[:, :2].T + m[:, 2]


@pytest.fixture(scope="module")
def clip():
    photo = _photo()
    frames, ms, thetas = _make_clip(photo)
    stage = LandmarkStage(workers=1)
    stage.setup()
    lm_batches = [stage(b) for b in _batches(frames, sizes=(8,))]
    # The reference quad in photo coordinates: a static mesh on the unmoved photo at the clip's mean scale.
    det = LandmarkDetector()
    m0 = cv2.getRotationMatrix2D((200, 200), 0, 0.8)
    m0[:, 2] += np.array([240.0, 180.0]) - (200, 200)
    still = cv2.warpAffine(photo, m0, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    lm0, _ = det.detect_chunk(still[None])
    det.close()
    stage.close()
    inv0 = cv2.invertAffineTransform(m0)
    ref_quad = _apply(inv0, params_to_quad(ffhq_params(lm0[0, 0])))
    landmarks = np.concatenate([b.data["landmarks"] for b in lm_batches])  # [N, 1, 478, 2]: one face slot
    detected = np.concatenate([b.data["detected"] for b in lm_batches])
    return dict(frames=frames, ms=ms, thetas=thetas, landmarks=landmarks, detected=detected, ref_quad=ref_quad,
                lm_batches=lm_batches)


def _truth_quads(clip):
    return np.stack([_apply(m, clip["ref_quad"]) for m in clip["ms"]])


def _quad_err(q, truth):
    """Largest corner distance over the quad's side, per frame."""
    side = np.linalg.norm(truth[:, 3] - truth[:, 0], axis=-1)
    return np.linalg.norm(q - truth, axis=-1).max(axis=-1) / side


def _roll(quad):
    x = (quad[..., 3, :] - quad[..., 0, :])
    return np.degrees(np.arctan2(-x[..., 1], x[..., 0]))


# --- mesh indices --------------------------------------------------------------------------------------------------

def test_mesh_indices_match_mediapipe_connection_sets():
    import mediapipe as mp

    fmc = mp.solutions.face_mesh_connections

    def points(conns):
        return {p for c in conns for p in c}

    assert set(RIGHT_EYE_CONTOUR) == points(fmc.FACEMESH_RIGHT_EYE) and len(RIGHT_EYE_CONTOUR) == 16
    assert set(LEFT_EYE_CONTOUR) == points(fmc.FACEMESH_LEFT_EYE) and len(LEFT_EYE_CONTOUR) == 16
    assert {MOUTH_LEFT_CORNER, MOUTH_RIGHT_CORNER} <= points(fmc.FACEMESH_LIPS)


def test_eyes_and_mouth_sides_on_the_photo(clip):
    lm = clip["landmarks"][0, 0]
    assert lm[list(RIGHT_EYE_CONTOUR), 0].mean() < lm[list(LEFT_EYE_CONTOUR), 0].mean()  # subject's right = image left
    assert lm[MOUTH_LEFT_CORNER, 0] < lm[MOUTH_RIGHT_CORNER, 0]
    assert lm[MOUTH_LEFT_CORNER, 1] > lm[list(RIGHT_EYE_CONTOUR), 1].mean()  # mouth below the eyes


# --- landmarks and quads -------------------------------------------------------------------------------------------

def test_landmarks_flag_blank_frames(clip):
    expected = np.ones(N, bool)
    expected[list(BLANK)] = False
    np.testing.assert_array_equal(clip["detected"][:, 0], expected)
    assert np.isnan(clip["landmarks"][list(BLANK), 0]).all()
    assert np.isfinite(clip["landmarks"][expected, 0]).all()
    assert clip["landmarks"].shape == (N, 1, 478, 2) and clip["landmarks"].dtype == np.float32
    assert clip["detected"].shape == (N, 1) and clip["lm_batches"][0].data["landmark_source"].shape == (8, 1)


def test_aligned_quads_follow_known_motion(clip):
    out = _run_align(AlignStage(align_smoothing=0), clip["lm_batches"])
    q = _cat(out, "aligned_quad")
    err = _quad_err(q, _truth_quads(clip))
    print("aligned quad error, %% of side: max %.2f mean %.2f" % (100 * err.max(), 100 * err.mean()))
    assert err.max() < 0.03  # bridged frames included


def test_smoothed_quads_follow_known_motion(clip):
    out = _run_align(AlignStage(align_smoothing=2.0), clip["lm_batches"])
    err = _quad_err(_cat(out, "aligned_quad"), _truth_quads(clip))
    assert err.max() < 0.03


def test_rotation_follows_head(clip):
    out = _run_align(AlignStage(align_smoothing=0), clip["lm_batches"])
    rot = _cat(out, "rotation_deg")
    expected = clip["thetas"] + _roll(clip["ref_quad"])  # the photo's own roll plus the known rotation
    err = np.abs(rot - expected)
    print("rotation error, degrees: max %.2f mean %.2f" % (err.max(), err.mean()))
    assert err.max() < 2.0
    np.testing.assert_allclose(_cat(out, "scale"), 1.0, atol=0.02)  # smooth crop: same size as the aligned quad


def test_blank_frames_bridged_and_flagged(clip):
    out = _run_align(AlignStage(), clip["lm_batches"])
    det, has, br = _cat(out, "detected"), _cat(out, "has_quad"), _cat(out, "bridged")
    assert not det[list(BLANK)].any() and det[[0, 5, 12, 23]].all()
    assert has.all() and br[list(BLANK)].all() and br.sum() == len(BLANK)
    assert np.isfinite(_cat(out, "transform")).all()


def test_long_gap_not_bridged_passes_through(clip):
    out = _run_align(AlignStage(max_gap=1), clip["lm_batches"])
    has = _cat(out, "has_quad")
    assert not has[list(BLANK)].any() and has.sum() == N - len(BLANK)
    assert np.isnan(_cat(out, "aligned_quad")[list(BLANK)]).all()
    assert np.isnan(_cat(out, "crop_quad")[list(BLANK)]).all()
    assert np.isnan(_cat(out, "transform")[list(BLANK)]).all()
    assert (_cat(out, "aligned")[list(BLANK)] == 0).all()


def test_fixed_crop_keeps_one_crop(clip):
    out = _run_align(AlignStage(crop="fixed", align_smoothing=0), clip["lm_batches"])
    cq = _cat(out, "crop_quad")
    assert np.ptp(cq, axis=0).max() < 1e-4
    first = axis_aligned(quad_to_params(_cat(out, "aligned_quad")[0]))
    np.testing.assert_allclose(cq[0], params_to_quad(first), atol=1e-3)
    # the face moves inside the fixed crop: the transform's translation follows the motion
    tr = _cat(out, "translation")
    assert tr[-1, 0] - tr[0, 0] > 0.1


def test_smooth_crop_is_axis_aligned_and_follows_head(clip):
    out = _run_align(AlignStage(crop="smooth"), clip["lm_batches"])
    cq = _cat(out, "crop_quad")
    np.testing.assert_allclose(cq[:, 0, 1], cq[:, 3, 1], atol=1e-3)  # top edge horizontal
    centre_err = np.linalg.norm(cq.mean(axis=1) - _truth_quads(clip).mean(axis=1), axis=-1)
    side = np.linalg.norm(cq[:, 3] - cq[:, 0], axis=-1)
    assert (centre_err / side).max() < 0.03
    assert np.abs(_cat(out, "translation")).max() < 0.05


def test_batching_does_not_change_results(clip):
    data = {"landmarks": clip["landmarks"], "detected": clip["detected"]}
    ref = _run_align(AlignStage(crop="smooth", align_smoothing=1.5, crop_smoothing=3.0),
                     _batches(clip["frames"], data, sizes=(N,)))
    for sizes in [(1,), (3, 7, 2)]:
        stage = AlignStage(crop="smooth", align_smoothing=1.5, crop_smoothing=3.0)
        out = _run_align(stage, _batches(clip["frames"], data, sizes=sizes))
        assert sum(len(b) for b in out) == N
        np.testing.assert_array_equal(np.concatenate([b.index for b in out]), np.arange(N))
        for key in ("aligned_quad", "crop_quad", "transform"):
            np.testing.assert_allclose(_cat(out, key), _cat(ref, key), atol=1e-3)
        np.testing.assert_array_equal(_cat(out, "aligned"), _cat(ref, "aligned"))


def test_stage_holds_a_bounded_window(clip):
    """Frames come out while the stream goes on, and the stage holds no more than its look-ahead: at most
    lookahead + one batch frames waiting, and the parameters of at most 2 x lookahead + one batch frames (the
    waiting ones and the history their bridging and smoothing reach). The stream (the clip there and back, 48
    frames) is longer than both bounds, so a stage that held everything until flush() fails here."""
    there_and_back = np.r_[np.arange(N), np.arange(N - 1, -1, -1)]
    data = {"landmarks": clip["landmarks"][there_and_back], "detected": clip["detected"][there_and_back]}
    stage = AlignStage(align_smoothing=1.0, crop_smoothing=2.0, max_gap=3)
    batch = 2
    assert stage.lookahead == 6 + 3 + 1  # radius of the crop smoothing (3 sigma), the longest bridged gap, 1
    waiting_bound, params_bound = stage.lookahead + batch, 2 * stage.lookahead + batch
    assert len(there_and_back) > params_bound
    stage.setup()
    released, waiting_max, params_max = [], 0, 0
    for b in _batches(clip["frames"][there_and_back], data, sizes=(batch,)):
        out = stage(b)
        if out is not None:
            released.extend(out.index.tolist())
        waiting_max = max(waiting_max, stage.window.frames_held)
        params_max = max(params_max, len(stage._params))
    assert waiting_max <= waiting_bound and params_max <= params_bound, (waiting_max, params_max)
    # everything but the last look-ahead came out before the end of the stream, in order
    assert released == list(range(len(released))) and len(released) >= len(there_and_back) - waiting_bound
    rest = stage.flush()
    assert released + np.concatenate([b.index for b in rest]).tolist() == list(range(len(there_and_back)))


def test_no_face_clip_errors():
    frames = np.full((6, 120, 160, 3), 90, np.uint8)
    lm = LandmarkStage(workers=1)
    lm_batches = [lm(b) for b in _batches(frames, sizes=(3,))]
    lm.close()
    stage = AlignStage()
    stage.setup()
    for b in lm_batches:
        stage(b)
    with pytest.raises(UserError, match="no face"):
        stage.flush()


def test_bad_options_are_user_errors():
    with pytest.raises(UserError):
        AlignStage(crop="wobbly")
    with pytest.raises(UserError):
        AlignStage(align_smoothing=-1)
    with pytest.raises(UserError):
        LandmarkStage(workers=0)


# --- warps and transforms ------------------------------------------------------------------------------------------

def test_generator_transform_reproduces_crop(clip):
    out = _run_align(AlignStage(align_smoothing=0, crop="fixed"), clip["lm_batches"])
    aligned, crop, tf = _cat(out, "aligned"), _cat(out, "crop"), _cat(out, "transform")
    has = _cat(out, "detected")  # bridged blank frames have flat crops
    s = aligned.shape[1]
    yy, xx = np.mgrid[0:s, 0:s]
    face = (np.abs(xx - s / 2) < s * 0.3) & (np.abs(yy - s / 2) < s * 0.3)  # centre of the crop
    worst_mad, worst_corr = 0.0, 1.0
    for k in np.flatnonzero(has):
        rendered = render_with_transform(aligned[k], tf[k])
        covered = face & (render_with_transform(np.full_like(aligned[k], 255), tf[k])[..., 0] == 255)
        a = rendered[covered].astype(np.float32)
        b = crop[k][covered].astype(np.float32)
        assert covered.sum() > 0.5 * face.sum()
        worst_mad = max(worst_mad, np.abs(a - b).mean())
        worst_corr = min(worst_corr, np.corrcoef(a.ravel(), b.ravel())[0, 1])
    print("I_T(p)=aligned(T p) vs crop: worst mean abs diff %.2f, worst correlation %.4f" % (worst_mad, worst_corr))
    assert worst_mad < 8.0 and worst_corr > 0.97


def test_transform_matches_reference_make_transform():
    # crop = axis-aligned square, aligned = the same square rotated by 10 degrees CCW on screen and shifted.
    crop_p = np.array([100.0, 100.0, 50.0, 0.0])
    a = np.deg2rad(10)
    aligned_p = np.array([110.0, 95.0, 50 * np.cos(a), -50 * np.sin(a)])
    tf = generator_transforms(params_to_quad(aligned_p)[None], params_to_quad(crop_p)[None])
    assert abs(tf["rotation_deg"][0] - 10) < 1e-4
    np.testing.assert_allclose(tf["translation"][0], [10 / 100, -5 / 100], atol=1e-6)
    expected = np.linalg.inv(make_transform(tf["translation"][0], 10.0))
    np.testing.assert_allclose(tf["transform"][0], expected, atol=1e-5)


def test_warp_matches_quad_geometry():
    # a quad placed on a synthetic image: the warp puts the quad's corners at the output's corners
    img = np.zeros((200, 300, 3), np.uint8)
    quad = params_to_quad(np.array([150.0, 100.0, 40.0, 10.0]))
    for i, (x, y) in enumerate(quad):
        cv2.circle(img, (int(round(x)), int(round(y))), 4, (255, 255, 255), -1)
    out = warp_quad(img, quad, 64, enable_padding=False)
    g = out[..., 0].astype(float)
    for cy, cx in [(0, 0), (63, 0), (63, 63), (0, 63)]:  # TL, BL, BR, TR
        assert g[max(cy - 2, 0):cy + 3, max(cx - 2, 0):cx + 3].max() > 100


def test_warp_pads_quads_leaving_the_frame():
    photo = _photo()
    quad = params_to_quad(np.array([30.0, 200.0, 120.0, 0.0]))  # mostly left of the frame
    out = warp_quad(photo, quad, 128)
    assert out.shape == (128, 128, 3)
    assert out[:, :20].std() > 1.0 and out[:, :20].mean() > 10  # reflected and blurred, not black


def test_bridge_and_smooth_units():
    p = np.arange(10, dtype=float)[:, None] * [1.0, 2.0]
    valid = np.ones(10, bool)
    valid[[3, 4]] = False
    valid[9] = False
    filled, br = bridge_gaps(np.where(valid[:, None], p, np.nan), valid, max_gap=2)
    np.testing.assert_allclose(filled[:9], p[:9])
    assert br.tolist() == [False] * 3 + [True] * 2 + [False] * 5
    sm = smooth(p, np.ones(10, bool), sigma=2.0)
    np.testing.assert_allclose(sm, p, atol=1e-9)  # linear motion is kept, ends included


# --- small faces, pipeline, artifacts ------------------------------------------------------------------------------

def test_small_face_fallback():
    photo = _photo()
    # the photo at 120 px (face ~50 px wide) in a 1280x720 frame: too small for the mesh's short-range detector
    m = np.array([[0.3, 0, 840.0], [0, 0.3, 240.0]])  # photo pixel edges [0, 400] -> [840, 960] in the frame
    frame = np.full((720, 1280, 3), 128, np.uint8)
    frame[240:360, 840:960] = cv2.resize(photo, (120, 120), interpolation=cv2.INTER_AREA)
    m[:, 2] += 0.5 * 0.3 - 0.5  # pixel-centre coordinates
    frames = np.stack([frame, frame, frame])
    det = LandmarkDetector()
    lm, source = det.detect_chunk(frames)
    det.close()
    det = LandmarkDetector()
    lm_photo, _ = det.detect_chunk(photo[None])
    det.close()
    assert (source[:, 0] == SOURCE_FALLBACK).all()
    truth = _apply(m, lm_photo[0, 0].astype(float))
    eye_dist = np.linalg.norm(truth[263] - truth[33])
    assert np.median(np.linalg.norm(lm[0, 0] - truth, axis=-1)) < 0.1 * eye_dist


def test_pipeline_with_process_pool_and_artifacts(clip, tmp_path):
    from sg3stream.pipeline.runner import Pipeline

    frames = clip["frames"]
    got = []
    stages = [LandmarkStage(workers=2), AlignStage(size=128, artifacts_dir=tmp_path)]
    Pipeline(_batches(frames, sizes=(6,)), stages, got.append, queue_size=2).run()
    assert np.concatenate([b.index for b in got]).tolist() == list(range(N))
    assert _cat(got, "aligned").shape == (N, 128, 128, 3)
    z = {k: v[:, 0] if k != "frame_index" else v for k, v in np.load(tmp_path / "alignment.npz").items()}  # slot 0
    assert z["landmarks"].shape == (N, 478, 2) and z["landmarks"].dtype == np.float32
    assert z["aligned_quad"].shape == (N, 4, 2) and z["transform"].shape == (N, 3, 3)
    assert z["detected"].dtype == bool and not z["detected"][list(BLANK)].any()
    assert np.isnan(z["landmarks"][list(BLANK)]).all()
    err = _quad_err(z["aligned_quad"].astype(float), _truth_quads(clip))
    assert err.max() < 0.03
    assert not list(tmp_path.glob(".*part"))


def test_oriented_crop_is_the_aligned_quad(clip):
    # crop_axis_aligned=False + crop="fixed": the reference video handler's crop (the first frame's aligned quad)
    out = _run_align(AlignStage(crop="fixed", align_smoothing=0, crop_axis_aligned=False), clip["lm_batches"])
    np.testing.assert_allclose(_cat(out, "crop_quad")[0], _cat(out, "aligned_quad")[0], atol=1e-3)
    tf = _cat(out, "transform")
    np.testing.assert_allclose(tf[0], np.eye(3), atol=1e-4)
    assert abs(_cat(out, "rotation_deg")[-1] - (clip["thetas"][-1] - clip["thetas"][0])) < 2.0


def test_the_end_of_the_stream_comes_out_in_the_batches_that_went_in(clip):
    # The look-ahead held at the end is released batch by batch, not as one oversized batch (memory, and the
    # reference mode's one frame per call).
    stage = AlignStage()
    out = _run_align(stage, clip["lm_batches"])
    assert [len(b) for b in out] == [len(b) for b in clip["lm_batches"]]
    assert np.array_equal(np.concatenate([b.index for b in out]), np.arange(N))


def test_landmark_workers_do_not_load_torch():
    # A spawned landmark worker imports the command line (its parent's main module), the runner and the align
    # stages: none of them may pull in torch and the models (~250 MB and a second per worker).
    import subprocess
    import sys

    code = ("import sys, sg3stream.cli, sg3stream.pipeline.runner, sg3stream.align.stages; "
            "print(sorted(m for m in ('torch', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_crop_stage_cuts_what_alignment_cuts_from_a_picture_that_did_not_wait_in_its_window(clip):
    """The chain's split (AlignStage(warp=False) -> picture decoded again -> CropStage) gives the very same crops."""
    from sg3stream.align.stages import CropStage

    whole = _run_align(AlignStage(crop_size=64), clip["lm_batches"])
    geometry = _run_align(AlignStage(warp=False), [b.replace(frames=None) for b in clip["lm_batches"]])
    assert "aligned" not in geometry[0].data and "frames" not in AlignStage(warp=False).reads
    frames = {int(i): f for b in clip["lm_batches"] for i, f in zip(b.index, b.frames)}
    crop = CropStage(crop_size=64)
    cut = [crop(b.replace(frames=np.stack([frames[int(i)] for i in b.index]))) for b in geometry]
    for key in ("aligned", "crop"):
        assert np.array_equal(np.concatenate([b.data[key] for b in cut]),
                              np.concatenate([b.data[key] for b in whole]))
    assert np.array_equal(np.concatenate([b.data["transform"] for b in geometry]),
                          np.concatenate([b.data["transform"] for b in whole]), equal_nan=True)
