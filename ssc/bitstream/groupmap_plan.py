"""Compiled encoder walk of the row-transition group-map coder (:mod:`ssc.bitstream.groupmap_rows`).

The walk decides, row by row, the same symbols as the coder's Python walk and keeps the same adaptive
counts, but records each symbol with a snapshot of its model's counts instead of building one
constriction model per symbol; :func:`ssc.bitstream.groupmap_rows.encode_rows` then codes runs of
snapshots of one alphabet size in one batched call. The bytes are identical (tests pin them against
the Python walk, which the decoder still runs): this only moves the per-symbol work out of Python.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .groupmap_symbols import CTX_NEW, CTX_NONE, END, INC, LIMIT, MAX_BITS, NEW, NUM_CTX, NUM_MODES, SKIP, V_RANGE

#: op kinds after the NUM_CTX mode models
K_SAME, K_LABEL, K_OTHER, K_NBITS, K_RAW = NUM_CTX, NUM_CTX + 1, NUM_CTX + 2, NUM_CTX + 3, NUM_CTX + 4
WIDTH = MAX_BITS + 1  # the widest alphabet (bit counts); snapshots are padded to it


@njit(cache=True, nogil=True)
def _emit(c: np.ndarray, s: int, kind: int, n: int, kinds, syms, sizes, snaps) -> int:
    """Record symbol ``s`` of the adaptive model with counts ``c`` (then update them); returns the new
    op count. A one-symbol alphabet carries no information and records nothing."""
    m = c.shape[0]
    if m == 1:
        return n
    kinds[n] = kind
    syms[n] = s
    sizes[n] = m
    snaps[n, :m] = c
    c[s] += INC
    if c.sum() > LIMIT:
        for i in range(m):
            c[i] = np.floor((c[i] + 1.0) / 2.0)
    return n + 1


@njit(cache=True, nogil=True)
def _label(lab: int, differs_from: int, exclusive: bool, label_c, other_c, n: int, kinds, syms, sizes, snaps) -> int:
    if not exclusive or differs_from < 0:
        return _emit(label_c, lab, K_LABEL, n, kinds, syms, sizes, snaps)
    return _emit(other_c, lab - (1 if lab > differs_from else 0), K_OTHER, n, kinds, syms, sizes, snaps)


@njit(cache=True, nogil=True)
def plan_rows(index_map: np.ndarray, k: int, exclusive: bool, kinds: np.ndarray, syms: np.ndarray,
              sizes: np.ndarray, snaps: np.ndarray) -> int:
    """Walk ``index_map`` (H, W) int32 as the coder's encoder does; fill the op arrays (kind, symbol,
    alphabet size, counts snapshot) in decoding order and return how many ops there are."""
    h, w = index_map.shape
    mode_c = np.ones((NUM_CTX, NUM_MODES))
    for c in range(NUM_CTX):
        mode_c[c, V_RANGE] = 8.0
        mode_c[c, END] = 4.0
    same_c = np.array([1.0, 8.0])
    label_c = np.ones(k)
    other_c = np.ones(max(k - 1, 1))
    nbits_c = np.ones(WIDTH)
    p_pos = np.empty(w, np.int64)
    p_lab = np.empty(w, np.int64)
    p_cls = np.empty(w, np.int64)
    o_pos = np.empty(w, np.int64)
    o_lab = np.empty(w, np.int64)
    o_cls = np.empty(w, np.int64)
    c_pos = np.empty(w, np.int64)
    c_lab = np.empty(w, np.int64)
    n_prev = 0
    p_first = -1
    n = 0
    for y in range(h):
        row = index_map[y]
        n_cur = 0
        for x in range(1, w):
            if row[x] != row[x - 1]:
                c_pos[n_cur] = x
                c_lab[n_cur] = row[x]
                n_cur += 1
        first = int(row[0])
        if p_first >= 0:
            same = 1 if first == p_first else 0
            n = _emit(same_c, same, K_SAME, n, kinds, syms, sizes, snaps)
            if not same:
                n = _label(first, p_first, exclusive, label_c, other_c, n, kinds, syms, sizes, snaps)
        else:
            n = _label(first, p_first, exclusive, label_c, other_c, n, kinds, syms, sizes, snaps)
        last = 0
        j = 0
        i = 0
        n_out = 0
        while True:
            while j < n_prev and p_pos[j] <= last:
                j += 1
            ctx = p_cls[j] if j < n_prev else CTX_NONE
            if i == n_cur:
                mode = END
            else:
                x = c_pos[i]
                lab = c_lab[i]
                if j < n_prev and abs(x - p_pos[j]) <= V_RANGE and lab == p_lab[j]:
                    mode = V_RANGE + x - p_pos[j]
                elif j < n_prev and p_pos[j] < x:
                    mode = SKIP
                else:
                    mode = NEW
            n = _emit(mode_c[ctx], mode, ctx, n, kinds, syms, sizes, snaps)
            if mode == END:
                break
            if mode == SKIP:
                j += 1
                continue
            x = c_pos[i]
            lab = c_lab[i]
            if mode == NEW:
                g1 = x - last  # gap + 1
                nb = 0
                while (g1 >> nb) > 0:
                    nb += 1
                n = _emit(nbits_c, nb, K_NBITS, n, kinds, syms, sizes, snaps)
                low = g1 - (1 << (nb - 1))
                done = 0
                while done < nb - 1:
                    b = min(16, nb - 1 - done)
                    kinds[n] = K_RAW
                    syms[n] = (low >> done) & ((1 << b) - 1)
                    sizes[n] = 1 << b
                    n += 1
                    done += b
                n = _label(lab, o_lab[n_out - 1] if n_out else first, exclusive, label_c, other_c, n,
                           kinds, syms, sizes, snaps)
                cls = CTX_NEW
            else:
                cls = mode
                j += 1
            o_pos[n_out] = x
            o_lab[n_out] = lab
            o_cls[n_out] = cls
            n_out += 1
            last = x
            i += 1
        p_pos[:n_out] = o_pos[:n_out]
        p_lab[:n_out] = o_lab[:n_out]
        p_cls[:n_out] = o_cls[:n_out]
        n_prev = n_out
        p_first = first
    return n


def op_capacity(index_map: np.ndarray) -> int:
    """An upper bound on the ops of :func:`plan_rows`: per row at most a first label (two ops), and
    per transition of this row or the row above a mode, a bit count, three raw chunks and a label."""
    h = index_map.shape[0]
    trans = int(np.count_nonzero(index_map[:, 1:] != index_map[:, :-1]))
    return 3 * h + 2 * 6 * trans + 8
