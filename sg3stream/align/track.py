"""Temporal processing of per-frame quad parameters: gap bridging and smoothing (pure numpy, on a window).

Parameters are [N, D] float arrays, one row per consecutive frame, NaN rows where there is no value.
"""
from __future__ import annotations

import math

import numpy as np


def bridge_gaps(params: np.ndarray, valid: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Fill runs of at most `max_gap` invalid frames that have valid frames on both sides by linear interpolation.

    A gap touching either end has no neighbour there and is never filled (the window may continue).
    Returns (params with the gaps filled, bridged [N] bool: frames that were filled).
    """
    params = np.array(params, dtype=np.float64, copy=True)
    valid = np.asarray(valid, dtype=bool)
    n = len(valid)
    bridged = np.zeros(n, dtype=bool)
    if max_gap <= 0 or n == 0:
        return params, bridged
    idx = np.flatnonzero(valid)
    if len(idx) < 2:
        return params, bridged
    gaps = np.diff(idx) - 1
    for k in np.flatnonzero((gaps > 0) & (gaps <= max_gap)):
        a, b = idx[k], idx[k + 1]
        w = (np.arange(a + 1, b) - a) / (b - a)
        params[a + 1:b] = params[a] * (1 - w[:, None]) + params[b] * w[:, None]
        bridged[a + 1:b] = True
    return params, bridged


def smooth(params: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-weighted local linear regression over time, within each contiguous run of valid frames.

    In the middle of a run this is the Gaussian average (sigma in frames, window +-ceil(3 sigma)); at a run's ends
    the local line keeps linear motion unbiased (a truncated average would lag). sigma <= 0 returns the input.
    Invalid frames stay NaN.
    """
    params = np.asarray(params, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    out = np.where(valid[:, None], params, np.nan)
    if sigma <= 0 or len(params) == 0:
        return out
    n = len(valid)
    radius = window_radius(sigma)
    run = np.cumsum(~valid)  # frames of the same run share a value (invalid frames separate runs)
    y = np.where(valid[:, None], params, 0.0)
    s0 = np.zeros(n)
    s1 = np.zeros(n)
    s2 = np.zeros(n)
    t0 = np.zeros_like(y)
    t1 = np.zeros_like(y)
    for d in range(-radius, radius + 1):
        j = np.arange(n) + d
        inside = (j >= 0) & (j < n)
        jj = np.clip(j, 0, n - 1)
        ok = inside & valid & valid[jj] & (run[jj] == run)
        w = math.exp(-0.5 * (d / sigma) ** 2) * ok
        s0 += w
        s1 += w * d
        s2 += w * d * d
        t0 += w[:, None] * y[jj]
        t1 += (w * d)[:, None] * y[jj]
    den = s0 * s2 - s1 * s1
    with np.errstate(invalid="ignore", divide="ignore"):
        linear = (s2[:, None] * t0 - s1[:, None] * t1) / den[:, None]
        mean = t0 / s0[:, None]
    use_linear = den > 1e-9 * np.maximum(s0 * s2, 1e-30)
    res = np.where(use_linear[:, None], linear, mean)
    return np.where(valid[:, None], res, np.nan)


def window_radius(sigma: float) -> int:
    return int(math.ceil(3 * sigma)) if sigma > 0 else 0
