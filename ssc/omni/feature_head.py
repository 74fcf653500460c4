"""Feature head of the Omni-ICM path: a group's decoded latents (1/16 scale) -> the feature pyramid
of the reference detector's backbone (levels "0" at 1/16, "1" and "2" at 1/32, "pool" at 1/64), so
the detector's RPN and ROI heads run on decoded latents with no pixel reconstruction.

Groups are decoded on their own crops; :meth:`FeatureHead.compose` places each group's 1/16 features
on the image's 16-pixel grid (a crop starting off the grid lands on the nearest cell, at most 8 pixels
away), fills positions no decoded group covers with the head's response to empty latents, and builds
the coarser levels from that canvas. The canvas covers the image padded to whole 64-pixel cells."""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

STRIDE = 16


class _Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.GELU(), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class FeatureHead(nn.Module):
    """Latents (B, M, h, w) -> OrderedDict of detector features with ``out_channels`` channels."""

    #: the support-pyramid level of :meth:`level0`'s grid (the latents' own, 1/16)
    level = 4

    def __init__(self, latent_channels: int, out_channels: int = 128, width: int = 192, blocks: int = 2) -> None:
        super().__init__()
        self.inp = nn.Conv2d(latent_channels, width, 3, padding=1)
        self.blocks = nn.Sequential(*[_Block(width) for _ in range(blocks)])
        self.out0 = nn.Conv2d(width, out_channels, 3, padding=1)
        self.down1 = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1), nn.GELU(),
                                   nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.down2 = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1), nn.GELU(),
                                   nn.Conv2d(out_channels, out_channels, 3, padding=1))

    def level0(self, y: torch.Tensor, support: torch.Tensor | None = None) -> torch.Tensor:  # noqa: ARG002
        """The 1/16 level of one crop's latents (``support`` is not needed at the latents' own grid)."""
        return self.out0(self.blocks(F.gelu(self.inp(y))))

    def empty(self, like: torch.Tensor) -> torch.Tensor:
        """(1, C, 1, 1): the 1/16 feature of a position without latents (undecoded or outside)."""
        return self.level0(torch.zeros(1, self.inp.in_channels, 1, 1, device=like.device))

    def pyramid(self, p0: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """The coarser levels from a full 1/16 canvas, named as the detector's FPN outputs."""
        p1 = self.down1(p0)
        p2 = self.down2(p0)
        return OrderedDict([("0", p0), ("1", p1), ("2", p2), ("pool", F.max_pool2d(p2, 1, 2, 0))])

    def forward(self, y: torch.Tensor, support: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """Training path: crops that are whole images; positions off the support get the empty feature."""
        p0 = self.level0(y)
        p0 = p0 * support + self.empty(p0) * (1 - support)
        return self.pyramid(p0)

    def compose(self, height: int, width: int, parts: list[tuple[torch.Tensor, torch.Tensor, int, int]]) -> "OrderedDict[str, torch.Tensor]":
        """Image-level pyramid from decoded groups: ``parts`` = (:meth:`level0` features (1, C, h, w),
        support (1, 1, h, w), crop x0, crop y0 in pixels) per group or tile. Later parts win on
        shared boundary cells."""
        return self.pyramid(paste_parts(self.empty(parts[0][0]) if parts else None, height, width, parts))


def paste_parts(empty: torch.Tensor | None, height: int, width: int,
                parts: list[tuple[torch.Tensor, torch.Tensor, int, int]], stride: int = STRIDE) -> torch.Tensor:
    """The image's canvas (1, C, h, w) on its ``stride``-pixel grid (the latents' 1/16 by default), over
    the image padded to whole 64-pixel cells (so every coarser level has an integer stride, as the
    detector's padding): each part's (features, support, crop x0, crop y0) pasted on the supported
    cells (later parts win on shared boundary cells), ``empty`` (1, C, 1, 1) everywhere else."""
    if not parts or empty is None:
        raise ValueError("no decoded group to build features from")
    per = 64 // stride
    gh, gw = per * -(-height // 64), per * -(-width // 64)
    canvas = empty.expand(1, -1, gh, gw).clone()
    for f, sup, x0, y0 in parts:
        cx, cy = int(round(x0 / stride)), int(round(y0 / stride))
        h, w = min(f.shape[2], gh - cy), min(f.shape[3], gw - cx)
        if h <= 0 or w <= 0:
            continue
        s = sup[0, 0, :h, :w].bool()
        region = canvas[0, :, cy : cy + h, cx : cx + w]
        region[:, s] = f[0, :, :h, :w][:, s]
    return canvas
