"""Bit-exact entropy-parameter networks (after Balle et al., "Integer networks for data compression
with latent-variable models", ICLR 2019).

Encoder and decoder must derive identical entropy-model parameters, also on different devices and
thread counts (CompressAI issues #279/#309 show float hyper paths desynchronising across devices).
Here the parameter path is evaluated in fixed point: weights on a 2**-W_FRAC grid, activations on a
2**-A_FRAC grid, all stored as integers in float64. Every product and every partial sum is an integer
below 2**53, so float64 arithmetic is exact whatever the summation order, BLAS, device or thread
count. Convolutions are im2col + matmul (no FFT/Winograd algorithms). Training uses the ordinary float
forward; the fixed-point forward differs from it only by the weight/activation rounding.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class FixedPoint:
    """Fixed-point format of the exact path."""

    w_frac: int = 14  # weight fractional bits
    w_bits: int = 17  # |weight integer| < 2**w_bits  (|w| < 8)
    a_frac: int = 10  # activation fractional bits
    a_bits: int = 22  # |activation integer| < 2**a_bits  (|a| < 4096)
    max_fan_in: int = 4096

    def check(self) -> None:
        total = self.w_bits + self.a_bits + (self.max_fan_in - 1).bit_length() + 1
        if total > 53:
            raise ValueError(f"fixed-point format needs {total} bits, float64 has 53")


FP = FixedPoint()
FP.check()


class ExactConv2d(nn.Conv2d):
    """Conv2d (stride 1, 'same' padding) with an additional bit-exact fixed-point forward. An optional
    constant ``weight_mask`` (e.g. the checkerboard context pattern) multiplies the kernel."""

    def __init__(self, cin: int, cout: int, kernel: int, weight_mask: torch.Tensor | None = None) -> None:
        super().__init__(cin, cout, kernel, padding=kernel // 2)
        if cin * kernel * kernel > FP.max_fan_in:
            raise ValueError(f"fan-in {cin * kernel * kernel} exceeds the exact-path limit {FP.max_fan_in}")
        if weight_mask is None:
            weight_mask = torch.ones(1, 1, kernel, kernel)
        self.register_buffer("weight_mask", weight_mask.reshape(1, 1, kernel, kernel).float(), persistent=False)

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.weight_mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.masked_weight(), self.bias, padding=self.padding)

    def fixed_params(self, weight_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer-valued float64 (weight (Cout, Cin*k*k), bias (Cout,)) of the exact path; weight units
        2**-w_frac, bias units 2**-(w_frac + a_frac). ``weight_mask`` overrides the layer's own mask."""
        wm = self.weight_mask if weight_mask is None else weight_mask.reshape(1, 1, *self.kernel_size)
        wlim = float((1 << FP.w_bits) - 1)
        w = torch.round((self.weight * wm).detach().double() * (1 << FP.w_frac)).clamp_(-wlim, wlim)
        blim = float((1 << (FP.w_bits + FP.a_bits)) - 1)
        b = torch.round(self.bias.detach().double() * (1 << (FP.w_frac + FP.a_frac))).clamp_(-blim, blim)
        return w.reshape(w.shape[0], -1), b

    def forward_exact(self, a: torch.Tensor) -> torch.Tensor:
        """``a``: integer-valued float64 activations (units 2**-a_frac); returns the same units."""
        k = self.kernel_size[0]
        w, b = (t.to(a.device) for t in self.fixed_params())
        bsz, _, h, wd = a.shape
        cols = F.unfold(a, k, padding=k // 2)  # (B, Cin*k*k, H*W), pure data movement
        return fixed_accumulate(torch.matmul(w, cols) + b.view(1, -1, 1)).reshape(bsz, -1, h, wd)


def fixed_accumulate(acc: torch.Tensor) -> torch.Tensor:
    """Integer accumulator (weight x activation units) -> activation units, rounded and clamped."""
    out = torch.floor(acc / (1 << FP.w_frac) + 0.5)
    alim = float((1 << FP.a_bits) - 1)
    return out.clamp_(-alim, alim)


class ExactParamNet(nn.Module):
    """A sequence of ExactConv2d, ReLU and PixelShuffle steps with float and exact forwards."""

    def __init__(self, steps: list[nn.Module]) -> None:
        super().__init__()
        for s in steps:
            if not isinstance(s, (ExactConv2d, nn.ReLU, nn.PixelShuffle)):
                raise TypeError(f"{type(s).__name__} has no exact forward")
        self.steps = nn.ModuleList(steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for s in self.steps:
            x = s(x)
        return x

    def pointwise_params(self) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
        """Integer (weight, bias) per 1x1 convolution (None for a ReLU), for :func:`pointwise_forward`."""
        out: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        for s in self.steps:
            if isinstance(s, ExactConv2d) and s.kernel_size[0] == 1:
                out.append(s.fixed_params())
            elif isinstance(s, nn.ReLU):
                out.append(None)
            else:
                raise TypeError("pointwise evaluation needs a network of 1x1 convolutions and ReLUs")
        return out

    def forward_exact(self, a: torch.Tensor) -> torch.Tensor:
        for s in self.steps:
            if isinstance(s, ExactConv2d):
                a = s.forward_exact(a)
            elif isinstance(s, nn.ReLU):
                a = a.clamp(min=0)
            else:
                a = F.pixel_shuffle(a, s.upscale_factor)
        return a


def pointwise_forward(params: list[tuple[torch.Tensor, torch.Tensor] | None], a: torch.Tensor) -> torch.Tensor:
    """Exact forward of a 1x1 network on a (C, P) set of positions (fixed-point units in and out);
    identical to :meth:`ExactParamNet.forward_exact` at those positions."""
    for wb in params:
        if wb is None:
            a = a.clamp(min=0)
        else:
            w, b = wb[0].to(a.device), wb[1].to(a.device)
            a = fixed_accumulate(torch.matmul(w, a) + b.view(-1, 1))
    return a


def to_fixed(x: torch.Tensor) -> torch.Tensor:
    """Float values -> integer-valued float64 in activation units (rounded)."""
    alim = float((1 << FP.a_bits) - 1)
    return torch.round(x.double() * (1 << FP.a_frac)).clamp_(-alim, alim)


def from_fixed(a: torch.Tensor) -> torch.Tensor:
    """Activation units -> float64 values (exact)."""
    return a / (1 << FP.a_frac)
