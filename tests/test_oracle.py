"""The oracle generator (`--generator oracle`): the input's own faces through the pipeline, to measure what the
pipeline itself loses; and the fidelity bench built on it."""
import json
from fractions import Fraction

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sg3stream.align.transforms import render_with_transform, transform_from_params
from sg3stream.cli import app
from sg3stream.edit.smoothing import SmoothStage
from sg3stream.eval import evaluate
from sg3stream.models.oracle import OracleRenderer
from sg3stream.pipeline.batch import FrameBatch
from sg3stream.synthetic import face_frames, face_photo, write_clip

FRAMES = 32


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory):
    """A face moving smoothly (one cycle of face_frames' motion over the clip), through the oracle at the default
    settings."""
    folder = tmp_path_factory.mktemp("oracle")
    clip = write_clip(folder / "face.mp4", face_frames(FRAMES, 480, 360), fps=25, options={"crf": "12"})
    result = invoke("run", clip, "-o", folder / "out.mp4", "--generator", "oracle", "--artifacts", folder / "art",
                    "--landmark-workers", "1")
    assert result.exit_code == 0, result.output
    return clip, folder, result.output


def test_the_oracle_gives_the_face_back_within_the_pipelines_own_loss(oracle_run):
    clip, folder, _ = oracle_run
    result = evaluate(clip, folder / "out.mp4", artifacts=folder / "art", id_model=False)
    assert result.summary["frames_with_face"] == FRAMES
    # measured 34.7 dB, worst frame 32.6 (resampling and encoding alone: about 38); before the smoothing kept its
    # kernel symmetric at the clip's ends: 31.5 dB, and 21.6 at the last frame
    assert result.summary["psnr_face"] >= 30, result.summary
    assert min(result.per_frame["psnr_face"]) >= 30, result.per_frame["psnr_face"]


def test_the_run_says_the_oracle_was_used(oracle_run):
    _, folder, output = oracle_run
    assert "generator: the oracle" in output
    run = json.loads((folder / "art" / "run.json").read_text())
    assert run["options"]["generator"] == "oracle"
    assert run["acceleration"]["engine"] == "oracle"
    assert any("the oracle" in w for w in run["warnings"])
    assert json.loads((folder / "art" / "edits.json").read_text())["generator"] == "oracle"


@pytest.mark.parametrize("extra", [["--edit", "smile"], ["--pti-steps", "10"]])
def test_edits_and_tuning_are_refused_in_one_line_before_any_frame_is_decoded(tmp_path, extra):
    # the input does not exist: any attempt to open it would fail with another message
    result = invoke("run", tmp_path / "missing.mp4", "-o", tmp_path / "out.mp4", "--generator", "oracle", *extra)
    assert result.exit_code in (1, 2), result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "--generator oracle" in lines[0], result.output
    assert not (tmp_path / "out.mp4").exists()


def test_the_oracle_renders_as_the_generator_transform_says():
    """out(p) = aligned(T p): what align/transforms.py says a generator renders (render_with_transform)."""
    face = np.ascontiguousarray(face_photo()[72:328, 72:328])  # 256x256
    renderer = OracleRenderer(256)
    t = transform_from_params(np.array([12.0]), np.array([[0.05, -0.03]]), np.array([1.1])).astype(np.float32)
    for transform in (np.eye(3, dtype=np.float32)[None], t):
        out = renderer.render(torch.from_numpy(face[None]), torch.from_numpy(transform))
        out = ((out[0].permute(1, 2, 0).numpy() + 1) * 127.5).round()
        expected = render_with_transform(face, transform[0]).astype(np.float64)
        inner = (slice(40, 216), slice(40, 216))  # away from the black beyond the aligned crop
        assert np.abs(out[inner] - expected[inner]).mean() < 2.0  # bicubic against bilinear
    identity = renderer.render(torch.from_numpy(face[None]), torch.eye(3)[None])
    np.testing.assert_allclose(((identity[0].permute(1, 2, 0).numpy() + 1) * 127.5), face, atol=0.51)


def test_steady_motion_keeps_its_transform_at_the_clips_ends_and_next_to_gaps():
    """The smoothing's kernel stays symmetric where taps are missing: on steady motion the smoothed transform is the
    frame's own, so the render stays on the face (a one-sided average would lag behind it)."""
    n = 20
    i = np.arange(n, dtype=np.float64)
    angles, translations, scales = 2.0 * i - 15, np.stack([0.01 * i, -0.005 * i], 1), 1 + 0.002 * i
    valid = np.ones(n, bool)
    valid[12] = False  # a frame without a face
    stage = SmoothStage(sigma=1.0)
    out = []
    for start in range(0, n, 6):
        sl = slice(start, min(start + 6, n))
        idx = np.arange(start, sl.stop)
        batch = FrameBatch(np.zeros((len(idx), 2, 2, 3), np.uint8), idx, idx, Fraction(1, 25), data={
            "latents": np.zeros((len(idx), 1, 16, 4), np.float32), "has_latents": valid[sl, None],
            "rotation_deg": angles[sl, None], "translation": translations[sl, None], "scale": scales[sl, None]})
        out += [b for b in [stage(batch)] if b is not None]
    out += stage.flush()
    smoothed = np.concatenate([b.data["transform_smoothed"][:, 0] for b in out])
    expected = transform_from_params(angles, translations, scales)
    np.testing.assert_allclose(smoothed[valid], expected[valid], atol=1e-4)
    assert np.isnan(smoothed[12]).all()


def test_the_fidelity_bench_reports_a_row_per_clip_and_setting(monkeypatch):
    from sg3stream.bench import fidelity

    monkeypatch.setattr(fidelity, "CLIPS", {"slow": fidelity.CLIPS["slow"]})
    monkeypatch.setattr(fidelity, "SETTINGS", {k: fidelity.SETTINGS[k] for k in ("defaults", "--crop fixed")})
    result = invoke("bench", "--json", "--sections", "fidelity", "--frames", "6")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["fidelity"]
    assert [(r["clip"], r["setting"]) for r in rows] == [("slow", "defaults"), ("slow", "--crop fixed")]
    for row in rows:
        assert row["frames"] == 6
        assert row["psnr_face"] >= 30 and row["psnr_face_min"] <= row["psnr_face"] + 1e-9
        assert row["warp_error_added"] is not None and row["seam"] > 0
