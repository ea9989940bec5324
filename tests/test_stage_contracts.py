"""Every stage reads only what it declares and writes what it declares, with the declared shapes and dtypes.

`run_strictly` runs a chain one stage at a time over a whole stream and hands each stage only the keys it declares
it reads (and a picture without pixels unless it reads "frames"), so that reading an undeclared key fails here
instead of in a chain that dropped it. The chain is the run's, on two faces per frame (tests/two_faces.py), with
the demo models: both faces are aligned, inverted, smoothed, edited, rendered and pasted.
"""
from fractions import Fraction

import numpy as np
import pytest
import torch

from sg3stream.align.stages import AlignStage, LandmarkStage
from sg3stream.edit.directions import Direction, Edit
from sg3stream.edit.smoothing import SmoothStage
from sg3stream.edit.stage import EditStage
from sg3stream.invert.stage import InvertStage
from sg3stream.models.bundle import Models
from sg3stream.models.components import make_components
from sg3stream.pipeline.batch import FrameBatch
from sg3stream.pipeline.contract import FRAMES, Chain, Key
from sg3stream.pipeline.stage import Stage
from sg3stream.render.expand import Expansion
from sg3stream.render.label import DemoLabelStage
from sg3stream.render.stages import PasteStage, RenderStage
from sg3stream.synthetic import face_frames

from two_faces import TwoFaceLandmarks, apply, batches, photo_landmarks, placement, two_face_clip

N = 6
BATCH = 3
MISSING = 3  # slot 1's face is not detected in this frame (bridged: aligned, but neither inverted nor pasted)


def rows(value, which):
    """The rows (frames) `which` of a key's value: an array, or a dict of arrays (style_offsets)."""
    return {name: v[which] for name, v in value.items()} if isinstance(value, dict) else value[which]


def check_shape(key: Key, value, sizes: dict, frames: int) -> None:
    """`value` has the declared dtype and shape [N, (F,) *shape]; symbolic sizes must agree across keys."""
    if isinstance(value, dict):  # {name: array} (style_offsets): each entry has the item axes, sizes of its own
        for entry in value.values():
            check_shape(Key(key.name, key.shape, key.dtype, key.per_face), entry, dict(sizes), frames)
        return
    assert str(value.dtype) == key.dtype, (key.name, value.dtype)
    expected = (frames,) + (("F",) if key.per_face else ()) + tuple(key.shape)
    assert len(value.shape) == len(expected), (key.name, value.shape, expected)
    for size, want in zip(value.shape, expected):
        if isinstance(want, str):
            want = sizes.setdefault(want, size)
        assert size == want, (key.name, value.shape, expected, sizes)


def run_strictly(stages, stream: list[FrameBatch], sink_reads=("frames",)) -> tuple[np.ndarray, dict, Chain]:
    """The stream through `stages`, each seeing only its declared reads; returns the frames and every key written
    (over the whole stream), and the chain."""
    chain = Chain(stages, sink_reads=sink_reads)  # the declarations fit together
    lengths = [len(b) for b in stream]
    index = np.concatenate([b.index for b in stream])
    frames = np.concatenate([b.frames for b in stream])
    store: dict = {}
    sizes: dict = {}
    for stage, link in zip(stages, chain.links):
        ins, start = [], 0
        for n in lengths:
            sl = slice(start, start + n)
            picture = frames[sl] if "frames" in link.reads else np.zeros((n, 0, 0, 3), np.uint8)
            data = {k: rows(store[k], sl) for k in link.reads if k != "frames"}
            ins.append(FrameBatch(picture, index[sl], index[sl], Fraction(1, 25), data=data))
            start += n
        stage.setup()
        try:
            outs = [o for o in (stage(b) for b in ins) if o is not None] + stage.flush()
        finally:
            stage.close()
        assert np.concatenate([o.index for o in outs]).tolist() == index.tolist(), link.name
        declared = {k.name for k in link.writes}
        for o in outs:
            assert set(o.data) <= set(link.reads) | declared, (link.name, set(o.data) - set(link.reads) - declared)
            assert declared - {"frames"} <= set(o.data), (link.name, declared - set(o.data))
        for key in link.writes:
            if key.name == FRAMES.name:
                frames = np.concatenate([o.frames for o in outs])
                continue
            values = [o.data[key.name] for o in outs]
            value = ({a: np.concatenate([v[a] for v in values]) for a in values[0]} if isinstance(values[0], dict)
                     else np.concatenate(values))
            check_shape(key, value, sizes, len(index))
            store[key.name] = value
    return frames, store, chain


@pytest.fixture(scope="module")
def photo_lm():
    return photo_landmarks()


@pytest.fixture(scope="module")
def clip(photo_lm):
    frames, landmarks = two_face_clip(N, photo_lm)
    landmarks[MISSING, 1] = np.nan
    return frames, landmarks


@pytest.fixture(scope="module")
def models():
    """The demo's inverter and renderer, as the run makes them (eager torch, on the CPU)."""
    return make_components(Models(device="cpu"))


def edits(models) -> list[Edit]:
    """A W edit and a StyleSpace edit, so that both paths carry the face axis."""
    g = models[1].generator
    with torch.no_grad():
        styles = g.synthesis.styles(g.mapping(torch.zeros(1, g.z_dim), None))
    layer = next(iter(styles))
    rng = np.random.default_rng(0)
    return [Edit(Direction("w", w=rng.normal(size=(g.num_ws, g.w_dim)).astype(np.float32)), 2.0),
            Edit(Direction("s", s={layer: np.eye(styles[layer].shape[1], dtype=np.float32)[0]}), 3.0)]


def model_stages(models, mode="full"):
    """Inversion to paste, with the demo models (one ReStyle iteration: the test is about shapes and slots)."""
    inverter, renderer = models
    return [InvertStage(inverter, n_iters=1), SmoothStage(fine_window=3), EditStage(edits(models)),
            RenderStage(renderer, Expansion(), with_reconstruction=mode == "side-by-side"),
            PasteStage(renderer.resolution, Expansion(), mode=mode)]


@pytest.fixture(scope="module")
def chain_run(clip, models):
    frames, landmarks = clip
    stages = ([TwoFaceLandmarks(landmarks), AlignStage(align_smoothing=1.0, with_crop=False)]
              + model_stages(models) + [DemoLabelStage()])
    out, store, chain = run_strictly(stages, batches(frames, BATCH))
    return out, store, chain


def test_the_run_chain_reads_and_writes_only_what_it_declares_on_two_faces(clip, chain_run):
    frames, _ = clip
    out, store, chain = chain_run
    assert out.shape == frames.shape
    assert store["latents"].shape[:2] == (N, 2) and store["render"].shape[:2] == (N, 2)
    drops = {link.name: link.drops for link in chain.links}
    assert "landmarks" in drops["align"]  # the 478 landmarks go right after alignment
    assert "face_outline" in drops["paste"] and "crop_quad" in drops["paste"]


def test_both_faces_are_inverted_and_a_missing_one_is_empty(chain_run, models):
    _, store, _ = chain_run
    has = store["has_latents"]
    expected = np.ones((N, 2), bool)
    expected[MISSING, 1] = False
    np.testing.assert_array_equal(has, expected)
    assert np.isfinite(store["latents"][has]).all() and np.isnan(store["latents"][~has]).all()
    assert np.isfinite(store["latents_smoothed"][has]).all() and np.isnan(store["ws_edit"][~has]).all()
    assert (store["render"][~has] == 0).all() and (store["render"][has].reshape(has.sum(), -1).max(axis=1) > 0).all()
    # one call for the faces of both slots gives what slot 0 alone gives
    alone = InvertStage(models[0], n_iters=1)
    alone.setup()
    data = {k: store[k][:BATCH, :1] for k in ("aligned", "detected", "has_quad")}
    idx = np.arange(BATCH)
    single = alone(FrameBatch(np.zeros((BATCH, 0, 0, 3), np.uint8), idx, idx, Fraction(1, 25), data=data))
    np.testing.assert_allclose(single.data["latents"][:, 0], store["latents"][:BATCH, 0], atol=1e-4)


def test_paste_changes_the_frame_at_both_faces_known_places(clip, chain_run, photo_lm):
    frames, _ = clip
    out, _, _ = chain_run
    changed = np.abs(out.astype(int) - frames).sum(axis=-1) > 24
    for i in range(N):
        for slot in range(2):
            known = apply(placement(slot, i), photo_lm)
            (x0, y0), (x1, y1) = known.min(axis=0).astype(int), known.max(axis=0).astype(int)
            inside = changed[i, y0:y1, x0:x1].mean()
            if i == MISSING and slot == 1:
                assert inside == 0, "a face without latents is left as it is"
            else:
                assert inside > 0.5, (i, slot, inside)
        assert not changed[i, :15, :].any() and not changed[i, :150, 175:185].any()  # above and between the faces


class Given(Stage):
    """Stands for the stages before: writes the keys of a stream run before (`store`, over the whole stream)."""

    name = "given"

    def __init__(self, store: dict, keys: tuple[Key, ...]):
        self.store, self.writes = store, keys

    def __call__(self, batch: FrameBatch) -> FrameBatch:
        out = batch.replace()
        out.data.update({key.name: rows(self.store[key.name], batch.index) for key in self.writes})
        return out


@pytest.mark.parametrize("mode", ["crop", "side-by-side"])
def test_the_crop_modes_read_what_they_declare(clip, chain_run, models, mode):
    frames, _ = clip
    _, store, chain = chain_run
    given = Given(store, tuple(chain.keys[k] for k in ("has_latents", "crop_quad", "latents_smoothed",
                                                         "transform_smoothed", "ws_edit", "style_offsets")))
    stages = [given] + model_stages(models, mode)[3:]  # render (with the reconstruction for side-by-side), paste
    out, _, _ = run_strictly(stages, batches(frames, BATCH))
    res = models[1].resolution
    assert out.shape == (N, res, res * (3 if mode == "side-by-side" else 1), 3)


def test_landmarks_and_alignment_read_only_what_they_declare(tmp_path):
    """The real landmark stage (one face slot), and alignment writing alignment.npz (it reads landmark_source)."""
    frames = np.stack(list(face_frames(N, 160, 120)))
    stages = [LandmarkStage(workers=1), AlignStage(size=64, crop_size=32, artifacts_dir=tmp_path)]
    _, store, chain = run_strictly(stages, batches(frames, BATCH), sink_reads=("frames", "crop"))
    assert "landmark_source" in chain.links[1].reads
    assert store["landmarks"].shape == (N, 1, 478, 2) and store["crop"].shape == (N, 1, 32, 32, 3)
    assert store["has_quad"].all()
    assert np.load(tmp_path / "alignment.npz")["landmarks"].shape == (N, 1, 478, 2)  # with its face axis


def test_run_strictly_catches_a_stage_that_reads_or_writes_what_it_does_not_declare():
    class ReadsMore(Stage):
        name = "reads_more"
        reads = ("a",)
        writes = (Key("b", (), "float32", per_face=False),)

        def __call__(self, batch):
            out = batch.replace()
            out.data["b"] = batch.data["a"] + batch.data["landmarks"]
            return out

    class WritesMore(ReadsMore):
        name = "writes_more"

        def __call__(self, batch):
            out = batch.replace()
            out.data.update(b=batch.data["a"], c=batch.data["a"])
            return out

    given = Given({"a": np.zeros(4, np.float32), "landmarks": np.zeros(4, np.float32)},
                  (Key("a", (), "float32", per_face=False), Key("landmarks", (), "float32", per_face=False)))
    stream = [FrameBatch(np.zeros((4, 1, 1, 3), np.uint8), np.arange(4), np.arange(4), Fraction(1, 25))]
    with pytest.raises(KeyError, match="landmarks"):
        run_strictly([given, ReadsMore()], stream)
    with pytest.raises(AssertionError, match="writes_more"):
        run_strictly([given, WritesMore()], stream)
