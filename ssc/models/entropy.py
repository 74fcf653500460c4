"""Entropy models (torch).

- :class:`FactorizedDensity`: per-channel learned density for the hyper-latent z (Balle et al.,
  "Variational image compression with a scale hyperprior", ICLR 2018, appendix 6.1).
- Gaussian conditional with a scale table: each latent is coded with the discretised Gaussian of the
  smallest table scale >= its predicted scale; tables are integer counts stored with the weights, so
  encoder and decoder use identical models on any machine.
- The symbol coder that codes with those tables is torch-free and lives apart, in
  :mod:`ssc.bitstream.rans` (as CompressAI keeps ``compressai.ans`` apart from its entropy models).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..bitstream.rans import TableSet, to_counts



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
        return to_counts(torch.cat([p, esc], 1).numpy())


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
        counts[i, : 2 * L + 2] = to_counts(np.concatenate([p, [esc]]))
    return half, counts


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

