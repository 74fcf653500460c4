"""The compiled loops of SSVC (ssc.video.kernels) against plain NumPy statements of the same arithmetic,
and their independence of the thread count."""
from __future__ import annotations

import numba
import numpy as np
import pytest

from ssc.bitstream.rans import SymbolWriter
from ssc.video import kernels
from ssc.video import transform as tf
from ssc.video.deblock import thresholds
from ssc.video.motion import MARGIN, MB, MotionSearch, block_origins, compensate_qpel, pad_reference
from ssc.video.texture import Layout, _reconstruct, _steps, laplace_tables


def _fill_rows(img: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = valid.shape
    idx = np.arange(w)[None, :].repeat(h, 0)
    left = np.maximum.accumulate(np.where(valid, idx, -1), axis=1)
    right = np.flip(np.minimum.accumulate(np.flip(np.where(valid, idx, w), 1), axis=1), 1)
    dl = np.where(left >= 0, idx - left, w + 1)
    dr = np.where(right < w, right - idx, w + 1)
    out = np.take_along_axis(img, np.where(dl <= dr, left, right).clip(0, w - 1)[..., None], axis=1)
    row_ok = valid.any(1)
    return np.where(row_ok[:, None, None], out, img), row_ok


def _pad_reference_numpy(canvas: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Repetitive padding, rows then columns (MPEG-4 Visual 7.6.1), then an edge-replicated border."""
    if not seen.any():
        out = np.full_like(canvas, 128)
    else:
        out, row_ok = _fill_rows(canvas, seen)
        cols, _ = _fill_rows(out.transpose(1, 0, 2), np.repeat(row_ok[None, :], seen.shape[1], 0))
        out = cols.transpose(1, 0, 2)
    return np.pad(out, ((MARGIN, MARGIN), (MARGIN, MARGIN), (0, 0)), mode="edge")


def _deblock_numpy(recon: np.ndarray, mask: np.ndarray, qp: int) -> np.ndarray:
    alpha, beta, tc = thresholds(qp)

    def edges(x: np.ndarray, m: np.ndarray) -> None:
        cols = np.arange(8, x.shape[1] - 1, 8)
        p1, p0, q0, q1 = (x[:, cols + d] for d in (-2, -1, 0, 1))
        ok = m[:, cols - 2] & m[:, cols - 1] & m[:, cols] & m[:, cols + 1]
        ok = ok[..., None] & (np.abs(p0 - q0) < alpha) & (np.abs(p1 - p0) < beta) & (np.abs(q1 - q0) < beta)
        d = np.clip(((q0 - p0) * 4 + (p1 - q1) + 4) >> 3, -tc, tc) * ok
        x[:, cols - 1], x[:, cols] = np.clip(p0 + d, 0, 255), np.clip(q0 - d, 0, 255)

    x = recon.astype(np.int64)
    edges(x, mask)
    xt = np.ascontiguousarray(x.transpose(1, 0, 2))
    edges(xt, np.ascontiguousarray(mask.T))
    return xt.transpose(1, 0, 2).astype(np.uint8)


def _random_layout(rng: np.random.Generator) -> tuple[np.ndarray, Layout]:
    h, w = (int(v) for v in rng.integers(24, 100, 2))
    mask = np.zeros((h, w), bool)
    y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
    mask[y0:, x0:] = rng.random((h - y0, w - x0)) > 0.15
    ys, xs = np.nonzero(mask)
    return mask, Layout.of(mask, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))


@pytest.mark.parametrize("seed", range(6))
def test_pad_reference_matches_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    canvas = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    seen = np.zeros((40, 56), bool)
    if seed == 1:
        seen[:] = True
    elif seed > 1:
        seen[5:30, 10:40] = rng.random((25, 30)) > 0.5  # empty rows and columns on every side
        seen[37, 2] = seed % 2 == 0
    assert np.array_equal(pad_reference(canvas, seen), _pad_reference_numpy(canvas, seen))


def test_compensate_qpel_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    ref = pad_reference(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), np.ones((48, 64), bool))
    ys, xs = block_origins((0, 0, 64, 48))
    mv = rng.integers(-4 * 32, 4 * 32, (len(ys), 2))
    iy, fy, ix, fx = mv[:, 0] >> 2, mv[:, 0] & 3, mv[:, 1] >> 2, mv[:, 1] & 3
    r = np.arange(MB)
    yy = (ys + iy + MARGIN)[:, None, None] + r[None, :, None]
    xx = (xs + ix + MARGIN)[:, None, None] + r[None, None, :]
    p = ref.astype(np.int64)
    wy, wx = fy[:, None, None, None], fx[:, None, None, None]
    want = ((4 - wy) * (4 - wx) * p[yy, xx] + (4 - wy) * wx * p[yy, xx + 1] + wy * (4 - wx) * p[yy + 1, xx]
            + wy * wx * p[yy + 1, xx + 1] + 8) >> 4
    assert np.array_equal(compensate_qpel(ref, ys, xs, mv), want)


def _case(seed: int) -> tuple[np.random.Generator, Layout, int, int]:
    rng = np.random.default_rng(seed)
    _, lay = _random_layout(rng)
    return rng, lay, *lay.mask.shape


@pytest.mark.parametrize("seed", range(8))
def test_reconstruction_matches_numpy(seed: int) -> None:
    rng, lay, h, w = _case(seed)
    pred = np.clip(np.cumsum(rng.integers(-3, 4, (h, w, 3)), 1) + 128 + rng.integers(-40, 40), -20, 280)
    levels = np.where(rng.random((3, len(lay.blocks), 64)) < 0.1, rng.integers(-40, 40, (3, len(lay.blocks), 64)), 0)
    levels[:, ::3] = 0  # uncoded blocks
    qp = int(rng.integers(4, 48))
    deq = np.stack([tf.dequantise(levels[c], s) for c, s in enumerate(_steps(qp))])
    full = np.zeros((3, (h // 8) * (w // 8), 8, 8), np.int64)
    full[:, lay.blocks] = deq
    res = tf.ycocg_to_rgb(np.stack([tf.from_blocks(full[c], h, w) for c in range(3)], -1))
    want = _deblock_numpy(np.clip(pred + res, 0, 255).astype(np.uint8), lay.mask, qp)
    assert np.array_equal(_reconstruct(pred, levels, lay, qp), want)


@pytest.mark.parametrize("seed", range(4))
def test_residual_levels_match_numpy(seed: int) -> None:
    rng, lay, h, w = _case(seed)
    cur = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    pred = np.clip(cur.astype(np.int64) + rng.integers(-30, 30, (h, w, 3)), 0, 255)
    qp = int(rng.integers(10, 40))
    steps = _steps(qp)
    res = tf.rgb_to_ycocg((cur.astype(np.int64) - pred) * lay.mask[..., None])
    want = np.stack([tf.quantise(tf.to_blocks(res[..., c])[lay.blocks], steps[c]) for c in range(3)])
    got = np.zeros_like(want)
    scaled = np.zeros(want.shape)
    kernels.residual_levels(cur, pred, lay.mask, lay.blocks.astype(np.int64), w // 8, np.array(steps, np.int64), tf.DCT,
                            tf.ZIGZAG, tf.ROUNDING, got, scaled)
    # the float DCT's summation order may differ from BLAS's: a level can only move at a rounding tie
    assert np.mean(got != want) < 1e-3 and np.abs(got - want).max(initial=0) <= 1
    assert (np.sign(got) * np.floor(np.abs(scaled) + tf.ROUNDING) == got).all()  # the levels of the scaled values


def test_encode_columns_is_the_per_column_stream() -> None:
    rng = np.random.default_rng(0)
    tables = laplace_tables()
    values = np.where(rng.random((300, 64)) < 0.3, rng.laplace(0, 3, (300, 64)).round(), 0).astype(np.int64)
    values[5, 7] = 5000  # an escape
    idx = rng.integers(0, len(tables.half), (300, 64))
    a, b = SymbolWriter(), SymbolWriter()
    a.encode_columns(values, idx, tables)
    for k in range(64):
        b.encode_values(values[:, k], idx[:, k], tables)
    assert a.finish() == b.finish()


def test_kernels_independent_of_thread_count() -> None:
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    ref = pad_reference(np.roll(frame, (2, -3), (0, 1)), np.ones((64, 96), bool))
    mask = np.zeros((64, 96), bool)
    mask[8:60, 10:90] = True
    ys, xs = block_origins((0, 0, 96, 64))
    _, lay = _random_layout(rng)
    h, w = lay.mask.shape
    pred = rng.integers(0, 256, (h, w, 3)).astype(np.int64)
    levels = np.where(rng.random((3, len(lay.blocks), 64)) < 0.2, rng.integers(-9, 9, (3, len(lay.blocks), 64)), 0)
    results = []
    before = numba.get_num_threads()
    try:
        for n in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(n)
            ms = MotionSearch(frame, ref, mask)
            vi = ms.integer(ys, xs)
            results.append((vi, *ms.quarter(ys, xs, vi), _reconstruct(pred, levels, lay, 30),
                            compensate_qpel(ref, ys, xs, 4 * vi + 1)))
    finally:
        numba.set_num_threads(before)
    for other in results[1:]:
        assert all(np.array_equal(x, y) for x, y in zip(results[0], other))
    inner = results[0][0][(ys >= 8) & (ys < 48) & (xs >= 16) & (xs < 80)]  # blocks inside the mask find the shift
    assert len(inner) and (inner == [2, -3]).all()


def _coded_bits(values: np.ndarray, table: int) -> int:
    wr = SymbolWriter()
    wr.encode_values(values, np.full(values.size, table), laplace_tables())
    return 8 * len(wr.finish())


@pytest.mark.parametrize("scale", [0.05, 0.7, 6.0])
def test_cheapest_table_is_the_cheapest_in_coded_bytes(scale: float) -> None:
    """The encoder's table for motion-vector differences codes them in no more words than any other
    table (rANS words are 32 bits: the estimate may tie with a neighbour, never lose by a word)."""
    from ssc.video.texture import _NSCALES, _cheapest_table

    rng = np.random.default_rng(1)
    v = np.round(rng.laplace(0, scale, 600)).astype(np.int64)
    v[rng.random(600) < 0.02] = 40  # a few outliers, as isolated vectors are
    sizes = [_coded_bits(v, t) for t in range(_NSCALES)]
    assert _coded_bits(v, _cheapest_table(v)) <= min(sizes) + 32


def test_level_tables_are_a_local_optimum_of_the_coded_size() -> None:
    """The per-band tables and context offsets the encoder writes cannot be improved by moving any one
    of them by one table, in the bits of the real coder (up to one rANS word), and the choice beats the
    mean-magnitude rule of the first encoder by a clear margin on sparse, peaked levels."""
    from ssc.video.texture import _NSCALES, _contexts, _encode_levels, _fit_level_tables, _histograms

    rng = np.random.default_rng(2)
    decay = np.exp(-np.arange(64) / 6.0)
    lv = np.round(rng.laplace(0, 1.0, (400, 64)) * decay * (rng.random((400, 64)) < 0.5)).astype(np.int64)
    ctx = _contexts(lv)

    def bits(base: np.ndarray, off: np.ndarray) -> int:
        wr = SymbolWriter()
        _encode_levels(lv, ctx, base, off, laplace_tables(), wr)
        return 8 * len(wr.finish())

    base, off = _fit_level_tables(lv, ctx)
    best = bits(base, off)
    for b in range(tf.N_BANDS):
        for d in (-1, 1):
            nb = base.copy()
            nb[b] = np.clip(nb[b] + d, 0, _NSCALES - 1)
            assert best <= bits(nb, off) + 32
    for c in (1, 2):
        for d in (-1, 1):
            no = off.copy()
            no[c] += d
            assert best <= bits(base, no) + 32
    # the first encoder's rule: per band the table whose Laplace scale is nearest the mean magnitude
    from ssc.video.texture import SCALES
    mean = np.array([np.abs(lv[:, tf.BAND_OF_SCAN == b]).mean() for b in range(tf.N_BANDS)])
    old = np.argmin(np.abs(np.log(SCALES)[None] - np.log(np.maximum(mean, 1e-3))[:, None]), 1)
    assert best < 0.9 * bits(old, np.zeros(3, np.int64))
    assert _histograms(lv, np.zeros(lv.shape, np.int64), 1).sum() == lv.size


def _grid_layout(rng: np.random.Generator, gh: int, gw: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random set of coded blocks on a gh x gw grid, as texture._mv_grid returns it."""
    cells = np.flatnonzero(rng.random(gh * gw) < 0.6)
    at = np.full((gh, gw), -1, np.int64)
    gy, gx = cells // gw, cells % gw
    at[gy, gx] = np.arange(len(cells))
    return at, gy.astype(np.int64), gx.astype(np.int64)


@pytest.mark.parametrize("seed", range(4))
def test_mv_walk_decodes_what_it_encodes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    at, gy, gx = _grid_layout(rng, 7, 9)
    n = len(gy)
    split = rng.random(n) < 0.3
    mv = rng.integers(-12, 13, (n, 4, 2)).astype(np.int64)
    mv[~split] = mv[~split, :1]  # an unsplit block has one vector
    mv[rng.random(n) < 0.4] = 3  # runs of equal vectors (a moving object)
    k = n + 3 * int(split.sum())
    same, diff = np.zeros(k, bool), np.zeros((k, 2), np.int64)
    assert kernels.mv_walk(at, gy, gx, split, mv.copy(), same, diff, False) == k
    assert same.any() and not same.all()
    assert (diff[same] == 0).all() and (diff[~same] != 0).any(1).all()
    out = np.zeros_like(mv)
    kernels.mv_walk(at, gy, gx, split, out, same, diff, True)
    assert (out == mv).all()


def test_mv_walk_predicts_a_still_or_uniformly_moving_field_entirely() -> None:
    """A fixed camera's zero vectors and an object's one shared vector cost only their flags, after the
    first block of the object (the median of coded neighbours, H.264's rule)."""
    rng = np.random.default_rng(5)
    at, gy, gx = _grid_layout(rng, 6, 8)
    n = len(gy)
    split = np.zeros(n, bool)
    for v, first_same in ((0, True), (5, False)):
        mv = np.full((n, 4, 2), v, np.int64)
        same, diff = np.zeros(n, bool), np.zeros((n, 2), np.int64)
        kernels.mv_walk(at, gy, gx, split, mv, same, diff, False)
        assert same[0] == first_same and same[1:].all()
