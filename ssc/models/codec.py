"""Group-independent learned image codec: GI Swin transforms + hyperprior + checkerboard context.

Implements the per-group coding of Feng et al. (ICCV 2023): each group is coded on its own
bounding-box crop with everything outside its mask zeroed and every feature map restricted to the
group's support; only latents on the group's latent support are entropy coded. Entropy model: mean &
scale hyperprior (Minnen et al., NeurIPS 2018) with the two-pass checkerboard context (He et al., CVPR
2021). Variable rate with one model: per-quality channel gains, interpolated between levels (Cui et al.,
CVPR 2021). Contract as CompressAI: ``forward`` (training, differentiable rate estimate),
``compress_group`` / ``decompress_group`` (real bits).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..bitstream.rans import SymbolReader, SymbolWriter
from .entropy import CodingTables, FactorizedDensity, LowerBound, gaussian_likelihood
from .layers import support_pyramid
from .layers.exact import fixed_accumulate, from_fixed, pointwise_forward, to_fixed
from .registry import register_model
from .transforms import (
    AnalysisTransform,
    HyperAnalysis,
    SynthesisTransform,
    checkerboard_context,
    checkerboard_pattern,
    entropy_parameters,
    hyper_synthesis,
)

#: Crops are padded to a multiple of this (y is at 1/16, z at 1/64).
ALIGN = 64
LEVELS = 6
LIKELIHOOD_BOUND = 1e-9


@dataclass
class CodecOutput:
    """Result of :meth:`GroupCodec.forward` for a batch of group crops."""

    x_hat: torch.Tensor  # (B, 3, H, W), zero outside each mask
    bits_y: torch.Tensor  # (B,) estimated bits of y on the latent support
    bits_z: torch.Tensor  # (B,)
    pixels: torch.Tensor  # (B,) pixels of each group

    @property
    def bpp(self) -> torch.Tensor:
        return (self.bits_y + self.bits_z) / self.pixels.clamp(min=1)


class GroupCodec(CodingTables, nn.Module):
    """See module docstring. ``quality`` is a float in [0, num_qualities - 1]."""

    #: whether the encoder may refine this codec's latents for pixel fidelity (:mod:`ssc.models.refine`)
    refinable = True

    def __init__(
        self,
        N: int = 64,
        M: int = 96,
        Nz: int = 64,
        depth: int = 2,
        heads: int = 4,
        window: int = 8,
        num_qualities: int = 4,
        scale_min: float = 0.11,
        scale_max: float = 256.0,
        scale_levels: int = 64,
        z_half_range: int = 64,
        coverage: bool = False,
    ) -> None:
        super().__init__()
        self.N, self.M, self.Nz = N, M, Nz
        self.num_qualities = num_qualities
        self.g_a = AnalysisTransform(N, M, depth, heads, window)
        self.g_s = SynthesisTransform(N, M, depth, heads, window)
        self.h_a = HyperAnalysis(M, Nz)
        self.h_s = hyper_synthesis(M, Nz)
        self.context = checkerboard_context(M)
        #: the entropy parameters also see each latent cell's coverage (the fraction of its 16x16
        #: pixels inside the group), so boundary cells, of which a group owns few pixels, can be
        #: predicted cheaper; the decoder has the mask before the segment, so both sides know it
        self.coverage = coverage
        self.ep = entropy_parameters(M, extra=1 if coverage else 0)
        self.density_z = FactorizedDensity(Nz)
        # log-spaced initial gains: higher quality -> finer effective quantisation step
        init = torch.linspace(math.log(0.6), math.log(1.6), num_qualities).view(-1, 1).repeat(1, M)
        self.log_gain = nn.Parameter(init.clone())
        self.log_inv_gain = nn.Parameter(-init.clone())
        self._init_tables(Nz, z_half_range, scale_min, scale_max, scale_levels)
        self._exact_cache: tuple | None = None
        #: reduced precision of the transforms in training (None: float32); see _transform_precision
        self.train_dtype: torch.dtype | None = None

    # ----------------------------------------------------------------- rate control
    def _gains(self, quality: torch.Tensor, log_gain: torch.Tensor) -> torch.Tensor:
        """Per-channel gain at a fractional quality, interpolated geometrically between levels
        (linearly in log space), shape (B, M, 1, 1)."""
        q = quality.clamp(0, self.num_qualities - 1).to(log_gain.device, log_gain.dtype)
        if self.num_qualities == 1:
            return log_gain[0].exp().view(1, -1, 1, 1).expand(len(q), -1, 1, 1)
        lo = q.floor().long().clamp(max=self.num_qualities - 2)
        f = (q - lo.to(q.dtype)).view(-1, 1)
        return torch.exp(log_gain[lo] * (1 - f) + log_gain[lo + 1] * f).view(-1, self.M, 1, 1)

    # ----------------------------------------------------------------- training path
    def encode_y(self, x: torch.Tensor, pyr: list[torch.Tensor], quality: torch.Tensor) -> torch.Tensor:
        """Analysis: the latents y of crops ``x`` at per-sample ``quality`` (before quantisation).
        Subclasses (the Omni-ICM feature codec) add their filter here, so training and the exact
        coding path see the same latents."""
        with self._transform_precision():
            y = self.g_a(x, pyr)
        return y.float() * self._gains(quality, self.log_gain)

    def _transform_precision(self):
        """Autocast context of the analysis and synthesis transforms while training: ``train_dtype``
        (e.g. bfloat16, set by the trainer) or full precision. The entropy model (hyper path, context,
        likelihoods) always trains in float32, and so does everything outside training."""
        dtype = self.train_dtype if self.training else None
        return torch.autocast(self.log_gain.device.type, dtype=dtype, enabled=dtype is not None)

    def latent_forward(self, x: torch.Tensor, mask: torch.Tensor, quality: torch.Tensor,
                       hard: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Differentiable analysis, quantisation and rate: (y_ste (quantised, straight-through, on the
        support), bits_y, bits_z, support pyramid). Rate: additive-noise proxy (``hard=False``) or
        straight-through rounding."""
        pyr = support_pyramid(mask, LEVELS)
        return self.quantize_rate(self.encode_y(x, pyr, quality), mask, pyr, hard)

    def quantize_rate(self, y: torch.Tensor, mask: torch.Tensor, pyr: list[torch.Tensor], hard: bool = False,
                      noise: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """:meth:`latent_forward` from ready latents ``y`` (after the gain): quantisation and rate.
        ``noise``: draw the additive-noise proxy from this generator, in or out of training (the
        encoder's latent refinement, :mod:`ssc.models.refine`)."""
        y_ste, bits_y, bits_z = self._rate_terms(y, mask, pyr, hard, noise)
        return y_ste, bits_y.sum((1, 2, 3)), bits_z.sum((1, 2, 3)), pyr

    def _rate_terms(self, y: torch.Tensor, mask: torch.Tensor, pyr: list[torch.Tensor], hard: bool = False,
                    noise: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(quantised y on the support, bits of each y element, bits of each z element)."""
        relax = not hard and (self.training or noise is not None)

        def uniform(t: torch.Tensor) -> torch.Tensor:
            if noise is None:
                return torch.empty_like(t).uniform_(-0.5, 0.5)
            return torch.rand(t.shape, generator=noise, device=t.device, dtype=t.dtype) - 0.5

        z = self.h_a(y, pyr)
        if hard:
            z_q = z + (torch.round(z) - z).detach()
        else:
            z_q = z + uniform(z) if relax else torch.round(z)
        z_q = z_q * pyr[6]
        lik_z = self.density_z.likelihood(z_q).clamp(min=LIKELIHOOD_BOUND)
        hyper = self._with_coverage(self.h_s(z_q), mask)
        anchor = checkerboard_pattern(*y.shape[-2:], device=y.device).to(y.dtype)
        # anchors: context conv of zeros; non-anchors: context of quantised anchors (one pass, since
        # the kernel only sees the opposite colour).
        p_anchor = self.ep(torch.cat([hyper, self.context(torch.zeros_like(y))], 1))
        mu_a = p_anchor[:, : self.M]
        y_hat_a = (y + (torch.round(y - mu_a) + mu_a - y).detach()) * anchor * pyr[4]
        p_all = self.ep(torch.cat([hyper, self.context(y_hat_a)], 1))
        params = p_anchor * anchor + p_all * (1 - anchor)
        mu, s_raw = params[:, : self.M], params[:, self.M :]
        scale = LowerBound.apply(s_raw, self.scale_min)
        y_ste = y + (torch.round(y - mu) + mu - y).detach()
        y_rate = y + uniform(y) if relax else y_ste
        lik_y = gaussian_likelihood(y_rate, mu, scale).clamp(min=LIKELIHOOD_BOUND)
        return y_ste * pyr[4], -torch.log2(lik_y) * pyr[4], -torch.log2(lik_z) * pyr[6]

    @torch.no_grad()
    def rate_maps(self, x: torch.Tensor, mask: torch.Tensor, quality: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Where a crop's bits go: the estimated bits of y at each 16-px latent cell (H/16, W/16) and of
        z at each 64-px hyper cell (H/64, W/64), summed over channels, hard-quantised as the coder
        quantises (the entropy model's estimate of what :meth:`compress_latents` writes).
        ``x`` (1, 3, H, W) in [0, 1], ``mask`` (1, 1, H, W), H and W multiples of 64."""
        self._check_crop(mask)
        pyr = support_pyramid(mask, LEVELS)
        q = torch.tensor([quality], dtype=torch.float32, device=x.device)
        _, bits_y, bits_z = self._rate_terms(self.encode_y(x, pyr, q), mask, pyr, hard=True)
        return bits_y.sum(1)[0], bits_z.sum(1)[0]

    def forward(self, x: torch.Tensor, mask: torch.Tensor, quality: torch.Tensor, hard: bool = False) -> CodecOutput:
        """Differentiable pass. ``x`` (B, 3, H, W) in [0, 1], ``mask`` (B, 1, H, W) in {0, 1}, H and W
        multiples of 64."""
        y_ste, bits_y, bits_z, pyr = self.latent_forward(x, mask, quality, hard)
        with self._transform_precision():
            x_hat = self.g_s(y_ste * self._gains(quality, self.log_inv_gain), pyr)
        return CodecOutput(x_hat.float() * pyr[0], bits_y, bits_z, mask.sum((1, 2, 3)))

    def _with_coverage(self, hyper: torch.Tensor, mask: torch.Tensor, exact: bool = False) -> torch.Tensor:
        """Hyper features, plus the coverage channel when the model has one (fixed-point units when
        ``exact``: k/256 of a cell is k * 4 activation units, exactly)."""
        if not self.coverage:
            return hyper
        cov = F.avg_pool2d(mask.to(hyper.dtype), 16)
        return torch.cat([hyper, to_fixed(cov) if exact else cov], 1)

    # ----------------------------------------------------------------- exact parameter path
    def _pass_params(self, hyper_fx: torch.Tensor, y_hat: torch.Tensor, pos: torch.Tensor, first: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact entropy parameters (mean (M, P), scale-table index (M, P)) at the flat latent positions
        ``pos`` of one checkerboard pass. Anchors (first pass) see an all-zero context, which is the
        context convolution's bias; non-anchors see the anchors through the kernel's 12 live taps.
        Only the positions coded in the pass are evaluated; every integer sum equals the full
        convolution's, so the result is that of ``forward_exact`` on the whole map."""
        (w_ctx, b_ctx), ep_params = self._exact_params()
        w_ctx, b_ctx = w_ctx.to(hyper_fx.device), b_ctx.to(hyper_fx.device)
        n = len(pos)
        if first:
            ctx = fixed_accumulate(b_ctx).view(-1, 1).expand(-1, n)
        else:
            k = self.context.kernel_size[0]
            rows = (self.context.weight_mask.flatten() != 0).repeat(self.M).to(hyper_fx.device)  # unfold rows: (c, ky, kx)
            cols = F.unfold(to_fixed(y_hat), k, padding=k // 2)[0][:, pos][rows]
            ctx = fixed_accumulate(torch.matmul(w_ctx[:, rows], cols) + b_ctx.view(-1, 1))
        a = torch.cat([hyper_fx[0].flatten(1)[:, pos], ctx], 0)
        p = from_fixed(pointwise_forward(ep_params, a))
        return p[: self.M], self._scale_index(p[self.M :])

    def _exact_params(self) -> tuple[tuple[torch.Tensor, torch.Tensor], list]:
        """Integer weights of the context and entropy-parameter networks, rounded once per weight
        version (not once per group and pass)."""
        tensors = [self.context.weight, self.context.bias, *self.ep.parameters()]
        key = tuple((t._version, t.data_ptr()) for t in tensors)
        if self._exact_cache is None or self._exact_cache[0] != key:
            self._exact_cache = (key, self.context.fixed_params(), self.ep.pointwise_params())
        return self._exact_cache[1], self._exact_cache[2]

    def _pass_positions(self, pyr: list[torch.Tensor], first: bool) -> torch.Tensor:
        """Flat raster indices of the latent positions coded in a pass (support & colour)."""
        sup = pyr[4][0, 0].bool()
        colour = checkerboard_pattern(*sup.shape, device=sup.device)[0, 0]
        return torch.nonzero((sup & (colour if first else ~colour)).flatten()).squeeze(1)

    def analysis(self, x: torch.Tensor, pyr: list[torch.Tensor], quality: float) -> torch.Tensor:
        """Unquantised latents y (float64) of a crop at ``quality`` (encoder side)."""
        q = torch.tensor([quality], dtype=torch.float32, device=x.device)
        return self.encode_y(x.contiguous(memory_format=torch.channels_last), pyr, q).double()

    def encode_hyper(self, w: SymbolWriter, y: torch.Tensor, pyr: list[torch.Tensor]) -> torch.Tensor:
        """Quantise and code z (on the group's z support); returns the exact hyper features."""
        z_hat = torch.round(self.h_a(y.float(), pyr).double()) * pyr[6].double()
        zsel = pyr[6].bool().expand_as(z_hat)
        zch = torch.arange(self.Nz, device=y.device).view(1, -1, 1, 1).expand_as(z_hat)
        w.encode_values(z_hat[zsel].long().cpu().numpy(), zch[zsel].cpu().numpy(), self._tables()[1])
        return self._with_coverage(self.h_s.forward_exact(to_fixed(z_hat)), pyr[0], exact=True)

    def decode_hyper(self, r: SymbolReader, pyr: list[torch.Tensor]) -> torch.Tensor:
        """Inverse of :meth:`encode_hyper`."""
        h, w = pyr[0].shape[-2:]
        dev = pyr[0].device
        zshape = (1, self.Nz, h // 64, w // 64)
        z_hat = torch.zeros(zshape, dtype=torch.float64, device=dev)
        zsel = pyr[6].bool().expand(zshape)
        zch = torch.arange(self.Nz, device=dev).view(1, -1, 1, 1).expand(zshape)
        z_hat[zsel] = torch.from_numpy(r.decode_values(zch[zsel].cpu().numpy(), self._tables()[1])).to(dev, torch.float64)
        return self._with_coverage(self.h_s.forward_exact(to_fixed(z_hat)), pyr[0], exact=True)

    @staticmethod
    def _check_crop(mask: torch.Tensor) -> None:
        if mask.dim() != 4 or mask.shape[:2] != (1, 1):
            raise ValueError(f"mask must be (1, 1, H, W), got {tuple(mask.shape)}")
        h, w = mask.shape[-2:]
        if h % ALIGN or w % ALIGN:
            raise ValueError(f"crop {h}x{w} is not a multiple of {ALIGN}")

    # ----------------------------------------------------------------- real coding
    def compress_group(self, x: torch.Tensor, mask: torch.Tensor, quality: float) -> bytes:
        """Entropy-code one group's crop (1, 3, H, W) with its mask (1, 1, H, W); returns the body."""
        return self.compress_latents(x, mask, quality)[0]

    @torch.no_grad()
    def compress_latents(self, x: torch.Tensor, mask: torch.Tensor, quality: float,
                         y: torch.Tensor | None = None) -> tuple[bytes, torch.Tensor]:
        """As :meth:`compress_group`, also returning the quantised latents y_hat the decoder will see.
        ``y``: latents to code instead of the analysis transform's (an encoder-side refinement's)."""
        self._check_crop(mask)
        gauss = self._tables()[0]
        pyr = support_pyramid(mask, LEVELS)
        y = self.analysis(x, pyr, quality) if y is None else y.double()
        w = SymbolWriter()
        hyper = self.encode_hyper(w, y, pyr)
        y_hat = torch.zeros_like(y)
        flat_y, flat_hat = y[0].flatten(1), y_hat[0].view(self.M, -1)
        for first in (True, False):
            pos = self._pass_positions(pyr, first)
            mu, idx = self._pass_params(hyper, y_hat, pos, first)
            sym = torch.round(flat_y[:, pos] - mu)  # (M, P): channel-major, positions in raster order
            w.encode_values(sym.long().cpu().numpy().ravel(), idx.cpu().numpy().ravel(), gauss)
            flat_hat[:, pos] = sym + mu
        return w.finish(), y_hat

    @torch.no_grad()
    def decompress_latents(self, data: bytes, mask: torch.Tensor) -> torch.Tensor:
        """Decode one group's body to its quantised latents y_hat (1, M, H/16, W/16), float64.
        Bit-exact across devices and thread counts."""
        self._check_crop(mask)
        gauss = self._tables()[0]
        pyr = support_pyramid(mask, LEVELS)
        dev = mask.device
        h, w = mask.shape[-2:]
        r = SymbolReader(data)
        hyper = self.decode_hyper(r, pyr)
        yshape = (1, self.M, h // 16, w // 16)
        y_hat = torch.zeros(yshape, dtype=torch.float64, device=dev)
        flat_hat = y_hat[0].view(self.M, -1)
        for first in (True, False):
            pos = self._pass_positions(pyr, first)
            mu, idx = self._pass_params(hyper, y_hat, pos, first)
            sym = torch.from_numpy(r.decode_values(idx.cpu().numpy().ravel(), gauss)).to(dev, torch.float64)
            flat_hat[:, pos] = sym.view(self.M, -1) + mu
        r.check_end()
        return y_hat

    @torch.no_grad()
    def synthesize(self, y_hat: torch.Tensor, mask: torch.Tensor, quality: float) -> torch.Tensor:
        """Quantised latents -> pixels of the crop, clamped to [0, 1], zero outside the mask."""
        pyr = support_pyramid(mask, LEVELS)
        q = torch.tensor([quality], dtype=torch.float32, device=mask.device)
        # channels-last: the (transposed) convolutions take the faster NHWC kernels on CPU and the
        # Swin blocks' NHWC views become free; only float rounding differs (pixels, not latents)
        y = (y_hat.float() * self._gains(q, self.log_inv_gain)).contiguous(memory_format=torch.channels_last)
        x = self.g_s(y, pyr)
        return x.clamp(0, 1) * pyr[0]

    def decompress_group(self, data: bytes, mask: torch.Tensor, quality: float) -> torch.Tensor:
        """Body -> pixels of the crop (BitstreamError on a body that does not decode)."""
        return self.synthesize(self.decompress_latents(data, mask), mask, quality)


@register_model("gi-hyper-ckbd")
def gi_hyper_ckbd(**cfg) -> GroupCodec:
    """Group-independent codec: GI Swin transforms, hyperprior, checkerboard context."""
    return GroupCodec(**cfg)
