"""Block motion for the per-group P-frames of SSVC: reference padding, estimation and compensation.

Each track predicts from *its own* previous reconstruction only (group-independent inter coding), so
the reference holds valid pixels only where the track was seen. Unseen pixels are filled by repetitive
padding, horizontally then vertically, as MPEG-4 Visual does for arbitrarily shaped video objects
(ISO/IEC 14496-2, 7.6.1). Everything here is integer and deterministic; estimation is encoder-only.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MB = 16  # motion block side
SEARCH = 32  # +- full-pel search range
MARGIN = SEARCH + MB + 1  # reference border, edge-replicated (+1: the bilinear taps)


def _fill_rows(img: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill invalid pixels of each row with the nearest valid pixel of that row (left wins ties)."""
    h, w = valid.shape
    idx = np.arange(w)[None, :].repeat(h, 0)
    left = np.maximum.accumulate(np.where(valid, idx, -1), axis=1)
    right = np.flip(np.minimum.accumulate(np.flip(np.where(valid, idx, w), 1), axis=1), 1)
    dl = np.where(left >= 0, idx - left, w + 1)
    dr = np.where(right < w, right - idx, w + 1)
    src = np.where(dl <= dr, left, right).clip(0, w - 1)
    out = np.take_along_axis(img, src[..., None], axis=1)
    row_ok = valid.any(1)
    return np.where(row_ok[:, None, None], out, img), row_ok


def pad_reference(canvas: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 reference with unseen pixels filled by repetitive padding (rows, then columns),
    then a MARGIN-pixel edge-replicated border for motion vectors pointing outside the frame."""
    if not seen.any():
        out = np.full_like(canvas, 128)
    elif seen.all():
        out = canvas
    else:
        out, row_ok = _fill_rows(canvas, seen)
        cols, _ = _fill_rows(out.transpose(1, 0, 2), np.repeat(row_ok[None, :], seen.shape[1], 0))
        out = cols.transpose(1, 0, 2)
    return np.pad(out, ((MARGIN, MARGIN), (MARGIN, MARGIN), (0, 0)), mode="edge")


def block_origins(region: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corners (ys, xs) of the MB x MB blocks of an MB-aligned region (x0, y0, x1, y1), raster order."""
    x0, y0, x1, y1 = region
    ys, xs = np.meshgrid(np.arange(y0, y1, MB), np.arange(x0, x1, MB), indexing="ij")
    return ys.ravel(), xs.ravel()


def compensate(ref_padded: np.ndarray, ys: np.ndarray, xs: np.ndarray, mv: np.ndarray, size: int = MB) -> np.ndarray:
    """(N, size, size, 3) predicted blocks at (ys, xs) displaced by integer ``mv`` (N, 2) = (dy, dx)."""
    r = np.arange(size)
    yy = (ys + mv[:, 0] + MARGIN)[:, None, None] + r[None, :, None]
    xx = (xs + mv[:, 1] + MARGIN)[:, None, None] + r[None, None, :]
    return ref_padded[yy, xx]


def _luma(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))


def estimate(cur: np.ndarray, ref_padded: np.ndarray, ys: np.ndarray, xs: np.ndarray,
             weight: np.ndarray | None = None, lam: float = 4.0, size: int = MB) -> np.ndarray:
    """Encoder: integer motion (N, 2) for the blocks at (ys, xs) of ``cur`` (frame, H x W x 3) against a
    padded reference. Coarse-to-fine: full search of +-SEARCH/4 at quarter resolution, then +-3 at full
    resolution around it and around zero; cost = SAD over the block's ``weight`` (the group mask, so
    pixels of other groups do not steer the vector) + lam * |mv| (favours cheap vectors). Blocks are
    ``size`` pixels square (a multiple of 4)."""
    n = len(ys)
    if n == 0:
        return np.zeros((0, 2), np.int64)
    h, w = cur.shape[:2]
    cur_p = np.pad(cur, ((0, MB + size), (0, MB + size), (0, 0)), mode="edge")  # regions run up to MB - 1 past the frame
    r = np.arange(size)
    cy = ys[:, None, None] + r[None, :, None]
    cx = xs[:, None, None] + r[None, None, :]
    cur_blocks = _luma(cur_p[cy, cx])  # (N, size, size)
    wts = torch.ones_like(cur_blocks) if weight is None else torch.from_numpy(
        np.pad(weight, ((0, MB + size), (0, MB + size)))[cy, cx].astype(np.float32))
    wts = wts + 1e-3  # blocks with no group pixel still get a defined (smooth) vector
    ref_l = _luma(ref_padded)

    # quarter-resolution full search
    s = 4
    cb = F.avg_pool2d(cur_blocks[:, None], s)[:, 0]  # (N, 4, 4)
    wb = F.avg_pool2d(wts[:, None], s)[:, 0]
    ref_q = F.avg_pool2d(ref_l[None, None], s)[0, 0]
    rq = SEARCH // s
    m = MARGIN // s
    qr = np.arange(size // s)
    best_cost = torch.full((n,), float("inf"))
    best = torch.zeros((n, 2), dtype=torch.long)
    by, bx = torch.from_numpy(ys // s + m), torch.from_numpy(xs // s + m)
    qq = torch.from_numpy(qr)
    for dy in range(-rq, rq + 1):
        for dx in range(-rq, rq + 1):
            yy = (by + dy)[:, None, None] + qq[None, :, None]
            xx = (bx + dx)[:, None, None] + qq[None, None, :]
            cost = ((ref_q[yy, xx] - cb).abs() * wb).sum((1, 2)) * (s * s) + lam * s * (abs(dy) + abs(dx))
            better = cost < best_cost
            best_cost = torch.where(better, cost, best_cost)
            best[better] = torch.tensor([dy * s, dx * s])
    # full-resolution refinement around the coarse vector and around zero
    rr = torch.from_numpy(r)
    oy, ox = torch.from_numpy(ys + MARGIN), torch.from_numpy(xs + MARGIN)
    final = torch.zeros((n, 2), dtype=torch.long)
    final_cost = torch.full((n,), float("inf"))
    for centre in (best, torch.zeros_like(best)):
        for dy in range(-3, 4):
            for dx in range(-3, 4):
                v = (centre + torch.tensor([dy, dx])).clamp(-SEARCH, SEARCH)
                yy = (oy + v[:, 0])[:, None, None] + rr[None, :, None]
                xx = (ox + v[:, 1])[:, None, None] + rr[None, None, :]
                cost = ((ref_l[yy, xx] - cur_blocks).abs() * wts).sum((1, 2)) + lam * v.abs().sum(1)
                better = cost < final_cost
                final_cost = torch.where(better, cost, final_cost)
                final[better] = v[better]
    return final.numpy().astype(np.int64)


#: motion vectors of coded P entries are in quarter pixels
QPEL = 4


def compensate_qpel(ref_padded: np.ndarray, ys: np.ndarray, xs: np.ndarray, mvq: np.ndarray, size: int = MB) -> np.ndarray:
    """(N, size, size, 3) int64 blocks displaced by quarter-pel ``mvq`` (N, 2): bilinear interpolation in
    exact integer arithmetic, ``(sum of w_ij * p_ij + 8) >> 4`` with weights in quarters (as H.264's chroma
    interpolation), so every machine predicts the same pixels."""
    iy, fy = mvq[:, 0] >> 2, mvq[:, 0] & 3
    ix, fx = mvq[:, 1] >> 2, mvq[:, 1] & 3
    r = np.arange(size)
    yy = (ys + iy + MARGIN)[:, None, None] + r[None, :, None]
    xx = (xs + ix + MARGIN)[:, None, None] + r[None, None, :]
    ref = ref_padded.astype(np.int64)
    a, b = ref[yy, xx], ref[yy, xx + 1]
    c, d = ref[yy + 1, xx], ref[yy + 1, xx + 1]
    wy, wx = fy[:, None, None, None], fx[:, None, None, None]
    return ((4 - wy) * (4 - wx) * a + (4 - wy) * wx * b + wy * (4 - wx) * c + wy * wx * d + 8) >> 4


def refine_qpel(cur: np.ndarray, ref_padded: np.ndarray, ys: np.ndarray, xs: np.ndarray, mv: np.ndarray,
                weight: np.ndarray | None = None, lam: float = 4.0, size: int = MB) -> tuple[np.ndarray, np.ndarray]:
    """Encoder: integer vectors (N, 2) -> (quarter-pel vectors, their costs), by a half-pel then a
    quarter-pel step of the 8 neighbours around the current best (cost: weighted SAD averaged over the
    three channels + lam * |mv| in pixels)."""
    n = len(ys)
    if n == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0)
    r = np.arange(size)
    cur_p = np.pad(cur, ((0, MB + size), (0, MB + size), (0, 0)), mode="edge").astype(np.int64)
    cy = ys[:, None, None] + r[None, :, None]
    cx = xs[:, None, None] + r[None, None, :]
    blocks = cur_p[cy, cx]
    wts = (np.ones((n, size, size)) if weight is None else np.pad(weight, ((0, MB + size), (0, MB + size)))[cy, cx]) + 1e-3

    def cost(v: np.ndarray) -> np.ndarray:
        sad = (np.abs(compensate_qpel(ref_padded, ys, xs, v, size) - blocks).sum(-1) * wts).sum((1, 2)) / 3
        return sad + lam * np.abs(v).sum(1) / QPEL

    best = mv.astype(np.int64) * QPEL
    best_cost = cost(best)
    for step in (2, 1):
        centre = best.copy()
        for dy in (-step, 0, step):
            for dx in (-step, 0, step):
                if dy == dx == 0:
                    continue
                v = np.clip(centre + np.array([dy, dx]), -SEARCH * QPEL, SEARCH * QPEL)
                c = cost(v)
                better = c < best_cost
                best_cost = np.where(better, c, best_cost)
                best[better] = v[better]
    return best, best_cost


def motion_search(cur: np.ndarray, ref_padded: np.ndarray, ys: np.ndarray, xs: np.ndarray, weight: np.ndarray,
                  split_penalty: float) -> tuple[np.ndarray, np.ndarray]:
    """Encoder: per 16x16 block either one quarter-pel vector or four (one per 8x8 quadrant), whichever
    has the lower cost, four costing ``split_penalty`` more (the extra vectors' bits times lambda).
    Returns (split flags (N,), vectors (N, 4, 2) in quadrant raster order)."""
    n = len(ys)
    v16, c16 = refine_qpel(cur, ref_padded, ys, xs, estimate(cur, ref_padded, ys, xs, weight=weight), weight=weight)
    qy = (ys[:, None] + np.array([0, 0, 8, 8])[None]).ravel()
    qx = (xs[:, None] + np.array([0, 8, 0, 8])[None]).ravel()
    v8, c8 = refine_qpel(cur, ref_padded, qy, qx, estimate(cur, ref_padded, qy, qx, weight=weight, size=8),
                         weight=weight, size=8)
    split = c8.reshape(n, 4).sum(1) + split_penalty < c16
    mv = np.where(split[:, None, None], v8.reshape(n, 4, 2), v16[:, None, :])
    return split, mv
