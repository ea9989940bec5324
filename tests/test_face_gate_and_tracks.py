"""Issue 16's per-face options: edits that name a track, faces passed through (small, profile, short-lived),
run.json's `faces`, the artifacts per track, and the face axis that only grows as faces appear."""
import json

import numpy as np
import pytest

from sg3stream.align.gate import PROFILE, SHORT, SMALL, FaceGate, face_model, yaw_degrees
from sg3stream.align.stages import TrackStage
from sg3stream.edit.directions import split_track
from sg3stream.errors import UserError
from sg3stream.pipeline.batch import FrameBatch
from sg3stream.synthetic import face_frames, write_clip

from test_tracks_chain import FRAMES, core, decode, run
from two_faces import apply, photo_landmarks, placement, two_face_clip


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
