"""`sg3stream run`: one video in, one video out, through the chain of stages.

    decode -> landmarks -> align -> invert -> smooth -> edit -> render -> paste -> encode

`RunOptions` (declared in options.py) holds what the user asked for; `run_video` checks it, loads the models once
(`load_models`; `sg3stream.Editor` loads them once for all its calls), resolves the edits (`load_parts`), builds the
chain (sg3stream/chain.py), runs the pipeline, commits the output (and the artifacts) atomically and returns the
summary that also goes into run.json.
"""
from __future__ import annotations

import logging
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

from . import __version__
from .artifacts import Artifacts
from .chain import ChainParts, build_chain, frame_budget, model_batch, model_call_rows
from .errors import UserError
from .models.oracle import NOTICE as ORACLE_NOTICE
from .models.oracle import ORACLE, check_oracle_options, is_oracle, is_oracle_renderer, make_oracle_components
from .options import RunOptions, face_slots, option_fields
from .pipeline.runner import Pipeline
from .render.expand import Expansion
from .render.label import DEMO_METADATA
from .reedit import RecordedRun, source_identity
from .report import Reporter
from .video.decode import FrameReader
from .video.encode import VideoWriter, check_codec, check_output_path, layer_codec, resolve_codec
from .video.matte import check_matte, open_matte
from .video.sequence import check_sequence_pixel_format, is_sequence_name

log = logging.getLogger("sg3stream")


def check_options(options: RunOptions) -> None:
    """Every check that needs no model and no frame, so that a typo fails in a second, not after the models load."""
    from .edit.directions import check_edit_names

    for f in option_fields():  # the bounds and the accepted values declared with each option (options.py)
        value, low, accepted = getattr(options, f.name), f.metadata["low"], f.metadata["choices"]
        flag = "--" + f.name.replace("_", "-")
        if low is not None and value is not None and value < low:
            raise UserError(f"{flag} must be at least {low} (got {value})")
        if accepted is not None and value not in accepted:
            raise UserError(f"{flag} must be one of {', '.join(accepted)} (got {value!r})")
    if not options.pti_lr > 0:
        raise UserError(f"--pti-lr must be positive (got {options.pti_lr})")
    if is_oracle(options.generator):
        check_oracle_options(options)  # no edits, no PTI: it has no latent space
    face_slots(options.faces)
    if not (options.device in ("auto", "cpu", "cuda") or options.device.startswith("cuda:")
            and options.device[5:].isdigit()):
        raise UserError(f"--device must be auto, cpu, cuda or cuda:N (got {options.device!r})")
    Expansion.parse(options.expand)
    if (options.save_generator is not None or options.resume) and options.pti_steps == 0:
        raise UserError("--save-generator and --resume go with --pti-steps N (N > 0)")
    if options.engine == "tensorrt" and options.pti_steps > 0:
        # The render stage gets a renderer of the run's kind built from the tuned weights, after the tuning:
        # refuse now what could not be built then.
        from .engines.tensorrt_engine import tensorrt_available

        ok, why = tensorrt_available() if options.device != "cpu" else (False, "--device cpu")
        if not ok:
            raise UserError(f"--engine tensorrt with --pti-steps needs a TensorRT engine built from the tuned "
                            f"generator, which cannot be built here ({why}); use --engine onnx or torch")
    if options.passthrough or is_oracle(options.generator):
        return
    generator_file = weights_file(options.generator) or weights_file(options.encoder)
    check_edit_names(options.edits, demo=uses_demo_directions(options, generator_file), generator_path=generator_file)


def uses_demo_directions(options: RunOptions, generator_file: Path | None) -> bool:
    """The demo generator, or a generator PTI-tuned from it, carries the demo's built-in directions."""
    from .pti.save import tuned_from

    demo = options.encoder is None and options.generator in (None, "demo")
    return demo or options.generator == "demo" or tuned_from(generator_file) == "demo"


def uses_demo_model(options: RunOptions, generator_file: Path | None) -> bool:
    """Any part of the models is the demo's (random weights): the output shows the pipeline, not a real edit."""
    if is_oracle(options.generator):
        return False  # no model runs: the output is the input's own faces through the pipeline
    return options.encoder in (None, "demo") or uses_demo_directions(options, generator_file)


class LoadedModels(NamedTuple):
    """What `load_models` loads: the encoder and generator (`Models`), and what inverts and renders with them."""

    models: Any
    inverter: Any
    renderer: Any


def load_models(options: RunOptions) -> LoadedModels:
    """The models the options name, and the inverter and renderer chosen from --engine and --compile: loaded once
    per run, or once per `sg3stream.Editor` for all its calls. Bad weights fail here, before any frame is decoded."""
    from .models.bundle import Models
    from .models.components import make_components

    if is_oracle(options.generator):
        return LoadedModels(None, *make_oracle_components(options.device))  # no model to load
    models = Models(encoder=options.encoder, generator=options.generator, device=options.device)
    # --engine onnx/tensorrt: the graphs are exported/built here, not mid-run
    inverter, renderer = make_components(models, engine=options.engine, compile=options.compile,
                                         compile_rows=model_call_rows(options, models.device))
    return LoadedModels(models, inverter, renderer)


def load_parts(options: RunOptions, reporter: Reporter | None = None,
               loaded: LoadedModels | None = None) -> tuple[ChainParts, dict]:
    """Resolve the edits, and with --pti-steps tune the generator (a first pass over the clip), with the `loaded`
    models (`load_models(options)` when None): what the chain is built from, and the description of the edits
    (edits.json). Bad edit files or --fine-layers fail here, before any frame of the run is decoded."""
    from .edit.directions import DirectionCatalog

    models, inverter, renderer = loaded if loaded is not None else load_models(options)
    if is_oracle_renderer(renderer):
        return oracle_parts(options, inverter, renderer)
    generator = models.generator()
    generator_file = weights_file(options.generator) or weights_file(options.encoder)
    catalog = DirectionCatalog.for_generator(generator, demo=uses_demo_directions(options, generator_file),
                                             generator_path=generator_file)
    edits = [catalog.resolve(text) for text in options.edits]
    if not 0 < options.fine_layers <= generator.num_ws:
        raise UserError(f"--fine-layers must be between 1 and {generator.num_ws}")
    demo = uses_demo_model(options, generator_file)
    parts = ChainParts(inverter=inverter, renderer=renderer, edits=edits, resolution=generator.img_resolution,
                       demo=demo)
    if options.pti_steps > 0:
        from .pti.clip import tune_generator

        parts.renderer = tune_generator(options, parts, reporter)  # same kind, tuned weights
    description = {
        "generator": options.generator or ("demo" if models.is_demo else "from the encoder checkpoint"),
        "encoder": options.encoder or "demo",
        "demo": demo,
        "ramp": options.edit_ramp,
        "edits": [e.describe() for e in edits],
        "available": catalog.names,
        "expand": asdict(Expansion.parse(options.expand)),
    }
    return parts, description


def oracle_parts(options: RunOptions, inverter, renderer) -> tuple[ChainParts, dict]:
    """`load_parts` for --generator oracle: no edits (check_options refused them), no demo caption."""
    log.warning(ORACLE_NOTICE)  # said in the log and, through the reporter, in run.json's warnings
    description = {"generator": ORACLE, "encoder": None, "demo": False, "ramp": options.edit_ramp, "edits": [],
                   "available": [], "expand": asdict(Expansion.parse(options.expand))}
    return ChainParts(inverter=inverter, renderer=renderer, resolution=renderer.resolution), description


def acceleration(renderer, reader: FrameReader, codec: str) -> dict:
    """Which fast paths the run actually took: decoding, the codec, and what the renderer reports it ran (a compile
    or a kernel load may have fallen back with a warning); no renderer with --passthrough. ops_choice: which
    implementation of each op "auto" took on the renderer's device and why ("cpu", "measured" with the times,
    "cache", ...: sg3stream/ops/choice.py); not for the oracle, which renders no network."""
    used: dict = {"hw_decoding": reader.hw_decoding, "codec": codec}
    if renderer is not None:
        used.update(renderer.describe())
        if used.get("ops") != "none":
            from .ops.choice import report

            used["ops_choice"] = report(renderer.device)
    return used


def redecode_reader(options: RunOptions, reader: FrameReader, depth: str = "8"):
    """With --redecode on or auto (a file can be read twice): a second reader of the input for the paste, so that
    the pictures go after alignment instead of riding through the smoothing window. None (off): they ride.

    Decoding a frame again costs far less than holding it: the window holds about 120 frames, 60 MB at 480x360
    and 3 GB at 4K, against a millisecond per 480x360 frame to decode. (The Python API's frame iterables cannot
    be read twice: their pictures always ride.)"""
    if options.redecode == "off":
        return None
    return lambda: FrameReader(options.input, batch_size=reader.batch_size, decoder=options.decoder,
                               hwdec=options.hwdec, start=reader.start, stop=reader.stop, fps=options.fps,
                               allow_gaps=options.allow_gaps, depth=depth, transfer=options.linear_transfer)


def paste_depth(options: RunOptions) -> str:
    """The depth of the pictures the paste writes into: the input's own (`native`) for the full and layer
    outputs, so that every pixel outside the face leaves as it came; 8 bits for the crop modes, which show the
    generator's crops."""
    return "native" if options.output_mode in ("full", "layer") else "8"


def input_reader(options: RunOptions, *, pictures_ride: bool) -> FrameReader:
    """The run's reader of its input. When its pictures go straight to the paste (a pass-through, or `--from`:
    nothing looks at them before), they are read at the paste's depth; else at the models' 8 bits."""
    return FrameReader(options.input, batch_size=model_batch(options), decoder=options.decoder, hwdec=options.hwdec,
                       fps=options.fps, allow_gaps=options.allow_gaps, transfer=options.linear_transfer,
                       depth=paste_depth(options) if pictures_ride else "8")


def make_writer(options: RunOptions, output: Path, info, codec: str, *, deep: bool, demo: bool, alpha: bool):
    """The output's writer: a video (VideoWriter) or an image sequence (SequenceWriter), keeping the input's depth
    when the pictures reaching it are `deep`, its colour, timecode and (for a video input) other streams."""
    from .video.sequence import SequenceWriter

    if is_sequence_name(output):
        # the input sequence's own pixel format by default (a 10-bit DPX stays 10-bit) where the pictures are deep
        return SequenceWriter(output, numbers=info.sequence.numbers if info.sequence is not None else None,
                              alpha=alpha, pix_fmt=options.pix_fmt or (info.pix_fmt if deep else None),
                              transfer=options.linear_transfer)
    return VideoWriter(output, time_base=info.time_base, rate=info.fps,
                       audio_from=options.input if info.sequence is None else None, codec=codec, crf=options.crf,
                       preset=options.preset, colour=info.colour, metadata=DEMO_METADATA if demo else None,
                       alpha=alpha, source_format=info.pix_fmt, bits=info.bits if deep else 8,
                       pix_fmt=options.pix_fmt, timecode=info.timecode, transfer=options.linear_transfer,
                       keep_source=options.input if info.sequence is None and info.rotation == 0
                       and (options.passthrough or options.output_mode == "full") else None)


def pixel_format_has_alpha(name: str) -> bool:
    import av

    try:
        return len(av.VideoFormat(name).components) == 4
    except ValueError:
        raise UserError(f"--pix-fmt {name}: not a pixel format FFmpeg knows") from None


def weights_file(name_or_path: str | None) -> Path | None:
    """The file behind a --generator/--encoder value (a path or a cached name), None for built-ins or unset."""
    if not name_or_path:
        return None
    from .models.resolve import resolve_model

    return resolve_model(name_or_path).path


def estimated_frames(reader: FrameReader) -> int | None:
    info = reader.info
    if info.frames:
        return info.frames
    if info.duration and info.fps:
        return int(round(info.duration * info.fps))
    return None


def run_video(options: RunOptions, reporter: Reporter, loaded: LoadedModels | None = None) -> dict:
    """`sg3stream run`, and `sg3stream.Editor.run` (which hands in its `loaded` models)."""
    check_options(options)
    output = check_output_path(options.output, options.input)
    to_sequence = is_sequence_name(output)
    if options.pix_fmt and to_sequence:
        check_sequence_pixel_format(output, options.pix_fmt)
    if options.pix_fmt and options.output_mode == "layer" and not to_sequence and not pixel_format_has_alpha(
            options.pix_fmt):
        raise UserError(f"--pix-fmt {options.pix_fmt} has no alpha: --output-mode layer needs one "
                        "(yuva444p10le for ProRes 4444, rgba64le or bgra for FFV1)")
    codec = layer_codec(output) if options.output_mode == "layer" and not to_sequence else resolve_codec(options.codec)
    if not to_sequence:
        check_codec(codec)
    # a pass-through or `--from` hands the pictures straight to the paste; else the paste's come from a second
    # decode at their own depth (with --redecode off they ride from the landmarks, at 8 bits)
    straight_to_paste = options.passthrough or options.from_artifacts is not None
    reader = input_reader(options, pictures_ride=straight_to_paste)
    info = reader.info
    deep = info.bits > 8 and paste_depth(options) == "native" and (straight_to_paste or options.redecode != "off")
    if not to_sequence:
        # the container, codec, pixel format, --crf/--preset and the copied streams, tried on two frames in memory
        check_codec(codec, output, crf=options.crf, preset=options.preset, size=(info.width, info.height),
                    streams_from=options.input if info.sequence is None else None, pix_fmt=options.pix_fmt,
                    bits=info.bits if deep else 8, source_format=info.pix_fmt)
    total = estimated_frames(reader)
    source = None  # what identifies the input, for run.json and `--from`
    if options.artifacts or options.from_artifacts:
        source = source_identity(options.input, reader.info.width, reader.info.height, total or 0)
    recorded = None
    if options.from_artifacts is not None:  # checked against this input and these options before any model loads
        if options.pti_steps > 0 or options.passthrough or is_oracle(options.generator):
            raise UserError("--from re-edits recorded faces: it does not go with --pti-steps, --passthrough or the "
                            "oracle (tune once with --pti-steps --save-generator, then re-edit with --generator)")
        recorded = RecordedRun(options.from_artifacts)
        recorded.check(options, source)
    if options.matte is not None:
        if options.output_mode != "full":
            raise UserError("--matte goes with --output-mode full (the matte is the blend into the full frame)")
        check_matte(options.matte, options.matte_depth, output)
    artifacts = Artifacts(options.artifacts) if options.artifacts else None
    writer = pipeline = matte = None
    try:
        parts, edits = load_parts(options, reporter, loaded) if not options.passthrough else (ChainParts(), {})
        parts.recorded = recorded
        chain = build_chain(options, parts, artifacts=artifacts, total_frames=total,
                            redecode=redecode_reader(options, reader, depth=paste_depth(options)))
        writer = make_writer(options, output, info, codec, deep=deep, demo=parts.demo,
                             alpha=options.output_mode == "layer" and bool(chain.stages))
        sink = writer.write
        if options.matte is not None and chain.stages:
            matte = open_matte(options.matte, time_base=info.time_base, rate=info.fps, depth=options.matte_depth,
                               numbers=info.sequence.numbers if info.sequence is not None else None)

            def sink(batch) -> None:
                writer.write(batch)
                matte.write(batch.data["matte"], batch.pts, batch.time_base, batch.index)
        budget = frame_budget(options, chain)
        pipeline = Pipeline(reader, chain, sink, queue_size=options.queue_size,
                            sequential=options.reference_mode, stall_timeout_s=options.stall_timeout,
                            max_frames_in_flight=budget)
        started = time.perf_counter()

        def tick(p: Pipeline) -> None:
            elapsed = time.perf_counter() - started
            reporter.progress(p.frames_done, p.frames_done / elapsed if elapsed > 0 else 0.0,
                              [s.to_dict() for s in p.stats])

        reporter.start(total, f"{Path(options.input).name}")
        try:
            stats = pipeline.run(on_tick=tick)
            if matte is not None:
                matte.commit()
            try:
                writer.commit()
            except BaseException:
                if matte is not None:  # both files or neither
                    matte.remove()
                raise
        finally:
            reporter.close()
    except BaseException:
        if writer is not None and pipeline is not None and pipeline.sink_running:
            writer.discard()  # the run gave up on a write in progress: closing under it could crash
        elif writer is not None:
            writer.abort()
        if matte is not None:
            matte.abort()
        if artifacts is not None:
            artifacts.abort()
        raise
    seconds = time.perf_counter() - started
    inverted = next((s.faces for s in stats if s.faces is not None), None)  # the first stage counting faces: invert
    faces = chain.faces.summary() if chain.faces is not None else recorded.run["faces"] if recorded else []
    for edit in parts.edits:
        if edit.track is not None and all(t["id"] != edit.track for t in faces):
            reporter.warning(f"--edit {edit.direction.name}@{edit.track}: no face track {edit.track} in this clip "
                             f"(tracks: {', '.join(str(t['id']) for t in faces) or 'none'}); nothing was edited by it")
    summary = {
        "input": str(options.input),
        "output": str(output),
        "frames": writer.frames_written,
        "frames_announced": info.frames,
        "complete": reader.complete,
        "acceleration": acceleration(parts.renderer, reader, codec),
        "memory": pipeline.memory(),
        "seconds": seconds,
        "fps": writer.frames_written / seconds if seconds > 0 else 0.0,
        # (frame, face) pairs inverted (each then edited, rendered and pasted), and per second as fps is
        "faces_inverted": inverted,
        "faces_per_s": inverted / seconds if inverted is not None and seconds > 0 else None,
        "stages": [s.to_dict() for s in stats],
        "faces": faces,
        "passed_through": chain.faces.passed_through() if chain.faces is not None else {},
    }
    if artifacts is not None:
        artifacts.commit()
        if edits:
            artifacts.write_json("edits.json", edits)
        artifacts.write_json("run.json", {
            **summary,
            "source": source,  # what a re-edit (`--from`) checks its input against
            "options": options.to_dict(),
            "video": info.to_dict(),
            "warnings": list(reporter.warnings),
            "versions": {"sg3stream": __version__, "python": platform.python_version()},
        })
    return summary

