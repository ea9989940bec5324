"""`sg3stream run --from ARTIFACTS` (issue 17): a re-edit from a run's recorded faces equals a full run with the
same edits, and refuses another input or options that would have made other faces."""
import json

import numpy as np
from typer.testing import CliRunner

from sg3stream.cli import app
from sg3stream.synthetic import face_frames, write_clip

from test_tracks_chain import decode

COMMON = ["--no-demo-label", "--landmark-workers", "1", "--n-iters", "1", "--log-format", "json"]


def run(*args, code: int = 0):
    result = CliRunner().invoke(app, ["run", *map(str, args), *COMMON])
    assert result.exit_code == code, result.output
    return result


def test_a_re_edit_from_artifacts_equals_a_full_run_with_the_new_edit(tmp_path):
    clip = write_clip(tmp_path / "in.mp4", face_frames(10, 320, 240, blank=(4,), cycle=48), fps=25, audio=None)
    run(clip, "-o", tmp_path / "smile.mp4", "--edit", "smile:8", "--artifacts", tmp_path / "art")
    run(clip, "-o", tmp_path / "age.mp4", "--edit", "age:-4")
    result = run(clip, "-o", tmp_path / "again.mp4", "--edit", "age:-4", "--from", tmp_path / "art")
    full, again = decode(tmp_path / "age.mp4"), decode(tmp_path / "again.mp4")
    assert np.array_equal(full, again)
    assert not np.array_equal(again, decode(tmp_path / "smile.mp4"))  # the new edit, not the recorded one
    summary = [json.loads(line) for line in result.output.splitlines() if '"summary"' in line][0]
    assert [s["name"] for s in summary["stages"]] == ["decode", "recorded", "edit", "render", "paste", "encode"]
    assert summary["faces"][0]["id"] == 0


def test_a_re_edit_refuses_another_input_and_options_that_made_other_faces(tmp_path):
    clip = write_clip(tmp_path / "in.mp4", face_frames(6, 320, 240, cycle=48), fps=25, audio=None)
    other = write_clip(tmp_path / "other.mp4", face_frames(6, 320, 240, cycle=24), fps=25, audio=None)
    run(clip, "-o", tmp_path / "a.mp4", "--artifacts", tmp_path / "art")
    refused = run(other, "-o", tmp_path / "b.mp4", "--from", tmp_path / "art", code=1)
    assert "another input (content" in refused.output
    refused = run(clip, "-o", tmp_path / "b.mp4", "--from", tmp_path / "art", "--align-smoothing", "3", code=1)
    assert "--align-smoothing was 1.0 in that run" in refused.output
    refused = run(clip, "-o", tmp_path / "b.mp4", "--from", tmp_path / "nothing", code=1)
    assert "not a run's artifacts folder" in refused.output
    assert not (tmp_path / "b.mp4").exists()


def test_the_matte_is_the_blend_frame_by_frame_and_only_the_face_changes(tmp_path):
    import av

    clip = write_clip(tmp_path / "in.mp4", face_frames(6, 320, 240, blank=(3,), cycle=48), fps=25, audio=None)
    run(clip, "-o", tmp_path / "out.mkv", "--edit", "smile:8", "--codec", "ffv1", "--matte", tmp_path / "m.mkv",
        "--artifacts", tmp_path / "art")
    with av.open(str(tmp_path / "m.mkv")) as c:
        stream = c.streams.video[0]
        frames = [f for f in c.decode(stream)]
        assert stream.codec_context.name == "ffv1" and frames[0].format.name == "gray16le"
        matte = np.stack([f.to_ndarray() for f in frames]).astype(float) / 65535
        times = [round(float(f.time), 3) for f in frames]
    with av.open(str(clip)) as c:  # aligned with the input and the output, frame by frame
        assert times == [round(float(f.time), 3) for f in c.decode(c.streams.video[0])]
    source, out = decode(clip), decode(tmp_path / "out.mkv")
    alignment = np.load(tmp_path / "art" / "alignment.npz")
    for i in range(6):
        if i == 3:  # no face: nothing blended
            assert matte[i].max() == 0
            continue
        landmarks = alignment["landmarks"][i, 0]
        x, y = np.nanmean(landmarks, axis=0).astype(int)
        assert matte[i, y, x] > 0.99  # the face's centre: all edit
        assert matte[i, :10].max() == 0 and matte[i, :, :10].max() == 0  # far away: all input
        changed = np.abs(out[i].astype(int) - source[i].astype(int)).mean(axis=-1)
        assert changed[matte[i] == 0].mean() < 1.0 < changed[matte[i] > 0.99].mean()


def test_a_matte_refuses_what_it_cannot_write(tmp_path):
    clip = write_clip(tmp_path / "in.mp4", face_frames(2, 160, 120), fps=25, audio=None)
    refused = run(clip, "-o", tmp_path / "o.mp4", "--matte", tmp_path / "m.mp4", code=1)
    assert "FFV1 into .mkv or .mov" in refused.output
    refused = run(clip, "-o", tmp_path / "o.mp4", "--matte", tmp_path / "m.mkv", "--output-mode", "crop", code=1)
    assert "--output-mode full" in refused.output
    assert not (tmp_path / "o.mp4").exists()


def test_the_layer_output_comped_over_the_input_is_the_full_output(tmp_path):
    import av

    clip = write_clip(tmp_path / "in.mp4", face_frames(5, 320, 240, cycle=48), fps=25, audio=None)
    run(clip, "-o", tmp_path / "full.mkv", "--edit", "smile:8", "--codec", "ffv1", "--matte", tmp_path / "m.mkv")
    run(clip, "-o", tmp_path / "layer.mkv", "--edit", "smile:8", "--output-mode", "layer")
    with av.open(str(tmp_path / "layer.mkv")) as c:
        assert c.streams.video[0].codec_context.name == "ffv1"
        rgba = np.stack([f.to_ndarray(format="rgba") for f in c.decode(video=0)]).astype(float)
    with av.open(str(tmp_path / "m.mkv")) as c:
        matte = np.stack([f.to_ndarray() for f in c.decode(video=0)]).astype(float) / 65535
    source, full = decode(clip).astype(float), decode(tmp_path / "full.mkv").astype(float)
    alpha = rgba[..., 3:] / 255
    np.testing.assert_allclose(alpha[..., 0], matte, atol=1 / 255 + 1e-6)  # one face: its alpha is the matte
    comp = rgba[..., :3] + source * (1 - alpha)  # "over", premultiplied
    face = matte > 0.5
    assert np.abs(comp - full).mean(axis=-1)[face].mean() < 1.5  # the full output, up to YUV rounding
    assert np.abs(comp - full).mean() < 1.0 and rgba[..., :3][matte == 0].max() == 0  # nothing outside the face


def test_the_layer_output_needs_a_container_with_alpha(tmp_path):
    clip = write_clip(tmp_path / "in.mp4", face_frames(2, 160, 120), fps=25, audio=None)
    refused = run(clip, "-o", tmp_path / "o.mp4", "--output-mode", "layer", code=1)
    assert "ProRes 4444 in .mov or FFV1 in .mkv" in refused.output
