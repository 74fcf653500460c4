"""Encoder-side latent refinement: content-adaptive encoding with the decoder left as it is.

The analysis transform is amortised over all images, so the latents it gives one image are not the
best that image's decoder input could be (the amortisation gap). Following Campos et al., "Content
Adaptive Optimization for Neural Image Compression" (CVPR Workshops 2019) and Yang et al.,
"Improving Inference for Neural Image Compression" (NeurIPS 2020), the encoder starts from the
analysis transform's latents ``y`` of one group and descends, with Adam, the group's own training
objective under the trained decoder::

    lambda(quality) * 255^2 * MSE(inside the group's mask) + (bits_y + bits_z) / group pixels

Quantisation is relaxed to additive uniform noise, in the rate and in the synthesis, as in the
first phase of training; the exact coding path then codes the refined ``y``. Nothing in the stream
changes, so every decoder reads refined streams. ``lambda(quality)`` interpolates the model card's
training lambdas geometrically, as the channel gains interpolate between quality levels.

The noise comes from a generator seeded per call, so an encode is reproducible on one machine; the
decode is exact as always. The cost is ``steps`` forward and backward passes per group (about
0.15 s per step for a 256x256 crop of the default model on 2 CPU threads).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .codec import LEVELS
from .layers import support_pyramid


@dataclass(frozen=True)
class Refinement:
    """Settings of the encoder-side search (``steps`` 0 turns it off)."""

    steps: int = 50
    lr: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"refinement steps must be >= 0, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"refinement learning rate must be > 0, got {self.lr}")


def check_refinable(model: torch.nn.Module, name: str, lambdas: list[float] | None = None) -> None:
    """ValueError unless ``model`` (called ``name``) is a pixel codec whose card gives one training
    lambda per quality level (``lambdas`` None: the model alone is checked)."""
    if not getattr(model, "refinable", False):
        raise ValueError(f"model {name} cannot be refined: only pixel codecs (gi-hyper-ckbd) can")
    if lambdas is not None and len(lambdas) != model.num_qualities:
        raise ValueError(f"model {name} cannot be refined: its card has {len(lambdas)} training lambdas "
                         f"for {model.num_qualities} quality levels")


def quality_lambda(lambdas: list[float] | tuple[float, ...], quality: float) -> float:
    """The rate-distortion trade-off of a fractional quality: the training lambdas (one per level,
    low to high) interpolated geometrically."""
    if not lambdas:
        raise ValueError("the model card has no training lambdas; this model cannot be refined")
    if len(lambdas) == 1:
        return float(lambdas[0])
    q = min(max(float(quality), 0.0), len(lambdas) - 1.0)
    lo = min(int(q), len(lambdas) - 2)
    f = q - lo
    return math.exp(math.log(lambdas[lo]) * (1 - f) + math.log(lambdas[lo + 1]) * f)


def refine_latents(model: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor, quality: float, lam: float,
                   cfg: Refinement) -> torch.Tensor:
    """Refined latents (1, M, H/16, W/16), float64, for :meth:`GroupCodec.compress_latents`'s ``y``.
    ``x`` (1, 3, H, W) in [0, 1] is the group's crop and ``mask`` (1, 1, H, W) its mask."""
    check_refinable(model, type(model).__name__)
    pyr = support_pyramid(mask, LEVELS)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        y0 = model.analysis(x, pyr, quality)
    if cfg.steps == 0:
        return y0
    qt = torch.tensor([quality], dtype=torch.float32, device=x.device)
    gen = torch.Generator(device=x.device)
    gen.manual_seed(cfg.seed)
    inv_gain = model._gains(qt, model.log_inv_gain).detach()
    target = x * pyr[0]
    pixels = pyr[0].sum().clamp(min=1)
    y = y0.float().requires_grad_(True)
    opt = torch.optim.Adam([y], lr=cfg.lr)
    try:
        with torch.enable_grad():
            for _ in range(cfg.steps):
                _, bits_y, bits_z, _ = model.quantize_rate(y, mask, pyr, noise=gen)
                y_noisy = (y + torch.rand(y.shape, generator=gen, device=y.device) - 0.5) * pyr[4]
                x_hat = model.g_s(y_noisy * inv_gain, pyr).float() * pyr[0]
                mse = ((x_hat - target) ** 2).sum() / (3 * pixels)
                loss = lam * 255**2 * mse + (bits_y + bits_z).sum() / pixels
                (grad,) = torch.autograd.grad(loss, [y])
                y.grad = grad
                opt.step()
    finally:
        model.train(was_training)
    return y.detach().double()
