"""In-loop deblocking of SSVC texture layers: a short, integer edge filter across the 8x8 transform-block
edges of a track's reconstruction, applied by encoder and decoder alike before the picture becomes a
reference (the structure of the H.264 normal-strength filter, List et al., IEEE TCSVT 2003: an edge is
smoothed only where the step across it is small enough to be a coding artefact, and the correction is
clipped). Thresholds grow with the quantiser step. Pixels outside the track's mask are never read
into a correction that lands inside it: an edge is filtered only where all four taps are in the mask.
"""
from __future__ import annotations

import numpy as np

from .transform import BLOCK


def thresholds(qp: int) -> tuple[int, int, int]:
    """(alpha, beta, tc): edge-step limit, side-flatness limit and correction clip for ``qp``."""
    s = 0.625 * 2.0 ** (qp / 6.0)  # the quantiser step in pixels
    alpha = int(round(min(2.0 * s, 80)))
    return alpha, max(1, alpha // 4), max(1, int(round(min(s / 4, 12))))


def _filter_axis(x: np.ndarray, m: np.ndarray, alpha: int, beta: int, tc: int) -> None:
    """Filter in place the edges between columns 8k-1 | 8k of x (h, w, 3) int64, mask m (h, w)."""
    w = x.shape[1]
    cols = np.arange(BLOCK, w - 1, BLOCK)
    cols = cols[cols >= 2]
    if not len(cols):
        return
    p1, p0, q0, q1 = (x[:, cols + d] for d in (-2, -1, 0, 1))
    ok = m[:, cols - 2] & m[:, cols - 1] & m[:, cols] & m[:, cols + 1]
    ok = ok[..., None] & (np.abs(p0 - q0) < alpha) & (np.abs(p1 - p0) < beta) & (np.abs(q1 - q0) < beta)
    delta = np.clip(((q0 - p0) * 4 + (p1 - q1) + 4) >> 3, -tc, tc) * ok
    x[:, cols - 1] = np.clip(p0 + delta, 0, 255)
    x[:, cols] = np.clip(q0 - delta, 0, 255)


def deblock(recon: np.ndarray, mask: np.ndarray, qp: int) -> np.ndarray:
    """(h, w, 3) uint8 reconstruction of a block-aligned region -> deblocked copy (vertical edges, then
    horizontal ones)."""
    alpha, beta, tc = thresholds(qp)
    x = recon.astype(np.int64)
    _filter_axis(x, mask, alpha, beta, tc)
    xt = np.ascontiguousarray(x.transpose(1, 0, 2))
    _filter_axis(xt, np.ascontiguousarray(mask.T), alpha, beta, tc)
    return xt.transpose(1, 0, 2).astype(np.uint8)
