"""`sg3stream eval`: the scores on generated clips with known changes, its errors, its JSON and its plot.

Most tests give the face region as masks (no mediapipe); one runs the command as a user would, with the mediapipe
landmarks. TL-ID / TG-ID run through a tiny ArcFace-shaped ONNX model built here (the plumbing, not the network).
"""
import importlib.util
import json
import warnings

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from sg3stream.cli import app
from sg3stream.errors import UserError
from sg3stream.eval import EvalResult, evaluate
from sg3stream.eval import metrics
from sg3stream.eval.identity import dlib_model_folder
from sg3stream.eval.perceptual import find_lpips_weights
from sg3stream.synthetic import face_frames, write_clip

W, H, T = 320, 240, 10
KEYS = {"frames", "frames_with_face", "psnr_face", "ssim_face", "psnr_outside", "warp_error",
        "warp_error_reference", "tl_id", "tg_id", "seam", "lpips_face", "notes"}


def cli(*args):
    return CliRunner().invoke(app, ["eval", *map(str, args)])


@pytest.fixture(scope="module")
def clip():
    return np.stack(list(face_frames(T, W, H)))


@pytest.fixture(scope="module")
def masks():
    """A fixed ellipse over the middle of the frame, where the generated face moves."""
    m = np.zeros((H, W), np.uint8)
    cv2.ellipse(m, (W // 2, H // 2), (W // 8, H // 4), 0, 0, 360, 1, -1)
    return np.repeat(m[None] > 0, T, axis=0)


@pytest.fixture(scope="module")
def id_model(tmp_path_factory):
    """A tiny network with ArcFace's interface: [N, 3, 112, 112] -> [N, 16]."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, stride=4), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, stride=2),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("idmodel") / "tiny_arcface.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter (no onnxscript needed) says it is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, torch.zeros(1, 3, 112, 112), str(path), input_names=["input"],
                          output_names=["embedding"], dynamic_axes={"input": {0: "n"}, "embedding": {0: "n"}},
                          dynamo=False)
    return path


def add_in_mask(frames, mask, deltas):
    out = frames.astype(np.int16)
    for t, d in enumerate(deltas):
        out[t][mask[t]] += d
    return np.clip(out, 0, 255).astype(np.uint8)


def test_identical_videos_score_perfectly(tmp_path, clip, masks, id_model):
    path = write_clip(tmp_path / "ref.mp4", clip, audio=None)
    seen = []
    r = evaluate(path, path, face_masks=masks, id_model=id_model, progress=lambda done, total: seen.append(done))
    s = r.summary
    assert (s["frames"], s["frames_with_face"]) == (T, T)
    assert s["psnr_face"] == s["psnr_outside"] == 100.0
    assert s["ssim_face"] == pytest.approx(1.0, abs=1e-6)
    assert s["warp_error"] == s["warp_error_reference"]  # no added flicker
    assert 0 < s["warp_error_reference"] < 0.02  # the generated motion is smooth: the flow explains it
    assert s["tl_id"] == pytest.approx(1.0, abs=1e-9) and s["tg_id"] == pytest.approx(1.0, abs=1e-9)
    assert s["seam"] == 1.0
    if find_lpips_weights() is None:
        assert s["lpips_face"] is None and any(n.startswith("lpips_face") for n in s["notes"])
    assert all(len(v) == T for v in r.per_frame.values())
    assert r.per_frame["warp_error"][0] is None and r.per_frame["warp_error"][1] is not None
    assert r.per_frame["psnr_face"] == [100.0] * T
    assert seen[-1] == T


def test_flicker_and_steady_change_score_the_same_psnr_but_not_the_same_warp_error(clip, masks):
    steady = add_in_mask(clip, masks, [6] * T)
    flicker = add_in_mask(clip, masks, [6 if t % 2 else -6 for t in range(T)])
    a = evaluate(clip, steady, face_masks=masks, id_model=False).summary
    b = evaluate(clip, flicker, face_masks=masks, id_model=False).summary
    assert abs(a["psnr_face"] - b["psnr_face"]) < 0.5
    assert a["psnr_outside"] == b["psnr_outside"] == 100.0  # nothing changed outside the face
    added_steady = a["warp_error"] - a["warp_error_reference"]
    added_flicker = b["warp_error"] - b["warp_error_reference"]
    assert added_flicker > 0.02  # about 12 / 255 from frame to frame
    assert added_flicker > 10 * abs(added_steady)


def test_a_shifted_paste_raises_seam(clip, masks):
    shifted = clip.copy()
    for t in range(T):
        moved = np.roll(clip[t], (3, 4), axis=(0, 1))  # the face pasted 4 px right and 3 down of where it belongs
        shifted[t][masks[t]] = moved[masks[t]]
    r = evaluate(clip, shifted, face_masks=masks, id_model=False)
    assert r.summary["seam"] > 1.2
    assert all(v > 1.0 for v in r.per_frame["seam"])
    assert evaluate(clip, clip, face_masks=masks, id_model=False).summary["seam"] == 1.0
    blurred = clip.copy()  # an edge that lost its detail reads below 1
    for t in range(T):
        soft = cv2.GaussianBlur(clip[t], (0, 0), 2)
        blurred[t][masks[t]] = soft[masks[t]]
    assert evaluate(clip, blurred, face_masks=masks, id_model=False).summary["seam"] < 0.9


def test_blend_weights_leave_the_feathered_edge_out_of_both_regions(clip, masks):
    # a float mask is read as paste's blend weight: face where >= 0.5, outside where below 1/510
    weight = np.stack([cv2.GaussianBlur(m.astype(np.float32), (0, 0), 3) for m in masks])
    pasted = np.rint(clip * (1 - weight[..., None]) + np.roll(clip, 2, axis=2) * weight[..., None]).astype(np.uint8)
    s = evaluate(clip, pasted, face_masks=weight, id_model=False).summary
    assert s["psnr_outside"] == 100.0 and s["psnr_face"] < 40


def test_the_face_region_is_the_region_paste_back_blends_into():
    from sg3stream.eval.regions import paste_weight
    from sg3stream.render.paste import face_mask

    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    for radius in (30, 90):
        outline = np.stack([200 + radius * np.cos(angles + 0.3), 220 + 1.3 * radius * np.sin(angles + 0.3)], axis=1)
        weight, (x0, y0, x1, y1) = paste_weight((480, 400), outline)
        paste = face_mask((480, 400), outline.astype(np.float32))  # what `run` blends with
        assert paste[y0:y1, x0:x1].sum() > paste.sum() - 1e-3  # nothing of it outside the box
        exact = paste[y0:y1, x0:x1]
        assert np.abs(weight - exact).max() < 0.1
        perimeter = 2 * np.pi * 1.15 * radius * 1.2
        for level in (0.5, 1 / 510):  # the face and the near zone differ by less than a pixel along their edge
            assert np.count_nonzero((weight >= level) != (exact >= level)) < perimeter


def test_mismatched_inputs_are_refused_in_one_line(tmp_path, clip):
    ref = write_clip(tmp_path / "ref.mp4", clip, audio=None)
    short = write_clip(tmp_path / "short.mp4", clip[:T - 2], audio=None)
    small = write_clip(tmp_path / "small.mp4", [f[:H // 2, :W // 2] for f in clip], audio=None)
    for other, said in ((short, f"has {T} frames, EDITED {short} has {T - 2}"),
                        (small, f"is {W}x{H}, EDITED {small} is {W // 2}x{H // 2}")):
        result = cli(ref, other)
        assert result.exit_code == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: REFERENCE") and said in lines[0], result.stderr
    with pytest.raises(UserError, match=f"has {T} frames, EDITED frames has {T - 1}"):  # a length known at the end
        evaluate(list(clip), iter(list(clip[:T - 1])), face_masks=np.ones((T, H, W), bool), id_model=False)


def test_a_bad_id_model_is_refused_before_any_work(tmp_path, clip):
    ref = write_clip(tmp_path / "ref.mp4", clip[:2], audio=None)
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    for model, said in ((tmp_path / "missing.onnx", "no such file"), (tmp_path / "bad.onnx", "not a loadable ONNX")):
        result = cli(ref, ref, "--id-model", model)
        assert result.exit_code == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and said in lines[0], result.stderr


def test_a_runs_alignment_npz_gives_the_face_region(tmp_path, clip, id_model):
    # landmarks on an ellipse around the middle (their hull is the region); one frame has no face, one no row
    angles = np.linspace(0, 2 * np.pi, 478, endpoint=False)
    ring = np.stack([W / 2 + 30 * np.cos(angles), H / 2 + 45 * np.sin(angles)], axis=1).astype(np.float32)
    landmarks = np.repeat(ring[None, None], T - 1, axis=0)  # [N, F=1, 478, 2]: the format with a face axis
    landmarks[3] = np.nan
    np.savez(tmp_path / "alignment.npz", frame_index=np.arange(T - 1), landmarks=landmarks)
    edited = clip.copy()
    edited[:, :10] = 0  # a change far from the face: only the outside sees it
    r = evaluate(clip, edited, artifacts=tmp_path, id_model=id_model)
    s = r.summary
    assert s["frames_with_face"] == T - 2 and s["psnr_face"] == 100.0 and s["psnr_outside"] < 40
    assert r.face_source == "alignment.npz" and r.per_frame["psnr_face"][3] is None
    assert s["tl_id"] == pytest.approx(1.0, abs=1e-3) and any("no row for 1 of the" in n for n in s["notes"])
    np.savez(tmp_path / "alignment.npz", frame_index=np.arange(T + 5), landmarks=np.repeat(ring[None], T + 5, 0))
    with pytest.raises(UserError, match=f"covers {T + 5} frames, the videos have {T}"):
        evaluate(clip, clip, artifacts=tmp_path, id_model=False)


def test_two_faces_in_a_frame_are_scored_together(tmp_path, clip):
    angles = np.linspace(0, 2 * np.pi, 478, endpoint=False)
    rings = [np.stack([cx + 25 * np.cos(angles), H / 2 + 35 * np.sin(angles)], axis=1) for cx in (W / 4, 3 * W / 4)]
    landmarks = np.repeat(np.stack(rings)[None].astype(np.float32), T, axis=0)  # [N, F=2, 478, 2]
    np.savez(tmp_path / "alignment.npz", frame_index=np.arange(T), landmarks=landmarks)
    edited = clip.copy()
    edited[:, int(H / 2) - 5:int(H / 2) + 5, int(3 * W / 4) - 5:int(3 * W / 4) + 5] = 0  # inside the second face
    s = evaluate(clip, edited, artifacts=tmp_path, id_model=False).summary
    assert s["frames_with_face"] == T and s["psnr_face"] < 40 and s["psnr_outside"] == 100.0


def test_without_a_recogniser_the_identity_scores_are_null_with_a_note(clip, masks):
    r = evaluate(clip, clip, face_masks=masks, id_model=False)
    doc = json.loads(r.to_json())
    assert set(doc) == KEYS
    assert doc["tl_id"] is None and doc["tg_id"] is None
    assert any(n.startswith("tl_id, tg_id") for n in doc["notes"])


def test_no_face_at_all_leaves_the_face_scores_null(clip):
    r = evaluate(clip, clip, face_masks=np.zeros((T, H, W), bool), id_model=False)
    doc = json.loads(r.to_json())
    assert doc["frames_with_face"] == 0 and doc["psnr_outside"] == 100.0
    for key in ("psnr_face", "ssim_face", "warp_error", "warp_error_reference", "seam", "tl_id", "tg_id"):
        assert doc[key] is None
    assert any(n.startswith("no face in the reference") for n in doc["notes"])


def test_cli_with_mediapipe_landmarks_prints_the_json_and_draws_the_plot(tmp_path, id_model):
    frames = list(face_frames(8, 480, 360))
    ref = write_clip(tmp_path / "ref.mp4", frames, audio=None)
    plot = tmp_path / "curves.png"
    result = cli(ref, ref, "--json", "--plot", plot, "--id-model", id_model)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == KEYS and list(doc)[:3] == ["frames", "frames_with_face", "psnr_face"]
    assert doc["frames"] == 8 and doc["frames_with_face"] == 8  # mediapipe found the face in every frame
    assert doc["psnr_face"] == doc["psnr_outside"] == 100.0 and doc["tl_id"] == pytest.approx(1.0)
    assert doc["seam"] == 1.0 and doc["warp_error"] == doc["warp_error_reference"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_prints_a_table_for_a_person(tmp_path, clip, id_model):
    ref = write_clip(tmp_path / "ref.mp4", clip, audio=None)
    ring = np.stack([W / 2 + 30 * np.cos(np.arange(478)), H / 2 + 45 * np.sin(np.arange(478))], axis=1)
    np.savez(tmp_path / "alignment.npz", frame_index=np.arange(T), landmarks=np.repeat(ring[None], T, 0))
    result = cli(ref, ref, "--artifacts", tmp_path, "--id-model", id_model)
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())  # rich wraps to the terminal's width
    assert "PSNR face" in text and "100.00 dB" in text and "region: alignment.npz" in text
    assert find_lpips_weights() is not None or "note: lpips_face" in text


def test_tiny_metric_definitions():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 255
    sse, n = metrics.squared_error(a, b)
    assert (sse, n) == (255.0 ** 2, 48) and metrics.psnr(sse, n) == pytest.approx(10 * np.log10(48))
    assert metrics.psnr(0.0, 48) == 100.0 and metrics.psnr(0.0, 0) is None
    e = np.eye(3)
    present = np.array([True, True, True])
    assert metrics.tl_id(e, e, present) is None  # orthogonal reference embeddings: no ratio means anything
    ref = np.array([[1.0, 0], [0.6, 0.8], [1.0, 0]])
    edit = np.array([[1.0, 0], [0.8, 0.6], [1.0, 0]])
    assert metrics.tl_id(edit, ref, present) == pytest.approx(0.8 / 0.6)
    assert metrics.tg_id(edit, ref, present) == pytest.approx((0.8 / 0.6 + 1.0 + 0.8 / 0.6) / 3)


def test_lpips_when_its_weights_are_found(monkeypatch, tmp_path, clip, masks):
    torch = pytest.importorskip("torch")
    from sg3stream.eval import perceptual
    from sg3stream.pti.losses import BACKBONE_FILES, LPIPS

    model = LPIPS("alex")  # random weights saved as the real files are laid out
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    torch.save({f"features.{k}": v for k, v in model.features.state_dict().items()},
               hub / "checkpoints" / BACKBONE_FILES["alex"])
    heads = {k: v.abs() for k, v in model.state_dict().items() if k.startswith("lin")}  # LPIPS's heads are >= 0
    torch.save(heads, tmp_path / "alex.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.setattr(perceptual, "find_lpips_weights", lambda: (tmp_path / "alex.pth", "alex"))
    same = evaluate(clip[:2], clip[:2], face_masks=masks[:2], id_model=False).summary
    changed = evaluate(clip[:2], add_in_mask(clip[:2], masks[:2], [40] * 2), face_masks=masks[:2],
                       id_model=False).summary
    assert same["lpips_face"] == pytest.approx(0.0, abs=1e-6) and changed["lpips_face"] > 0
    assert not any(n.startswith("lpips_face") for n in same["notes"])


@pytest.mark.skipif(importlib.util.find_spec("dlib") is None or dlib_model_folder() is None,
                    reason="dlib and its models (the eval extra) are not installed")
def test_dlib_recogniser_on_identical_frames(clip, masks):
    r = evaluate(clip[:3], clip[:3], face_masks=masks[:3])
    assert isinstance(r, EvalResult)
    assert r.summary["tl_id"] == pytest.approx(1.0) and r.summary["tg_id"] == pytest.approx(1.0)
