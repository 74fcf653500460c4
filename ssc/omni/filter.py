"""Information filter (Omni-ICM's IFM, Feng et al. ECCV 2022): a learned, position- and
channel-wise gate on the latents before quantisation. Trained jointly with the rate and the task /
self-supervised objectives, it learns to shrink what the machine tasks do not need (texture detail)
toward zero, where the entropy model codes it almost for free."""
from __future__ import annotations

import torch
from torch import nn


class InformationFilter(nn.Module):
    """y -> y * sigmoid(g(y)); g is a small conv net on the group's own latents (group-local: it
    sees only the crop of the group being coded, so independence is kept). Initialised open."""

    def __init__(self, channels: int, hidden: int = 64, init_open: float = 4.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1), nn.GELU(), nn.Conv2d(hidden, channels, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.constant_(self.net[-1].bias, init_open)  # sigmoid(4) = 0.98: starts as the identity

    def gate(self, y: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(y))

    def forward(self, y: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        return y * self.gate(y) * support
