"""Scale-hyperprior peer codec (Balle et al., "Variational image compression with a scale
hyperprior", ICLR 2018; CompressAI's ``bmshj2018-hyperprior`` architecture), written for ssc so the
rate-distortion benchmark can train it on the same data, for the same number of steps, as the
group-independent codec. It is a whole-image, single-rate anchor: not group independent, no context
model, one trained model per lambda.

Stream: ``H u16 | W u16 | rANS body`` (z with the learned factorized density, y with a zero-mean
Gaussian from the scale table). Scales are computed in float32, so decoding is exact on the machine
that encoded (what a benchmark needs), not across devices.
"""
from __future__ import annotations

import struct

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BitstreamError
from .codec import LIKELIHOOD_BOUND, CodecOutput
from ..bitstream.rans import SymbolReader, SymbolWriter
from .entropy import CodingTables, FactorizedDensity, LowerBound, gaussian_likelihood
from .layers import GDN
from .registry import register_model
from .transforms import conv as _conv, deconv as _deconv

_ALIGN = 64


class ScaleHyperprior(CodingTables, nn.Module):
    """g_a / g_s: four 5x5 stride-2 convolutions with GDN; h_a / h_s as in the paper (|y| in, scales
    out). ``forward`` follows ssc's training contract (``x, mask, quality, hard``); ``quality`` is
    ignored (one model per rate)."""

    num_qualities = 1

    def __init__(self, N: int = 128, M: int = 192, scale_min: float = 0.11, scale_max: float = 256.0,
                 scale_levels: int = 64, z_half_range: int = 64) -> None:
        super().__init__()
        self.N, self.M = N, M
        self.g_a = nn.Sequential(_conv(3, N), GDN(N), _conv(N, N), GDN(N), _conv(N, N), GDN(N), _conv(N, M))
        self.g_s = nn.Sequential(_deconv(M, N), GDN(N, inverse=True), _deconv(N, N), GDN(N, inverse=True),
                                 _deconv(N, N), GDN(N, inverse=True), _deconv(N, 3))
        self.h_a = nn.Sequential(_conv(M, N, 3, 1), nn.ReLU(), _conv(N, N), nn.ReLU(), _conv(N, N))
        self.h_s = nn.Sequential(_deconv(N, N), nn.ReLU(), _deconv(N, N), nn.ReLU(), _conv(N, M, 3, 1), nn.ReLU())
        self.density_z = FactorizedDensity(N)
        self._init_tables(N, z_half_range, scale_min, scale_max, scale_levels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, quality: torch.Tensor | None = None, hard: bool = False) -> CodecOutput:
        y = self.g_a(x)
        z = self.h_a(y.abs())
        noisy = self.training and not hard
        z_q = z + torch.empty_like(z).uniform_(-0.5, 0.5) if noisy else z + (torch.round(z) - z).detach()
        lik_z = self.density_z.likelihood(z_q).clamp(min=LIKELIHOOD_BOUND)
        scale = LowerBound.apply(self.h_s(z_q), self.scale_min)
        y_ste = y + (torch.round(y) - y).detach()
        y_rate = y + torch.empty_like(y).uniform_(-0.5, 0.5) if noisy else y_ste
        lik_y = gaussian_likelihood(y_rate, torch.zeros_like(y), scale).clamp(min=LIKELIHOOD_BOUND)
        bits_y = -torch.log2(lik_y).sum((1, 2, 3))
        bits_z = -torch.log2(lik_z).sum((1, 2, 3))
        x_hat = self.g_s(y_ste)
        pixels = torch.full((x.shape[0],), float(x.shape[-2] * x.shape[-1]), device=x.device)
        return CodecOutput(x_hat * mask, bits_y, bits_z, pixels)

    @staticmethod
    def _channels(shape: tuple[int, ...]) -> np.ndarray:
        return np.broadcast_to(np.arange(shape[1]).reshape(1, -1, 1, 1), shape).ravel()

    @torch.no_grad()
    def compress(self, x: torch.Tensor) -> bytes:
        """x (1, 3, H, W) in [0, 1] -> stream (edge-padded to a multiple of 64 internally)."""
        h, w = x.shape[-2:]
        xp = F.pad(x, (0, -w % _ALIGN, 0, -h % _ALIGN), mode="replicate")
        gauss, ztab = self._tables()
        y = self.g_a(xp)
        z_hat = torch.round(self.h_a(y.abs()))
        wr = SymbolWriter()
        wr.encode_values(z_hat.long().cpu().numpy().ravel(), self._channels(z_hat.shape), ztab)
        idx = self._scale_index(self.h_s(z_hat))
        wr.encode_values(torch.round(y).long().cpu().numpy().ravel(), idx.cpu().numpy().ravel(), gauss)
        return struct.pack("<HH", h, w) + wr.finish()

    @torch.no_grad()
    def decompress(self, data: bytes) -> torch.Tensor:
        """Stream -> x_hat (1, 3, H, W) clamped to [0, 1]."""
        if len(data) < 4:
            raise BitstreamError("hyperprior stream too short")
        h, w = struct.unpack_from("<HH", data)
        gauss, ztab = self._tables()
        dev = self.scale_table.device
        hp, wp = h + (-h % _ALIGN), w + (-w % _ALIGN)
        r = SymbolReader(data[4:])
        zshape = (1, self.N, hp // 64, wp // 64)
        z = r.decode_values(self._channels(zshape), ztab)
        z_hat = torch.from_numpy(z).float().view(zshape).to(dev)
        idx = self._scale_index(self.h_s(z_hat))
        y = r.decode_values(idx.cpu().numpy().ravel(), gauss)
        r.check_end()
        y_hat = torch.from_numpy(y).float().view(1, self.M, hp // 16, wp // 16).to(dev)
        return self.g_s(y_hat).clamp(0, 1)[..., :h, :w]


@register_model("bmshj2018-hyperprior")
def bmshj2018_hyperprior(**cfg) -> ScaleHyperprior:
    """Scale-hyperprior peer (Balle et al. 2018), the CompressAI-style baseline of the RD benchmark."""
    return ScaleHyperprior(**cfg)
