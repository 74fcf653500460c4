"""Residual transform and quantiser of the inter / refinement layer (SSVC texture coding).

The decoder side is exact integer arithmetic, so every machine rebuilds the same reference frames and
P-frames never drift between encoder and decoder:

- colour: the reversible YCoCg-R lifting transform (Malvar & Sullivan, JVT-I014, 2003) on residuals;
- 8x8 blocks: an integer approximation of the orthonormal DCT-II, ``T = round(sqrt(8)*64 * D)``, the
  same construction as the HEVC core transform (Budagavi et al., IEEE JSTSP 2013); the inverse is
  ``(T^T c T + 2^14) >> 15`` on int64;
- uniform quantisation with a dead zone, step ``0.625 * 2^(qp/6)`` (the H.264 / HEVC qp scale), stored
  as an integer step in 1/16 units.

The encoder's forward transform is float (it only decides the levels), the decoder's inverse is the
integer one, and the encoder reconstructs with that same inverse.
"""
from __future__ import annotations

import numpy as np

BLOCK = 8
MAX_QP = 51
#: chroma (Co, Cg) step = luma step * CHROMA_STEP_NUM / 16
CHROMA_STEP_NUM = 32
#: dead-zone rounding offset of the quantiser (HEVC's inter offset is 1/6, intra 1/3)
ROUNDING = 1 / 3

_n = np.arange(BLOCK)
_D = np.cos(np.pi * (2 * _n[None, :] + 1) * _n[:, None] / (2 * BLOCK)) * np.sqrt(2.0 / BLOCK)
_D[0] /= np.sqrt(2.0)
#: orthonormal DCT-II basis (rows = frequencies), float64
DCT = _D
#: its integer approximation; T @ T.T ~= 2^15 * I
T_INT = np.rint(_D * 64 * np.sqrt(BLOCK)).astype(np.int64)
#: right shift of the integer inverse transform
INVERSE_SHIFT = 15

#: zig-zag scan order of an 8x8 block (index into the flattened block)
ZIGZAG = np.array(sorted(range(64), key=lambda k: (k // 8 + k % 8, (k // 8) if (k // 8 + k % 8) % 2 else -(k // 8))), dtype=np.int64)
#: frequency band of each zig-zag position (bands share one entropy model)
BAND_EDGES = (1, 3, 6, 10, 15, 21, 28, 36, 48, 64)
BAND_OF_SCAN = np.searchsorted(np.array(BAND_EDGES), np.arange(64), side="right").astype(np.int64)
N_BANDS = len(BAND_EDGES)


def qstep16(qp: int, chroma: bool = False) -> int:
    """Integer quantiser step in 1/16 units for ``qp`` in [0, MAX_QP]."""
    if not 0 <= qp <= MAX_QP:
        raise ValueError(f"qp {qp} outside [0, {MAX_QP}]")
    s = int(round(16 * 0.625 * 2.0 ** (qp / 6.0)))
    return s * CHROMA_STEP_NUM // 16 if chroma else s


def rgb_to_ycocg(r: np.ndarray) -> np.ndarray:
    """(..., 3) int RGB (residuals allowed) -> (..., 3) int YCoCg-R; exactly invertible."""
    R, G, B = (r[..., i].astype(np.int64) for i in range(3))
    co = R - B
    t = B + (co >> 1)
    cg = G - t
    y = t + (cg >> 1)
    return np.stack([y, co, cg], -1)


def ycocg_to_rgb(c: np.ndarray) -> np.ndarray:
    y, co, cg = (c[..., i].astype(np.int64) for i in range(3))
    t = y - (cg >> 1)
    g = cg + t
    b = t - (co >> 1)
    r = b + co
    return np.stack([r, g, b], -1)


def to_blocks(plane: np.ndarray) -> np.ndarray:
    """(H, W) with H, W multiples of 8 -> (H/8 * W/8, 8, 8) in raster order."""
    h, w = plane.shape
    return plane.reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).swapaxes(1, 2).reshape(-1, BLOCK, BLOCK)


def from_blocks(blocks: np.ndarray, h: int, w: int) -> np.ndarray:
    return blocks.reshape(h // BLOCK, w // BLOCK, BLOCK, BLOCK).swapaxes(1, 2).reshape(h, w)


def quantise(blocks: np.ndarray, step16: int) -> np.ndarray:
    """Encoder: (N, 8, 8) residual blocks -> (N, 64) integer levels in zig-zag order."""
    c = DCT @ blocks.astype(np.float64) @ DCT.T
    q = np.abs(c) * 16.0 / step16
    lev = np.sign(c) * np.floor(q + ROUNDING)
    return lev.reshape(len(blocks), 64)[:, ZIGZAG].astype(np.int64)


def dequantise(levels: np.ndarray, step16: int) -> np.ndarray:
    """Decoder (and encoder reconstruction): (N, 64) zig-zag levels -> (N, 8, 8) int64 residuals."""
    flat = np.zeros_like(levels)
    flat[:, ZIGZAG] = levels
    d = np.sign(flat) * ((np.abs(flat) * step16 + 8) >> 4)
    c = d.reshape(-1, BLOCK, BLOCK)
    x = T_INT.T @ c @ T_INT
    return (x + (1 << (INVERSE_SHIFT - 1))) >> INVERSE_SHIFT
