"""Generalized divisive normalization (Balle et al., ICLR 2016/2017). Per-position across channels,
so it keeps group locality."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GDN(nn.Module):
    """y = x / sqrt(beta + gamma * x^2) (or the inverse, x * sqrt(...), when ``inverse``).

    beta and gamma are stored as square roots (beta = b^2 + beta_min, gamma = g^2) with a small
    pedestal on gamma's off-diagonal, so every entry has a non-zero gradient from the start (an
    ``abs`` parametrisation leaves zero-initialised cross-channel terms stuck at zero)."""

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta_min = beta_min
        self.beta = nn.Parameter(torch.full((channels,), (1.0 - beta_min) ** 0.5))
        self.gamma = nn.Parameter(torch.sqrt(gamma_init * torch.eye(channels) + 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.beta**2 + self.beta_min
        gamma = self.gamma**2
        c = x.shape[1]
        norm = F.conv2d(x * x, gamma.view(c, c, 1, 1), beta)
        norm = torch.sqrt(norm)
        return x * norm if self.inverse else x / norm
