"""`sg3stream eval`: how good an edited video is against its source, frame by frame and overall.

score.py reads both inputs in step (sources.py) and finds the face region in the reference (faces.py: masks,
a run's alignment.npz or mediapipe; regions.py: face, seam band, outside, as paste-back blends). metrics.py holds
the measures, one function each; identity.py the face recognisers of TL-ID / TG-ID; perceptual.py LPIPS;
result.py the result and its JSON; plot.py the per-frame curves. Nothing heavy is imported until it is needed.
"""
from .result import EvalResult
from .score import evaluate

__all__ = ["EvalResult", "evaluate"]
