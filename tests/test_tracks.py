"""Tracker (sg3stream.align.tracks): detections linked into tracks with stable ids, one slot per track."""
import numpy as np
import pytest

from sg3stream.align.landmarks import LandmarkDetector
from sg3stream.align.tracks import Tracker, centres_and_sizes, slot_order, take_slots

# A face as 12 points on a ring (pure numpy stand-in for 478 landmarks): centre = the mean, size = the diameter.
_RING = np.stack([np.cos(np.linspace(0, 2 * np.pi, 12, endpoint=False)),
                  np.sin(np.linspace(0, 2 * np.pi, 12, endpoint=False))], axis=1)


def face(cx: float, cy: float, size: float = 60.0) -> np.ndarray:
    return (_RING * size / 2 + (cx, cy)).astype(np.float32)


def frame_detections(faces: list, slots: int, rng: np.random.Generator) -> np.ndarray:
    """[slots, 12, 2]: the faces in a random order of rows (a detector's order is arbitrary), NaN rows for the rest."""
    out = np.full((slots, len(_RING), 2), np.nan, np.float32)
    for row, points in zip(rng.permutation(slots), faces):
        out[row] = points
    return out


def run(per_frame: list[list], slots: int = 2, cuts=(), seed: int = 0, **options):
    """Track a clip given as a list of frames, each a list of (name, cx, cy[, size]) faces. Returns
    (tracker, {frame: {name: track id}}, slot values (take_slots of the detections), track_id per slot)."""
    rng = np.random.default_rng(seed)
    tracker = Tracker(**options)
    detections, names = [], []
    for faces in per_frame:
        det = frame_detections([face(*f[1:]) for f in faces], slots, rng)
        detections.append(det)
        # the name of the face in each row, found back by position
        valid, centre, _ = centres_and_sizes(det)
        names.append([min(faces, key=lambda f: np.hypot(f[1] - c[0], f[2] - c[1]))[0] if ok else None
                      for ok, c in zip(valid, centre)])
    detections = np.stack(detections)
    ids = tracker.push_chunk(detections, 0, cuts)
    by_name = [{n: int(i) for n, i in zip(row_names, row_ids) if n is not None}
               for row_names, row_ids in zip(names, ids)]
    order, track_id = slot_order(ids, tracker.slot_of, tracker.slots)
    return tracker, by_name, take_slots(detections, order, np.nan), track_id


def test_two_faces_one_entering_mid_clip():
    frames = []
    for t in range(40):
        faces = [("a", 80 + 3 * t, 120)]
        if t >= 15:
            faces.append(("b", 400 - 2 * (t - 15), 100, 80))
        frames.append(faces)
    tracker, ids, slotted, track_id = run(frames)
    assert all(f["a"] == 0 for f in ids)
    assert all(f["b"] == 1 for f in ids[15:])
    # every track in one slot for its whole life: the slot's centres follow the known motion
    centres = slotted.mean(axis=2)  # [N, slots, 2], NaN for an empty slot
    a_slot, b_slot = tracker.slot_of[0], tracker.slot_of[1]
    assert a_slot != b_slot
    t = np.arange(40)
    np.testing.assert_allclose(centres[:, a_slot, 0], 80 + 3 * t, atol=1e-3)
    np.testing.assert_allclose(centres[15:, b_slot, 0], 400 - 2 * (t[15:] - 15), atol=1e-3)
    assert np.isnan(centres[:15, b_slot]).all()
    assert (track_id[:, a_slot] == 0).all()
    assert (track_id[:15, b_slot] == -1).all() and (track_id[15:, b_slot] == 1).all()
    assert tracker.tracks[1].first == 15 and tracker.tracks[1].last == 39 and tracker.tracks[1].frames == 25


def crossing(t: int) -> list:
    # Same size, 8 px apart vertically, 10 px per frame towards each other.
    return [("left", 100 + 10 * t, 200), ("right", 405 - 10 * t, 208)]


def test_faces_crossing_paths_keep_their_ids():
    frames = [crossing(t) for t in range(31)]
    for seed in range(5):
        tracker, ids, _, _ = run(frames, seed=seed)
        assert all(f == {"left": 0, "right": 1} for f in ids), seed
        assert len(tracker.tracks) == 2


def test_the_crossing_needs_the_motion():
    """Matching on the last positions alone (no velocity) would swap the faces of the crossing above: at frame 16
    each face is closer to where the other face was at frame 15 than to where it was itself."""
    (_, lx0, ly0), (_, rx0, ry0) = crossing(15)
    (_, lx1, ly1), (_, rx1, ry1) = crossing(16)
    keep = np.hypot(lx1 - lx0, ly1 - ly0) + np.hypot(rx1 - rx0, ry1 - ry0)
    swap = np.hypot(rx1 - lx0, ry1 - ly0) + np.hypot(lx1 - rx0, ly1 - ry0)
    assert swap < keep


def test_short_gap_keeps_the_track_long_gap_starts_a_new_one():
    frames = []
    for t in range(60):
        gone = 10 <= t < 15 or 25 <= t < 45  # a 5-frame gap, then a 20-frame gap
        frames.append([] if gone else [("a", 100 + 2 * t, 100)])
    tracker, ids, _, track_id = run(frames, slots=1, max_gap=12)
    assert {f["a"] for f in ids[:25] if f} == {0}  # the 5-frame gap is survived
    assert {f["a"] for f in ids[45:]} == {1}  # the 20-frame gap is not
    assert tracker.tracks[0].ended and tracker.tracks[0].last == 24
    assert (track_id[45:, 0] == 1).all() and (track_id[25:45, 0] == -1).all()  # the slot is reused after the end


def test_a_gap_of_exactly_max_gap_frames():
    frames = [[] if 10 <= t < 14 else [("a", 100, 100)] for t in range(20)]  # 4 frames without the face
    assert {f["a"] for f in run(frames, slots=1, max_gap=4)[1] if f} == {0}
    assert {f["a"] for f in run(frames, slots=1, max_gap=3)[1] if f} == {0, 1}


def test_a_cut_ends_every_track():
    frames = [[("a", 100, 100), ("b", 300, 100)] for _ in range(20)]
    # after the cut the faces are where they were (a cut to the same framing): still new tracks
    tracker, ids, _, track_id = run(frames, cuts=[10])
    assert all(f == {"a": 0, "b": 1} for f in ids[:10])
    assert all(f == {"a": 2, "b": 3} for f in ids[10:])  # new ids, left to right
    assert tracker.tracks[0].ended and tracker.tracks[1].ended
    assert set(track_id[9]) == {0, 1} and set(track_id[10]) == {2, 3}


def test_a_jump_beyond_the_gate_starts_a_new_track():
    frames = [[("a", 100 if t < 10 else 400, 100)] for t in range(20)]  # 5 face sizes in one frame
    tracker, ids, _, track_id = run(frames, slots=2)
    assert {f["a"] for f in ids[:10]} == {0} and {f["a"] for f in ids[10:]} == {1}
    # the first track is in its gap (not ended yet), so the new one takes the other slot
    assert tracker.slot_of == {0: 0, 1: 1}


def test_a_new_face_takes_the_slot_of_the_track_unseen_longest_when_all_are_held():
    frames = [[("a", 100, 100)] if t < 10 else [("b", 400, 100)] for t in range(20)]
    tracker, ids, _, track_id = run(frames, slots=1)
    assert tracker.tracks[0].ended and tracker.slot_of == {0: 0, 1: 0}
    assert (track_id[:10, 0] == 0).all() and (track_id[10:, 0] == 1).all()


def test_frames_must_increase():
    tracker = Tracker()
    tracker.push(5, np.full((1, 4, 2), np.nan))
    with pytest.raises(ValueError, match="increasing"):
        tracker.push(5, np.full((1, 4, 2), np.nan))


def test_mediapipe_tracks_two_faces_with_known_motion():
    """LandmarkDetector (max_faces=2) on tests/two_faces.py's clip, the right face hidden for the first 8 frames:
    two tracks, each following its face's known landmarks."""
    from two_faces import photo_landmarks, two_face_clip  # here: it imports the align stages, which change often

    frames, known = two_face_clip(24, photo_landmarks())  # known [N, 2, 478, 2]: slot 0 left, slot 1 right
    frames = frames.copy()
    frames[:8, :, 175:] = 90  # the background: the right face enters at frame 8
    detector = LandmarkDetector(max_faces=2)
    try:
        landmarks, _ = detector.detect_chunk(frames)
    finally:
        detector.close()
    tracker = Tracker()
    ids = tracker.push_chunk(landmarks, 0)
    order, track_id = slot_order(ids, tracker.slot_of, tracker.slots)
    slotted = take_slots(landmarks, order, np.nan)

    assert len(tracker.tracks) == 2
    left, right = tracker.tracks[0], tracker.tracks[1]
    assert left.first == 0 and right.first >= 8
    for track, face_index in ((left, 0), (right, 1)):
        found = track_id[:, track.slot] == track.id
        assert found.sum() >= 0.9 * (24 - track.first)  # detected in nearly every frame it is on screen
        error = np.linalg.norm(slotted[found, track.slot] - known[found, face_index], axis=-1).mean(axis=-1)
        size = np.ptp(known[0, face_index, :, 0])
        assert error.max() < 0.05 * size, (track.id, error.max(), size)
