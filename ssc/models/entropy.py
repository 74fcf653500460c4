"""Entropy models and the symbol coder.

- :class:`FactorizedDensity`: per-channel learned density for the hyper-latent z (Balle et al.,
  "Variational image compression with a scale hyperprior", ICLR 2018, appendix 6.1).
- Gaussian conditional with a scale table: each latent is coded with the discretised Gaussian of the
  smallest table scale >= its predicted scale; tables are integer counts stored with the weights, so
  encoder and decoder use identical models on any machine.
- :class:`SymbolWriter` / :class:`SymbolReader`: rANS (constriction's stack coder) over those integer
  tables. Values outside a table's range are coded as an escape symbol followed by sign and 32-bit
  magnitude, so no latent value is ever clipped.
"""
from __future__ import annotations

import math

import constriction
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BitstreamError

TABLE_PRECISION = 16  # counts sum to about 2**16
_CM = constriction.stream.model


def gaussian_likelihood(y: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """P(round(y) bin) under N(mean, scale): Phi((y-mean+.5)/s) - Phi((y-mean-.5)/s), computed on the
    lower tail for stability."""
    v = (y - mean).abs()
    upper = torch.special.ndtr((0.5 - v) / scale)
    lower = torch.special.ndtr((-0.5 - v) / scale)
    return upper - lower


class LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows when it pushes x up (Balle's lower_bound)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp(min=bound)

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (g < 0)
        return g * pass_through, None


class FactorizedDensity(nn.Module):
    """Non-parametric per-channel density: a monotone cumulative c(x) = sigmoid(f(x)) built from
    softplus-positive matrices and tanh gating (Balle et al. 2018)."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0) -> None:
        super().__init__()
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """x: (C, 1, L) -> cumulative logits (C, 1, L)."""
        for i, m in enumerate(self.matrices):
            x = torch.matmul(F.softplus(m), x) + self.biases[i]
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def likelihood(self, z: torch.Tensor) -> torch.Tensor:
        """Probability mass of the unit bin around each value of z (B, C, H, W)."""
        b, c, h, w = z.shape
        v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lo = self._logits(v - 0.5)
        hi = self._logits(v + 0.5)
        sign = -torch.sign(lo + hi).detach()
        lik = (torch.sigmoid(sign * hi) - torch.sigmoid(sign * lo)).abs()
        return lik.reshape(c, b, h, w).permute(1, 0, 2, 3)

    @torch.no_grad()
    def table(self, half_range: int) -> np.ndarray:
        """Integer counts (C, 2*half_range + 2): symbols -R..R then the escape symbol."""
        c = self.matrices[0].shape[0]
        ks = torch.arange(-half_range, half_range + 1, dtype=torch.float64)
        dev = self.matrices[0].device
        m = self.double().to("cpu")
        lo = m._logits((ks - 0.5).view(1, 1, -1).expand(c, 1, -1))
        hi = m._logits((ks + 0.5).view(1, 1, -1).expand(c, 1, -1))
        sign = -torch.sign(lo + hi)
        p = (torch.sigmoid(sign * hi) - torch.sigmoid(sign * lo)).abs().reshape(c, -1)
        self.float().to(dev)
        esc = (1.0 - p.sum(1, keepdim=True)).clamp(min=0)
        return _counts(torch.cat([p, esc], 1).numpy())


def _counts(p: np.ndarray) -> np.ndarray:
    """Probabilities -> integer counts (every symbol at least 1)."""
    return np.maximum(np.rint(p * (1 << TABLE_PRECISION)), 1).astype(np.int32)


def build_scale_table(min_scale: float, max_scale: float, levels: int) -> np.ndarray:
    return np.exp(np.linspace(math.log(min_scale), math.log(max_scale), levels))


def gaussian_tables(scales: np.ndarray, tail_sigmas: float = 8.0, max_half_range: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per table scale: half range L_i and integer counts (T, 2*Lmax+2); row i uses its first 2*L_i+2
    entries (values -L_i..L_i, then escape)."""
    half = np.clip(np.ceil(scales * tail_sigmas), 1, max_half_range).astype(np.int32)
    lmax = int(half.max())
    counts = np.zeros((len(scales), 2 * lmax + 2), dtype=np.int32)
    for i, (s, L) in enumerate(zip(scales, half)):
        k = torch.arange(-int(L), int(L) + 1, dtype=torch.float64)
        p = gaussian_likelihood(k, torch.zeros(()), torch.tensor(float(s), dtype=torch.float64)).numpy()
        esc = max(0.0, 1.0 - float(p.sum()))
        counts[i, : 2 * L + 2] = _counts(np.concatenate([p, [esc]]))
    return half, counts


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
        return coder.get_compressed().astype("<u4").tobytes()


class SymbolReader:
    """Decodes what :class:`SymbolWriter` wrote, in the same order."""

    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise BitstreamError("entropy-coded data is not a whole number of 32-bit words")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
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


class CodingTables:
    """Mixin for codecs with a learned z density (``self.density_z``): the scale table, the integer
    Gaussian tables and the z tables as buffers (so they ship inside the weights file), the cached
    :class:`TableSet` pair, and scale -> table index. Shared by :class:`~ssc.models.GroupCodec` and
    the scale-hyperprior peer."""

    def _init_tables(self, z_channels: int, z_half_range: int, scale_min: float, scale_max: float, scale_levels: int) -> None:
        self.z_channels, self.z_half_range, self.scale_min = z_channels, z_half_range, scale_min
        table = build_scale_table(scale_min, scale_max, scale_levels)
        half, counts = gaussian_tables(table)
        self.register_buffer("scale_table", torch.from_numpy(table))
        self.register_buffer("gauss_half", torch.from_numpy(half))
        self.register_buffer("gauss_counts", torch.from_numpy(counts))
        self.register_buffer("z_counts", torch.zeros(z_channels, 2 * z_half_range + 2, dtype=torch.int32))
        self._cache: tuple[tuple, TableSet, TableSet] | None = None

    @torch.no_grad()
    def update_tables(self) -> None:
        """Rebuild the integer z tables from the learned density (call after training)."""
        self.z_counts.copy_(torch.from_numpy(self.density_z.table(self.z_half_range)))
        self._cache = None

    def _tables(self) -> tuple[TableSet, TableSet]:
        """(Gaussian tables, z tables), rebuilt only when the integer counts change."""
        key = (self.gauss_counts._version, self.z_counts._version, self.gauss_counts.data_ptr(), self.z_counts.data_ptr())
        if self._cache is None or self._cache[0] != key:
            if int(self.z_counts.sum()) == 0:
                raise RuntimeError("entropy tables not built: call update_tables() after training")
            gauss = TableSet(self.gauss_half.cpu().numpy(), self.gauss_counts.cpu().numpy())
            zh = np.full(self.z_channels, self.z_half_range)
            self._cache = (key, gauss, TableSet(zh, self.z_counts.cpu().numpy()))
        return self._cache[1], self._cache[2]

    def _scale_index(self, s_raw: torch.Tensor) -> torch.Tensor:
        """Index of the smallest table scale >= each predicted scale (exact comparisons in float64)."""
        s = s_raw.double().clamp(min=self.scale_min)
        table = self.scale_table.to(s.device, torch.float64)
        return torch.searchsorted(table, s.contiguous(), right=False).clamp_(max=len(table) - 1)

