"""Several faces per frame: every per-face key has a face axis [N, F, ...], and no stage ever mixes two slots.

Two faces per frame (tests/two_faces.py: the photo placed twice by known similarities, its landmarks moved with
it); the demo models invert and render them in tests/test_stage_contracts.py, which runs the whole chain.
"""
from fractions import Fraction

import numpy as np
import pytest

from sg3stream.align.ffhq import ffhq_params, params_to_quad
from sg3stream.align.landmarks import OUTLINE_POINTS, face_outline
from sg3stream.align.stages import AlignStage
from sg3stream.edit.smoothing import SmoothStage
from sg3stream.pipeline.batch import FrameBatch
from sg3stream.render.expand import Expansion
from sg3stream.render.stages import PasteStage, paste_order

from two_faces import TwoFaceLandmarks, apply, batches, photo_landmarks, placement, two_face_clip

N = 10


@pytest.fixture(scope="module")
def photo_lm():
    return photo_landmarks()


@pytest.fixture(scope="module")
def clip(photo_lm):
    return two_face_clip(N, photo_lm)


def align(frames, landmarks, **options):
    """AlignStage over the clip in batches of 3, behind the stand-in landmark stage; the outputs joined."""
    landmark_stage, stage = TwoFaceLandmarks(landmarks), AlignStage(**options)
    stage.setup()
    out = [o for o in (stage(landmark_stage(b)) for b in batches(frames, 3)) if o is not None] + stage.flush()
    assert np.concatenate([b.index for b in out]).tolist() == list(range(len(frames)))
    return {key: np.concatenate([b.data[key] for b in out]) for key in out[0].data if key != "style_offsets"}


def test_both_slots_are_aligned_where_their_faces_are(clip, photo_lm):
    frames, landmarks = clip
    out = align(frames, landmarks, align_smoothing=0, crop_size=64)
    assert out["aligned"].shape == (N, 2, 256, 256, 3) and out["crop"].shape == (N, 2, 64, 64, 3)
    assert out["transform"].shape == (N, 2, 3, 3) and out["face_outline"].shape == (N, 2, OUTLINE_POINTS, 2)
    assert out["has_quad"].all() and out["detected"].all()
    photo_quad = params_to_quad(ffhq_params(photo_lm))
    for slot in range(2):
        truth = np.stack([apply(placement(slot, i), photo_quad) for i in range(N)])
        np.testing.assert_allclose(out["aligned_quad"][:, slot], truth, atol=0.05)  # pixels
    # the same photo, aligned from two places at two sizes: the two slots' aligned crops look alike
    a, b = out["aligned"][:, 0].astype(float), out["aligned"][:, 1].astype(float)
    assert np.abs(a - b).mean() < 12 and np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95


def test_a_slot_is_aligned_from_its_own_landmarks_only(clip):
    frames, landmarks = clip
    other = landmarks.copy()
    other[:, 1] += np.linspace(0, 6, N)[:, None, None]  # slot 1 moves differently
    other[[3, 4, 9], 1] = np.nan  # and goes missing (a bridged gap, and at the end: not bridged)
    for options in ({}, {"crop": "fixed"}):
        base, changed = align(frames, landmarks, **options), align(frames, other, **options)
        for key in ("detected", "has_quad", "bridged", "aligned_quad", "crop_quad", "aligned", "crop", "transform",
                    "rotation_deg", "translation", "scale", "face_outline"):
            np.testing.assert_array_equal(changed[key][:, 0], base[key][:, 0], err_msg=key)
        assert not np.array_equal(changed["aligned_quad"][:, 1], base["aligned_quad"][:, 1])
        assert changed["bridged"][[3, 4], 1].all() and not changed["detected"][[3, 4, 9], 1].any()
        assert not changed["has_quad"][9, 1] and np.isnan(changed["crop_quad"][9, 1]).all()
        assert (changed["aligned"][9, 1] == 0).all() and np.isnan(changed["face_outline"][9, 1]).all()


def smooth_batches(latents, angles, valid, size=4):
    for start in range(0, len(latents), size):
        sl = slice(start, start + size)
        idx = np.arange(start, min(start + size, len(latents)))
        yield FrameBatch(np.zeros((len(idx), 1, 1, 3), np.uint8), idx, idx, Fraction(1, 25), data={
            "latents": latents[sl], "has_latents": valid[sl], "rotation_deg": angles[sl],
            "translation": np.zeros(angles[sl].shape + (2,), np.float32),
            "scale": np.ones(angles[sl].shape, np.float32)})


def smoothed(latents, angles, valid):
    stage = SmoothStage(sigma=1.0, fine_window=5)
    out = [o for o in (stage(b) for b in smooth_batches(latents, angles, valid)) if o is not None] + stage.flush()
    return (np.concatenate([b.data["latents_smoothed"] for b in out]),
            np.concatenate([b.data["transform_smoothed"] for b in out]))


def test_smoothing_keeps_each_slot_to_itself():
    rng = np.random.default_rng(0)
    n = 30
    latents = rng.normal(size=(n, 2, 16, 8)).astype(np.float32)
    angles = rng.normal(0, 5, (n, 2)).astype(np.float32)
    valid = np.ones((n, 2), bool)
    valid[[5, 6], 0] = False
    latents[[5, 6], 0] = np.nan
    codes, transforms = smoothed(latents, angles, valid)
    assert codes.shape == (n, 2, 16, 8) and transforms.shape == (n, 2, 3, 3)
    assert np.isnan(codes[[5, 6], 0]).all() and np.isfinite(codes[:, 1]).all()
    # change everything about slot 1: slot 0 comes out bit for bit the same
    other_latents, other_angles, other_valid = latents.copy(), angles.copy(), valid.copy()
    other_latents[:, 1] = rng.normal(size=(n, 16, 8)) * 100
    other_angles[:, 1] = 170
    other_valid[10:20, 1] = False
    other_codes, other_transforms = smoothed(other_latents, other_angles, other_valid)
    np.testing.assert_array_equal(other_codes[:, 0], codes[:, 0])
    np.testing.assert_array_equal(other_transforms[:, 0], transforms[:, 0])
    assert not np.allclose(other_codes[:, 1], codes[:, 1], equal_nan=True)
    # and each slot is what smoothing it alone gives
    for slot in range(2):
        alone, alone_t = smoothed(latents[:, slot:slot + 1], angles[:, slot:slot + 1], valid[:, slot:slot + 1])
        np.testing.assert_array_equal(alone, codes[:, slot:slot + 1])
        np.testing.assert_array_equal(alone_t, transforms[:, slot:slot + 1])


def square(cx, cy, half):
    """A crop quad (TL, BL, BR, TR) of side 2 * half around (cx, cy)."""
    return np.array([[cx - half, cy - half], [cx - half, cy + half], [cx + half, cy + half], [cx + half, cy - half]],
                    np.float32)


def ring(cx, cy, radius, count=40):
    a = np.linspace(0, 2 * np.pi, count, endpoint=False)
    return np.stack([cx + radius * np.cos(a), cy + radius * np.sin(a)], 1).astype(np.float32)


def paste_batch(quads, outlines, colours, has, frame):
    res = 32
    render = np.stack([np.full((res, res, 3), c, np.uint8) for c in colours])[None]
    data = {"has_latents": np.array([has]), "crop_quad": np.stack(quads)[None],
            "face_outline": face_outline(np.stack(outlines))[None], "render": render}
    batch = FrameBatch(frame[None], np.arange(1), np.arange(1), Fraction(1, 25), data=data)
    return PasteStage(res, Expansion(), colour_match=False)(batch).frames[0]


def test_paste_puts_every_face_back_and_the_larger_one_on_top():
    frame = np.full((200, 300, 3), 90, np.uint8)
    small = (square(110, 100, 40), ring(110, 100, 30), (250, 0, 0))
    large = (square(170, 100, 60), ring(170, 100, 50), (0, 0, 250))  # overlaps the small one around x = 125..140
    for slots in ((small, large), (large, small)):  # which slot holds which face does not matter
        out = paste_batch([s[0] for s in slots], [s[1] for s in slots], [s[2] for s in slots], [True, True], frame)
        assert np.abs(out[100, 90].astype(int) - (250, 0, 0)).max() <= 2  # inside the small face only
        assert np.abs(out[100, 200].astype(int) - (0, 0, 250)).max() <= 2  # inside the large face only
        assert np.abs(out[100, 132].astype(int) - (0, 0, 250)).max() <= 2  # inside both: the larger one on top
        assert (out[:20] == 90).all() and (out[:, 260:] == 90).all()  # away from both faces
    # a slot without latents is left out
    out = paste_batch([small[0], large[0]], [small[1], large[1]], [small[2], large[2]], [True, False], frame)
    assert np.abs(out[100, 90].astype(int) - (250, 0, 0)).max() <= 2 and out[100, 200].tolist() == [90, 90, 90]
    assert paste_order(np.stack([large[0], small[0]]), np.array([True, True])) == [1, 0]


def test_paste_at_the_known_places_of_both_faces(clip, photo_lm):
    """The aligned crop quads and outlines of the two-face clip put each slot's render on its own face."""
    frames, landmarks = clip
    out = align(frames, landmarks)
    i = 2
    res = 32
    render = np.stack([np.full((res, res, 3), colour, np.uint8) for colour in ((250, 40, 40), (40, 40, 250))])
    data = {"has_latents": out["detected"][i:i + 1], "crop_quad": out["crop_quad"][i:i + 1],
            "face_outline": out["face_outline"][i:i + 1], "render": render[None]}
    batch = FrameBatch(frames[i:i + 1], np.array([i]), np.array([i]), Fraction(1, 25), data=data)
    pasted = PasteStage(res, Expansion(), colour_match=False)(batch).frames[0]
    changed = np.abs(pasted.astype(int) - frames[i]).sum(axis=-1) > 30
    for slot, colour in ((0, (250, 40, 40)), (1, (40, 40, 250))):
        # the face where the clip put it: the middle of its (known) landmarks' box
        known = apply(placement(slot, i), photo_lm)
        middle = (known.min(axis=0) + known.max(axis=0)) / 2
        x, y = np.rint(middle).astype(int)
        assert np.abs(pasted[y, x].astype(int) - colour).max() <= 2
        ys, xs = np.nonzero(changed[:, :180] if slot == 0 else changed[:, 180:])
        found = np.array([(xs.min() + xs.max()) / 2 + (0 if slot == 0 else 180), (ys.min() + ys.max()) / 2])
        assert np.linalg.norm(found - middle) < 6, (slot, found, middle)
    assert not changed[:15].any() and not changed[:, 175:185].any()  # above the faces and between them


def test_paste_in_place_gives_what_paste_into_copies_gives():
    """The chain pastes into the redecoded pictures themselves (no 200 MB copy per 4K batch): same pixels."""
    frame = np.full((200, 300, 3), 90, np.uint8)
    frame[::7] = 30  # some texture for the colour match
    res = 32
    quads, outlines = [square(110, 100, 40), square(170, 100, 60)], [ring(110, 100, 30), ring(170, 100, 50)]
    render = np.stack([np.full((res, res, 3), c, np.uint8) for c in ((250, 0, 0), (0, 0, 250))])[None]
    data = {"has_latents": np.array([[True, True]]), "crop_quad": np.stack(quads)[None],
            "face_outline": face_outline(np.stack(outlines))[None], "render": render}

    def run(in_place):
        pictures = np.repeat(frame[None], 2, axis=0)
        batch = FrameBatch(pictures, np.arange(2), np.arange(2), Fraction(1, 25),
                           data={k: np.repeat(v, 2, axis=0) for k, v in data.items()})
        return pictures, PasteStage(res, Expansion(), in_place=in_place)(batch).frames

    given, copied = run(False)
    assert (given == frame).all() and copied is not given  # the input pictures are left alone
    given, in_place = run(True)
    assert in_place is given and np.array_equal(in_place, copied) and not np.array_equal(in_place[0], frame)
