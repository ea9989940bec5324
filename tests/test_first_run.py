"""What a new user meets first: options checked before any model loads, --version, plain help, the demo label,
and no trace of a failed run."""
import av
import numpy as np
import pytest
from typer.testing import CliRunner

from sg3stream.cli import app
from sg3stream.edit.directions import parse_edit
from sg3stream.errors import UserError
from sg3stream.render.label import draw_label, label_box
from sg3stream.synthetic import face_frames, numbered_frame, write_clip


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def clip(tmp_path):
    return write_clip(tmp_path / "in.mp4", (numbered_frame(i, 96, 64) for i in range(4)), fps=24)


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip") / "face.mp4", face_frames(6, 320, 240), fps=24)


@pytest.fixture
def no_model_loads(monkeypatch):
    """Fail the test if any model starts loading."""
    from sg3stream.models import bundle

    def refuse(self):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr(bundle.Models, "_load", refuse)


@pytest.mark.parametrize("args, message", [
    (["--edit", "smile:lots"], "strength 'lots' is not a number"),
    (["--edit", "frown"], "unknown edit 'frown'"),
    (["--edit", "missing.npy"], "edit direction file not found"),
    (["--edit", "s:L3:x"], "s:LAYER:CHANNEL"),
    (["--crop", "wobble"], "--crop must be one of"),
    (["--device", "gpu"], "--device must be"),
    (["--engine", "jax"], "--engine must be one of"),
    (["--decoder", "ffmpeg"], "--decoder must be one of"),
    (["--output-mode", "grid"], "--output-mode must be one of"),
    (["--n-iters", "0"], "--n-iters must be at least 1"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--pti-lr", "0"], "--pti-lr must be positive"),
    (["--expand", "1,2"], "--expand"),
    (["--save-generator", "g.safetensors"], "go with --pti-steps"),
    (["--log-format", "xml"], "--log-format must be one of"),
])
def test_bad_options_fail_in_one_line_before_any_model_loads(clip, tmp_path, no_model_loads, args, message):
    result = invoke("run", clip, "-o", tmp_path / "out.mp4", *args)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_edit_values_parse_names_strengths_paths_and_channels():
    assert parse_edit("smile") == ("smile", 3.0)
    assert parse_edit("age:-2") == ("age", -2.0)
    assert parse_edit("dirs/x.npy:1.5") == ("dirs/x.npy", 1.5)
    assert parse_edit("C:/dirs/x.npy") == ("C:/dirs/x.npy", 3.0)
    assert parse_edit("s:L6_148_512:12") == ("s:L6_148_512:12", 3.0)
    assert parse_edit("s:L6_148_512:12:-1") == ("s:L6_148_512:12", -1.0)
    for bad in ("smile:lots", "smile:nan", "smile:inf", ":2", "", "s:L6:12:x"):
        with pytest.raises(UserError):
            parse_edit(bad)


def test_version_and_plain_help():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.startswith("sg3stream ")
    for command in (["run"], ["probe"], ["generate"], ["bench"], ["models", "list"], ["farm", "run"]):
        text = invoke(*command, "--help").output
        assert "Usage:" in text
        for typed in ("<bool>", "<str>", "<int>", "<path>", "list["):
            assert typed not in text, (command, typed)


def test_a_failed_run_leaves_no_artifacts_folder(clip, tmp_path):
    """The clip has no face: the run fails after the models load and the stages wrote their first files."""
    result = invoke("run", clip, "-o", tmp_path / "out.mp4", "--artifacts", tmp_path / "new" / "art",
                    "--landmark-workers", "1")
    assert result.exit_code == 1 and "no face" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_a_failed_run_keeps_an_artifacts_folder_that_was_there(clip, tmp_path):
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "notes.txt").write_text("mine")
    result = invoke("run", clip, "-o", tmp_path / "out.mp4", "--artifacts", tmp_path / "art", "--landmark-workers", "1")
    assert result.exit_code == 1
    assert [p.name for p in (tmp_path / "art").iterdir()] == ["notes.txt"]


def test_the_label_sits_in_the_bottom_left_corner_and_fits_the_frame():
    for h, w in ((64, 96), (240, 320), (1080, 1920)):
        frame = np.full((h, w, 3), 128, np.uint8)
        x0, y0, x1, y1, _, _ = label_box(h, w)
        changed = (draw_label(frame) != frame).any(-1)
        assert x0 == 0 and y1 == h and 0 < x1 <= w and y0 > h * 0.8
        ys, xs = np.nonzero(changed)
        assert ys.min() == y0 and xs.max() < x1  # nothing drawn outside the box
        assert changed[y0:y1, x0:x1].all() or changed[y0:y1, x0:x1].mean() > 0.5


def decode(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]), dict(c.metadata)


def test_demo_outputs_say_so_in_the_picture_and_in_the_file(face_clip, tmp_path):
    labelled, plain = tmp_path / "labelled.mp4", tmp_path / "plain.mp4"
    for out, extra in ((labelled, []), (plain, ["--no-demo-label"])):
        result = invoke("run", face_clip, "-o", out, "--landmark-workers", "1", *extra)
        assert result.exit_code == 0, result.output
        assert "demo model" in result.output
    src, _ = decode(face_clip)
    with_label, tags = decode(labelled)
    without_label, plain_tags = decode(plain)
    x0, y0, x1, y1, _, _ = label_box(240, 320)
    box = (slice(None), slice(y0 + 2, y1 - 2), slice(x0 + 2, x1 - 2))
    assert np.abs(without_label[box].astype(int) - src[box]).mean() < 3  # no face there: the input, encoded
    assert with_label[box].mean() < src[box].mean() - 20  # dark caption box with white text
    assert (with_label[box] > 200).any()
    outside = (slice(None), slice(0, y0 - 4))
    assert np.abs(with_label[outside].astype(int) - without_label[outside]).mean() < 2.5  # elsewhere: encoder noise
    assert "demo" in tags.get("comment", "") and "demo" in plain_tags.get("comment", "")
