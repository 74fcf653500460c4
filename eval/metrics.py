"""Distortion metrics, whole image or restricted to one group's pixels."""
from __future__ import annotations

import math

import numpy as np


def mse(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared error over all channels, on ``mask`` pixels only when given (uint8 scale)."""
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        if not mask.any():
            raise ValueError("empty mask")
        d = d[mask]
    return float(d.mean())


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, peak: float = 255.0) -> float:
    """PSNR in dB (inf for identical inputs)."""
    e = mse(a, b, mask)
    return math.inf if e == 0 else 10 * math.log10(peak * peak / e)


def bpp(num_bytes: int, pixels: int) -> float:
    return 8.0 * num_bytes / pixels
