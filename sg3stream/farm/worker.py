"""One segment of a job through the normal pipeline, in a Ray worker (or any process).

The segment decodes its range with context, runs the stages `sg3stream run` runs, and keeps only its core
frames, written losslessly (FFV1, RGB) to SEGMENT.mkv in the job's work folder, with their pts in SEGMENT.json
(Matroska rounds timestamps to milliseconds, so the exact pts travel beside it). Both files are written under
temporary names and renamed when complete: a worker that dies leaves no file that looks finished.

The chain is the run's (sg3stream/chain.py, purpose "segment"): a segment without any face passes its frames
through, and the runner fails the job only if no segment of the clip had a face (as a whole-clip run would).
"""
from __future__ import annotations

import dataclasses
import json
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import UserError
from ..chain import ChainParts, build_chain, chain_context, frame_budget
from ..job import RunOptions, load_parts, redecode_reader
from ..pipeline.batch import FrameBatch
from ..pipeline.runner import Pipeline
from ..report import Reporter
from ..video.decode import FrameReader
from .manifest import sha256_file
from .segments import Segment

# Test hook: while this marker file does not exist, the first segment numbered 1 creates it and kills its worker
# after writing some frames (a worker dying mid-segment, for the retry tests). Unset in normal use.
CRASH_ENV = "SG3STREAM_FARM_CRASH_ONCE"
SEGMENT_CODEC = "ffv1"


class SegmentFile:
    """The core frames of a segment: lossless video + their pts, under temporary names until `commit`."""

    def __init__(self, folder: Path, segment: Segment, time_base: Fraction, rate: float):
        self.video = folder / f"{segment.name}.mkv"
        self.pts_file = folder / f"{segment.name}.json"
        self.tmp = folder / f".{segment.name}.partial-{os.getpid()}.mkv"
        self.segment, self.time_base, self.rate = segment, time_base, rate
        self.container = self.stream = None
        self.pts: list[int] = []
        self.index: list[int] = []
        self.found_face = False  # any frame of the segment, context included, had a face

    def write(self, batch: FrameBatch) -> None:
        self.found_face |= bool(np.any(batch.data.get("has_latents", False)))
        keep = batch.index >= self.segment.start
        if self.segment.stop is not None:
            keep &= batch.index < self.segment.stop
        if not keep.any():
            return
        if self.container is None:
            self.container = av.open(str(self.tmp), "w")
            self.stream = self.container.add_stream(SEGMENT_CODEC, rate=Fraction(self.rate or 25).limit_denominator(100000))
            self.stream.width, self.stream.height = batch.frames.shape[2], batch.frames.shape[1]
            self.stream.pix_fmt = "bgr0"  # RGB without chroma subsampling: the frames come back bit-exact
        for image, index, pts in zip(batch.frames[keep], batch.index[keep], batch.pts[keep]):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = len(self.pts)  # the file's own clock; the real pts go to the JSON beside it
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
            self.pts.append(int(pts))
            self.index.append(int(index))

    def commit(self, found_face: bool) -> dict:
        if self.container is None:
            raise UserError(f"segment {self.segment.number} has no frames in {self.segment.start}..{self.segment.stop}")
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()
        self.container = None
        os.replace(self.tmp, self.video)
        sidecar = {"segment": self.segment.to_dict(), "first_frame": self.index[0], "frames": len(self.pts),
                   "time_base": str(self.time_base), "pts": self.pts, "found_face": found_face}
        tmp = self.pts_file.with_name(f".{self.pts_file.name}.partial-{os.getpid()}")
        tmp.write_text(json.dumps(sidecar))
        os.replace(tmp, self.pts_file)
        return {"file": self.video.name, "sha256": sha256_file(self.video), "pts_file": self.pts_file.name,
                "pts_sha256": sha256_file(self.pts_file), "frames": len(self.pts), "first_frame": self.index[0],
                "last_frame": self.index[-1], "found_face": found_face}

    def abort(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            except Exception:  # a half-written file may not close cleanly; removing it is what matters
                pass
        self.tmp.unlink(missing_ok=True)


def run_segment(options: RunOptions, segment: Segment, work_dir: str, total_frames: int, planned_context: int) -> dict:
    """Run one segment; return what the manifest records about it (files, checksums, frames, warnings)."""
    reporter = Reporter()  # collects the warnings, which go back to the driver with the result
    with reporter.capturing_warnings():
        options = dataclasses.replace(options, landmark_workers=1, artifacts=None)
        reader = FrameReader(options.input, batch_size=options.batch_size, decoder=options.decoder,
                             hwdec=options.hwdec, start=segment.decode_start, stop=segment.decode_stop)
        parts = load_parts(options)[0] if not options.passthrough else ChainParts()
        chain = build_chain(options, parts, purpose="segment", total_frames=total_frames,
                            redecode=redecode_reader(options, reader))
        needed = chain_context(chain)
        if needed > planned_context:
            raise RuntimeError(f"the stages need {needed} frames of context, the plan gave {planned_context}")
        folder = Path(work_dir)
        folder.mkdir(parents=True, exist_ok=True)
        out = SegmentFile(folder, segment, reader.info.time_base, reader.info.fps)
        sink = crash_once_hook(out, segment) if os.environ.get(CRASH_ENV) else out.write
        try:
            Pipeline(reader, chain, sink, queue_size=options.queue_size, stall_timeout_s=options.stall_timeout,
                     max_frames_in_flight=frame_budget(options, chain)).run()
            result = out.commit(found_face=out.found_face or options.passthrough)
        except BaseException:
            out.abort()
            raise
    expected = None if segment.stop is None else segment.stop - segment.start
    if result["first_frame"] != segment.start or (expected is not None and result["frames"] != expected):
        raise UserError(f"segment {segment.number}: decoded frames {result['first_frame']}..{result['last_frame']} "
                        f"instead of {segment.start}..{segment.stop - 1 if segment.stop else 'the end'} "
                        "(damaged input?)")
    return {**result, "warnings": list(reporter.warnings)}


def crash_once_hook(out: SegmentFile, segment: Segment):
    """The test hook of CRASH_ENV around the sink: segment 1 dies once it has written some of its frames."""
    marker = Path(os.environ[CRASH_ENV])

    def write_then_maybe_die(batch: FrameBatch) -> None:
        out.write(batch)
        if segment.number == 1 and out.pts and not marker.exists():
            marker.write_text("crashed once\n")
            os._exit(1)

    return write_then_maybe_die
