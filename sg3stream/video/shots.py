"""Streaming shot-boundary (hard cut) detection with PySceneDetect's detectors.

Frames arrive in batches from our own decoder, so we drive scenedetect's detector objects frame by frame through
their `process_frame` API instead of its video/SceneManager API. What we add is only plumbing: downscaling, RGB ->
BGR, a minimum shot length, and merging the cuts of the two detectors.

    detector = ShotDetector(fps=info.fps)
    cuts = detector.push(batch.frames, batch.index[0])  # [N,H,W,3] RGB uint8, consecutive batches
    ...
    cuts += detector.finish()                            # cuts: indices of the first frame of each new shot

In the chain, `ShotStage` (below, right after decode) writes this as `shot_start` [N] bool per frame.

What is found:
* Hard cuts, by `AdaptiveDetector` (default) or `ContentDetector` (`method="content"`). Both score the mean HSV
  difference between consecutive frames; the adaptive one compares each frame's score with the mean score of the
  `window` frames on either side, so fast camera or subject motion (high scores on many consecutive frames) is not
  taken for a cut, where ContentDetector's fixed threshold fires on it (tests/test_shots.py has a fast pan that
  shows it). It costs `window` frames of latency. A one-frame flash (both frames around it score high): a cut for
  ContentDetector; for the adaptive one only in a nearly still scene (the ratio stays below 4 for window=2).
* Fades to and from black, by `ThresholdDetector` (`fades=True`): it places the cut at the first frame that is
  brighter than `fade_level` again (fade_bias=+1). The cut detector may also fire where the fade reaches black; the
  first of the two reported stands (min_shot_frames), so the boundary is somewhere in the black frames, which
  have no faces either way.
* Not found: dissolves (cross-fades) and fades through a colour other than black: their frame-to-frame change is
  small everywhere and no detector here scores them. Tracks across a dissolve end by their own detection gaps or
  the tracker's gating, or not at all (the same framing on both sides).

Latency: after `push` has seen frame j, every cut at index <= j - `lag_frames` has been returned (`lag_frames` is
the adaptive window, 0 with method="content"; fades are reported at their cut frame). A stage that smooths must
hold back `lag_frames` frames beyond its own window before trusting that no cut falls inside it.

Downscaling: frames are shrunk by the integer factor (INTER_AREA) that brings their longer side closest to `width`
(256 by default, the size scenedetect's own SceneManager downscales to, where its default thresholds are tuned):
1080p is scored at 240x135, 480p (854x480) at 284x160. A cut changes most of the frame, which survives this; the
scores of small moving details shrink, which only helps.
"""
from __future__ import annotations

import functools

import numpy as np

from ..pipeline.batch import FrameBatch
from ..pipeline.contract import Key
from ..pipeline.stage import Stage
from ..pipeline.window import Window, one_batch

METHODS = ("adaptive", "content")

DEFAULT_WIDTH = 256  # scenedetect.scene_manager.DEFAULT_MIN_WIDTH
DEFAULT_MIN_SHOT_SECONDS = 0.5  # scenedetect's default min_scene_len is 15 frames (0.6 s at 25 fps)
DEFAULT_WINDOW = 2  # AdaptiveDetector's default window_width
DEFAULT_FADE_LEVEL = 12  # ThresholdDetector's default: mean 8-bit level below which a frame counts as black


class ShotDetector:
    """Hard cuts (and fades through black) in a stream of RGB frames fed in order, batch by batch.

    fps: frame rate, only used for the default `min_shot_frames`.
    threshold: the detector's own threshold; None keeps scenedetect's default. For method="adaptive" it is the
        adaptive ratio (AdaptiveDetector.adaptive_threshold, 3.0), for "content" the content score
        (ContentDetector.threshold, 27).
    min_shot_frames: a cut closer than this to the previous reported cut is dropped (default: 0.5 s of frames).
        Unlike scenedetect's own min_scene_len, the first cut may come at any frame after the first one.
    min_content: AdaptiveDetector's min_content_val: the content score a cut needs besides the ratio (15).
    """

    def __init__(self, fps: float = 25.0, threshold: float | None = None, min_shot_frames: int | None = None, *,
                 method: str = "adaptive", fades: bool = True, width: int = DEFAULT_WIDTH,
                 window: int = DEFAULT_WINDOW, min_content: float = 15.0, fade_level: float = DEFAULT_FADE_LEVEL):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.method = method
        self.fps = float(fps) if fps > 0 else 25.0
        self.width = int(width)
        if min_shot_frames is None:
            min_shot_frames = max(1, int(round(DEFAULT_MIN_SHOT_SECONDS * self.fps)))
        self.min_shot_frames = int(min_shot_frames)
        self._cut_detector = _cut_detector(method, threshold, window, min_content)
        self._fade_detector = _fade_detector(fade_level) if fades else None
        self.lag_frames = window if method == "adaptive" else 0
        self.cuts: list[int] = []  # every cut reported so far, in increasing order
        self._next: int | None = None  # index of the next frame expected
        self._last_small: np.ndarray | None = None

    def push(self, frames: np.ndarray, first_index: int) -> list[int]:
        """frames [N,H,W,3] RGB uint8 with indices first_index .. first_index+N-1 -> the cuts found in this call.

        A cut is the index of the first frame of the new shot. Batches must follow each other without gaps."""
        if self._next is not None and first_index != self._next:
            raise ValueError(f"frames must be consecutive: expected index {self._next}, got {first_index}")
        new: list[int] = []
        for k, frame in enumerate(frames):
            small = self._prepare(frame)
            new += self._accept(self._process(first_index + k, small))
            self._last_small = small
        self._next = first_index + len(frames)
        return new

    def finish(self) -> list[int]:
        """The cuts that only the end of the stream reveals (call once, after the last push)."""
        new: list[int] = []
        if self._next is None:
            return new
        end = self._next
        if self.method == "adaptive" and self._last_small is not None:
            # AdaptiveDetector judges frame j once it has seen j + window: pad with copies of the last frame
            # (no change), so that the last frames are judged too.
            for k in range(self.lag_frames):
                new += self._accept([c for c in self._process(end + k, self._last_small) if c < end])
        for detector in self._detectors():
            new += self._accept(_frame_indices(detector.post_process(_timecode(end - 1, self.fps))))
        return new

    def _detectors(self) -> list:
        return [d for d in (self._cut_detector, self._fade_detector) if d is not None]

    def _prepare(self, frame: np.ndarray) -> np.ndarray:
        """RGB frame -> downscaled BGR (scenedetect's detectors expect OpenCV's channel order)."""
        import cv2

        h, w = frame.shape[:2]
        k = max(1, int(round(max(h, w) / self.width)))
        if k > 1:
            # An integer factor: an exact box filter, OpenCV's fast path (3x faster than 7.5x at 1080p); the last
            # h % k rows and w % k columns are dropped.
            frame = cv2.resize(frame[:h // k * k, :w // k * k], (w // k, h // k), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR)

    def _process(self, index: int, small: np.ndarray) -> list[int]:
        """The cuts both detectors report after seeing frame `index`."""
        found: list[int] = []
        for detector in self._detectors():
            found += _frame_indices(detector.process_frame(_timecode(index, self.fps), small))
        return found

    def _accept(self, found: list[int]) -> list[int]:
        """Keep the cuts at least min_shot_frames away from every cut reported so far (the two detectors can report
        the same boundary a few frames apart, and in either order)."""
        new = []
        for cut in sorted(found):
            if all(abs(cut - c) >= self.min_shot_frames for c in self.cuts):
                self.cuts.append(cut)
                self.cuts.sort()
                new.append(cut)
        return new


def _cut_detector(method: str, threshold: float | None, window: int, min_content: float):
    from scenedetect.detectors import AdaptiveDetector, ContentDetector

    # min_scene_len=0: the minimum shot length is applied by ShotDetector._accept, which also allows a cut in the
    # first frames of the stream (scenedetect counts min_scene_len from the first frame it sees).
    if method == "content":
        kwargs = {} if threshold is None else {"threshold": float(threshold)}
        return ContentDetector(min_scene_len=0, **kwargs)
    kwargs = {} if threshold is None else {"adaptive_threshold": float(threshold)}
    return AdaptiveDetector(min_scene_len=0, window_width=window, min_content_val=min_content, **kwargs)


def _fade_detector(level: float):
    from scenedetect.detectors import ThresholdDetector

    # fade_bias=+1: the cut is the first frame above `level` again, reported when that frame is processed.
    return ThresholdDetector(threshold=level, min_scene_len=0, fade_bias=1.0)


# scenedetect 0.6 numbers frames with ints; 0.7 moved its detectors to FrameTimecode (and requires opencv-python,
# see pyproject.toml). These helpers keep ShotDetector working with either.
@functools.lru_cache(maxsize=None)
def _uses_timecodes() -> bool:
    import scenedetect

    return not scenedetect.__version__.startswith("0.6")


def _timecode(index: int, fps: float):
    if not _uses_timecodes():
        return index
    from scenedetect import FrameTimecode

    return FrameTimecode(index, fps=fps)


def _frame_indices(found) -> list[int]:
    return [int(getattr(c, "frame_num", c)) for c in found]


class ShotStage(Stage):
    """The chain's shot boundaries: `shot_start` [N] bool, True where a new shot starts at this frame (a cut right
    before it). A batch is held until `lag_frames` frames past it have been seen, so its answer is final when it
    leaves: the stages after it (tracks, alignment, smoothing) never learn of a cut too late.

    fps: only sets the default minimum shot length (the chain does not know the clip's rate: 25, 0.5 s = 12
    frames). The other arguments go to `ShotDetector`.
    """

    name = "shots"
    executor = "thread"
    reads = ("frames",)
    writes = (Key("shot_start", (), "bool", per_face=False, doc="a cut right before this frame: a new shot starts"),)

    def __init__(self, fps: float = 25.0, *, method: str = "adaptive", window: int = DEFAULT_WINDOW, **detector):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.detector_args = dict(fps=fps, method=method, window=window, **detector)
        self.lag_frames = window if method == "adaptive" else 0  # ShotDetector.lag_frames, without building it
        self._reset()

    @property
    def context_before(self) -> int:
        return self.lag_frames + 1  # a frame's score compares it with the one before, then with `window` scores

    @property
    def context_after(self) -> int:
        return self.lag_frames

    def _reset(self) -> None:
        self.detector: ShotDetector | None = None  # built in setup(): scenedetect is imported where it runs
        self.window = Window(after=self.lag_frames)
        self.cuts: set[int] = set()

    def setup(self) -> None:
        self._reset()
        self.detector = ShotDetector(**self.detector_args)

    def __call__(self, batch: FrameBatch) -> FrameBatch | None:
        if self.detector is None:
            self.setup()
        self.cuts.update(self.detector.push(batch.frames, int(batch.index[0])))
        self.window.push(batch)
        return one_batch([self._marked(b) for b in self.window.take()])

    def flush(self) -> list[FrameBatch]:
        if self.detector is not None:
            self.cuts.update(self.detector.finish())
        return [self._marked(b) for b in self.window.take(final=True)]

    def _marked(self, batch: FrameBatch) -> FrameBatch:
        out = batch.replace()
        out.data["shot_start"] = np.isin(np.asarray(batch.index, dtype=np.int64), list(self.cuts))
        return out
