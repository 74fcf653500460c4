"""Serial (raster-order autoregressive) context coding on a :class:`GroupCodec`, the reference the
checkerboard context is measured against (He et al., CVPR 2021, compare the serial context model of
Minnen et al., NeurIPS 2018).

Same model, same hyper path, same entropy-parameter network; only the context kernel's mask changes
from the checkerboard pattern to the causal half of the 5x5 window (positions before the centre in
raster order), so every latent position waits for the one before it. The decoder therefore runs the
context and parameter networks once per latent position instead of twice per image. The context
weights were trained for the checkerboard pattern, so the *rate* of this variant is not meaningful,
only its speed: it exists for ``eval/speed.py``. Both directions use the exact fixed-point path, so
the serial stream decodes to the encoder's latents bit for bit.
"""
from __future__ import annotations

import numpy as np
import torch

from .codec import LEVELS, GroupCodec
from ..bitstream.rans import SymbolReader, SymbolWriter
from .layers import support_pyramid
from .layers.exact import fixed_accumulate, from_fixed, pointwise_forward, to_fixed


def causal_mask(kernel: int = 5) -> torch.Tensor:
    """(k, k) mask of the positions strictly before the centre in raster order."""
    m = torch.zeros(kernel * kernel)
    m[: kernel * kernel // 2] = 1
    return m.view(kernel, kernel)


class SerialContextCoder:
    """Raster-order autoregressive coding of one group's latents with a trained GroupCodec."""

    def __init__(self, model: GroupCodec) -> None:
        self.model = model
        self.k = model.context.kernel_size[0]
        self.w_ctx, self.b_ctx = model.context.fixed_params(causal_mask(self.k))
        # integer weights of the 1x1 entropy-parameter network, rounded once (not per position)
        self.ep_params = model.ep.pointwise_params()

    def _context_at(self, y_pad_fx: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """Causal context of position (i, j) from the padded, partly decoded latents (fixed point)."""
        patch = y_pad_fx[0, :, i : i + self.k, j : j + self.k].reshape(-1, 1)
        return fixed_accumulate(torch.matmul(self.w_ctx, patch) + self.b_ctx.view(-1, 1)).view(1, -1, 1, 1)

    def _params(self, hyper: torch.Tensor, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Entropy parameters of one position: (mean, scale-table index), each (1, M, 1, 1)."""
        p = from_fixed(pointwise_forward(self.ep_params, torch.cat([hyper, ctx], 1).reshape(-1, 1))).view(1, -1, 1, 1)
        M = self.model.M
        return p[:, :M], self.model._scale_index(p[:, M:])

    @torch.no_grad()
    def compress_latents(self, x: torch.Tensor, mask: torch.Tensor, quality: float) -> tuple[bytes, torch.Tensor]:
        m = self.model
        m._check_crop(mask)
        gauss = m._tables()[0]
        pyr = support_pyramid(mask, LEVELS)
        y = m.analysis(x, pyr, quality)
        w = SymbolWriter()
        hyper = m.encode_hyper(w, y, pyr)
        # the mean of a position depends on the quantised earlier positions, so the encoder walks
        # the raster order exactly like the decoder
        y_hat = torch.zeros_like(y)
        sup = pyr[4][0, 0].bool()
        y_pad = torch.nn.functional.pad(torch.zeros_like(y), (self.k // 2,) * 4)
        for i, j in zip(*np.nonzero(sup.cpu().numpy())):
            ctx = self._context_at(y_pad, int(i), int(j))
            mu, idx = self._params(hyper[:, :, i : i + 1, j : j + 1], ctx)
            sym = torch.round(y[:, :, i : i + 1, j : j + 1] - mu)
            w.encode_values(sym.long().cpu().numpy().ravel(), idx.cpu().numpy().ravel(), gauss)
            y_hat[:, :, i, j] = (sym + mu)[:, :, 0, 0]
            y_pad[:, :, i + self.k // 2, j + self.k // 2] = to_fixed(y_hat[:, :, i, j])
        return w.finish(), y_hat

    @torch.no_grad()
    def decompress_latents(self, data: bytes, mask: torch.Tensor) -> torch.Tensor:
        m = self.model
        m._check_crop(mask)
        gauss = m._tables()[0]
        pyr = support_pyramid(mask, LEVELS)
        h, w = mask.shape[-2:]
        r = SymbolReader(data)
        hyper = m.decode_hyper(r, pyr)
        y_hat = torch.zeros(1, m.M, h // 16, w // 16, dtype=torch.float64, device=mask.device)
        y_pad = torch.nn.functional.pad(y_hat.clone(), (self.k // 2,) * 4)
        sup = pyr[4][0, 0].bool()
        for i, j in zip(*np.nonzero(sup.cpu().numpy())):
            ctx = self._context_at(y_pad, int(i), int(j))
            mu, idx = self._params(hyper[:, :, i : i + 1, j : j + 1], ctx)
            sym = torch.from_numpy(r.decode_values(idx.cpu().numpy().ravel(), gauss)).to(y_hat)
            y_hat[0, :, i, j] = sym + mu[0, :, 0, 0]
            y_pad[:, :, i + self.k // 2, j + self.k // 2] = to_fixed(y_hat[:, :, i, j])
        r.check_end()
        return y_hat
