"""The symbol coder, torch-free: rANS (constriction's stack coder) over integer count tables.

- :class:`TableSet`: a family of categorical tables (integer counts, per-row half ranges).
- :class:`SymbolWriter` / :class:`SymbolReader`: values outside a table's range are coded as an
  escape symbol followed by sign and 32-bit magnitude, so no value is ever clipped.

The entropy models that make the tables (:mod:`ssc.models.entropy`) are torch modules; this module
is what the bitstream, the group-map coder and the video texture coder share (as CompressAI keeps
``compressai.ans`` apart from its torch entropy models).
"""
from __future__ import annotations

import constriction
import numpy as np

from ..errors import BitstreamError

TABLE_PRECISION = 16  # counts sum to about 2**16
_CM = constriction.stream.model


def to_counts(p: np.ndarray) -> np.ndarray:
    """Probabilities -> integer counts (every symbol at least 1)."""
    return np.maximum(np.rint(p * (1 << TABLE_PRECISION)), 1).astype(np.int32)


class TableSet:
    """A family of categorical tables (rows of integer counts with per-row half ranges), with the
    constriction models built once and cached on the instance."""

    def __init__(self, half: np.ndarray, counts: np.ndarray) -> None:
        self.half = np.asarray(half, dtype=np.int64)
        self.counts = np.asarray(counts)
        self._models: dict[int, object] = {}

    def model(self, i: int):
        m = self._models.get(i)
        if m is None:
            n = 2 * int(self.half[i]) + 2
            m = _CM.Categorical(self.counts[i, :n].astype(np.float64), perfect=False)
            self._models[i] = m
        return m


_U16 = _CM.Uniform(1 << 16)
_U2 = _CM.Uniform(2)


def trim_words(data: bytes) -> bytes:
    """The coded words (little-endian u32) without the zero high bytes of the last word, at most 3:
    the coder's final word is the top of its state, often small (bitstream v5; about 1.6 bytes a
    segment). :func:`pad_words` restores them."""
    end = len(data)
    while end > len(data) - 3 and end > 0 and data[end - 1] == 0:
        end -= 1
    return data[:end]


def pad_words(data: bytes) -> bytes:
    """Inverse of :func:`trim_words`: zero bytes up to a whole number of 32-bit words (whole words, as
    older streams store them, are returned unchanged)."""
    return bytes(data) + b"\0" * (-len(data) % 4)


class SymbolWriter:
    """Collects coding operations in *decoding* order; :meth:`finish` runs the rANS coder backwards."""

    def __init__(self) -> None:
        self._ops: list[tuple[np.ndarray, object]] = []

    def write(self, symbols: np.ndarray, model: object) -> None:
        """Queue ``symbols`` (1-D ints) to be coded with one constriction model."""
        if symbols.size:
            self._ops.append((np.ascontiguousarray(symbols, dtype=np.int32), model))

    def encode_values(self, values: np.ndarray, table_index: np.ndarray, tables: TableSet) -> None:
        """Code integer ``values`` (1-D) where value k uses table row ``table_index[k]``."""
        self.encode_columns(np.asarray(values).reshape(-1, 1), np.asarray(table_index).reshape(-1, 1), tables)

    def encode_columns(self, values: np.ndarray, table_index: np.ndarray, tables: TableSet) -> None:
        """``encode_values(values[:, k], table_index[:, k])`` for k = 0, 1, ... (the same stream), at
        the cost of one call: per column, the values grouped by table (stably), then their escapes."""
        m, cols = values.shape
        if m == 0:
            return
        v = np.ascontiguousarray(values.T, dtype=np.int64).ravel()
        t = np.ascontiguousarray(table_index.T, dtype=np.int64).ravel()
        col = np.repeat(np.arange(cols), m)
        order = np.lexsort((t, col))
        v, t, col = v[order], t[order], col[order]
        half = tables.half[t]
        esc = np.abs(v) > half
        sym = np.where(esc, 2 * half + 1, v + half).astype(np.int32)
        starts = np.flatnonzero(np.concatenate([[True], (np.diff(t) != 0) | (np.diff(col) != 0)]))
        ends = np.append(starts[1:], len(v))
        has_esc = bool(esc.any())
        pending: list[tuple[np.ndarray, int]] = []
        for a, b in zip(starts.tolist(), ends.tolist()):
            i = int(t[a])
            self._ops.append((sym[a:b], tables.model(i)))
            if has_esc:
                pending.append((v[a:b][esc[a:b]], int(tables.half[i])))
                if b == len(v) or col[b] != col[a]:  # the column's last group: its escapes follow
                    for ev, L in pending:
                        self._escapes(ev, L)
                    pending = []

    def _escapes(self, ev: np.ndarray, L: int) -> None:
        """Sign and 32-bit magnitude beyond the table's range of escaped values ``ev``."""
        if ev.size:
            mag = np.abs(ev) - L - 1
            if mag.max() >= (1 << 32):
                raise ValueError("latent magnitude too large to code")
            self.write((ev < 0).astype(np.int32), _U2)
            self.write((mag >> 16).astype(np.int32), _U16)
            self.write((mag & 0xFFFF).astype(np.int32), _U16)

    def finish(self) -> bytes:
        coder = constriction.stream.stack.AnsCoder()
        ops = self._ops
        i = len(ops)
        while i > 0:  # runs of one model coded in one call (the same stream, fewer calls)
            j = i - 1
            while j > 0 and ops[j - 1][1] is ops[i - 1][1]:
                j -= 1
            syms = ops[j][0] if i - j == 1 else np.concatenate([o[0] for o in ops[j:i]])
            coder.encode_reverse(syms, ops[i - 1][1])
            i = j
        return trim_words(coder.get_compressed().astype("<u4").tobytes())


class SymbolReader:
    """Decodes what :class:`SymbolWriter` wrote, in the same order."""

    def __init__(self, data: bytes) -> None:
        words = np.frombuffer(pad_words(data), dtype="<u4").astype(np.uint32)
        try:
            self._coder = constriction.stream.stack.AnsCoder(words)
        except ValueError as e:
            raise BitstreamError(f"invalid entropy-coded data ({e})") from e

    def read(self, model: object, n: int) -> np.ndarray:
        """Decode ``n`` symbols with one constriction model."""
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        try:
            return np.asarray(self._coder.decode(model, n), dtype=np.int64)
        except (ValueError, OverflowError) as e:  # the ANS decoder on forged data
            raise BitstreamError(f"entropy-coded data does not decode (corrupted or forged segment: {e})") from e

    def decode_values(self, table_index: np.ndarray, tables: TableSet) -> np.ndarray:
        order = np.argsort(table_index, kind="stable")
        idx_sorted = table_index[order]
        out_sorted = np.zeros(len(order), dtype=np.int64)
        bounds = np.flatnonzero(np.diff(idx_sorted)) + 1
        pending = []
        start = 0
        for seg_idx in np.split(idx_sorted, bounds):
            if seg_idx.size == 0:
                continue
            i = int(seg_idx[0])
            L = int(tables.half[i])
            sym = self.read(tables.model(i), seg_idx.size)
            out_sorted[start : start + seg_idx.size] = sym - L
            pending.append((start, sym == 2 * L + 1, L))
            start += seg_idx.size
        for st, esc, L in pending:
            n = int(esc.sum())
            if n:
                neg = self.read(_U2, n)
                hi = self.read(_U16, n)
                lo = self.read(_U16, n)
                mag = (hi << 16) + lo + L + 1
                pos = st + np.flatnonzero(esc)
                out_sorted[pos] = np.where(neg == 1, -mag, mag)
        out = np.empty_like(out_sorted)
        out[order] = out_sorted
        return out

    @property
    def exhausted(self) -> bool:
        """True once every coded word has been consumed."""
        return self._coder.is_empty()

    def check_end(self) -> None:
        if not self.exhausted:
            raise BitstreamError("entropy-coded data has trailing content (corrupted or forged segment)")
