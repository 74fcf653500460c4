"""The detector's input: the image resized to 300x300 the way the reference pipeline does it
(OpenCV ``cv2.resize(..., INTER_LINEAR)`` on uint8), without OpenCV.

OpenCV's 8-bit bilinear resize is fixed-point: 11-bit weights from single-precision source
coordinates ``(d + 0.5) * scale - 0.5``, a horizontal pass into 32-bit sums, and a vertical pass that
drops 4 bits, keeps the high half of each 16x16-bit product and rounds the remaining 2 bits (its SIMD
path). This module follows those steps, so the uint8 input matches OpenCV's up to the odd 1-LSB
difference where OpenCV finishes a row with its scalar loop.
"""
from __future__ import annotations

import numpy as np
import torch

COEF_SCALE = 2048  # INTER_RESIZE_COEF_SCALE (11 bits)


def _coefficients(src: int, dst: int, clamp_low: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first index, weight of it, weight of the next) per destination index, as int16 weights."""
    scale = src / dst
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    i = np.floor(f).astype(np.int64)
    f = (f - i.astype(np.float32)).astype(np.float32)
    if clamp_low:  # horizontal pass: OpenCV zeroes the fraction at both borders
        low = i < 0
        f[low], i[low] = 0, 0
        high = i >= src - 1
        f[high], i[high] = 0, src - 1
    w0 = np.rint((np.float32(1) - f) * COEF_SCALE).astype(np.int64)
    w1 = np.rint(f * COEF_SCALE).astype(np.int64)
    return i, w0, w1


def resize_linear_u8(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, C) uint8 -> (height, width, C) uint8, OpenCV INTER_LINEAR semantics."""
    if img.dtype != np.uint8 or img.ndim != 3:
        raise ValueError(f"expected an (H, W, C) uint8 image, got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    if (h, w) == (height, width):
        return img.copy()
    xi, a0, a1 = _coefficients(w, width, True)
    xn = np.minimum(xi + 1, w - 1)
    yi, b0, b1 = _coefficients(h, height, False)
    y0, y1 = np.clip(yi, 0, h - 1), np.clip(yi + 1, 0, h - 1)
    rows = np.unique(np.concatenate([y0, y1]))
    src = torch.from_numpy(np.ascontiguousarray(img[rows])).to(torch.int32)  # (rows, w, C)
    xi_t, xn_t = torch.from_numpy(xi), torch.from_numpy(xn)
    horiz = (src.index_select(1, xi_t) * torch.from_numpy(a0).to(torch.int32).view(1, -1, 1)
             + src.index_select(1, xn_t) * torch.from_numpy(a1).to(torch.int32).view(1, -1, 1))
    t0 = horiz.index_select(0, torch.from_numpy(np.searchsorted(rows, y0))) >> 4
    t1 = horiz.index_select(0, torch.from_numpy(np.searchsorted(rows, y1))) >> 4
    b0_t = torch.from_numpy(b0).to(torch.int32).view(-1, 1, 1)
    b1_t = torch.from_numpy(b1).to(torch.int32).view(-1, 1, 1)
    out = (((t0 * b0_t) >> 16) + ((t1 * b1_t) >> 16) + 2) >> 2
    return out.clamp_(0, 255).to(torch.uint8).numpy()
