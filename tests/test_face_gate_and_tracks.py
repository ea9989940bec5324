"""Issue 16's per-face options: edits that name a track, faces passed through (small, profile, short-lived),
run.json's `faces`, the artifacts per track, and the face axis that only grows as faces appear."""
import json

import cv2
import numpy as np
import pytest

from sg3stream.align.gate import PROFILE, SHORT, SMALL, FaceGate, face_model, yaw_degrees
from sg3stream.align.stages import TrackStage
from sg3stream.edit.directions import split_track
from sg3stream.errors import UserError
from sg3stream.pipeline.batch import FrameBatch
from sg3stream.synthetic import face_frames, face_photo, write_clip

from test_tracks_chain import FRAMES, core, decode, run
from two_faces import apply, photo_landmarks, placement, turned_photo, two_face_clip


def turned(degrees: float, roll: float = 0.0, scale: float = 120.0) -> np.ndarray:
    """The 3-D face model turned by `degrees` about the vertical axis, rolled, projected: [478, 2] pixels."""
    t, r = np.radians(degrees), np.radians(roll)
    yaw = np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return (face_model() @ yaw.T @ rz.T)[:, :2] * scale + 200


def test_the_yaw_is_read_from_the_landmarks_whatever_the_roll_and_scale():
    got = yaw_degrees(np.stack([turned(d, roll=r, scale=s) for d, r, s in
                                [(0, 0, 80), (20, 15, 120), (45, -30, 60), (70, 10, 200), (85, 0, 100)]]))
    np.testing.assert_allclose(got, [0, 20, 45, 70, 85], atol=0.5)
    assert yaw_degrees(photo_landmarks()[None])[0] < 10  # mediapipe's landmarks of the frontal photo
    assert np.isnan(yaw_degrees(np.full((1, 478, 2), np.nan)))[0]


def test_the_gate_names_why_a_face_passes_through():
    gate = FaceGate(min_face=48, max_yaw=60, min_track_frames=3)
    landmarks = np.stack([turned(0), turned(75), turned(0), turned(0)])[None]  # one frame, four faces
    codes = gate.reasons(np.array([[100.0, 100.0, 30.0, 100.0]]), landmarks, np.array([[40, 40, 40, 2]]),
                         np.array([63]))
    assert codes.tolist() == [[0, PROFILE, SMALL, SHORT]]
    # a clip of two frames: a face in both is not short-lived (it cannot be seen longer than the clip)
    assert gate.reasons(np.array([[100.0]]), landmarks[:, :1], np.array([[2]]), np.array([2])).tolist() == [[0]]


def test_an_edit_may_name_a_track():
    assert split_track("smile@1") == ("smile", 1)
    assert split_track("age:-2@0") == ("age:-2", 0)
    assert split_track("smile") == ("smile", None)
    for bad in ("smile@", "smile@x", "@1", "smile@-1"):
        with pytest.raises(UserError, match="track"):
            split_track(bad)


def test_the_face_axis_grows_when_a_second_face_appears_and_never_shrinks():
    lm = photo_landmarks()
    stage = TrackStage()
    stage.setup()

    def batch(start: int, faces: list[int]) -> FrameBatch:
        landmarks = np.full((2, 4, 478, 2), np.nan, np.float32)  # the landmark stage's four slots
        for n in range(2):
            for k in range(faces[n]):
                landmarks[n, k] = lm * 0.3 + (60 + 200 * k, 60)
        detected = np.isfinite(landmarks).all(axis=(2, 3))
        index = np.arange(start, start + 2)
        return FrameBatch(np.zeros((2, 1, 1, 3), np.uint8), index, index, 1, data=dict(
            landmarks=landmarks, detected=detected, landmark_source=detected.astype(np.uint8),
            shot_start=np.zeros(2, bool)))

    shapes = [stage(batch(0, [1, 1])).data["track_id"].shape, stage(batch(2, [1, 2])).data["track_id"].shape,
              stage(batch(4, [1, 1])).data["track_id"].shape]
    assert shapes == [(2, 1), (2, 2), (2, 2)]  # one face: one slot (what a frame costs downstream is per slot)


def test_an_edit_named_for_a_track_lands_on_that_face_alone(tmp_path):
    photo_lm = photo_landmarks()
    frames, _ = two_face_clip(FRAMES, photo_lm)  # both faces in every frame
    clip = write_clip(tmp_path / "two.mp4", frames, fps=25, audio=None)
    run(clip, "-o", tmp_path / "plain.mp4")
    run(clip, "-o", tmp_path / "one.mp4", "--edit", "smile:8@1", "--artifacts", tmp_path / "art")
    art = tmp_path / "art"
    faces = json.loads((art / "run.json").read_text())["faces"]
    assert [(t["id"], t["first_frame"], t["last_frame"], t["frames_edited"]) for t in faces] == [
        (0, 0, FRAMES - 1, FRAMES), (1, 0, FRAMES - 1, FRAMES)]
    alignment = np.load(art / "alignment.npz")
    assert alignment["track_id"].tolist() == [[0, 1]] * FRAMES
    # which placed face track 1 is: the one its landmarks lie on
    centre = np.nanmean(alignment["landmarks"][0, 1], axis=0)
    edited = int(np.argmin([np.hypot(*(apply(placement(k, 0), photo_lm).mean(axis=0) - centre)) for k in (0, 1)]))
    plain, one = decode(tmp_path / "plain.mp4"), decode(tmp_path / "one.mp4")
    diff = np.abs(one.astype(int) - plain.astype(int)).mean(axis=-1)
    for i in range(FRAMES):
        ys, xs = core(placement(1 - edited, i), photo_lm)
        assert diff[i, ys, xs].mean() < 2.0, i  # the other track: as without the edit, up to the encoder's noise
        ys, xs = core(placement(edited, i), photo_lm)
        assert diff[i, ys, xs].mean() > 5.0, i  # track 1: smiling
    for k in (0, 1):
        assert np.load(art / f"latents_track{k}.npy").shape == (FRAMES, 16, 512)
        assert np.isfinite(np.load(art / f"latents_smoothed_track{k}.npy")).all()


def test_faces_below_the_size_threshold_pass_through_unchanged_and_are_counted(tmp_path):
    clip = write_clip(tmp_path / "face.mp4", face_frames(6, 320, 240, cycle=48), fps=24, audio=None)
    result = run(clip, "-o", tmp_path / "out.mp4", "--edit", "smile:8", "--min-face", "1000", "--log-format",
                 "json")
    summary = [json.loads(line) for line in result.output.splitlines() if '"summary"' in line][0]
    assert summary["passed_through"] == {"small": 6, "profile": 0, "short": 0}
    assert summary["faces"][0]["frames_edited"] == 0
    source, out = decode(clip), decode(tmp_path / "out.mp4")
    assert np.abs(out.astype(int) - source.astype(int)).mean() < 1.5  # only the encoder's noise


# --- faces that turn away, leave and come back, cross: where the edit lands, against the known places -------------

def place(picture: np.ndarray, cover: np.ndarray, m: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """`picture` (photo pixels, with its cover) placed by the similarity `m` over `frame`."""
    h, w = frame.shape[:2]
    face = cv2.warpAffine(picture, m, (w, h), flags=cv2.INTER_LINEAR)
    c = cv2.warpAffine(cover, m, (w, h), flags=cv2.INTER_LINEAR)[..., None]
    return np.rint(frame * (1 - c) + face * c).astype(np.uint8)


def similarity(cx: float, cy: float, scale: float) -> np.ndarray:
    m = cv2.getRotationMatrix2D((200.0, 200.0), 0.0, scale)
    m[:, 2] += (cx - 200.0, cy - 200.0)
    return m


def edit_change(tmp_path, frames: np.ndarray, *args) -> tuple[np.ndarray, dict]:
    """Runs the clip with `--edit smile:8` and `args`: (change per pixel [N, H, W] against the source, run.json)."""
    clip = write_clip(tmp_path / "in.mp4", frames, fps=25, audio=None)
    run(clip, "-o", tmp_path / "out.mp4", "--edit", "smile:8", "--artifacts", tmp_path / "art", *args)
    source, out = decode(clip), decode(tmp_path / "out.mp4")
    return np.abs(out.astype(int) - source.astype(int)).mean(axis=-1), json.loads(
        (tmp_path / "art" / "run.json").read_text())


def test_a_turned_face_passes_through_beside_a_frontal_face_that_is_edited(tmp_path):
    photo_lm = photo_landmarks()
    turned, turned_cover = turned_photo(55, photo_lm)  # mediapipe reads it as turned by about 41 degrees
    frontal, frontal_cover = face_photo(), np.ones(turned_cover.shape, np.float32)
    left, right = similarity(120, 120, 0.45), similarity(360, 120, 0.45)
    frames = np.stack([place(turned, turned_cover, right, place(frontal, frontal_cover, left,
                                                                 np.full((240, 480, 3), 90, np.uint8)))] * 6)
    diff, run_json = edit_change(tmp_path, frames, "--max-yaw", "30")
    ys, xs = core(left, photo_lm)
    assert (diff[:, ys, xs].mean(axis=(1, 2)) > 10).all()  # the frontal face: edited in every frame
    ys, xs = core(right, photo_lm)
    assert (diff[:, ys, xs].mean(axis=(1, 2)) < 2.5).all()  # the turned one: as it came in
    passed = sorted((t["frames_edited"], t["passed_through"]["profile"]) for t in run_json["faces"])
    assert passed == [(0, 6), (6, 0)] and run_json["passed_through"]["profile"] == 6


def test_a_face_that_leaves_for_longer_than_a_gap_comes_back_as_a_new_track_and_is_edited(tmp_path):
    photo_lm = photo_landmarks()
    here = [i for i in range(26) if not 6 <= i < 20]  # away for 14 frames: longer than the 12 a track survives
    m = [similarity(160 + 2 * i, 120, 0.45) for i in range(26)]
    frames = np.stack([place(face_photo(), np.ones((400, 400), np.float32), m[i], np.full((240, 320, 3), 90,
                                                                                            np.uint8))
                       if i in here else np.full((240, 320, 3), 90, np.uint8) for i in range(26)])
    diff, run_json = edit_change(tmp_path, frames)
    for i in here:
        ys, xs = core(m[i], photo_lm)
        assert diff[i, ys, xs].mean() > 10, i
    assert diff[[i for i in range(26) if i not in here]].mean() < 1.0  # the empty frames stay empty
    assert [(t["id"], t["first_frame"], t["last_frame"]) for t in run_json["faces"]] == [(0, 0, 5), (1, 20, 25)]


def test_two_faces_crossing_keep_their_tracks_and_both_are_edited(tmp_path):
    photo_lm = photo_landmarks()
    n = 16
    # one face walks right along the top, the other left along the bottom: they pass each other mid-clip
    a = [similarity(100 + 16 * i, 85, 0.4) for i in range(n)]
    b = [similarity(380 - 16 * i, 215, 0.4) for i in range(n)]
    photo, cover = face_photo(), np.ones((400, 400), np.float32)
    frames = np.stack([place(photo, cover, b[i], place(photo, cover, a[i], np.full((300, 480, 3), 90, np.uint8)))
                       for i in range(n)])
    diff, run_json = edit_change(tmp_path, frames)
    assert len(run_json["faces"]) == 2  # no track ended or began at the crossing
    alignment = np.load(tmp_path / "art" / "alignment.npz")
    paths = [np.array([apply(m, photo_lm).mean(axis=0) for m in path]) for path in (a, b)]
    for slot in (0, 1):
        detected = np.flatnonzero(alignment["detected"][:, slot])
        assert len(detected) >= n - 3
        # the track's landmarks stay on one face's path (no identity swap), and that face is edited there
        centres = np.nanmean(alignment["landmarks"][detected, slot], axis=1)
        nearest = {int(np.argmin([np.hypot(*(c - p[i])) for p in paths])) for i, c in zip(detected, centres)}
        assert len(nearest) == 1 and len(set(alignment["track_id"][detected, slot])) == 1
        face = (a, b)[nearest.pop()]
        for i in detected:
            ys, xs = core(face[i], photo_lm)
            assert diff[i, ys, xs].mean() > 10, (slot, i)


def test_the_crop_modes_show_the_track_asked_for(tmp_path):
    from sg3stream.render.stages import PasteStage

    frames, _ = two_face_clip(6, photo_landmarks())
    clip = write_clip(tmp_path / "two.mp4", frames, fps=25, audio=None)
    # every face passed through (too small for 1000 px), so the crop shows the source in the track's crop square
    run(clip, "-o", tmp_path / "t1.mp4", "--output-mode", "crop", "--track", "1", "--min-face", "1000",
        "--artifacts", tmp_path / "art")
    source, shown = decode(clip), decode(tmp_path / "t1.mp4")
    alignment = np.load(tmp_path / "art" / "alignment.npz")
    paste = PasteStage(res=shown.shape[1])
    for i in range(6):
        slot = {int(t): k for k, t in enumerate(alignment["track_id"][i])}
        want, other = (paste._source_crop(source[i], alignment["crop_quad"][i, slot[t]]) for t in (1, 0))
        assert np.abs(shown[i].astype(int) - want.astype(int)).mean() < 3 < np.abs(
            shown[i].astype(int) - other.astype(int)).mean()


def test_pti_tunes_on_the_track_asked_for():
    from sg3stream.pti.clip import FrameCollector

    def batch():
        index = np.arange(4)
        return FrameBatch(np.zeros((4, 1, 1, 3), np.uint8), index, index, 1, data=dict(
            has_latents=np.ones((4, 2), bool), track_id=np.array([[0, 1]] * 4),
            latents_smoothed=np.zeros((4, 2, 16, 512), np.float32), transform_smoothed=np.zeros((4, 2, 3, 3)),
            crop=np.stack([np.full((4, 8, 8, 3), k, np.uint8) for k in (10, 20)], axis=1)))

    every, one = FrameCollector(16), FrameCollector(16, track=1)
    every(batch()), one(batch())
    assert len(every.samples()) == 8  # both identities, as PTI's multi-identity variant tunes
    assert len(one.samples()) == 4 and (one.samples().crops == 20).all()
    with pytest.raises(UserError, match="track 3"):
        missing = FrameCollector(16, track=3)
        missing(batch())
        missing.samples()


def test_faces_largest_edits_the_larger_of_two_faces_alone(tmp_path):
    photo_lm = photo_landmarks()
    frames, _ = two_face_clip(6, photo_lm)  # slot 1's face is the larger
    diff, run_json = edit_change(tmp_path, frames, "--faces", "largest")
    for i in range(6):
        ys, xs = core(placement(1, i), photo_lm)
        assert diff[i, ys, xs].mean() > 10, i
        ys, xs = core(placement(0, i), photo_lm)
        assert diff[i, ys, xs].mean() < 2.5, i
    assert len(run_json["faces"]) == 1
