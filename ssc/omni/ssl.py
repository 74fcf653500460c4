"""Self-supervised objective of the Omni-ICM path: instance discrimination between two augmented
views of the same crops (InfoNCE, as in SimCLR; Omni-ICM trains its encoder with such a
self-supervised loss jointly with the rate), plus the photometric/geometric view augmentation."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``a`` must pick row i of ``b`` among all rows (and vice versa)."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    logits = a @ b.t() / temperature
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def second_view(x: torch.Tensor, m: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Another view of crops ``x`` (B, 3, H, W) in [0, 1] with masks ``m``: per-sample brightness,
    contrast, saturation and a horizontal flip (applied to the mask too)."""
    b = len(x)
    r = torch.rand(b, 4, generator=gen).to(x.device)
    bright = (0.7 + 0.6 * r[:, 0]).view(b, 1, 1, 1)
    contrast = (0.7 + 0.6 * r[:, 1]).view(b, 1, 1, 1)
    sat = (0.5 + 1.0 * r[:, 2]).view(b, 1, 1, 1)
    mean = x.mean((1, 2, 3), keepdim=True)
    y = (x - mean) * contrast + mean
    grey = y.mean(1, keepdim=True)
    y = ((y - grey) * sat + grey) * bright
    flip = (r[:, 3] < 0.5).view(b, 1, 1, 1)
    y = torch.where(flip, y.flip(-1), y).clamp(0, 1)
    return y, torch.where(flip, m.flip(-1), m)
