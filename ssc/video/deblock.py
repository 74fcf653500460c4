"""In-loop deblocking of SSVC texture layers: a short, integer edge filter across the 8x8 transform-block
edges of a track's reconstruction, applied by encoder and decoder alike before the picture becomes a
reference (the structure of the H.264 normal-strength filter, List et al., IEEE TCSVT 2003: an edge is
smoothed only where the step across it is small enough to be a coding artefact, and the correction is
clipped). Thresholds grow with the quantiser step. Pixels outside the track's mask are never read
into a correction that lands inside it: an edge is filtered only where all four taps are in the mask.
The loops are :func:`ssc.video.kernels.deblock_inplace`; this module holds the thresholds.
"""
from __future__ import annotations


def thresholds(qp: int) -> tuple[int, int, int]:
    """(alpha, beta, tc): edge-step limit, side-flatness limit and correction clip for ``qp``."""
    s = 0.625 * 2.0 ** (qp / 6.0)  # the quantiser step in pixels
    alpha = int(round(min(2.0 * s, 80)))
    return alpha, max(1, alpha // 4), max(1, int(round(min(s / 4, 12))))
