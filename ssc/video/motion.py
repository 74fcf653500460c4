"""Block motion for the per-group P-frames of SSVC: reference padding, estimation and compensation.

Each track predicts from *its own* previous reconstruction only (group-independent inter coding), so
the reference holds valid pixels only where the track was seen. Unseen pixels are filled by repetitive
padding, horizontally then vertically, as MPEG-4 Visual does for arbitrarily shaped video objects
(ISO/IEC 14496-2, 7.6.1). Everything here is integer and deterministic; estimation is encoder-only.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from . import kernels

MB = 16  # motion block side
SEARCH = 32  # +- full-pel search range
MARGIN = SEARCH + MB + 1  # reference border, edge-replicated (+1: the bilinear taps)


def pad_reference(canvas: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 reference with unseen pixels filled by repetitive padding (rows, then columns),
    then a MARGIN-pixel edge-replicated border for motion vectors pointing outside the frame."""
    if not seen.any():
        return np.pad(np.full_like(canvas, 128), ((MARGIN, MARGIN), (MARGIN, MARGIN), (0, 0)), mode="edge")
    h, w = seen.shape
    out = np.empty((h + 2 * MARGIN, w + 2 * MARGIN, 3), np.uint8)
    kernels.pad_fill(np.ascontiguousarray(canvas), np.ascontiguousarray(seen), out, MARGIN)
    return out


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


def _luma(a: np.ndarray) -> np.ndarray:
    """(h, w) int32 luma in 1/16 units (BT.601 weights in 1/256, rounded) of an (h, w, 3) uint8 image."""
    out = np.empty(a.shape[:2], np.int32)
    kernels.luma16(np.ascontiguousarray(a, np.uint8), out)
    return out


def _pool_sum(a: np.ndarray, s: int) -> np.ndarray:
    """Sum over s x s cells (the trailing rows / columns that do not fill a cell are dropped)."""
    out = np.empty((a.shape[0] // s, a.shape[1] // s), np.int32)
    kernels.pool_sum(np.ascontiguousarray(a, np.int32), s, out)
    return out


def _pool_mean(a: np.ndarray, s: int) -> np.ndarray:
    return np.ascontiguousarray((_pool_sum(a, s) + s * s // 2) // (s * s), dtype=np.int32)


def _pen(lam: float) -> int:
    """A lambda in luma-SAD units per pixel of |mv| -> integer kernel cost units."""
    return int(round(lam * kernels.COST_PER_PIXEL))


class MotionSearch:
    """Encoder-side motion search of one frame against one padded reference (luma): integer search
    (full at quarter resolution, refined at full resolution) and quarter-pel refinement on the bilinear
    phases of the reference. The cost of a vector is the block's mask-weighted luma SAD plus
    lam * |mv|_1 (in pixels), computed in integers by the compiled loops of :mod:`ssc.video.kernels`;
    costs come back in luma-SAD units of in-mask pixels."""

    def __init__(self, cur: np.ndarray, ref_padded: np.ndarray, weight: np.ndarray | None = None,
                 region: tuple[int, int, int, int] | None = None) -> None:
        """``region`` (x0, y0, x1, y1; MB-aligned, may run up to MB - 1 past the frame) limits the work
        to the blocks inside it and the reference they can reach: the same vectors and costs as a
        whole-frame search for those blocks, at the cost of the region instead of the frame."""
        h, w = cur.shape[:2]
        x0, y0, x1, y1 = region if region is not None else (0, 0, w + 2 * MB, h + 2 * MB)
        if y0 % 4 or x0 % 4:
            raise ValueError("motion-search regions start on the 4-pixel grid (quarter-resolution cells)")
        self.oy, self.ox = y0, x0
        # regions (and their 8x8 quadrants) run up to MB - 1 past the frame: edge pixels, no weight there
        crop = cur[y0:y1, x0:x1]
        past = ((0, y1 - y0 - crop.shape[0]), (0, x1 - x0 - crop.shape[1]))
        self.cur = _luma(np.pad(crop, past + ((0, 0),), mode="edge"))
        wgt = np.pad((weight if weight is not None else np.ones((h, w), bool))[y0:y1, x0:x1], past)
        self.weight = np.where(wgt, np.int32(kernels.W_IN), np.int32(kernels.W_OUT)).astype(np.int32)
        self._span = (y0, y1, x0, x1)
        self.ref = _luma(ref_padded[y0 : y1 + 2 * MARGIN, x0 : x1 + 2 * MARGIN])
        self._pooled: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def against(self, ref_padded: np.ndarray) -> "MotionSearch":
        """The same frame, region and weights searched in another padded reference."""
        other = copy.copy(self)
        y0, y1, x0, x1 = self._span
        other.ref = _luma(ref_padded[y0 : y1 + 2 * MARGIN, x0 : x1 + 2 * MARGIN])
        other._pooled = None
        return other

    def _local(self, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.ascontiguousarray(ys - self.oy, np.int64), np.ascontiguousarray(xs - self.ox, np.int64)

    def _weight_sums(self, ly: np.ndarray, lx: np.ndarray, size: int) -> np.ndarray:
        """(N,) total weight of each ``size`` block at local (ly, lx), in the units that turn a kernel
        cost into luma SAD per pixel."""
        out = np.zeros(len(ly), np.int64)
        kernels.block_sums(self.weight, ly, lx, size, out)
        return out * float(kernels.LUMA_SCALE)

    def _around(self, ly: np.ndarray, lx: np.ndarray, centre: np.ndarray, r: int, size: int,
                lam: float) -> tuple[np.ndarray, np.ndarray]:
        """Full-resolution search over +-``r`` around integer ``centre`` (N, 2), local coordinates."""
        best, cost = np.zeros((len(ly), 2), np.int64), np.zeros(len(ly), np.int64)
        kernels.search_around(self.cur, self.weight, self.ref, ly, lx, np.ascontiguousarray(centre, np.int64), r, size,
                              _pen(lam), MARGIN, best, cost)
        return best, cost

    def integer(self, ys: np.ndarray, xs: np.ndarray, size: int = MB, lam: float = 4.0) -> np.ndarray:
        """(N, 2) integer vectors: +-SEARCH at quarter resolution, then +-3 at full resolution around
        that vector and around zero (weighted luma SAD + lam * |mv|; blocks with no group pixel keep a
        smooth vector through the small weight floor)."""
        if len(ys) == 0:
            return np.zeros((0, 2), np.int64)
        ly, lx = self._local(ys, xs)
        best, best_cost = self._coarse(ly, lx, size, lam)
        v0, c0 = self._around(ly, lx, np.zeros_like(best), 3, size, lam)
        return np.where((c0 < best_cost)[:, None], v0, best)

    def _coarse(self, ly: np.ndarray, lx: np.ndarray, size: int, lam: float) -> tuple[np.ndarray, np.ndarray]:
        """+-SEARCH at quarter resolution, then +-3 at full resolution around the vector found."""
        n = len(ly)
        s, rq = 4, SEARCH // 4
        if self._pooled is None:
            self._pooled = (_pool_mean(self.cur, s), _pool_sum(self.weight, s), _pool_mean(self.ref, s))
        cq, wq, rfq = self._pooled
        coarse, cc = np.zeros((n, 2), np.int64), np.zeros(n, np.int64)
        kernels.search_around(cq, wq, rfq, ly // s, lx // s, np.zeros((n, 2), np.int64), rq, size // s, _pen(lam * s),
                              MARGIN // s, coarse, cc)
        return self._around(ly, lx, np.clip(coarse * s, -SEARCH + 3, SEARCH - 3), 3, size, lam)

    def refine(self, ys: np.ndarray, xs: np.ndarray, centre: np.ndarray, r: int, size: int = MB,
               lam: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) integer vectors and their costs from a full-resolution +-``r`` search around ``centre``
        (N, 2) only (the fast path: a predicted vector instead of the +-SEARCH search of :meth:`integer`)."""
        if len(ys) == 0:
            return np.zeros((0, 2), np.int64), np.zeros(0)
        ly, lx = self._local(ys, xs)
        v, cost = self._around(ly, lx, np.clip(np.asarray(centre, np.int64), -SEARCH + r, SEARCH - r), r, size, lam)
        return v, cost / kernels.COST_PER_PIXEL

    def predicted(self, ys: np.ndarray, xs: np.ndarray, cands: np.ndarray, r: int, fallback: float,
                  size: int = MB, lam: float = 4.0) -> np.ndarray:
        """(N, 2) integer vectors from predictor candidates ``cands`` (N, K, 2): the cheapest candidate
        (weighted SAD + lam * |mv|), refined +-``r`` at full resolution. Blocks still costing more than
        ``fallback`` per unit weight also get the +-SEARCH search, and keep the cheaper vector."""
        n = len(ys)
        if n == 0:
            return np.zeros((0, 2), np.int64)
        ly, lx = self._local(ys, xs)
        c = np.ascontiguousarray(np.clip(cands, -SEARCH + r, SEARCH - r), np.int64)
        best = np.zeros((n, 2), np.int64)
        kernels.candidate_costs(self.cur, self.weight, self.ref, ly, lx, c, size, _pen(lam), MARGIN, best)
        out, vc = self._around(ly, lx, best, r, size, lam)
        hard = np.flatnonzero(vc / self._weight_sums(ly, lx, size) > fallback)
        if len(hard):
            v, cost = self._coarse(ly[hard], lx[hard], size, lam)
            better = cost < vc[hard]
            out[hard[better]] = v[better]
        return out

    def zero_sad(self, ys: np.ndarray, xs: np.ndarray, size: int = MB) -> np.ndarray:
        """(N,) weighted luma SAD per unit weight of each block at the zero vector."""
        ly, lx = self._local(ys, xs)
        _, cost = self._around(ly, lx, np.zeros((len(ly), 2), np.int64), 0, size, 0.0)
        return cost / self._weight_sums(ly, lx, size)

    def quarter(self, ys: np.ndarray, xs: np.ndarray, mv: np.ndarray, size: int = MB, lam: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
        """Integer vectors (N, 2) -> (quarter-pel vectors, costs): a half-pel then a quarter-pel step over
        the 8 neighbours of the current best (weighted luma SAD + lam * |mv| in pixels)."""
        n = len(ys)
        if n == 0:
            return np.zeros((0, 2), np.int64), np.zeros(0)
        ly, lx = self._local(ys, xs)
        best, cost = np.zeros((n, 2), np.int64), np.zeros(n, np.int64)
        kernels.quarter_refine(self.cur, self.weight, self.ref, ly, lx, np.ascontiguousarray(mv, np.int64), size,
                               _pen(lam / QPEL), MARGIN, SEARCH * QPEL, best, cost)
        return best, cost / kernels.COST_PER_PIXEL


def estimate(cur: np.ndarray, ref_padded: np.ndarray, ys: np.ndarray, xs: np.ndarray,
             weight: np.ndarray | None = None, lam: float = 4.0, size: int = MB) -> np.ndarray:
    """Integer motion (N, 2) of the ``size``-square blocks at (ys, xs) of ``cur`` against a padded
    reference (:meth:`MotionSearch.integer`)."""
    return MotionSearch(cur, ref_padded, weight).integer(ys, xs, size, lam)


#: motion vectors of coded P entries are in quarter pixels
QPEL = 4


def compensate_qpel(ref_padded: np.ndarray, ys: np.ndarray, xs: np.ndarray, mvq: np.ndarray, size: int = MB) -> np.ndarray:
    """(N, size, size, 3) int64 blocks displaced by quarter-pel ``mvq`` (N, 2): bilinear interpolation in
    exact integer arithmetic, ``(sum of w_ij * p_ij + 8) >> 4`` with weights in quarters (as H.264's
    chroma interpolation), so every machine predicts the same pixels."""
    n = len(ys)
    out = np.zeros((n * size, size, 3), np.int64)
    predict_into(out, ref_padded, ys, xs, mvq, size, np.arange(n) * size, np.zeros(n, np.int64))
    return out.reshape(n, size, size, 3)


def predict_into(out: np.ndarray, ref_padded: np.ndarray, ys: np.ndarray, xs: np.ndarray, mvq: np.ndarray, size: int,
                 ty: np.ndarray, tx: np.ndarray) -> None:
    """Write the quarter-pel predictions (:func:`compensate_qpel`) of the ``size`` blocks at (ys, xs)
    into ``out`` (int64 (h, w, 3)) with their top-left corners at (ty, tx)."""
    i64 = lambda a: np.ascontiguousarray(a, np.int64)  # noqa: E731
    kernels.predict_blocks(np.ascontiguousarray(ref_padded), i64(ys), i64(xs), i64(mvq), size, MARGIN, out, i64(ty), i64(tx))


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
    quadrant_r: int | None = 1
    second_r: int | None = 1
    #: 16x16 blocks: +-r around the best of the predictors (zero, the block's and its neighbours'
    #: vectors in the track's previous P entry) instead of the exhaustive search, which only blocks
    #: still costing more than ``predict_fallback`` per pixel also get (keeping the cheaper vector)
    predict_r: int | None = 1
    predict_fallback: float = 6.0
    #: when most of a track's blocks kept the zero vector in its previous P entry (a fixed camera),
    #: those whose zero-vector SAD is at most this times the median of them keep it without a search
    static_skip: float | None = 1.3
    #: a block's quadrants get their quarter-pel step only where their integer costs plus the split
    #: penalty are below this times the block's quarter-pel cost (elsewhere splitting cannot pay)
    split_margin: float | None = 1.2


#: the exhaustive search (every tool off), as the first SSVC encoder did it
EXHAUSTIVE = SearchTools(None, None, None, None)
#: the default of the encoder before the search's windows narrowed (+-2 / +-3 / +-2)
WIDE = SearchTools(1.0, 2, 3, 2, split_margin=None, static_skip=None)


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
                  tools: SearchTools = EXHAUSTIVE, grid: np.ndarray | None = None,
                  lam: float = 4.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encoder: per 16x16 block either one quarter-pel vector or four (one per 8x8 quadrant), whichever
    has the lower cost, four costing ``split_penalty`` more (the extra vectors' bits times lambda).
    ``grid``: the track's integer vectors of its previous P entry (predictors for ``tools.predict_r``).
    ``lam`` prices |mv|_1 per pixel, in luma-SAD units.
    Returns (split flags (N,), vectors (N, 4, 2) in quadrant raster order, integer block vectors (N, 2))."""
    n = len(ys)
    ms = search or MotionSearch(cur, ref_padded, weight, region)
    split = np.zeros(n, bool)
    mv = np.zeros((n, 4, 2), np.int64)
    v_int = np.zeros((n, 2), np.int64)
    act = np.ones(n, bool)
    if tools.skip_sad is not None and n:
        zs = ms.zero_sad(ys, xs)
        act = zs >= tools.skip_sad
        if tools.static_skip is not None and grid is not None:
            # a fixed camera: most blocks kept the zero vector last time; those still no worse than the
            # median block at the zero vector (sensor noise) keep it without a search
            still = ~grid[ys // MB, xs // MB].any(1)
            if still.mean() >= 0.5:
                act &= ~(still & (zs <= tools.static_skip * float(np.median(zs[still]))))
    if act.any():
        ya, xa = ys[act], xs[act]
        m = len(ya)
        if tools.predict_r is None:
            vi = ms.integer(ya, xa, lam=lam)
        else:
            vi = ms.predicted(ya, xa, neighbour_candidates(grid, ya, xa), tools.predict_r, tools.predict_fallback, lam=lam)
        v16, c16 = ms.quarter(ya, xa, vi, lam=lam)
        qy = (ya[:, None] + np.array([0, 0, 8, 8])[None]).ravel()
        qx = (xa[:, None] + np.array([0, 8, 0, 8])[None]).ravel()
        if tools.quadrant_r is None:
            q_int = ms.integer(qy, qx, size=8, lam=lam)
            hopeful = np.ones(m, bool)
        else:
            q_int, q_cost = ms.refine(qy, qx, np.repeat(vi, 4, 0), tools.quadrant_r, size=8, lam=lam)
            hopeful = (np.ones(m, bool) if tools.split_margin is None
                       else q_cost.reshape(m, 4).sum(1) + split_penalty < tools.split_margin * c16)
        sp = np.zeros(m, bool)
        v8 = np.zeros((m, 4, 2), np.int64)
        if hopeful.any():
            q = np.repeat(hopeful, 4)
            v8h, c8h = ms.quarter(qy[q], qx[q], q_int[q], size=8, lam=lam)
            v8[hopeful] = v8h.reshape(-1, 4, 2)
            sp[hopeful] = c8h.reshape(-1, 4).sum(1) + split_penalty < c16[hopeful]
        split[act] = sp
        mv[act] = np.where(sp[:, None, None], v8, v16[:, None, :])
        v_int[act] = vi
    return split, mv, v_int
