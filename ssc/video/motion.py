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

from dataclasses import dataclass

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


def _windows(img: torch.Tensor, y0: np.ndarray, x0: np.ndarray, side: int) -> torch.Tensor:
    """(N, side, side) square windows of a 2-D tensor at top-left corners (y0, x0): one gather."""
    r = torch.arange(side)
    yy = torch.from_numpy(np.asarray(y0))[:, None, None] + r[None, :, None]
    xx = torch.from_numpy(np.asarray(x0))[:, None, None] + r[None, None, :]
    return img[yy, xx]


def _best_in_windows(win: torch.Tensor, tgt: torch.Tensor, wt: torch.Tensor, penalty: torch.Tensor,
                     chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Every displacement of ``tgt`` (N, q, q) inside ``win`` (N, q + 2r, q + 2r) at once (unfolded
    views, in chunks of blocks): weighted SAD + ``penalty`` ((N,) 2r+1, 2r+1). Returns the (dy, dx) offsets
    in [0, 2r] of the cheapest (first in raster order on ties) and its cost."""
    q = tgt.shape[-1]
    k = win.shape[-1] - q + 1
    idx, cost = [], []
    for i in range(0, len(win), chunk):
        cand = win[i : i + chunk].unfold(1, q, 1).unfold(2, q, 1)  # (n, k, k, q, q)
        pen = penalty[i : i + chunk] if penalty.dim() == 3 else penalty
        c = ((cand - tgt[i : i + chunk, None, None]).abs() * wt[i : i + chunk, None, None]).sum((-1, -2)) + pen
        v, j = c.flatten(1).min(1)
        idx.append(j)
        cost.append(v)
    j = torch.cat(idx)
    return torch.stack([j // k, j % k], 1), torch.cat(cost)


class MotionSearch:
    """Encoder-side motion search of one frame against one padded reference (luma): integer search
    (full at quarter resolution, refined at full resolution) and quarter-pel refinement on the 16
    bilinear phases of the reference (computed once)."""

    def __init__(self, cur: np.ndarray, ref_padded: np.ndarray, weight: np.ndarray | None = None,
                 region: tuple[int, int, int, int] | None = None) -> None:
        """``region`` (x0, y0, x1, y1; MB-aligned, may run up to MB - 1 past the frame) limits the work
        to the blocks inside it and the reference they can reach: the same vectors and costs as a
        whole-frame search for those blocks, at the cost of the region instead of the frame."""
        pad = ((0, 2 * MB), (0, 2 * MB))  # regions (and their 8x8 quadrants) run up to MB - 1 past the frame
        h, w = cur.shape[:2]
        x0, y0, x1, y1 = region if region is not None else (0, 0, w + 2 * MB, h + 2 * MB)
        if y0 % 4 or x0 % 4:
            raise ValueError("motion-search regions start on the 4-pixel grid (quarter-resolution cells)")
        self.oy, self.ox = y0, x0
        self.cur = _luma(np.pad(cur, pad + ((0, 0),), mode="edge")[y0:y1, x0:x1])
        wgt = np.pad(weight if weight is not None else np.ones((h, w), bool), pad)[y0:y1, x0:x1]
        self.weight = torch.from_numpy(wgt.astype(np.float32)) + 1e-3
        self.ref = _luma(ref_padded[y0 : y1 + 2 * MARGIN, x0 : x1 + 2 * MARGIN])
        self.ref_q = F.avg_pool2d(self.ref[None, None], 4)[0, 0]
        self._phases: torch.Tensor | None = None

    def _blocks(self, ys: np.ndarray, xs: np.ndarray, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _windows(self.cur, ys - self.oy, xs - self.ox, size), _windows(self.weight, ys - self.oy, xs - self.ox, size)

    def integer(self, ys: np.ndarray, xs: np.ndarray, size: int = MB, lam: float = 4.0) -> np.ndarray:
        """(N, 2) integer vectors: +-SEARCH at quarter resolution, then +-3 at full resolution around
        that vector and around zero (weighted luma SAD + lam * |mv|; blocks with no group pixel keep a
        smooth vector through the small weight floor)."""
        n = len(ys)
        if n == 0:
            return np.zeros((0, 2), np.int64)
        tgt, wt = self._blocks(ys, xs, size)
        ys, xs = ys - self.oy, xs - self.ox  # window coordinates from here on
        s, rq = 4, SEARCH // 4
        d = torch.arange(-rq, rq + 1)
        pen = lam * s * (d.abs()[:, None] + d.abs()[None, :]).float()
        win = _windows(self.ref_q, ys // s + MARGIN // s - rq, xs // s + MARGIN // s - rq, size // s + 2 * rq)
        off, _ = _best_in_windows(win, F.avg_pool2d(tgt[:, None], s)[:, 0], F.avg_pool2d(wt[:, None], s)[:, 0] * (s * s), pen)
        coarse = ((off - rq) * s).clamp(-SEARCH + 3, SEARCH - 3)
        best, best_cost = self._around(tgt, wt, ys, xs, coarse, 3, size, lam)
        v0, c0 = self._around(tgt, wt, ys, xs, torch.zeros_like(coarse), 3, size, lam)
        better = c0 < best_cost
        return torch.where(better[:, None], v0, best).numpy().astype(np.int64)

    def _around(self, tgt: torch.Tensor, wt: torch.Tensor, ys: np.ndarray, xs: np.ndarray, centre: torch.Tensor, r: int,
                size: int, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-resolution search over +-``r`` around integer ``centre`` (N, 2) (window coordinates)."""
        c = centre.numpy()
        d = torch.arange(-r, r + 1)
        win = _windows(self.ref, ys + MARGIN + c[:, 0] - r, xs + MARGIN + c[:, 1] - r, size + 2 * r)
        pen = lam * ((centre[:, :1, None] + d[None, :, None]).abs() + (centre[:, 1:, None] + d[None, None, :]).abs()).float()
        off, cost = _best_in_windows(win, tgt, wt, pen)
        return centre + off - r, cost

    def refine(self, ys: np.ndarray, xs: np.ndarray, centre: np.ndarray, r: int, size: int = MB, lam: float = 4.0) -> np.ndarray:
        """(N, 2) integer vectors from a full-resolution +-``r`` search around ``centre`` (N, 2) only
        (the fast path: a predicted vector instead of the +-SEARCH search of :meth:`integer`)."""
        if len(ys) == 0:
            return np.zeros((0, 2), np.int64)
        tgt, wt = self._blocks(ys, xs, size)
        c = torch.from_numpy(np.asarray(centre, np.int64)).clamp(-SEARCH + r, SEARCH - r)
        v, _ = self._around(tgt, wt, ys - self.oy, xs - self.ox, c, r, size, lam)
        return v.numpy().astype(np.int64)

    def predicted(self, ys: np.ndarray, xs: np.ndarray, cands: np.ndarray, r: int, fallback: float,
                  size: int = MB, lam: float = 4.0) -> np.ndarray:
        """(N, 2) integer vectors from predictor candidates ``cands`` (N, K, 2): the cheapest candidate
        (weighted SAD + lam * |mv|), refined +-``r`` at full resolution; blocks still costing more than
        ``fallback`` per unit weight get the full :meth:`integer` search instead."""
        n = len(ys)
        if n == 0:
            return np.zeros((0, 2), np.int64)
        tgt, wt = self._blocks(ys, xs, size)
        wy, wx = ys - self.oy, xs - self.ox
        c = torch.from_numpy(np.clip(cands, -SEARCH + r, SEARCH - r).astype(np.int64))  # (N, K, 2)
        k = c.shape[1]
        r_ = torch.arange(size)
        yy = (torch.from_numpy(wy + MARGIN)[:, None, None, None] + c[:, :, 0, None, None] + r_[None, None, :, None])
        xx = (torch.from_numpy(wx + MARGIN)[:, None, None, None] + c[:, :, 1, None, None] + r_[None, None, None, :])
        cost = ((self.ref[yy, xx] - tgt[:, None]).abs() * wt[:, None]).sum((-1, -2)) + lam * c.abs().sum(-1).float()
        best = c[torch.arange(n), cost.argmin(1)]  # first candidate on ties
        v, vc = self._around(tgt, wt, wy, wx, best, r, size, lam)
        hard = (vc / wt.sum((1, 2)) > fallback).numpy()
        out = v.numpy().astype(np.int64)
        if hard.any():
            out[hard] = self.integer(ys[hard], xs[hard], size, lam)
        return out

    def zero_sad(self, ys: np.ndarray, xs: np.ndarray, size: int = MB) -> np.ndarray:
        """(N,) weighted luma SAD per unit weight of each block at the zero vector."""
        tgt, wt = self._blocks(ys, xs, size)
        ref = _windows(self.ref, ys - self.oy + MARGIN, xs - self.ox + MARGIN, size)
        return (((ref - tgt).abs() * wt).sum((1, 2)) / wt.sum((1, 2))).numpy()

    def _phase_planes(self) -> torch.Tensor:
        if self._phases is None:
            r = self.ref
            a, b, c, d = r[:-1, :-1], r[:-1, 1:], r[1:, :-1], r[1:, 1:]
            self._phases = torch.stack([((4 - fy) * (4 - fx) * a + (4 - fy) * fx * b + fy * (4 - fx) * c + fy * fx * d) / 16
                                        for fy in range(4) for fx in range(4)])
        return self._phases

    def quarter(self, ys: np.ndarray, xs: np.ndarray, mv: np.ndarray, size: int = MB, lam: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
        """Integer vectors (N, 2) -> (quarter-pel vectors, costs): a half-pel then a quarter-pel step over
        the 8 neighbours of the current best (weighted luma SAD + lam * |mv| in pixels)."""
        n = len(ys)
        if n == 0:
            return np.zeros((0, 2), np.int64), np.zeros(0)
        tgt, wt = self._blocks(ys, xs, size)
        planes = self._phase_planes()
        r = torch.arange(size)
        by, bx = torch.from_numpy(ys - self.oy + MARGIN), torch.from_numpy(xs - self.ox + MARGIN)

        def cost(v: torch.Tensor) -> torch.Tensor:
            ph = ((v[:, 0] & 3) * 4 + (v[:, 1] & 3))[:, None, None]
            yy = (by + (v[:, 0] >> 2))[:, None, None] + r[None, :, None]
            xx = (bx + (v[:, 1] >> 2))[:, None, None] + r[None, None, :]
            return ((planes[ph, yy, xx] - tgt).abs() * wt).sum((1, 2)) + lam * v.abs().sum(1) / QPEL

        best = torch.from_numpy(mv.astype(np.int64) * QPEL)
        best_cost = cost(best)
        for step in (2, 1):
            centre = best.clone()
            for dy in (-step, 0, step):
                for dx in (-step, 0, step):
                    if dy == dx == 0:
                        continue
                    v = (centre + torch.tensor([dy, dx])).clamp(-SEARCH * QPEL, SEARCH * QPEL)
                    c = cost(v)
                    better = c < best_cost
                    best_cost = torch.where(better, c, best_cost)
                    best = torch.where(better[:, None], v, best)
        return best.numpy().astype(np.int64), best_cost.numpy()


def estimate(cur: np.ndarray, ref_padded: np.ndarray, ys: np.ndarray, xs: np.ndarray,
             weight: np.ndarray | None = None, lam: float = 4.0, size: int = MB) -> np.ndarray:
    """Integer motion (N, 2) of the ``size``-square blocks at (ys, xs) of ``cur`` against a padded
    reference (:meth:`MotionSearch.integer`)."""
    return MotionSearch(cur, ref_padded, weight).integer(ys, xs, size, lam)


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


@dataclass(frozen=True)
class SearchTools:
    """Encoder-only speed tools of the motion search (the bitstream is the same; vectors may differ).
    ``None`` switches a tool off (the exhaustive search everywhere).

    - ``skip_sad``: a 16x16 block whose weighted luma SAD per pixel at the zero vector is below this
      keeps the zero vector, unsplit, without a search (static background of a fixed camera);
    - ``quadrant_r``: the 8x8 quadrants of a block search +-r around the block's integer vector
      instead of their own +-SEARCH search;
    - ``second_r``: the vector into the older reference searches +-r around twice the block's vector
      into the newer one (one frame further back, so about twice the displacement);
    - ``predict_r``: see below.
    """

    skip_sad: float | None = 1.0
    quadrant_r: int | None = 2
    second_r: int | None = 3
    #: 16x16 blocks: +-r around the best of the predictors (zero, the block's and its neighbours'
    #: vectors in the track's previous P entry) instead of the exhaustive search, which only blocks
    #: still costing more than ``predict_fallback`` per pixel get
    predict_r: int | None = 2
    predict_fallback: float = 6.0


#: the exhaustive search (every tool off), as the first SSVC encoder did it
EXHAUSTIVE = SearchTools(None, None, None, None)


def neighbour_candidates(grid: np.ndarray | None, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """(N, 6, 2) predictor vectors per block: zero, and the previous entry's integer vectors (``grid``:
    (H/MB, W/MB, 2) on the frame's block grid, None when unknown) at the block and its four neighbours."""
    n = len(ys)
    out = np.zeros((n, 6, 2), np.int64)
    if grid is None or n == 0:
        return out
    gy, gx = ys // MB, xs // MB
    for k, (dy, dx) in enumerate(((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)), start=1):
        out[:, k] = grid[np.clip(gy + dy, 0, grid.shape[0] - 1), np.clip(gx + dx, 0, grid.shape[1] - 1)]
    return out


def motion_search(cur: np.ndarray, ref_padded: np.ndarray, ys: np.ndarray, xs: np.ndarray, weight: np.ndarray,
                  split_penalty: float, search: MotionSearch | None = None,
                  region: tuple[int, int, int, int] | None = None,
                  tools: SearchTools = EXHAUSTIVE, grid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encoder: per 16x16 block either one quarter-pel vector or four (one per 8x8 quadrant), whichever
    has the lower cost, four costing ``split_penalty`` more (the extra vectors' bits times lambda).
    ``grid``: the track's integer vectors of its previous P entry (predictors for ``tools.predict_r``).
    Returns (split flags (N,), vectors (N, 4, 2) in quadrant raster order, integer block vectors (N, 2))."""
    n = len(ys)
    ms = search or MotionSearch(cur, ref_padded, weight, region)
    split = np.zeros(n, bool)
    mv = np.zeros((n, 4, 2), np.int64)
    v_int = np.zeros((n, 2), np.int64)
    act = np.ones(n, bool) if tools.skip_sad is None or n == 0 else ms.zero_sad(ys, xs) >= tools.skip_sad
    if act.any():
        ya, xa = ys[act], xs[act]
        m = len(ya)
        if tools.predict_r is None:
            vi = ms.integer(ya, xa)
        else:
            vi = ms.predicted(ya, xa, neighbour_candidates(grid, ya, xa), tools.predict_r, tools.predict_fallback)
        v16, c16 = ms.quarter(ya, xa, vi)
        qy = (ya[:, None] + np.array([0, 0, 8, 8])[None]).ravel()
        qx = (xa[:, None] + np.array([0, 8, 0, 8])[None]).ravel()
        if tools.quadrant_r is None:
            q_int = ms.integer(qy, qx, size=8)
        else:
            q_int = ms.refine(qy, qx, np.repeat(vi, 4, 0), tools.quadrant_r, size=8)
        v8, c8 = ms.quarter(qy, qx, q_int, size=8)
        sp = c8.reshape(m, 4).sum(1) + split_penalty < c16
        split[act] = sp
        mv[act] = np.where(sp[:, None, None], v8.reshape(m, 4, 2), v16[:, None, :])
        v_int[act] = vi
    return split, mv, v_int
