"""Image sequences in and out, and the input's depth kept outside the face (issue 17): 16-bit PNG sequences with a
matte, a 10-bit video to a lossless 10-bit output, EXR, and gaps."""
import json

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from sg3stream.cli import app
from sg3stream.synthetic import face_frames, write_clip
from sg3stream.video.sequence import find_sequence, read_image, write_image

COMMON = ["--no-demo-label", "--landmark-workers", "1", "--n-iters", "1", "--log-format", "json"]


def run(*args, code: int = 0):
    result = CliRunner().invoke(app, ["run", *map(str, args), *COMMON])
    assert result.exit_code == code, result.output
    return result


def deep_frames(count: int, width: int = 320, height: int = 240) -> list[np.ndarray]:
    """The face clip at 16 bits, with a fine ramp in the low bits, so that an 8-bit trip anywhere shows."""
    ramp = (np.arange(width, dtype=np.uint16) * 7 % 257)[None, :, None]
    return [frame.astype(np.uint16) * 257 + ramp - (ramp * (frame == 255)) for frame in
            face_frames(count, width, height, cycle=48)]


def write_sequence(folder, frames, numbers, ext="png", transfer=None):
    folder.mkdir(exist_ok=True)
    for n, frame in zip(numbers, frames):
        write_image(folder / f"plate.{n:04d}.{ext}", frame, half=False)
    return folder / f"plate.%04d.{ext}"


def test_a_16_bit_png_sequence_keeps_its_numbers_depth_and_every_pixel_outside_the_matte(tmp_path):
    frames = deep_frames(6)
    pattern = write_sequence(tmp_path / "in", frames, range(1001, 1007))
    (tmp_path / "out").mkdir()
    (tmp_path / "matte").mkdir()
    result = run(pattern, "--fps", 24, "-o", tmp_path / "out" / "edit.%04d.png", "--edit", "smile:8",
                 "--matte", tmp_path / "matte" / "m.%04d.png")
    out = find_sequence(tmp_path / "out" / "edit.%04d.png")
    assert out.numbers == list(range(1001, 1007))
    assert find_sequence(tmp_path / "matte").numbers == list(range(1001, 1007))
    changed_total = 0
    for n, source in zip(out.numbers, frames):
        edited, matte = read_image(out.path(n)), read_image(tmp_path / "matte" / f"m.{n:04d}.png")
        assert edited.dtype == np.uint16 and matte.dtype == np.uint16
        outside = matte[..., 0] == 0
        assert np.array_equal(edited[outside], source[outside])  # bit-exact, all 16 bits
        assert outside.mean() > 0.5  # the face is a part of the frame
        changed_total += int((edited != source).any(axis=2).sum())
    assert changed_total > 0  # the face was edited
    summary = [json.loads(line) for line in result.output.splitlines() if '"summary"' in line][0]
    assert summary["frames"] == 6
    assert not list((tmp_path / "out").glob(".*"))  # nothing partial left beside the output


def test_an_input_sequence_needs_its_rate_and_names_its_gaps(tmp_path):
    frames = list(face_frames(5, 160, 120, cycle=48))
    pattern = write_sequence(tmp_path / "in", [frames[i] for i in (0, 1, 3, 4)], [1, 2, 4, 5])
    refused = run(pattern, "-o", tmp_path / "o.mp4", "--allow-gaps", code=1)
    assert "has no frame rate: give it with --fps" in refused.output
    refused = run(pattern, "--fps", 25, "-o", tmp_path / "o.mp4", code=1)
    assert "1 frame(s) missing between 1 and 5: 3" in refused.output
    assert not (tmp_path / "o.mp4").exists()
    # --allow-gaps: the same gap in the output sequence; a folder is read as its sequence
    (tmp_path / "out").mkdir()
    run(tmp_path / "in", "--fps", 25, "--allow-gaps", "--passthrough", "-o", tmp_path / "out" / "%03d.png")
    assert find_sequence(tmp_path / "out" / "%03d.png").numbers == [1, 2, 4, 5]
    assert np.array_equal(read_image(tmp_path / "out" / "004.png"), frames[3])


def test_an_exr_sequence_round_trips_outside_the_face_and_is_edited_in_display_encoding(tmp_path):
    from sg3stream.video.colour import decode_linear

    frames = [decode_linear(f.astype(np.float32) / 255, "srgb") * 1.5 for f in face_frames(4, 256, 192, cycle=48)]
    pattern = write_sequence(tmp_path / "in", frames, range(4), ext="exr")
    (tmp_path / "out").mkdir()
    run(pattern, "--fps", 24, "-o", tmp_path / "out" / "f.%04d.exr", "--pix-fmt", "gbrpf32le", "--edit", "smile:8",
        "--matte", tmp_path / "out" / "m.%04d.exr")
    for i, source in enumerate(frames):
        edited = read_image(tmp_path / "out" / f"f.{i:04d}.exr")
        matte = read_image(tmp_path / "out" / f"m.{i:04d}.exr")[..., 0]
        assert edited.dtype == np.float32
        assert np.array_equal(edited[matte == 0], source[matte == 0])  # float32 bit for bit
        assert (np.abs(edited - source).max(axis=2)[matte > 0.5] > 1e-3).any()


def test_a_10_bit_video_stays_10_bit_with_its_tags_and_timecode_and_untouched_samples(tmp_path):
    frames = deep_frames(6)
    clip = tmp_path / "in10.mov"
    with av.open(str(clip), "w") as c:
        s = c.add_stream("libx265", rate=25, options={"x265-params": "log-level=error"})
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p10le"
        s.codec_context.color_primaries, s.codec_context.color_trc, s.codec_context.colorspace = 1, 1, 1
        s.codec_context.color_range = 1
        s.metadata["timecode"] = "01:00:00:00"
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb48le").reformat(format="yuv420p10le", dst_colorspace=1,
                                                                             dst_color_range=1)
            frame.pts = i
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    out = tmp_path / "out.mkv"
    run(clip, "-o", out, "--codec", "ffv1", "--edit", "smile:8", "--matte", tmp_path / "m.mkv")
    with av.open(str(clip)) as c:
        source = [f.to_ndarray() for f in c.decode(video=0)]
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        cc = stream.codec_context
        assert cc.format.name == "yuv420p10le"
        assert (cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range) == (1, 1, 1, 1)
        assert stream.metadata.get("TIMECODE") == "01:00:00:00"  # Matroska's name for it
        edited = [f.to_ndarray() for f in c.decode(stream)]
    with av.open(str(tmp_path / "m.mkv")) as c:
        mattes = [f.to_ndarray() for f in c.decode(video=0)]
    for src, ed, m in zip(source, edited, mattes):
        luma_src, luma_out = src[:240].astype(int), ed[:240].astype(int)  # yuv420p10le: Y, then U and V below
        far = m == 0
        assert (luma_out[m > 60000] != luma_src[m > 60000]).any()  # the face is edited
        # far from the face: the input's own samples, luma and chroma (a chroma sample covers 2x2 pixels)
        assert np.array_equal(luma_out[far], luma_src[far])
        far_chroma = far.reshape(120, 2, 160, 2).all(axis=(1, 3))
        u_out, v_out = ed[240:].reshape(2, 120, 160)
        u_src, v_src = src[240:].reshape(2, 120, 160)
        assert np.array_equal(u_out[far_chroma], u_src[far_chroma]) and np.array_equal(v_out[far_chroma],
                                                                                          v_src[far_chroma])


def test_a_lossless_output_keeps_the_input_samples_outside_the_face_and_the_demo_caption(tmp_path):
    clip = write_clip(tmp_path / "in.mp4", face_frames(5, 320, 240, cycle=48), fps=25, audio=None)
    out = tmp_path / "out.mkv"
    result = CliRunner().invoke(app, ["run", str(clip), "-o", str(out), "--codec", "ffv1", "--edit", "smile:8",
                                      "--matte", str(tmp_path / "m.mkv"), "--landmark-workers", "1", "--n-iters", "1",
                                      "--log-format", "json"])  # the demo caption on
    assert result.exit_code == 0, result.output
    with av.open(str(clip)) as c:
        source = [f.to_ndarray() for f in c.decode(video=0)]
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.format.name == "yuv420p"
        edited = [f.to_ndarray() for f in c.decode(video=0)]
    with av.open(str(tmp_path / "m.mkv")) as c:
        mattes = [f.to_ndarray() for f in c.decode(video=0)]
    from sg3stream.render.label import label_box

    x0, y0, x1, y1, _, _ = label_box(240, 320)
    for src, ed, m in zip(source, edited, mattes):
        far = m == 0
        assert np.array_equal(ed[:240][far], src[:240][far])  # 8-bit 4:2:0 luma, sample for sample
        assert (m[y0:y1, x0:x1] == 65535).all()  # the caption is in the matte: there the output is not the input
        assert not np.array_equal(ed[y0:y1, x0:x1], src[y0:y1, x0:x1])
        assert (ed[:240][m > 60000] != src[:240][m > 60000]).any()


def test_a_16_bit_layer_sequence_comped_over_the_input_is_the_full_output(tmp_path):
    frames = deep_frames(4)
    pattern = write_sequence(tmp_path / "in", frames, range(10, 14))
    for name in ("full", "layer"):
        (tmp_path / name).mkdir()
    run(pattern, "--fps", 25, "-o", tmp_path / "full" / "%04d.png", "--edit", "smile:8")
    run(pattern, "--fps", 25, "-o", tmp_path / "layer" / "%04d.png", "--edit", "smile:8", "--output-mode", "layer")
    for n, source in zip(range(10, 14), frames):
        with av.open(str(tmp_path / "layer" / f"{n:04d}.png")) as c:
            frame = next(c.decode(video=0))
            assert frame.format.name == "rgba64be"  # 16-bit colour and alpha
            rgba = frame.to_ndarray(format="rgba64le").astype(float)
        full = read_image(tmp_path / "full" / f"{n:04d}.png").astype(float)
        alpha = rgba[..., 3:] / 65535
        comp = rgba[..., :3] + source * (1 - alpha)  # "over", premultiplied
        assert np.abs(comp - full).max() <= 2  # the full output, to the rounding of 16 bits
        assert (alpha > 0.99).any() and rgba[..., :3][alpha[..., 0] == 0].max() == 0


def test_a_10_bit_dpx_sequence_stays_10_bit(tmp_path):
    from sg3stream.video.probe import probe

    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    rng = np.random.default_rng(0)
    for n in range(3):
        v10 = rng.integers(0, 1024, (48, 64, 3)).astype(np.uint16)
        write_image(tmp_path / "in" / f"p.{n:05d}.dpx", (v10 << 6) | (v10 >> 4), pix_fmt="gbrp10le")
    info = probe(tmp_path / "in" / "p.%05d.dpx", fps=24)
    assert (info.pix_fmt, info.bits, info.frames) == ("gbrp10le", 10, 3)
    run(tmp_path / "in" / "p.%05d.dpx", "--fps", 24, "--passthrough", "-o", tmp_path / "out" / "p.%05d.dpx")
    for n in range(3):
        name = f"p.{n:05d}.dpx"
        with av.open(str(tmp_path / "in" / name)) as a, av.open(str(tmp_path / "out" / name)) as b:
            fa, fb = next(a.decode(video=0)), next(b.decode(video=0))
            assert fb.format.name == "gbrp10le" and np.array_equal(fa.to_ndarray(), fb.to_ndarray())


def test_a_pixel_format_the_output_cannot_take_is_refused_before_any_model_loads(tmp_path):
    clip = write_clip(tmp_path / "in.mp4", face_frames(2, 160, 120), fps=25, audio=None)
    (tmp_path / "out").mkdir()
    for output, extra, message in [
            (tmp_path / "out" / "%04d.exr", [], "exr pictures are written as gbrpf16le, gbrpf32le"),
            (tmp_path / "o.mkv", ["--output-mode", "layer"], "has no alpha: --output-mode layer needs one"),
            (tmp_path / "o.mp4", [], "libx264 does not take it")]:
        refused = run(clip, "-o", output, "--pix-fmt", "yuv410p" if "exr" not in str(output) else "rgb48le", *extra,
                      code=1)
        assert message in refused.output and "demo model" not in refused.output


def test_the_demo_caption_is_opaque_in_the_layer(tmp_path):
    from sg3stream.render.label import label_box

    clip = write_clip(tmp_path / "in.mp4", face_frames(3, 320, 240, cycle=48), fps=25, audio=None)
    result = CliRunner().invoke(app, ["run", str(clip), "-o", str(tmp_path / "layer.mkv"), "--output-mode", "layer",
                                      "--landmark-workers", "1", "--n-iters", "1", "--log-format", "json"])
    assert result.exit_code == 0, result.output
    x0, y0, x1, y1, _, _ = label_box(240, 320)
    with av.open(str(tmp_path / "layer.mkv")) as c:
        for frame in c.decode(video=0):
            rgba = frame.to_ndarray(format="rgba")
            assert (rgba[y0:y1, x0:x1, 3] == 255).all()  # comped over the input, the caption shows as it is
