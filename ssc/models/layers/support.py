"""Group supports at every scale of the transforms (Feng et al., ICCV 2023, irregular groups).

A latent position belongs to a group's support when its receptive cell (2**k x 2**k pixels at level k)
contains at least one pixel of the group: the pixel mask max-pooled by 2 at each level. Features
outside the support are zeroed after every layer, so a group's latents never depend on other groups.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def support_pyramid(mask: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """``mask`` (B, 1, H, W) in {0, 1} with H, W divisible by 2**levels; returns [m0, ..., m_levels]."""
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be (B, 1, H, W), got {tuple(mask.shape)}")
    h, w = mask.shape[-2:]
    if h % (1 << levels) or w % (1 << levels):
        raise ValueError(f"mask size {h}x{w} is not divisible by {1 << levels}")
    out = [mask]
    for _ in range(levels):
        out.append(F.max_pool2d(out[-1], 2))
    return out
