"""Group-map codec 2 ("row-transition"): each row's run boundaries are predicted from the row above,
in the spirit of the two-dimensional (READ) mode of ITU-T T.4 fax coding, extended to many labels,
and coded with adaptive models over rANS.

Row y is a list of runs (start x, label index). Walking the row left to right with a pointer to the
next transition of the row above (position p, label after it l), one mode symbol is coded per step:

* ``V(d)``, d in [-3, 3]: the next transition is at p + d and takes label l; consumes p.
* ``SKIP``: transition p has no counterpart in this row; consumes p.
* ``NEW``: the next transition is coded explicitly: gap to the previous transition (Exp-Golomb, bit
  count adaptive, raw low bits) and its label (adaptive over the K group indices).
* ``END``: no further transition in this row.

The mode's context is how the referenced transition was itself coded one row up (V(d'), NEW or none),
so smooth object edges cost a fraction of a bit per row. The first label of each row is coded as
"same as the row above" or explicitly. Label indices refer to the group table's ids in ascending
order. All models are adaptive counts that encoder and decoder update identically.

With ``exclusive=True`` (the per-group binary masks of bitstream v2) a label that is known to differ
from another one (a NEW run's label differs from the run before it; a row's first label, when it is
not the one above) is coded among the k - 1 remaining labels, so binary masks spend no bits on labels.
"""
from __future__ import annotations

import constriction
import numpy as np

from ..errors import BitstreamError
from .groupmap_symbols import CTX_NEW, CTX_NONE, END, INC, LIMIT, MAX_BITS, NEW, NUM_CTX, NUM_MODES, SKIP, V_RANGE
from .rans import SymbolReader, SymbolWriter, trim_words

_CM = constriction.stream.model



class _Adaptive:
    """Frequency counts with periodic halving; ``probs`` is the model both sides use next."""

    def __init__(self, n: int, prior: np.ndarray | None = None) -> None:
        self.counts = np.ones(n, dtype=np.float64) if prior is None else prior.astype(np.float64).copy()

    def model(self):
        return _CM.Categorical(self.counts, perfect=False)

    def update(self, s: int) -> None:
        self.counts[s] += INC
        if self.counts.sum() > LIMIT:
            self.counts = np.floor((self.counts + 1) / 2)


class _Models:
    def __init__(self, k: int, exclusive: bool) -> None:
        prior = np.ones(NUM_MODES)
        prior[V_RANGE] = 8  # V(0) is the common case
        prior[END] = 4
        self.mode = [_Adaptive(NUM_MODES, prior) for _ in range(NUM_CTX)]
        self.same_first = _Adaptive(2, np.array([1.0, 8.0]))
        self.label = _Adaptive(k)
        self.other_label = _Adaptive(max(k - 1, 1)) if exclusive else None
        self.nbits = _Adaptive(MAX_BITS + 1)


def _runs(row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    starts = np.concatenate([[0], np.flatnonzero(row[1:] != row[:-1]) + 1])
    return starts, row[starts]


class _Coder:
    """Shared walk over rows; subclasses supply the symbol I/O."""

    def __init__(self, k: int, exclusive: bool = False) -> None:
        self.m = _Models(k, exclusive)
        self.k = k

    def label(self, lab: int | None, differs_from: int) -> int:
        """Code a label; in exclusive mode one that must differ from ``differs_from`` (>= 0)."""
        if self.m.other_label is None or differs_from < 0:
            return self.sym(self.m.label, lab)
        s = self.sym(self.m.other_label, None if lab is None else lab - (lab > differs_from))
        return s + (s >= differs_from)

    def sym(self, model: _Adaptive, s: int | None) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def raw_bits(self, value: int | None, nbits: int) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def gap(self, g: int | None) -> int:
        """Exp-Golomb style: adaptive bit count of g + 1, then the raw low bits."""
        n = None if g is None else g + 1
        nb = self.sym(self.m.nbits, None if n is None else n.bit_length())
        if nb < 1:
            raise BitstreamError("group map: invalid gap")
        low = self.raw_bits(None if n is None else n - (1 << (nb - 1)), nb - 1)
        return (1 << (nb - 1)) + low - 1

    def walk_row(self, prev: tuple[list[int], list[int], list[int]], width: int,
                 cur: tuple[np.ndarray, np.ndarray] | None) -> tuple[list[int], list[int], list[int]]:
        """Code (encoder: ``cur`` given) or decode (``cur`` None) one row. ``prev`` = (transition
        positions >= 1, labels after them, their context class), plus first label at index 0 of a
        separate slot. Returns the same triple for this row, with the first label prepended."""
        p_first, p_pos, p_lab, p_cls = prev[0][0], prev[0][1:], prev[1], prev[2]
        enc = cur is not None
        if enc:
            starts, labs = cur
            t_pos, t_lab = starts[1:].tolist(), labs[1:].tolist()
            first = int(labs[0])
        same = self.sym(self.m.same_first, (1 if first == p_first else 0) if enc else None) if p_first >= 0 else 0
        if same:
            first = p_first
        else:
            first = self.label(first if enc else None, p_first)
        out_pos, out_lab, out_cls = [], [], []
        last, j, i = 0, 0, 0
        while True:
            while j < len(p_pos) and p_pos[j] <= last:
                j += 1
            ctx = p_cls[j] if j < len(p_pos) else CTX_NONE
            mode_model = self.m.mode[ctx]
            if enc:
                if i == len(t_pos):
                    mode = END
                else:
                    x, lab = t_pos[i], t_lab[i]
                    if j < len(p_pos) and abs(x - p_pos[j]) <= V_RANGE and lab == p_lab[j]:
                        mode = V_RANGE + x - p_pos[j]
                    elif j < len(p_pos) and p_pos[j] < x:
                        mode = SKIP
                    else:
                        mode = NEW
                self.sym(mode_model, mode)
            else:
                mode = self.sym(mode_model, None)
            if mode == END:
                break
            if mode == SKIP:
                if j >= len(p_pos):
                    raise BitstreamError("group map: SKIP past the last transition")
                j += 1
                continue
            if mode == NEW:
                g = self.gap((x - last - 1) if enc else None)
                x_new = last + 1 + g
                lab_new = self.label(lab if enc else None, out_lab[-1] if out_lab else first)
                cls = CTX_NEW
            else:
                if j >= len(p_pos):
                    raise BitstreamError("group map: vertical mode without a reference transition")
                x_new, lab_new, cls = p_pos[j] + mode - V_RANGE, p_lab[j], mode
                j += 1
            prev_lab = out_lab[-1] if out_lab else first
            if not last < x_new < width or lab_new == prev_lab:
                raise BitstreamError("group map: invalid run boundary")
            out_pos.append(x_new)
            out_lab.append(lab_new)
            out_cls.append(cls)
            last = x_new
            i += 1
        return [first, *out_pos], out_lab, out_cls


class _Enc(_Coder):
    def __init__(self, k: int, exclusive: bool = False) -> None:
        super().__init__(k, exclusive)
        self.w = SymbolWriter()

    def sym(self, model: _Adaptive, s: int | None) -> int:
        assert s is not None
        if len(model.counts) == 1:  # a one-symbol alphabet carries no information
            return 0
        self.w.write(np.array([s]), model.model())
        model.update(s)
        return s

    def raw_bits(self, value: int | None, nbits: int) -> int:
        assert value is not None
        done = 0
        while done < nbits:
            b = min(16, nbits - done)
            self.w.write(np.array([(value >> done) & ((1 << b) - 1)]), _CM.Uniform(1 << b))
            done += b
        return value


class _Dec(_Coder):
    def __init__(self, k: int, data: bytes, exclusive: bool = False) -> None:
        super().__init__(k, exclusive)
        self.r = SymbolReader(data)

    def _need(self) -> None:
        # A valid stream never runs dry before its last symbol (every coded symbol moves the ANS
        # state away from its initial value), so an empty coder here means forged or cut data.
        if self.r.exhausted:
            raise BitstreamError("group map data ended early (truncated or forged)")

    def sym(self, model: _Adaptive, s: int | None) -> int:
        if len(model.counts) == 1:
            return 0
        self._need()
        v = int(self.r.read(model.model(), 1)[0])
        if not 0 <= v < len(model.counts):
            raise BitstreamError("group map: symbol out of range")
        model.update(v)
        return v

    def raw_bits(self, value: int | None, nbits: int) -> int:
        out, done = 0, 0
        while done < nbits:
            b = min(16, nbits - done)
            self._need()
            out |= int(self.r.read(_CM.Uniform(1 << b), 1)[0]) << done
            done += b
        return out


_FAMILY = _CM.Categorical(perfect=False)  # one probability row (a counts snapshot) per symbol


def encode_rows(index_map: np.ndarray, k: int, exclusive: bool = False) -> bytes:
    """``index_map`` (H, W) of label indices in [0, k). The walk runs compiled
    (:mod:`ssc.bitstream.groupmap_plan`); the bytes are those of :func:`encode_rows_reference`."""
    from .groupmap_plan import K_RAW, WIDTH, op_capacity, plan_rows  # numba: imported when a map is coded

    im = np.ascontiguousarray(index_map, dtype=np.int32)
    if im.ndim != 2 or im.shape[1] == 0:
        return encode_rows_reference(im, k, exclusive)
    cap = op_capacity(im)
    kinds, syms = np.empty(cap, np.int64), np.empty(cap, np.int32)
    sizes, snaps = np.empty(cap, np.int64), np.empty((cap, WIDTH), np.float64)
    n = plan_rows(im, k, exclusive, kinds, syms, sizes, snaps)
    key = np.where(kinds[:n] == K_RAW, -sizes[:n], sizes[:n])  # raw chunks: Uniform(size)
    bounds = np.flatnonzero(np.diff(key)) + 1
    starts, ends = np.append(0, bounds).tolist(), np.append(bounds, n).tolist()
    coder = constriction.stream.stack.AnsCoder()
    for a, b in reversed(list(zip(starts, ends)) if n else []):  # back to front: the stack codes in reverse
        m = int(sizes[a])
        if key[a] < 0:
            coder.encode_reverse(syms[a:b], _CM.Uniform(m))
        else:  # a run of one alphabet size in one call
            coder.encode_reverse(syms[a:b], _FAMILY, np.ascontiguousarray(snaps[a:b, :m]))
    return trim_words(coder.get_compressed().astype("<u4").tobytes())


def encode_rows_reference(index_map: np.ndarray, k: int, exclusive: bool = False) -> bytes:
    """The coder's walk in Python, one model per symbol (the decoder's walk; tests pin
    :func:`encode_rows` against it)."""
    enc = _Enc(k, exclusive)
    prev: tuple[list[int], list[int], list[int]] = ([-1], [], [])
    for row in index_map:
        prev = enc.walk_row(prev, index_map.shape[1], _runs(row))
    return enc.w.finish()


def decode_rows(data: bytes, height: int, width: int, k: int, exclusive: bool = False) -> np.ndarray:
    dec = _Dec(k, data, exclusive)
    out = np.empty((height, width), dtype=np.int32)
    prev: tuple[list[int], list[int], list[int]] = ([-1], [], [])
    for y in range(height):
        prev = dec.walk_row(prev, width, None)
        starts = prev[0][1:]
        labs = [prev[0][0], *prev[1]]
        bounds = [0, *starts, width]
        out[y] = np.repeat(np.asarray(labs, dtype=np.int32), np.diff(bounds))
    dec.r.check_end()
    return out
