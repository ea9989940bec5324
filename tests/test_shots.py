"""ShotDetector (sg3stream.video.shots): hard cuts and fades found at the right frame, nothing in smooth motion."""
import itertools

import cv2
import numpy as np
import pytest

from sg3stream.synthetic import face_frames, face_photo
from sg3stream.video.shots import ShotDetector

W, H = 480, 360


def shot_a(count: int) -> list[np.ndarray]:
    """The face in the middle of the frame, moving smoothly (the first `count` frames of a 60-frame cycle)."""
    return list(itertools.islice(face_frames(60, W, H), count))


def shot_b(count: int) -> list[np.ndarray]:
    """Another shot: the face twice as large, centred on the frame's bottom-right corner (a frame twice the size,
    cropped to its top-left quarter), moving as in shot_a."""
    return [f[:H, :W] for f in itertools.islice(face_frames(60, 2 * W, 2 * H), count)]


def detect(frames, batch: int = 8, **options) -> tuple[list[int], dict[int, int], ShotDetector]:
    """All cuts, and for each cut the last frame index of the push that reported it (-1: finish)."""
    detector = ShotDetector(fps=25, **options)
    frames = np.stack(frames)
    cuts, seen_at = [], {}
    for start in range(0, len(frames), batch):
        chunk = frames[start:start + batch]
        for cut in detector.push(chunk, start):
            cuts.append(cut)
            seen_at[cut] = start + len(chunk) - 1
    for cut in detector.finish():
        cuts.append(cut)
        seen_at[cut] = -1
    return cuts, seen_at, detector


@pytest.mark.parametrize("method", ["adaptive", "content"])
def test_hard_cut_found_at_its_frame(method):
    cuts, seen_at, detector = detect(shot_a(30) + shot_b(30), method=method)
    assert cuts == [30]
    # Known within lag_frames of the cut: the push that delivered frame 30 + lag reported it (batches of 8 end at
    # frames 31, 39, ...).
    last_needed = 30 + detector.lag_frames
    assert seen_at[30] == last_needed + (-last_needed - 1) % 8
    assert detector.lag_frames == (2 if method == "adaptive" else 0)


@pytest.mark.parametrize("method", ["adaptive", "content"])
def test_smooth_motion_has_no_cut(method):
    assert detect(list(face_frames(60, W, H)), method=method)[0] == []
    # the same motion in 20 frames: three times faster
    assert detect(list(face_frames(20, W, H)), method=method)[0] == []


def test_cut_in_the_first_frames_and_at_the_last_frame():
    assert detect(shot_a(3) + shot_b(20), batch=1)[0] == [3]
    # A cut at the last frame is only judged at finish() (the adaptive detector needs frames after it).
    cuts, seen_at, _ = detect(shot_a(30) + shot_b(1), batch=1)
    assert cuts == [30] and seen_at[30] == -1


def test_batching_does_not_change_the_result():
    frames = shot_a(20) + shot_b(20) + shot_a(20)
    assert detect(frames, batch=1)[0] == detect(frames, batch=64)[0] == [20, 40]


def test_cuts_closer_than_min_shot_frames_are_dropped():
    frames = shot_a(20) + shot_b(4) + shot_a(20)  # a 4-frame shot
    assert detect(frames, batch=5, min_shot_frames=12)[0] == [20]
    assert detect(frames, batch=5, min_shot_frames=3)[0] == [20, 24]


def test_fade_through_black():
    a, b = shot_a(28), shot_b(30)
    fade_out = [np.rint(f * (1 - (k + 1) / 9)).astype(np.uint8) for k, f in enumerate(a[20:])]  # frames 20-27
    black = [np.zeros_like(a[0])] * 4  # frames 28-31
    fade_in = [np.rint(f * min(1.0, (k + 1) / 9)).astype(np.uint8) for k, f in enumerate(b)]  # from frame 32
    frames = a[:20] + fade_out + black + fade_in
    first_lit = next(i for i in range(28, len(frames)) if frames[i].mean() >= 12)
    for method in ("adaptive", "content"):
        cuts = detect(frames, method=method)[0]
        # one boundary, between the first black frame and the first frame bright enough again
        assert len(cuts) == 1 and 28 <= cuts[0] <= first_lit, (method, cuts)
    # without the fade detector, the content detector alone sees no cut in a slow fade
    assert detect(frames, method="content", fades=False)[0] == []


def test_a_dissolve_is_not_found():
    """Documented limit: a 10-frame cross-fade between the two shots changes too little from frame to frame."""
    a, b = shot_a(30), shot_b(30)
    dissolve = [np.rint(a[20 + k] * (1 - (k + 1) / 11) + b[k] * ((k + 1) / 11)).astype(np.uint8) for k in range(10)]
    frames = a[:20] + dissolve + b[10:]
    assert detect(frames)[0] == [] and detect(frames, method="content")[0] == []


def test_fast_pan_is_not_a_cut_for_the_adaptive_detector():
    """Why "adaptive" is the default: a fast camera pan over a textured scene (20 px per frame at 480 px wide)
    scores above ContentDetector's threshold on every frame, but not above the adaptive detector's ratio."""
    scene = np.tile(face_photo(), (1, 4, 1))  # 400 x 1600
    frames = [np.ascontiguousarray(scene[20:380, 20 * i:20 * i + W]) for i in range(40)]
    assert detect(frames)[0] == []
    assert detect(frames, method="content")[0] != []


def test_frames_must_be_consecutive():
    detector = ShotDetector()
    frames = np.stack(shot_a(4))
    detector.push(frames, 100)  # a stream may start at any index (a segment of the farm)
    with pytest.raises(ValueError, match="consecutive"):
        detector.push(frames, 110)


def test_large_frames_are_downscaled_before_detection():
    frames = [cv2.resize(f, (1920, 1080)) for f in shot_a(16) + shot_b(8)]
    detector = ShotDetector()
    assert detector._prepare(frames[0]).shape == (135, 240, 3)  # 1/8
    assert detect(frames)[0] == [16]
