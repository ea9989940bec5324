"""The farm's parts that need neither Ray nor a model: job files, segment planning, the seam in the smoothed codes,
manifests and status."""
import json
from fractions import Fraction

import numpy as np
import pytest

from sg3stream.edit.smoothing import SmoothStage
from sg3stream.errors import UserError
from sg3stream.farm.jobs import load_job_file
from sg3stream.farm.manifest import job_hash, new_manifest, save_manifest, sha256_file
from sg3stream.chain import chain_context, plan_chain
from sg3stream.farm.segments import find_cuts, plan_segments, shot_context
from sg3stream.farm.status import job_status
from sg3stream.pipeline.batch import FrameBatch
from sg3stream.synthetic import face_frames, numbered_frame, write_clip
from sg3stream.video.shots import ShotDetector, ShotStage


def job_file(tmp_path, text):
    path = tmp_path / "jobs.yaml"
    path.write_text(text)
    return path


def test_a_job_file_gives_run_options_with_paths_beside_it(tmp_path):
    jobs = load_job_file(job_file(tmp_path, """
defaults: {n_iters: 1}
jobs:
  - {input: a.mp4, output: out/a.mp4, edit: smile, segment_frames: 100, align_smoothing: 2}
  - {input: /abs/b.mp4, output: b.mp4, edits: [smile, "age:-2"], n_iters: 2}
"""))
    a, b = jobs
    assert a.options.input == tmp_path / "a.mp4" and a.options.output == tmp_path / "out" / "a.mp4"
    assert (a.options.edits, a.options.n_iters, a.options.align_smoothing, a.segment_frames) == (["smile"], 1, 2.0, 100)
    assert (str(b.options.input), b.options.edits, b.options.n_iters, b.segment_frames) == (
        "/abs/b.mp4", ["smile", "age:-2"], 2, None)
    assert a.manifest_path == tmp_path / "out" / "a.mp4.manifest.json"
    assert a.work_dir == tmp_path / "out" / ".a.mp4.farm"


@pytest.mark.parametrize("text,message", [
    ("jobs:\n  - {input: a.mp4, output: b.mp4, colour: red, pti_stepz: 3}\n", "unknown options: colour, pti_stepz"),
    ("jobs:\n  - {input: a.mp4}\n", "'output' is required"),
    ("jobs:\n  - {input: a.mp4, output: b.mp4, n_iters: three}\n", "'n_iters' must be int"),
    ("jobs:\n  - {input: a.mp4, output: b.mp4, segment_frames: 0}\n", "segment_frames must be a positive"),
    ("jobs:\n  - {input: a.mp4, output: b.mp4, crop: fixed, segment_frames: 50}\n", "cannot be split"),
    ("jobs:\n  - {input: a.mp4, output: b.mp4, pti_steps: 100}\n", "PTI is not supported by the farm"),
    ("jobs:\n  - {input: a.mp4, output: b.mp4, artifacts: art}\n", "artifacts are not supported"),
    ("jobs:\n  - {input: a.mp4, output: b.mp4}\n  - {input: c.mp4, output: b.mp4}\n", "write the same output"),
    ("jobs: []\n", "non-empty list of jobs"),
    ("jobz:\n  - {input: a.mp4, output: b.mp4}\n", "non-empty list of jobs"),
    ("jobs: [\n", "not valid YAML"),
])
def test_a_bad_job_file_is_a_user_error_that_names_the_problem(tmp_path, text, message):
    with pytest.raises(UserError, match=message):
        load_job_file(job_file(tmp_path, text))


def test_the_context_comes_from_the_chain_the_options_make():
    from sg3stream.job import RunOptions

    def context(**options):
        return chain_context(plan_chain(RunOptions(input="a", output="b", **options)))

    default = context()
    # ShotStage's window before a frame (3) + AlignStage.lookahead (crop smoothing 6 -> 18, max gap 12) + fine window
    assert default == 3 + (18 + 12 + 1) + 60
    assert context(fine_window=10) == default - 50
    assert context(align_smoothing=8) == default + 24 - 18
    assert context(passthrough=True) == 0


@pytest.mark.parametrize("total,size,context,batch", [(1000, 100, 91, 8), (1000, 333, 35, 4), (97, 10, 7, 5),
                                                      (50, 100, 91, 8), (130, 60, 20, 8)])
def test_segments_cover_every_frame_once_with_context_on_batch_boundaries(total, size, context, batch):
    segments = plan_segments(total, size, context, batch)
    cores = [f for s in segments for f in range(s.start, total if s.stop is None else s.stop)]
    assert cores == list(range(total))  # every frame once, in order
    for s in segments:
        stop = total if s.stop is None else s.stop
        decode_stop = total if s.decode_stop is None else s.decode_stop
        assert s.decode_start <= max(0, s.start - context) and s.decode_start % batch == 0
        assert decode_stop >= min(total, stop + context)
        assert s.decode_stop is None or s.decode_stop % batch == 0


def cores(segments, total):
    return [f for s in segments for f in range(s.start, total if s.stop is None else s.stop)]


def test_boundaries_move_to_cuts_near_them_and_decode_only_the_shot_stages_context_there():
    total, size, context, batch = 1000, 100, 91, 8
    before, after = shot_context()
    assert (before, after) == (3, 2)  # ShotStage: a frame's score and the adaptive window before; the window after
    # 95, 210: within a quarter segment (25) of 100, 200; 330 and 655 are not near a boundary (300, 600/700)
    segments = plan_segments(total, size, context, batch, cuts=[95, 210, 330, 655])
    assert cores(segments, total) == list(range(total))  # still every frame once
    assert [s.start for s in segments] == [0, 95, 210, 300, 400, 500, 600, 700, 800, 900]
    assert [(s.start_at_cut, s.stop_at_cut) for s in segments[:4]] == [
        (False, True), (True, True), (True, False), (False, False)]
    for s in segments:
        if s.start_at_cut:  # from the batch boundary at or before the shot stage's context_before
            assert s.decode_start % batch == 0 and s.start - before - batch < s.decode_start <= s.start - before
        if s.stop_at_cut:  # to the batch boundary at or after the shot stage's context_after
            assert s.decode_stop % batch == 0 and s.stop + after <= s.decode_stop < s.stop + after + batch
    assert (segments[1].decode_start, segments[1].decode_stop, segments[2].decode_start) == (88, 216, 200)
    # boundaries with no cut near decode the chain's context, as without cuts
    plain = plan_segments(total, size, context, batch)
    assert segments[3:] == plain[3:] and segments[2].decode_stop == plain[2].decode_stop
    assert segments[0].decode_start == plain[0].decode_start


def test_without_a_cut_near_a_boundary_the_plan_is_unchanged():
    for total, size, context, batch in [(1000, 100, 91, 8), (97, 10, 7, 5), (130, 60, 20, 8)]:
        far = [s * size + size // 4 + 1 for s in range(1, total // size)]  # just out of reach of every boundary
        assert plan_segments(total, size, context, batch, cuts=far) == plan_segments(total, size, context, batch)
    assert plan_segments(50, 100, 91, 8, cuts=[20]) == plan_segments(50, 100, 91, 8)  # one segment: nothing to move


@pytest.mark.parametrize("seed", range(20))
def test_segments_moved_to_cuts_still_cover_every_frame_once(seed):
    rng = np.random.default_rng(seed)
    total, size, batch = int(rng.integers(20, 2000)), int(rng.integers(4, 300)), int(rng.integers(1, 17))
    context = int(rng.integers(0, 120))
    cuts = sorted(set(rng.integers(1, total, size=int(rng.integers(0, 40))).tolist()))
    segments = plan_segments(total, size, context, batch, cuts=cuts)
    plain = plan_segments(total, size, context, batch)
    assert cores(segments, total) == list(range(total))
    assert len(segments) == len(plain)  # a short tail is still folded, and no segment is added or lost
    for s, p in zip(segments, plain):
        assert abs(s.start - p.start) <= size // 4 and (s.start != p.start) <= s.start_at_cut
        assert s.start_at_cut == (s.number > 0 and s.start in cuts)
        assert s.decode_start <= s.start and (s.decode_stop is None or s.decode_stop >= s.stop)
        assert s.decode_start % batch == 0 and (s.decode_stop is None or s.decode_stop % batch == 0)
        # at a cut the shot stage's context (3 before, 2 after: never more than the chain's), elsewhere the chain's
        # (each out to the batch boundary)
        before = min(context, 3) if s.start_at_cut else context
        assert s.decode_start <= max(0, s.start - before) < s.decode_start + batch
        if s.stop is not None and s.decode_stop is not None:
            after = min(context, 2) if s.stop_at_cut else context
            assert s.decode_stop - batch < s.stop + after <= s.decode_stop


def test_a_cut_never_asks_more_context_than_the_chain():
    segments = plan_segments(100, 40, 0, 4, cuts=[37])  # passthrough: no context at all
    assert [(s.start, s.decode_start, s.decode_stop) for s in segments] == [(0, 0, 40), (37, 36, 80), (80, 80, None)]


W, H = 320, 240


def two_shots(first: int, second: int, third: int = 0) -> list[np.ndarray]:
    """The face (shot A), then a hard cut to a larger face off centre (shot B), and back to shot A."""
    a = list(face_frames(60, W, H))
    b = [f[:H, :W] for f in face_frames(60, 2 * W, 2 * H)]
    return a[:first] + b[:second] + a[first:first + third]


def test_find_cuts_finds_a_hard_cut_at_its_frame(tmp_path):
    clip = write_clip(tmp_path / "cut.mp4", two_shots(20, 20), fps=25)
    assert find_cuts(clip) == [20]
    assert find_cuts(clip, batch_size=3) == [20]  # fed frame by frame: the batches do not matter
    assert find_cuts(write_clip(tmp_path / "one.mp4", two_shots(30, 0), fps=25)) == []


def test_a_segment_at_a_cut_sees_the_cuts_a_whole_clip_run_sees():
    """The shot stage is the only stage that looks across a cut: with the context the plan gives it, each segment
    finds the clip's cuts in its core and at its ends (where the tracks must end), and no other."""
    frames = np.stack(two_shots(30, 25, 30))  # cuts at 30 and 55
    batch = 4

    def cuts_in(start, stop):
        detector = ShotDetector(**ShotStage().detector_args)
        found = []
        for first in range(start, stop, batch):
            found += detector.push(frames[first:min(first + batch, stop)], first)
        return sorted(found + detector.finish())

    whole = cuts_in(0, len(frames))
    assert whole == [30, 55]
    segments = plan_segments(len(frames), 40, 50, batch, cuts=whole)
    assert [(s.start, s.start_at_cut, s.stop_at_cut) for s in segments] == [(0, False, True), (30, True, False)]
    for s in segments:
        stop = s.decode_stop or len(frames)
        inside = [c for c in whole if s.start <= c <= (s.stop or len(frames))]
        assert [c for c in cuts_in(s.decode_start, stop) if s.start <= c <= (s.stop or len(frames))] == inside


def test_a_segmented_job_refuses_options_that_name_a_face_track(tmp_path):
    for option in ("edit: 'smile@1'", "edit: [smile, 'age:-2@0']", "track: 0", "pti_track: 1"):
        segmented = f"jobs:\n  - {{input: a.mp4, output: b.mp4, segment_frames: 50, {option}}}\n"
        with pytest.raises(UserError, match="segment_frames cannot go with what names a face track"):
            load_job_file(job_file(tmp_path, segmented))
        # without segments, one process numbers the tracks of the whole clip
        load_job_file(job_file(tmp_path, f"jobs:\n  - {{input: a.mp4, output: b.mp4, {option}}}\n"))


def test_the_manifest_and_status_say_which_joins_are_at_cuts(tmp_path):
    from sg3stream.farm.runner import prepare_job

    write_clip(tmp_path / "in.mp4", two_shots(20, 20), fps=25)
    job, = load_job_file(job_file(tmp_path, "jobs:\n  - {input: in.mp4, output: out.mp4, segment_frames: 16, "
                                            "batch_size: 4}\n"))
    run = prepare_job(job)
    assert run.manifest["cuts"] == [20]
    # the join at 16 moved to the cut at 20 (within a quarter segment: 4); the one at 32 has no cut near
    assert [(s["start"], s["start_at_cut"], s["stop_at_cut"]) for s in run.manifest["segments"]] == [
        (0, False, True), (20, True, False), (32, False, False)]
    run.save()
    assert job_status(job)["joins_at_cuts"] == 1


def smooth_batches(latents, first, stop, batch_size):
    for start in range(first, stop, batch_size):
        idx = np.arange(start, min(start + batch_size, stop))
        n = len(idx)
        yield FrameBatch(np.zeros((n, 2, 2, 3), np.uint8), idx, idx, Fraction(1, 25), data={
            "latents": latents[idx], "has_latents": np.ones(n, bool), "rotation_deg": np.sin(idx / 7.0),
            "translation": np.stack([np.cos(idx / 9.0), np.sin(idx / 5.0)], 1) * 0.01, "scale": 1 + 0.01 * np.cos(idx)})


def run_stage(stage, batches):
    out = [r for r in (stage(b) for b in batches) if r is not None] + stage.flush()
    return np.concatenate([b.index for b in out]), np.concatenate([b.data["latents_smoothed"] for b in out])


def test_segments_planned_with_the_context_join_the_smoothed_codes_without_a_seam():
    """The codes the farm's segments keep are those of the whole clip, bit for bit, frame numbers included."""
    total, batch = 230, 4
    latents = np.random.default_rng(1).normal(size=(total, 16, 8)).astype(np.float32)
    make = lambda: SmoothStage(sigma=1.0, fine_window=12)  # noqa: E731
    _, whole = run_stage(make(), smooth_batches(latents, 0, total, batch))
    segments = plan_segments(total, 70, make().context, batch)
    assert len(segments) == 3 and segments[1].decode_start > 0
    joined, numbers = [], []
    for s in segments:
        stop = total if s.decode_stop is None else s.decode_stop
        index, codes = run_stage(make(), smooth_batches(latents, s.decode_start, stop, batch))
        keep = (index >= s.start) & (index < (s.stop or total))
        joined.append(codes[keep])
        numbers.append(index[keep])
    assert np.concatenate(numbers).tolist() == list(range(total))
    np.testing.assert_array_equal(np.concatenate(joined), whole)


def test_status_reads_the_manifests(tmp_path):
    clip = write_clip(tmp_path / "in.mp4", (numbered_frame(i, 32, 32) for i in range(10)), fps=25)
    path = job_file(tmp_path, "jobs:\n  - {input: in.mp4, output: a.mp4, segment_frames: 4}\n"
                              "  - {input: in.mp4, output: b.mp4}\n  - {input: in.mp4, output: c.mp4}\n")
    a, b, c = load_job_file(path)
    segments = plan_segments(10, 4, 0, 4)
    manifest = new_manifest(a, job_hash(a), 10, 0, segments)
    manifest["segments"][0]["state"] = "done"
    save_manifest(a.manifest_path, manifest)
    (tmp_path / "b.mp4").write_bytes(clip.read_bytes())
    done = new_manifest(b, job_hash(b), 10, 0, plan_segments(10, None, 0, 4))
    done.update(state="done", output_sha256=sha256_file(tmp_path / "b.mp4"))
    done["segments"][0]["state"] = "done"
    save_manifest(b.manifest_path, done)
    states = [job_status(j) for j in (a, b, c)]
    assert [(s["state"], s["segments_done"], s["segments"]) for s in states] == [
        ("partial", 1, 3), ("done", 1, 1), ("pending", 0, None)]
    (tmp_path / "b.mp4").write_bytes(b"changed")
    assert job_status(b)["state"] == "partial"
    assert json.loads(a.manifest_path.read_text())["job_hash"] == job_hash(a)
    a.options.n_iters = 1  # other options: the manifest no longer applies
    assert job_status(a)["state"] == "pending"


@pytest.mark.parametrize("settings,message", [
    ("output: out.gif", "cannot hold libx264 video"),
    ("output: out.mp4, crf: -5", "--crf must be"),
    ("output: out.mp4, edit: 'smile:lots'", "the strength 'lots' is not a number"),
    ("output: out.mp4, engine: jax", "--engine must be one of"),
])
def test_a_job_the_output_or_options_cannot_serve_is_refused_before_any_segment(tmp_path, settings, message):
    from sg3stream.farm.runner import prepare_job

    write_clip(tmp_path / "a.mp4", (numbered_frame(i, 64, 48) for i in range(3)))
    job, = load_job_file(job_file(tmp_path, f"jobs:\n  - {{input: a.mp4, {settings}}}\n"))
    with pytest.raises(UserError, match=message):
        prepare_job(job)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "jobs.yaml"]


def test_a_joined_demo_output_is_tagged_as_run_tags_it():
    from sg3stream.farm.join import demo_metadata
    from sg3stream.job import RunOptions

    assert "demo" in demo_metadata(RunOptions(input="a.mp4", output="b.mp4"))["comment"]
    assert demo_metadata(RunOptions(input="a.mp4", output="b.mp4", passthrough=True)) is None


def test_what_ray_prints_during_a_farm_run_stays_off_the_json_lines(monkeypatch, capsys):
    """Ray prints a dying worker's error from a thread of its own to sys.stdout, and under load it shared a line
    with a JSON event (`...Socket closed{"event": "segment", ...}`): during the session it goes to stderr."""
    import types

    from sg3stream.farm import runner
    from sg3stream.report import JsonReporter

    reporter = JsonReporter()  # made before the session, as the command line makes it
    fake = types.SimpleNamespace(is_initialized=lambda: False, init=lambda **kw: None, shutdown=lambda: None)
    monkeypatch.setattr(runner, "require_ray", lambda: fake)
    with runner.ray_session("local"):
        print("(raylet) A worker died or was killed", end="")  # Ray's print_to_stdstream, without its newline yet
        reporter.emit("segment", state="retrying")
        print()
    captured = capsys.readouterr()
    assert [json.loads(line)["state"] for line in captured.out.splitlines()] == ["retrying"]
    assert "(raylet)" in captured.err
