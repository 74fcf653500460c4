"""One track's inter / refinement layer in one frame (SSVC): motion vectors and the quantised residual,
entropy-coded with rANS over fixed integer Laplace tables.

Body layout (all integers little-endian; container version 2)::

    u8 qp | u8 kind (0 = refinement of an intra base, 1 = motion-compensated P) | u8 mv_table (kind 1)
    | u8 p_split (probability/256 that a 16x16 motion block is split into four 8x8 ones; kind 1)
    | u8 p_bi (0: no block uses the second reference; else probability/256 of a bi-predicted block)
    | u8 mv2_table | u8 p_coded_luma | u8 p_coded_chroma
    | u8 p_same (probability/256 that a vector equals its predictor; kind 1)
    12 bytes: per class (luma, chroma) a 4-bit level-table index
    per band (10) and the signed 4-bit table offsets of level contexts 1 and 2
    rANS words: [split flags | one flag per vector (one per unsplit block, four per split one, in
    coding order): equal to its predictor | the other vectors' differences from their predictors,
    quarter pixels (:func:`ssc.video.kernels.mv_walk`: the median of the left, top and top-right
    blocks' vectors; a split block's later vectors from the one before) | (p_bi > 0) bi flags | one
    vector into the track's second-newest reference per bi block, as its difference from twice the
    block's first vector; predictions averaged (a + b + 1) >> 1] | coded-block flags | levels of coded
    blocks, scan position by position (zig-zag), each level's table chosen by its band and its context
    (the sum of the two previous levels' magnitudes: 0, 1..2, >= 3)

Container version 1 had no p_same byte and coded every vector as its difference from the previous
vector in coding order (bi vectors likewise among themselves); :func:`decode_layer` reads both.

The reconstruction is deblocked in the loop (:mod:`ssc.video.deblock`). Which blocks exist follows from the track's mask, which the decoder already has: a 16x16 motion block
is coded when it touches the mask, an 8x8 transform block likewise, and the residual outside the mask is
never coded (those pixels belong to other tracks).
"""
from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

import constriction
import numpy as np

from ..errors import BitstreamError
from ..bitstream.rans import SymbolReader, SymbolWriter, TableSet, to_counts
from . import transform as tf
from . import kernels
from .deblock import thresholds
from .motion import EXHAUSTIVE, MB, QPEL, SEARCH, MotionSearch, SearchTools, block_origins, motion_search, predict_into

KIND_REFINE, KIND_P = 0, 1
#: approximate bits of a bi-predicted block's flag and extra vector (encoder decision only)
BI_BITS = 12
_HEAD_V1 = struct.Struct("<BBBBBBBB")
#: version 2 adds p_same (probability/256 that a vector equals its predictor) at the end
_HEAD = struct.Struct("<BBBBBBBBB")
#: the container version whose P layers predict vectors from their neighbours (version 1: from the
#: previous vector in coding order, every difference coded)
MEDIAN_MV_VERSION = 2
_NSCALES = 16
SCALES = np.exp(np.linspace(np.log(0.04), np.log(60.0), _NSCALES))


@functools.lru_cache(maxsize=1)
def laplace_tables() -> TableSet:
    """Discretised zero-mean Laplace tables for SCALES (value k has mass F(k+.5) - F(k-.5))."""
    half = np.clip(np.ceil(SCALES * 12), 2, 1024).astype(np.int64)
    counts = np.zeros((len(SCALES), 2 * int(half.max()) + 2), dtype=np.int32)
    for i, (b, L) in enumerate(zip(SCALES, half)):
        k = np.arange(-L, L + 1, dtype=np.float64)
        cdf = lambda v: np.where(v < 0, 0.5 * np.exp(v / b), 1 - 0.5 * np.exp(-v / b))  # noqa: E731
        p = cdf(k + 0.5) - cdf(k - 0.5)
        counts[i, : 2 * L + 2] = to_counts(np.concatenate([p, [max(0.0, 1 - p.sum())]]))
    return TableSet(half, counts)


#: values beyond +-VMAX share one bin when the encoder prices a table (their escape bits are exact)
_VMAX = 64
#: bits of an escaped value beyond the table's symbol for "escape": a sign and 32 bits of magnitude
_ESCAPE_BITS = 33.0


@functools.lru_cache(maxsize=1)
def _table_bits() -> np.ndarray:
    """(tables, 2 * _VMAX + 1) bits of each value -_VMAX.._VMAX under each table of
    :func:`laplace_tables` (escapes included): what the encoder minimises when it picks tables."""
    t = laplace_tables()
    v = np.arange(-_VMAX, _VMAX + 1)
    out = np.zeros((len(SCALES), v.size))
    for i, L in enumerate(t.half):
        c = t.counts[i, : 2 * L + 2].astype(np.float64)
        bits = -np.log2(np.maximum(c, 1e-12) / c.sum())
        esc = np.abs(v) > L
        out[i] = np.where(esc, bits[2 * L + 1] + _ESCAPE_BITS, bits[np.clip(v + L, 0, 2 * L)])
    return out


def _histograms(values: np.ndarray, key: np.ndarray, n_keys: int) -> np.ndarray:
    """(n_keys, 2 * _VMAX + 1) counts of ``values`` (clipped to +-_VMAX) per class ``key``."""
    nb = 2 * _VMAX + 1
    idx = key.ravel() * nb + np.clip(values.ravel(), -_VMAX, _VMAX) + _VMAX
    return np.bincount(idx, minlength=n_keys * nb).reshape(n_keys, nb).astype(np.float64)


def _cheapest_table(values: np.ndarray) -> int:
    """The table that codes ``values`` in the fewest bits (the lowest index on ties; 0 when empty)."""
    if not values.size:
        return 0
    return int(np.argmin(_table_bits() @ _histograms(values, np.zeros(values.size, np.int64), 1)[0]))


def _flag_model(p8: int):
    return constriction.stream.model.Categorical(np.array([256 - p8, p8], dtype=np.float64), perfect=False)


#: contexts of a level: |previous two levels in scan order| summed = 0, 1..2, >= 3
N_CTX = 3
#: per class (luma, chroma): a 4-bit table index per band, then signed 4-bit offsets of contexts 1 and 2
_PARAM_BYTES = 2 * (tf.N_BANDS + 2) // 2


def _ctx(p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    a = np.abs(p1) + np.abs(p2)
    return np.where(a == 0, 0, np.where(a <= 2, 1, 2))


def _contexts(lv: np.ndarray) -> np.ndarray:
    """(m, 64) context of every level from the two before it in scan order."""
    p1 = np.concatenate([np.zeros((len(lv), 1), np.int64), lv[:, :-1]], 1)
    p2 = np.concatenate([np.zeros((len(lv), 2), np.int64), lv[:, :-2]], 1)
    return _ctx(p1, p2)


def _fit_level_tables(lv: np.ndarray, ctx: np.ndarray, rounds: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Encoder: per band the table of context 0, and the index offsets of contexts 1 and 2, chosen to
    code the levels ``lv`` (m, 64) in the fewest bits. Exact costs per (band, context, table) from the
    levels' histograms, then coordinate descent: each band's table given the offsets, each offset given
    the tables (deterministic; ties go to the lower index)."""
    base = np.zeros(tf.N_BANDS, np.int64)
    off = np.zeros(N_CTX, np.int64)
    if not lv.size:
        return base, off
    key = tf.BAND_OF_SCAN[None, :] * N_CTX + ctx
    cost = (_histograms(lv, key, tf.N_BANDS * N_CTX) @ _table_bits().T).reshape(tf.N_BANDS, N_CTX, _NSCALES)
    cand = np.arange(_NSCALES)
    offsets = np.arange(-8, 8)
    for _ in range(rounds):
        # cost of table t for band b: sum over contexts of the cost at t + off[c]
        idx = np.clip(cand[None, :] + off[:, None], 0, _NSCALES - 1)  # (ctx, t)
        per_base = sum(cost[:, c, idx[c]] for c in range(N_CTX))  # (bands, t)
        new_base = np.argmin(per_base, 1)
        new_off = off.copy()
        for c in (1, 2):
            j = np.clip(new_base[:, None] + offsets[None, :], 0, _NSCALES - 1)  # (bands, offsets)
            new_off[c] = offsets[int(np.argmin(np.take_along_axis(cost[:, c, :], j, 1).sum(0)))]
        if np.array_equal(new_base, base) and np.array_equal(new_off, off):
            break
        base, off = new_base, new_off
    return base, off


def _level_tables(base: np.ndarray, off: np.ndarray, ctx: np.ndarray, k: int | slice) -> np.ndarray:
    """Table index of scan position(s) ``k`` from the band's table and the context's offset."""
    return np.clip(base[tf.BAND_OF_SCAN[k]] + off[ctx], 0, _NSCALES - 1)


def _encode_levels(lv: np.ndarray, ctx: np.ndarray, base: np.ndarray, off: np.ndarray, tables: TableSet,
                   wr: SymbolWriter) -> None:
    """Code levels (m, 64) position by position in scan order, each with the table of its band shifted
    by its context's offset (the contexts ``ctx`` are known up front, so one call codes all positions)."""
    wr.encode_columns(lv, _level_tables(base, off, ctx, slice(None)), tables)


def _decode_levels(m: int, base: np.ndarray, off: np.ndarray, tables: TableSet, rd: SymbolReader) -> np.ndarray:
    """Inverse of :func:`_encode_levels`: position by position, each context from the levels before."""
    lv = np.zeros((m, 64), np.int64)
    p1 = p2 = np.zeros(m, np.int64)
    for k in range(64):
        lv[:, k] = rd.decode_values(_level_tables(base, off, _ctx(p1, p2), k), tables)
        p1, p2 = lv[:, k], p1
    return lv


def _pack_params(params: list[tuple[np.ndarray, np.ndarray]]) -> bytes:
    nibs = [int(v) for base, off in params for v in (*base, off[1] & 15, off[2] & 15)]
    return bytes((nibs[2 * i] << 4) | nibs[2 * i + 1] for i in range(len(nibs) // 2))


def _unpack_params(raw: bytes) -> list[tuple[np.ndarray, np.ndarray]]:
    nibs = [v for b in raw for v in (b >> 4, b & 15)]
    out = []
    for c in range(2):
        part = nibs[c * (tf.N_BANDS + 2) : (c + 1) * (tf.N_BANDS + 2)]
        signed = [v - 16 if v >= 8 else v for v in part[-2:]]
        out.append((np.array(part[: tf.N_BANDS], np.int64), np.array([0, *signed], np.int64)))
    return out


def aligned_region(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The box grown outwards to the 16-pixel grid (may run past the frame's right/bottom edge)."""
    x0, y0, x1, y1 = box
    return x0 // MB * MB, y0 // MB * MB, -(-x1 // MB) * MB, -(-y1 // MB) * MB


def _region(a: np.ndarray, reg: tuple[int, int, int, int]) -> np.ndarray:
    """a[y0:y1, x0:x1] edge-padded where the region runs past the frame."""
    x0, y0, x1, y1 = reg
    part = a[y0:y1, x0:x1]
    return np.pad(part, ((0, y1 - y0 - part.shape[0]), (0, x1 - x0 - part.shape[1])) + ((0, 0),) * (a.ndim - 2), mode="edge")


def _touching(mask_reg: np.ndarray, size: int) -> np.ndarray:
    h, w = mask_reg.shape
    return mask_reg.reshape(h // size, size, w // size, size).any((1, 3)).ravel()


@dataclass
class Layout:
    """Which motion / transform blocks a track codes in a frame, derived from its mask alone."""

    region: tuple[int, int, int, int]
    mask: np.ndarray  # mask on the region (bool)
    mbs: np.ndarray  # indices of coded 16x16 blocks (raster in region)
    blocks: np.ndarray  # indices of coded 8x8 blocks (raster in region)

    @classmethod
    def of(cls, mask: np.ndarray, box: tuple[int, int, int, int]) -> "Layout":
        reg = aligned_region(box)
        m = _region(mask, reg) if mask.shape else mask
        x0, y0, x1, y1 = reg
        valid = np.zeros_like(m)
        valid[: max(0, mask.shape[0] - y0), : max(0, mask.shape[1] - x0)] = True  # edge padding is not the group
        m = m & valid
        return cls(reg, m, np.flatnonzero(_touching(m, MB)), np.flatnonzero(_touching(m, tf.BLOCK)))

    def mb_origins(self) -> tuple[np.ndarray, np.ndarray]:
        ys, xs = block_origins(self.region)
        return ys[self.mbs], xs[self.mbs]


_QUAD = ((0, 0), (0, 8), (8, 0), (8, 8))


def _predict_region(lay: Layout, ref_padded: np.ndarray, mv: np.ndarray) -> np.ndarray:
    """Prediction on the region from per-quadrant quarter-pel vectors ``mv`` (N, 4, 2)."""
    x0, y0, x1, y1 = lay.region
    pred = np.zeros((y1 - y0, x1 - x0, 3), np.int64)
    ys, xs = lay.mb_origins()
    for q, (dy, dx) in enumerate(_QUAD):
        predict_into(pred, ref_padded, ys + dy, xs + dx, mv[:, q], MB // 2, ys - y0 + dy, xs - x0 + dx)
    return pred


def _lambda(qp: int) -> float:
    """SAD per bit: H.264's motion lambda sqrt(0.85 * 2^((qp-12)/3))."""
    return float(np.sqrt(0.85 * 2.0 ** ((qp - 12) / 3.0)))


#: the motion search's bits per pixel of |mv|_1 (chosen on the surveillance clip: 2 saves the
#: background's vectors at no cost to the people's PSNR at equal bits; 4 and 8 cost the people 0.1-0.4 dB)
MV_BITS_PER_PIXEL = 2.0


def motion_lambda(qp: int) -> float:
    """The motion search's price of one pixel of |mv|_1, in luma SAD: MV_BITS_PER_PIXEL bits at lambda(qp).
    (A fixed 4, as the first encoder had, let fixed-camera backgrounds chase sensor noise with vectors
    that cost more to code than they saved: docs/results.md, the SSVC coding-efficiency table.)"""
    return MV_BITS_PER_PIXEL * _lambda(qp)


def split_penalty(qp: int) -> float:
    """Lambda times ~30 bits for the three extra vectors of a split block."""
    return 30.0 * _lambda(qp)


def _block_sad(pred: np.ndarray, cur: np.ndarray, lay: Layout) -> np.ndarray:
    """Masked SAD of each coded 16x16 block of the region."""
    x0, y0 = lay.region[:2]
    ys, xs = lay.mb_origins()
    out = np.zeros(len(ys), np.int64)
    kernels.masked_block_sads(np.ascontiguousarray(pred), np.ascontiguousarray(cur), np.ascontiguousarray(lay.mask, bool),
                              ys - y0, xs - x0, MB, out)
    return out


def _bi_mask(lay: Layout, bi: np.ndarray) -> np.ndarray:
    """(h, w, 1) bool: pixels of the blocks predicted from both references."""
    h, w = lay.mask.shape
    grid = np.zeros((h // MB) * (w // MB), bool)
    grid[lay.mbs[bi]] = True
    return np.repeat(np.repeat(grid.reshape(h // MB, w // MB), MB, 0), MB, 1)[..., None]


def _p8(flags: np.ndarray) -> int:
    """Probability of a set flag in 1/256, kept in 1..255 (as the body stores it)."""
    return int(np.clip(round(256 * flags.mean()) if flags.size else 1, 1, 255))


def _steps(qp: int) -> list[int]:
    """Quantiser steps (1/16 units) of the Y, Co and Cg planes."""
    return [tf.qstep16(qp), tf.qstep16(qp, True), tf.qstep16(qp, True)]


def _reconstruct(pred: np.ndarray, levels: np.ndarray, lay: Layout, qp: int) -> np.ndarray:
    """Encoder and decoder alike: prediction + dequantised residual, clipped and deblocked (uint8)."""
    h, w = lay.mask.shape
    out = np.empty((h, w, 3), np.uint8)
    kernels.reconstruct_blocks(np.ascontiguousarray(pred, np.int64), np.ascontiguousarray(levels, np.int64),
                               np.array(_steps(qp), np.int64), np.ascontiguousarray(lay.blocks, np.int64), w // tf.BLOCK,
                               tf.ZIGZAG, tf.T_INT, tf.INVERSE_SHIFT, out)
    kernels.deblock_inplace(out, np.ascontiguousarray(lay.mask, bool), *thresholds(qp))
    return out


def _mv_grid(lay: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cell -> block index or -1 (grid h, grid w), block rows, block columns) of a layout's coded
    16x16 blocks on its region's block grid."""
    x0, y0, x1, y1 = lay.region
    gh, gw = (y1 - y0) // MB, (x1 - x0) // MB
    at = np.full((gh, gw), -1, np.int64)
    gy, gx = lay.mbs // gw, lay.mbs % gw
    at[gy, gx] = np.arange(len(lay.mbs))
    return at, np.ascontiguousarray(gy, np.int64), np.ascontiguousarray(gx, np.int64)


def _bi_predictors(first: np.ndarray) -> np.ndarray:
    """Version 2: a bi block's vector into the older reference is predicted by twice its first vector."""
    return np.clip(2 * first, -SEARCH * QPEL, SEARCH * QPEL)


#: the encoder's price of one bit in squared luma quantiser steps: HEVC's lambda 0.57 * 2^((qp - 12) / 3)
#: over its squared step (0.625 * 2^(qp / 6))^2, the same at every qp
RD_LAMBDA = 0.57 / 16 / 0.625**2
#: per channel (Y, Co, Cg), the lambda in that channel's squared steps: YCoCg-R's errors weigh 3, 1/2
#: and 3/4 in RGB, and the chroma steps are CHROMA_STEP_NUM / 16 times the luma step
_RD_CHANNEL = np.array([1.0, 3.0 / (0.5 * (tf.CHROMA_STEP_NUM / 16) ** 2), 3.0 / (0.75 * (tf.CHROMA_STEP_NUM / 16) ** 2)])


def _rd_levels(levels: np.ndarray, mag: np.ndarray) -> None:
    """Encoder, in place: rate-distortion choice of the levels (3, nb, 64) given the coefficients'
    magnitudes in quantiser steps ``mag`` (a simplified RDOQ, Karczewicz et al., VCEG-AH21, 2008).
    With the tables each class would get from the dead-zone levels, each nonzero level may drop by one
    where (error)^2 + lambda * bits falls, then each block may drop to nothing where its error plus
    lambda times its bits (levels and coded flag) exceed its energy. Contexts are taken from the
    dead-zone levels (an approximation; the tables are fitted again to the result)."""
    bits = _table_bits()
    for chans in ([0], [1, 2]):
        sub, mg = levels[chans], mag[chans]  # (c, nb, 64) copies
        coded = sub.any(-1)
        if not coded.any():
            continue
        lv, x = sub[coded], mg[coded]  # (m, 64)
        lam = (RD_LAMBDA * _RD_CHANNEL[chans])[np.nonzero(coded)[0]][:, None]  # per row
        ctx = _contexts(lv)
        ti = _level_tables(*_fit_level_tables(lv, ctx), ctx, slice(None))
        a = np.abs(lv)
        col = lambda v: bits[ti, np.clip(v, -_VMAX, _VMAX) + _VMAX]  # noqa: E731
        keep = (x - a) ** 2 + lam * col(a)
        down = (x - (a - 1)) ** 2 + lam * col(a - 1)
        a = np.where((a > 0) & (down < keep), a - 1, a)
        p = coded.mean()
        flag = lam[:, 0] * (np.log2(1 / p) - np.log2(1 / max(1 - p, 1 / 256)))  # bits of "coded" over "not coded"
        block = ((x - a) ** 2 + lam * col(a)).sum(1) + flag
        zero = (x ** 2).sum(1)
        a[zero <= block] = 0
        sub[coded] = np.sign(lv) * a
        levels[chans] = sub


def encode_layer(cur: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int], qp: int,
                 ref_padded: np.ndarray | None = None, base: np.ndarray | None = None,
                 ref2_padded: np.ndarray | None = None, tools: SearchTools = EXHAUSTIVE,
                 grid: np.ndarray | None = None, vectors: np.ndarray | None = None,
                 rdoq: bool = True) -> tuple[bytes, np.ndarray, Layout]:
    """Code ``cur`` (H, W, 3 uint8) inside ``mask`` either as motion-compensated prediction from
    ``ref_padded`` (P; blocks may average it with a prediction from the older reference
    ``ref2_padded``) or as a refinement of ``base`` (H, W, 3, the intra layer's reconstruction).
    ``tools``, ``grid`` and ``vectors`` steer the encoder's motion search only (the previous entry's
    integer vectors on the frame's block grid as predictors; this entry's are written to ``vectors``).
    ``rdoq``: lower levels, and drop blocks, where the bits saved outweigh the error (:func:`_rd_levels`).
    Returns the body, the reconstruction on the layout's region (h, w, 3 uint8) and the layout."""
    lay = Layout.of(mask, box)
    tables = laplace_tables()
    wr = SymbolWriter()
    cur_reg = np.ascontiguousarray(_region(cur, lay.region))
    if ref_padded is not None:
        ys, xs = lay.mb_origins()
        ms = MotionSearch(cur, ref_padded, mask, lay.region)
        lam = motion_lambda(qp)
        split, mv, v_int = motion_search(cur, ref_padded, ys, xs, mask, split_penalty(qp), search=ms, tools=tools, grid=grid,
                                         lam=lam)
        if vectors is not None:  # the encoder keeps them as the next entry's predictors
            vectors[:] = 0
            vectors[ys // MB, xs // MB] = v_int
        pred = _predict_region(lay, ref_padded, mv)
        p_split = _p8(split)
        wr.write(split.astype(np.int32), _flag_model(p_split))
        k = len(ys) + 3 * int(split.sum())
        same, diff = np.zeros(k, bool), np.zeros((k, 2), np.int64)
        kernels.mv_walk(*_mv_grid(lay), split, np.ascontiguousarray(mv, np.int64), same, diff, False)
        p_same = _p8(same)
        wr.write(same.astype(np.int32), _flag_model(p_same))
        d = diff[~same].ravel()
        mv_idx = _cheapest_table(d)
        wr.encode_values(d, np.full(d.size, mv_idx), tables)
        p_bi = mv2_idx = 0
        if ref2_padded is not None and len(ys):
            ms2 = ms.against(ref2_padded)
            v2_int = (ms2.integer(ys, xs, lam=lam) if tools.second_r is None
                      else ms2.refine(ys, xs, 2 * v_int, tools.second_r, lam=lam)[0])
            v2, _ = ms2.quarter(ys, xs, v2_int, lam=lam)
            predb = (pred + _predict_region(lay, ref2_padded, np.repeat(v2[:, None], 4, 1)) + 1) >> 1
            c = cur_reg
            bi = _block_sad(predb, c, lay) + BI_BITS * _lambda(qp) < _block_sad(pred, c, lay)
            p_bi = _p8(bi)
            wr.write(bi.astype(np.int32), _flag_model(p_bi))
            d2 = (v2[bi] - _bi_predictors(mv[bi, 0])).ravel()
            mv2_idx = _cheapest_table(d2)
            wr.encode_values(d2, np.full(d2.size, mv2_idx), tables)
            pred = np.where(_bi_mask(lay, bi), predb, pred)
        kind = KIND_P
    else:
        assert base is not None
        pred, mv_idx, kind, p_split, p_same = _region(base, lay.region).astype(np.int64), 0, KIND_REFINE, 1, 1
        p_bi = mv2_idx = 0
    levels = np.zeros((3, len(lay.blocks), 64), np.int64)
    scaled = np.zeros(levels.shape)
    kernels.residual_levels(cur_reg, np.ascontiguousarray(pred, np.int64),
                            np.ascontiguousarray(lay.mask, bool), np.ascontiguousarray(lay.blocks, np.int64),
                            lay.mask.shape[1] // tf.BLOCK, np.array(_steps(qp), np.int64), tf.DCT, tf.ZIGZAG, tf.ROUNDING, levels,
                            scaled)
    if rdoq:
        _rd_levels(levels, np.abs(scaled))
    coded = levels.any(-1)  # (3, n)
    p8, params = [], []
    for cls, chans in ((0, [0]), (1, [1, 2])):
        f = coded[chans].ravel()
        p8.append(_p8(f))
        wr.write(f.astype(np.int32), _flag_model(p8[-1]))
    for cls, chans in ((0, [0]), (1, [1, 2])):
        lv = levels[chans][coded[chans]]  # (m, 64)
        ctx = _contexts(lv)
        params.append(_fit_level_tables(lv, ctx))
        _encode_levels(lv, ctx, *params[-1], tables, wr)
    recon = _reconstruct(pred, levels, lay, qp)
    body = _HEAD.pack(qp, kind, mv_idx, p_split, p_bi, mv2_idx, p8[0], p8[1], p_same) + _pack_params(params) + wr.finish()
    return body, recon, lay


def _in_search_range(v: np.ndarray) -> np.ndarray:
    """``v`` (decoded quarter-pel vectors), or BitstreamError if one lies outside the search range."""
    if v.size and np.abs(v).max() > SEARCH * QPEL:
        raise BitstreamError("motion vector outside the search range")
    return v


def _read_vectors(rd: SymbolReader, lay: Layout, split: np.ndarray, k: int, mv_idx: int, p_same: int,
                  tables: TableSet) -> np.ndarray:
    """Version 2: the ``k`` vectors' predictor flags, the differences of the others, then the walk."""
    same = rd.read(_flag_model(p_same), k).astype(bool)
    m = k - int(same.sum())
    diff = np.zeros((k, 2), np.int64)
    diff[~same] = rd.decode_values(np.full(2 * m, mv_idx), tables).reshape(m, 2)
    mv = np.zeros((len(split), 4, 2), np.int64)
    kernels.mv_walk(*_mv_grid(lay), np.ascontiguousarray(split), mv, same, diff, True)
    return _in_search_range(mv)


def _read_vectors_v1(rd: SymbolReader, split: np.ndarray, k: int, mv_idx: int, tables: TableSet) -> np.ndarray:
    """Version 1: every vector's difference from the one before it in coding order."""
    n = len(split)
    vec = _in_search_range(np.cumsum(rd.decode_values(np.full(2 * k, mv_idx), tables).reshape(k, 2), 0))
    starts = np.concatenate([[0], np.cumsum(np.where(split, 4, 1))[:-1]]).astype(np.int64) if n else np.zeros(0, np.int64)
    return np.stack([vec[starts + np.where(split, q, 0)] for q in range(4)], 1) if n else np.zeros((0, 4, 2), np.int64)


def decode_layer(body: bytes, mask: np.ndarray, box: tuple[int, int, int, int],
                 ref_padded: np.ndarray | None = None, base: np.ndarray | None = None,
                 ref2_padded: np.ndarray | None = None, version: int = MEDIAN_MV_VERSION) -> tuple[np.ndarray, Layout]:
    """Inverse of :func:`encode_layer` (exact integer reconstruction) for a stream of container
    ``version`` (1: the first syntax; 2: the current one). BitstreamError on malformed bodies."""
    median = version >= MEDIAN_MV_VERSION
    head = _HEAD if median else _HEAD_V1
    if len(body) < head.size + _PARAM_BYTES:
        raise BitstreamError(f"texture layer truncated ({len(body)} bytes)")
    qp, kind, mv_idx, p_split, p_bi, mv2_idx, pY, pC, *rest = head.unpack_from(body, 0)
    p_same = rest[0] if median else 1
    if (qp > tf.MAX_QP or kind not in (KIND_REFINE, KIND_P) or max(mv_idx, mv2_idx) >= _NSCALES
            or not all(0 < p < 256 for p in (p_split, pY, pC, p_same))):
        raise BitstreamError("texture layer header is invalid")
    if (kind == KIND_P) != (ref_padded is not None):
        raise BitstreamError(f"texture layer kind {kind} does not match the entry's frame type")
    params = _unpack_params(body[head.size : head.size + _PARAM_BYTES])
    lay = Layout.of(mask, box)
    tables = laplace_tables()
    rd = SymbolReader(body[head.size + _PARAM_BYTES :])
    if kind == KIND_P:
        n = len(lay.mbs)
        split = rd.read(_flag_model(p_split), n).astype(bool)
        k = n + 3 * int(split.sum())
        mv = _read_vectors(rd, lay, split, k, mv_idx, p_same, tables) if median else _read_vectors_v1(rd, split, k, mv_idx, tables)
        pred = _predict_region(lay, ref_padded, mv)
        if p_bi:
            if ref2_padded is None:
                raise BitstreamError("texture layer uses a second reference the track does not have")
            bi = rd.read(_flag_model(p_bi), n).astype(bool)
            m2 = int(bi.sum())
            d2 = rd.decode_values(np.full(2 * m2, mv2_idx), tables).reshape(m2, 2)
            v2 = d2 + _bi_predictors(mv[bi, 0]) if median else np.cumsum(d2, 0)
            _in_search_range(v2)
            full = np.zeros((n, 2), np.int64)
            full[bi] = v2
            predb = (pred + _predict_region(lay, ref2_padded, np.repeat(full[:, None], 4, 1)) + 1) >> 1
            pred = np.where(_bi_mask(lay, bi), predb, pred)
    else:
        assert base is not None
        pred = _region(base, lay.region).astype(np.int64)
    nb = len(lay.blocks)
    coded = np.zeros((3, nb), bool)
    coded[0] = rd.read(_flag_model(pY), nb).astype(bool)
    coded[1:] = rd.read(_flag_model(pC), 2 * nb).astype(bool).reshape(2, nb)
    levels = np.zeros((3, nb, 64), np.int64)
    for cls, chans in ((0, [0]), (1, [1, 2])):
        m = int(coded[chans].sum())
        if m:
            sub = levels[chans]
            sub[coded[chans]] = _decode_levels(m, *params[cls], tables, rd)
            levels[chans] = sub
    rd.check_end()
    if np.abs(levels).max(initial=0) > 1 << 16:
        raise BitstreamError("texture level out of range")
    return _reconstruct(pred, levels, lay, qp), lay
