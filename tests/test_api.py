"""The Python API (sg3stream/api.py) on a generated clip: frames of the input's size with their faces, lazy
reading, an early close that leaves nothing running, and the same frames as `sg3stream run`."""
import multiprocessing
import threading
import time

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from sg3stream import Editor
from sg3stream.chain import frame_budget, plan_chain
from sg3stream.cli import app
from sg3stream.errors import UserError
from sg3stream.options import RunOptions
from sg3stream.synthetic import face_frames, write_clip

# Small and quick: one landmark process, one ReStyle iteration, a short fine-layer window.
OPTIONS = dict(landmark_workers=1, n_iters=1, fine_window=8, batch_size=4)
SIZE = (160, 120)


@pytest.fixture(scope="module")
def editor():
    return Editor(**OPTIONS)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("api") / "face.mp4", face_frames(12, *SIZE), fps=25)


def test_edit_gives_frames_of_the_input_size_with_their_faces(editor):
    frames = list(face_frames(12, *SIZE))
    with editor.edit(iter(frames), edits=["smile"], fps=25) as stream:
        edited = list(stream)
    assert [f.index for f in edited] == list(range(12))
    assert [f.pts for f in edited] == list(range(12)) and edited[5].time == pytest.approx(5 / 25)
    assert all(f.image.shape == (SIZE[1], SIZE[0], 3) and f.image.dtype == np.uint8 for f in edited)
    with_face = [f for f in edited if f.faces]
    assert len(with_face) >= 10
    face = with_face[0].faces[0]
    assert face.slot == 0 and face.track == 0 and face.quad.shape == (4, 2) and face.crop_quad.shape == (4, 2)
    assert face.transform.shape == (3, 3) and face.latent.shape == face.edited_latent.shape == (16, 512)
    assert np.abs(face.edited_latent - face.latent).max() > 0  # the edit moved the code
    changed = np.mean([np.abs(f.image.astype(int) - frames[f.index]).mean() for f in with_face])
    assert changed > 1  # the face was replaced (the demo renders a random face)


def test_edit_is_lazy_and_an_early_close_leaves_no_thread_or_process(editor):
    pulled = 0

    def source():
        nonlocal pulled
        for frame in face_frames(400, *SIZE):
            pulled += 1
            yield frame

    threads = set(threading.enumerate())
    stream = editor.edit(source(), edits=["smile"], fps=25)
    assert pulled == 0 and set(threading.enumerate()) == threads  # nothing runs before the first frame is asked for
    with stream:
        first = [next(stream) for _ in range(8)]
        # while the caller does not read, the chain waits on it, which the stall watchdog must not count
        sink = stream._run.pipeline.workers[-1]
        deadline = time.monotonic() + 60
        while sink.busy_since is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sink.busy_since is None
    assert [f.index for f in first] == list(range(8))
    budget = frame_budget(RunOptions(None, None, **OPTIONS), plan_chain(RunOptions(None, None, **OPTIONS)))
    # what was read: the frames handed over, the chain's frame budget, a batch at the source and one handed over
    assert pulled <= 8 + budget + 2 * OPTIONS["batch_size"] < 200, (pulled, budget)
    print(f"pulled {pulled} of 400 frames for 8 edited (frame budget {budget})")
    assert set(threading.enumerate()) <= threads
    assert multiprocessing.active_children() == []
    with pytest.raises(StopIteration):
        next(stream)


def test_edit_refuses_what_it_cannot_stream(editor, clip):
    with pytest.raises(UserError, match="fps"):
        editor.edit(face_frames(2, *SIZE))
    with pytest.raises(UserError, match="uint8"):
        list(editor.edit([np.zeros((8, 8, 3), np.float32)], fps=25))
    with pytest.raises(UserError, match="needs a video file"):
        editor.edit(face_frames(2, *SIZE), fps=25, pti_steps=2)
    with pytest.raises(UserError, match="unknown edit 'frown'"):
        editor.edit(clip, edits=["frown"])


def test_the_api_gives_the_frames_the_command_line_encodes(editor, clip, tmp_path, monkeypatch):
    from sg3stream.video.encode import VideoWriter

    encoded = []
    write = VideoWriter.write

    def keep(self, batch):
        if self.into is None:  # not the trial encode in memory that checks the options
            encoded.extend(batch.frames.copy())
        return write(self, batch)

    monkeypatch.setattr(VideoWriter, "write", keep)
    args = [f"--{k.replace('_', '-')}={v}" for k, v in OPTIONS.items()]
    result = CliRunner().invoke(app, ["run", str(clip), "-o", str(tmp_path / "cli.mp4"), "--edit", "smile:2",
                                      "--edit-ramp", *args])
    assert result.exit_code == 0, result.output

    with editor.edit(clip, edits=["smile:2"], edit_ramp=True) as stream:
        edited = [f.image for f in stream]
    assert len(edited) == len(encoded) == 12
    difference = np.abs(np.stack(edited).astype(int) - np.stack(encoded))
    print(f"API vs command line, before encoding: max difference {difference.max()}, mean {difference.mean():.4f}")
    assert difference.max() == 0  # the same chain, the same models, the same batches: the same frames

    # Editor.run is the command line's run with the Editor's models (not loaded again): the same file
    from sg3stream import job

    monkeypatch.setattr(job, "load_models", lambda options: pytest.fail("the Editor's models were loaded again"))
    summary = editor.run(clip, tmp_path / "api.mp4", edits=["smile:2"], edit_ramp=True)
    assert summary["frames"] == 12
    assert np.array_equal(decoded(tmp_path / "api.mp4"), decoded(tmp_path / "cli.mp4"))


def decoded(path):
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
