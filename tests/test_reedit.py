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
