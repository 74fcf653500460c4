"""Compiled inner loops of SSVC (numba): reference padding, quarter-pel prediction, reconstruction
(dequantiser, inverse integer DCT, YCoCg-R) and deblocking, which the decoder runs too; and the
encoder's luma, residual transform / quantiser and motion-search costs.

The vectorised NumPy / PyTorch forms of these loops built gather tensors of every candidate of every
block and many full-frame temporaries, and dominated the encoder's time. The decoder-side loops are
exact integer arithmetic; where they run in parallel, each block writes only its own pixels, so every
machine and thread count gives the same pixels. The search costs (mask-weighted luma SAD + lambda *
|mv|) are integers too, so every machine makes the same encoder decisions. None of the loops holds
the GIL.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

_CACHE = True  # compiled once per machine into __pycache__ (numba falls back to memory when read-only)


@njit(cache=_CACHE, nogil=True)
def pad_fill(canvas: np.ndarray, seen: np.ndarray, out: np.ndarray, margin: int) -> None:
    """Write into ``out`` (H + 2 margin, W + 2 margin, 3) the canvas with unseen pixels filled by
    repetitive padding (each row from its nearest seen pixel, left on ties; then each column of rows
    left empty from the nearest filled row, upper on ties) and an edge-replicated ``margin`` border."""
    h, w = seen.shape
    filled = np.zeros(h, np.bool_)
    left = np.empty(w, np.int64)
    for y in range(h):
        last = -1
        for x in range(w):
            if seen[y, x]:
                last = x
            left[x] = last
        if last < 0:
            continue
        filled[y] = True
        nxt = -1
        for x in range(w - 1, -1, -1):
            if seen[y, x]:
                nxt = x
            src = left[x]
            if src < 0 or (nxt >= 0 and nxt - x < x - src):
                src = nxt
            for c in range(3):
                out[y + margin, x + margin, c] = canvas[y, src, c]
    # rows without a seen pixel: the nearest filled row (upper on ties)
    up = np.empty(h, np.int64)
    last = -1
    for y in range(h):
        if filled[y]:
            last = y
        up[y] = last
    nxt = -1
    for y in range(h - 1, -1, -1):
        if filled[y]:
            nxt = y
        if filled[y]:
            continue
        src = up[y]
        if src < 0 or (nxt >= 0 and nxt - y < y - src):
            src = nxt
        for x in range(w):
            for c in range(3):
                out[y + margin, x + margin, c] = out[src + margin, x + margin, c]
    # the edge-replicated border
    H, W = h + 2 * margin, w + 2 * margin
    for y in range(margin, margin + h):
        for x in range(margin):
            for c in range(3):
                out[y, x, c] = out[y, margin, c]
                out[y, W - 1 - x, c] = out[y, margin + w - 1, c]
    for y in range(margin):
        for x in range(W):
            for c in range(3):
                out[y, x, c] = out[margin, x, c]
                out[H - 1 - y, x, c] = out[margin + h - 1, x, c]


@njit(cache=_CACHE, parallel=True, nogil=True)
def predict_blocks(ref: np.ndarray, ys: np.ndarray, xs: np.ndarray, mvq: np.ndarray, size: int, margin: int,
                   out: np.ndarray, tys: np.ndarray, txs: np.ndarray) -> None:
    """Quarter-pel bilinear prediction ``(sum w_ij p_ij + 8) >> 4`` (weights in quarters, as H.264's
    chroma interpolation) of the ``size`` blocks at (ys, xs) of the ``margin``-padded reference displaced
    by ``mvq`` (N, 2), written into ``out`` (int64) with top-left corners (tys, txs)."""
    for n in prange(len(ys)):  # disjoint target blocks: the same result on any thread count
        vy, vx = mvq[n, 0], mvq[n, 1]
        iy, fy = vy >> 2, vy & 3
        ix, fx = vx >> 2, vx & 3
        w00, w01, w10, w11 = (4 - fy) * (4 - fx), (4 - fy) * fx, fy * (4 - fx), fy * fx
        ry, rx = ys[n] + iy + margin, xs[n] + ix + margin
        ty, tx = tys[n], txs[n]
        for i in range(size):
            for j in range(size):
                for c in range(3):
                    v = (w00 * np.int64(ref[ry + i, rx + j, c]) + w01 * np.int64(ref[ry + i, rx + j + 1, c])
                         + w10 * np.int64(ref[ry + i + 1, rx + j, c]) + w11 * np.int64(ref[ry + i + 1, rx + j + 1, c]) + 8)
                    out[ty + i, tx + j, c] = v >> 4


#: motion-search costs are integers: luma in 1/16 units (BT.601 weights in 1/256), mask weights
#: IN / OUT (pixels outside the group still steer vectors a little), lambda in cost units per pixel
LUMA_SCALE, W_IN, W_OUT = 16, 1024, 1
COST_PER_PIXEL = LUMA_SCALE * W_IN


@njit(cache=_CACHE, inline="always")
def _wsad(cur: np.ndarray, wt: np.ndarray, ref: np.ndarray, by: int, bx: int, ry: int, rx: int, size: int) -> int:
    s = np.int64(0)
    for i in range(size):
        row = np.int32(0)  # one row stays below 2^31 (16 * 65280 * 1024)
        for j in range(size):
            row += np.int32(abs(ref[ry + i, rx + j] - cur[by + i, bx + j])) * wt[by + i, bx + j]
        s += row
    return s


@njit(cache=_CACHE, parallel=True, nogil=True)
def search_around(cur: np.ndarray, wt: np.ndarray, ref: np.ndarray, ys: np.ndarray, xs: np.ndarray,
                  centre: np.ndarray, r: int, size: int, pen: int, off: int,
                  best: np.ndarray, cost: np.ndarray) -> None:
    """Every block (ys, xs) of ``cur`` (weights ``wt``) against ``ref`` at the displacements centre + d,
    d in [-r, r]^2 (raster order, first wins ties): weighted SAD + pen * |centre + d|_1. The reference
    window of displacement v starts at (y + off + v, x + off + v). Writes ``best`` (N, 2) and ``cost``
    (N,). Blocks are independent, so the parallel loop gives the same result on any thread count."""
    for n in prange(len(ys)):
        bc = np.int64(1) << 62
        by, bx = 0, 0
        for dy in range(-r, r + 1):
            vy = centre[n, 0] + dy
            for dx in range(-r, r + 1):
                vx = centre[n, 1] + dx
                c = _wsad(cur, wt, ref, ys[n], xs[n], ys[n] + off + vy, xs[n] + off + vx, size) + pen * (abs(vy) + abs(vx))
                if c < bc:
                    bc, by, bx = c, vy, vx
        best[n, 0], best[n, 1], cost[n] = by, bx, bc


@njit(cache=_CACHE, parallel=True, nogil=True)
def candidate_costs(cur: np.ndarray, wt: np.ndarray, ref: np.ndarray, ys: np.ndarray, xs: np.ndarray,
                    cands: np.ndarray, size: int, pen: int, off: int, best: np.ndarray) -> None:
    """The cheapest of each block's candidate vectors ``cands`` (N, K, 2) (first on ties) into ``best``."""
    for n in prange(len(ys)):
        bc = np.int64(1) << 62
        for k in range(cands.shape[1]):
            vy, vx = cands[n, k, 0], cands[n, k, 1]
            c = _wsad(cur, wt, ref, ys[n], xs[n], ys[n] + off + vy, xs[n] + off + vx, size) + pen * (abs(vy) + abs(vx))
            if c < bc:
                bc = c
                best[n, 0], best[n, 1] = vy, vx


@njit(cache=_CACHE, inline="always")
def _qcost(cur: np.ndarray, wt: np.ndarray, ref: np.ndarray, by: int, bx: int, vy: int, vx: int, size: int,
           off: int, qpen: int) -> int:
    iy, fy = vy >> 2, vy & 3
    ix, fx = vx >> 2, vx & 3
    w00, w01, w10, w11 = (4 - fy) * (4 - fx), (4 - fy) * fx, fy * (4 - fx), fy * fx
    ry, rx = by + off + iy, bx + off + ix
    s = np.int64(0)
    for i in range(size):
        row = np.int32(0)
        for j in range(size):
            p = (w00 * ref[ry + i, rx + j] + w01 * ref[ry + i, rx + j + 1] + w10 * ref[ry + i + 1, rx + j]
                 + w11 * ref[ry + i + 1, rx + j + 1] + 8) >> 4
            row += np.int32(abs(p - cur[by + i, bx + j])) * wt[by + i, bx + j]
        s += row
    return s + qpen * (abs(vy) + abs(vx))


@njit(cache=_CACHE, parallel=True, nogil=True)
def quarter_refine(cur: np.ndarray, wt: np.ndarray, ref: np.ndarray, ys: np.ndarray, xs: np.ndarray,
                   mv: np.ndarray, size: int, qpen: int, off: int, limit: int, best: np.ndarray, cost: np.ndarray) -> None:
    """Integer vectors ``mv`` -> quarter-pel ``best``: a half-pel then a quarter-pel step over the 8
    neighbours of the current best (bilinear luma, rounded; ``qpen`` per quarter pixel of |mv|_1;
    vectors clamped to +-limit quarter pixels)."""
    for n in prange(len(ys)):
        vy, vx = mv[n, 0] * 4, mv[n, 1] * 4
        bc = _qcost(cur, wt, ref, ys[n], xs[n], vy, vx, size, off, qpen)
        for step in (2, 1):
            cy, cx = vy, vx
            for dy in (-step, 0, step):
                for dx in (-step, 0, step):
                    if dy == 0 and dx == 0:
                        continue
                    ty, tx = min(max(cy + dy, -limit), limit), min(max(cx + dx, -limit), limit)
                    c = _qcost(cur, wt, ref, ys[n], xs[n], ty, tx, size, off, qpen)
                    if c < bc:
                        bc, vy, vx = c, ty, tx
        best[n, 0], best[n, 1], cost[n] = vy, vx, bc


@njit(cache=_CACHE, parallel=True, nogil=True)
def reconstruct_blocks(pred: np.ndarray, levels: np.ndarray, steps: np.ndarray, blocks: np.ndarray, wb: int,
                       zigzag: np.ndarray, t: np.ndarray, shift: int, out: np.ndarray) -> None:
    """``out`` (h, w, 3) uint8 = clip(pred + residual): the residual of each coded 8x8 block (``blocks``:
    raster indices, ``wb`` blocks per row) from its YCoCg levels (3, nb, 64, zig-zag): dequantised
    ``sign(l) ((|l| step16 + 8) >> 4)``, inverse integer DCT ``(T^T c T + 2^(shift-1)) >> shift``, then
    YCoCg-R to RGB; blocks whose three planes are all zero add nothing."""
    h, w = pred.shape[0], pred.shape[1]
    for y in prange(h):
        for x in range(w):
            for c in range(3):
                out[y, x, c] = min(max(pred[y, x, c], 0), 255)
    half = np.int64(1) << (shift - 1)
    for k in prange(len(blocks)):  # blocks write disjoint pixels: the same result on any thread count
        nz = False
        for c in range(3):
            for i in range(64):
                if levels[c, k, i] != 0:
                    nz = True
        if not nz:
            continue
        coef = np.zeros((8, 8), np.int64)
        tmp = np.zeros((8, 8), np.int64)
        res = np.zeros((3, 8, 8), np.int64)
        for c in range(3):
            coef[:] = 0
            for i in range(64):
                lv = levels[c, k, i]
                if lv != 0:
                    mag = (abs(lv) * steps[c] + 8) >> 4
                    coef[zigzag[i] // 8, zigzag[i] % 8] = mag if lv > 0 else -mag
            for i in range(8):
                for j in range(8):
                    s = np.int64(0)
                    for m in range(8):
                        s += t[m, i] * coef[m, j]
                    tmp[i, j] = s
            for i in range(8):
                for j in range(8):
                    s = np.int64(0)
                    for m in range(8):
                        s += tmp[i, m] * t[m, j]
                    res[c, i, j] = (s + half) >> shift
        by, bx = (blocks[k] // wb) * 8, (blocks[k] % wb) * 8
        for i in range(8):
            for j in range(8):
                yy, co, cg = res[0, i, j], res[1, i, j], res[2, i, j]
                tt = yy - (cg >> 1)
                g = cg + tt
                b = tt - (co >> 1)
                r = b + co
                out[by + i, bx + j, 0] = min(max(pred[by + i, bx + j, 0] + r, 0), 255)
                out[by + i, bx + j, 1] = min(max(pred[by + i, bx + j, 1] + g, 0), 255)
                out[by + i, bx + j, 2] = min(max(pred[by + i, bx + j, 2] + b, 0), 255)


@njit(cache=_CACHE, nogil=True)
def _deblock_edges(x: np.ndarray, m: np.ndarray, alpha: int, beta: int, tc: int, vertical: bool) -> None:
    h, w = (x.shape[0], x.shape[1]) if vertical else (x.shape[1], x.shape[0])
    for e in range(8, w - 1, 8):
        if e < 2:
            continue
        for y in range(h):
            if vertical:
                ok = m[y, e - 2] and m[y, e - 1] and m[y, e] and m[y, e + 1]
            else:
                ok = m[e - 2, y] and m[e - 1, y] and m[e, y] and m[e + 1, y]
            if not ok:
                continue
            for c in range(3):
                if vertical:
                    p1, p0, q0, q1 = np.int64(x[y, e - 2, c]), np.int64(x[y, e - 1, c]), np.int64(x[y, e, c]), np.int64(x[y, e + 1, c])
                else:
                    p1, p0, q0, q1 = np.int64(x[e - 2, y, c]), np.int64(x[e - 1, y, c]), np.int64(x[e, y, c]), np.int64(x[e + 1, y, c])
                if abs(p0 - q0) < alpha and abs(p1 - p0) < beta and abs(q1 - q0) < beta:
                    d = min(max(((q0 - p0) * 4 + (p1 - q1) + 4) >> 3, -tc), tc)
                    a, b = min(max(p0 + d, 0), 255), min(max(q0 - d, 0), 255)
                    if vertical:
                        x[y, e - 1, c], x[y, e, c] = a, b
                    else:
                        x[e - 1, y, c], x[e, y, c] = a, b


@njit(cache=_CACHE, nogil=True)
def deblock_inplace(x: np.ndarray, m: np.ndarray, alpha: int, beta: int, tc: int) -> None:
    """The edge filter of :mod:`ssc.video.deblock` on (h, w, 3) uint8 in place: vertical edges (columns
    8k-1 | 8k), then horizontal ones; an edge position is filtered only where its four taps are in the
    mask ``m``, and per channel only where the step is small enough to be a coding artefact."""
    _deblock_edges(x, m, alpha, beta, tc, True)
    _deblock_edges(x, m, alpha, beta, tc, False)


@njit(cache=_CACHE, nogil=True)
def masked_block_sads(a: np.ndarray, b: np.ndarray, mask: np.ndarray, ys: np.ndarray, xs: np.ndarray, size: int,
                      out: np.ndarray) -> None:
    """``out[n]``: sum over the three channels of |a - b| inside ``mask`` on the ``size`` block at (ys, xs)."""
    for n in range(len(ys)):
        s = np.int64(0)
        for i in range(ys[n], ys[n] + size):
            for j in range(xs[n], xs[n] + size):
                if mask[i, j]:
                    for c in range(3):
                        s += abs(np.int64(a[i, j, c]) - np.int64(b[i, j, c]))
        out[n] = s


@njit(cache=_CACHE, parallel=True, nogil=True)
def residual_levels(cur: np.ndarray, pred: np.ndarray, mask: np.ndarray, blocks: np.ndarray, wb: int,
                    steps: np.ndarray, dct: np.ndarray, zigzag: np.ndarray, rounding: float, out: np.ndarray,
                    scaled: np.ndarray) -> None:
    """Encoder: levels (3, nb, 64, zig-zag) of the masked residual cur - pred of each coded 8x8 block
    (``blocks``: raster indices, ``wb`` per row): YCoCg-R, float DCT-II ``D B D^T``, dead-zone
    quantiser ``sign(c) floor(|c| 16 / step16 + rounding)``; ``scaled`` (same shape, float) gets
    ``c 16 / step16``, the coefficients in quantiser steps (for the encoder's rate-distortion choices)."""
    for k in prange(len(blocks)):
        res = np.zeros((3, 8, 8))
        tmp = np.zeros((8, 8))
        by, bx = (blocks[k] // wb) * 8, (blocks[k] % wb) * 8
        for i in range(8):
            for j in range(8):
                if mask[by + i, bx + j]:
                    r = np.int64(cur[by + i, bx + j, 0]) - pred[by + i, bx + j, 0]
                    g = np.int64(cur[by + i, bx + j, 1]) - pred[by + i, bx + j, 1]
                    b = np.int64(cur[by + i, bx + j, 2]) - pred[by + i, bx + j, 2]
                else:
                    r = g = b = np.int64(0)
                co = r - b
                t = b + (co >> 1)
                cg = g - t
                res[0, i, j], res[1, i, j], res[2, i, j] = t + (cg >> 1), co, cg
        for c in range(3):
            for i in range(8):
                for j in range(8):
                    s = 0.0
                    for m in range(8):
                        s += res[c, i, m] * dct[j, m]
                    tmp[i, j] = s
            for n in range(64):
                u, v = zigzag[n] // 8, zigzag[n] % 8
                s = 0.0
                for m in range(8):
                    s += dct[u, m] * tmp[m, v]
                x = s * 16.0 / steps[c]
                scaled[c, k, n] = x
                q = np.floor(abs(x) + rounding)
                out[c, k, n] = np.int64(q) if s >= 0 else -np.int64(q)


@njit(cache=_CACHE, parallel=True, nogil=True)
def luma16(img: np.ndarray, out: np.ndarray) -> None:
    """``out`` (h, w) int32: BT.601 luma of ``img`` (h, w, 3) uint8 in 1/16 units,
    (77 R + 150 G + 29 B + 8) >> 4."""
    for y in prange(img.shape[0]):
        for x in range(img.shape[1]):
            out[y, x] = (77 * np.int32(img[y, x, 0]) + 150 * np.int32(img[y, x, 1]) + 29 * np.int32(img[y, x, 2]) + 8) >> 4


@njit(cache=_CACHE, parallel=True, nogil=True)
def pool_sum(a: np.ndarray, s: int, out: np.ndarray) -> None:
    """``out`` (h // s, w // s): sums of the s x s cells of ``a`` (int32)."""
    for cy in prange(out.shape[0]):
        for cx in range(out.shape[1]):
            t = np.int32(0)
            for i in range(s):
                for j in range(s):
                    t += a[cy * s + i, cx * s + j]
            out[cy, cx] = t


@njit(cache=_CACHE, nogil=True)
def block_sums(a: np.ndarray, ys: np.ndarray, xs: np.ndarray, size: int, out: np.ndarray) -> None:
    """``out[n]``: the sum of ``a`` over the ``size`` block at (ys[n], xs[n])."""
    for n in range(len(ys)):
        t = np.int64(0)
        for i in range(size):
            for j in range(size):
                t += a[ys[n] + i, xs[n] + j]
        out[n] = t


@njit(cache=_CACHE, nogil=True)
def masked_write(canvas: np.ndarray, seen: np.ndarray, src: np.ndarray, mask: np.ndarray, y0: int, x0: int) -> None:
    """Write ``src`` (h, w, 3) into ``canvas`` at (y0, x0) where ``mask`` (the frame's, (H, W) bool)
    is set, and mark those pixels ``seen``; ``src`` may run past the frame (clipped)."""
    h = min(src.shape[0], canvas.shape[0] - y0)
    w = min(src.shape[1], canvas.shape[1] - x0)
    for y in range(h):
        for x in range(w):
            if mask[y0 + y, x0 + x]:
                for c in range(3):
                    canvas[y0 + y, x0 + x, c] = src[y, x, c]
                seen[y0 + y, x0 + x] = True


@njit(cache=_CACHE, inline="always")
def _med3(a: int, b: int, c: int) -> int:
    return max(min(a, b), min(max(a, b), c))


@njit(cache=_CACHE)
def mv_walk(at: np.ndarray, gy: np.ndarray, gx: np.ndarray, split: np.ndarray, mv: np.ndarray, same: np.ndarray,
            diff: np.ndarray, decode: bool) -> int:
    """The motion vectors of a version-2 P layer in coding order (blocks in raster order, four vectors
    for a split block), each against its predictor. A block's first vector is predicted by the median
    of its coded neighbours' nearest vectors: left (its top-right quadrant), top (bottom-left) and
    top-right (bottom-left), or top-left (bottom-right) where there is no top-right block; one coded
    neighbour is its own predictor and a missing one counts as zero in the median (H.264's rule,
    8.4.1.3). A block without coded neighbours (the first, or a part of a mask apart from the rest) is
    predicted by the vector coded before it (zero for the first). The other three vectors of a split
    block are predicted by the one before.
    ``at`` (grid h, grid w) holds each grid cell's block index or -1; (``gy``, ``gx``) are the blocks'
    cells. Encoding (``decode`` False) reads ``mv`` (N, 4, 2) and writes ``same`` (K,) = vector equals
    its predictor and ``diff`` (K, 2) = vector - predictor; decoding reads them and writes ``mv``.
    Sequential (each prediction needs the vectors before it), so every machine gives the same vectors.
    Returns K, the number of coded vectors."""
    k = 0
    gw = at.shape[1]
    last = np.zeros(2, np.int64)  # the vector coded before
    for i in range(len(gy)):
        y, x = gy[i], gx[i]
        a = at[y, x - 1] if x > 0 else -1
        b = at[y - 1, x] if y > 0 else -1
        c = at[y - 1, x + 1] if (y > 0 and x + 1 < gw) else -1
        cq = 2
        if c < 0:
            c = at[y - 1, x - 1] if (y > 0 and x > 0) else -1
            cq = 3
        n = (a >= 0) + (b >= 0) + (c >= 0)
        p = last.copy()
        for j in range(2):
            va = mv[a, 1, j] if a >= 0 else 0
            vb = mv[b, 2, j] if b >= 0 else 0
            vc = mv[c, cq, j] if c >= 0 else 0
            if n == 1:
                p[j] = va + vb + vc  # the one coded neighbour (the others count zero)
            elif n > 1:
                p[j] = _med3(va, vb, vc)
        for q in range(4 if split[i] else 1):
            if q > 0:
                p[0], p[1] = mv[i, q - 1, 0], mv[i, q - 1, 1]
            if decode:
                for j in range(2):
                    mv[i, q, j] = p[j] if same[k] else p[j] + diff[k, j]
            else:
                same[k] = mv[i, q, 0] == p[0] and mv[i, q, 1] == p[1]
                for j in range(2):
                    diff[k, j] = mv[i, q, j] - p[j]
            last[0], last[1] = mv[i, q, 0], mv[i, q, 1]
            k += 1
        if not split[i]:
            for q in range(1, 4):
                mv[i, q, 0], mv[i, q, 1] = mv[i, 0, 0], mv[i, 0, 1]
    return k
