"""Feature head of the Omni-ICM path for a fixed-input single-shot detector (SSDLite-MobileNetV2, the
``ssdlite-person`` backend): a group's decoded latents (the image's 16-pixel grid) -> the output of
the detector's MobileNetV2 block 12 (96 x 19 x 19) on the detector's own 300x300 grid. The backbone's
last four blocks and Conv_1 (a quarter of its multiply-adds), the extra layers, box predictors,
anchors and NMS then run on it; there is no pixel synthesis and no pixel-level backbone (Feng et al.,
ECCV 2022, Omni-ICM).

Why block 12 and not the two maps the box predictors read: those maps (576 and 1280 channels) are
sparse ReLU6 activations, and Conv_1 sits four blocks deeper. A first run that wrote them directly
stayed at the error of a per-channel mean predictor for its first 250 steps (relative error 0.6); a
96-channel linear map is a smaller target, and the detector's own blocks keep the maps in the form its
predictors were trained on.

The mapping between the two grids: the detector squashes every image to 300x300, so its cell ``i`` of
an ``n``-cell map lies at ``(i + 0.5) / n`` of the image's height (or width), the centre of its
anchors. The head runs convolutions on the latent grid, samples that hidden map bilinearly at the
detector's cell centres, and finishes with convolutions on the detector's grid. The detector is
strongly tuned to its input size (person AP 19.2 at 300x300 on the 158 COCO val images; 5.3 at 240,
5.8 at 400, 2.3 at the images' own size), so the head emulates the squashed 300x300 view rather than
running the detector at the image's own scale.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .feature_head import STRIDE, _Block, paste_parts

#: channels and grid of block 12's output at the detector's 300x300 input
OUT_CHANNELS = 96
GRID = 19


def cell_centres(n: int, image_cells: float, canvas_cells: int, device: torch.device) -> torch.Tensor:
    """Positions, in grid_sample's normalised coordinates over a canvas of ``canvas_cells`` latent
    cells, of the centres of ``n`` detector cells spread over the image (``image_cells`` = image
    size / 16)."""
    pix = (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n * image_cells * STRIDE
    # latent cell j is centred at 16 j + 8 pixels; never past the image's last cell (the canvas may
    # hold padding cells beyond it)
    u = (pix / STRIDE - 0.5).clamp(0, math.ceil(image_cells) - 1)
    return u / max(canvas_cells - 1, 1) * 2 - 1


class SSDFeatureHead(nn.Module):
    """Latents (B, M, h, w) -> OrderedDict "12" (B, 96, 19, 19). :meth:`level0` is the per-group part
    (latent grid), :meth:`maps` the image-level part (detector grid)."""

    def __init__(self, latent_channels: int, width: int = 192, blocks: int = 2, grid: int = GRID,
                 channels: int = OUT_CHANNELS) -> None:
        super().__init__()
        self.grid = grid
        self.inp = nn.Conv2d(latent_channels, width, 3, padding=1)
        self.blocks = nn.Sequential(*[_Block(width) for _ in range(blocks)])
        self.trunk = nn.Sequential(*[_Block(width) for _ in range(blocks)])
        self.out = nn.Conv2d(width, channels, 1)

    def level0(self, y: torch.Tensor) -> torch.Tensor:
        """Hidden features (B, width, h, w) of one crop's latents, on the latent grid."""
        return self.blocks(F.gelu(self.inp(y)))

    def empty(self, like: torch.Tensor) -> torch.Tensor:
        """(1, width, 1, 1): the hidden feature of a position without latents (undecoded or outside)."""
        return self.level0(torch.zeros(1, self.inp.in_channels, 1, 1, device=like.device))

    def resample(self, canvas: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The latent-grid canvas (B, C, gh, gw) of a ``height`` x ``width`` image, sampled at the
        centres of the detector's grid (B, C, n, n)."""
        gy = cell_centres(self.grid, height / STRIDE, canvas.shape[-2], canvas.device)
        gx = cell_centres(self.grid, width / STRIDE, canvas.shape[-1], canvas.device)
        grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1)  # (n, n, 2) as (x, y)
        return F.grid_sample(canvas, grid.expand(len(canvas), -1, -1, -1).to(canvas.dtype), mode="bilinear",
                             padding_mode="border", align_corners=True)

    def maps(self, canvas: torch.Tensor, height: int, width: int) -> "OrderedDict[str, torch.Tensor]":
        """Block 12's output from an image's hidden canvas on the latent grid."""
        return OrderedDict([("12", self.out(self.trunk(self.resample(canvas, height, width))))])

    def forward(self, y: torch.Tensor, support: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """Training path: crops that are whole images; positions off the support get the empty feature."""
        return self.maps(self.hidden(y, support), y.shape[-2] * STRIDE, y.shape[-1] * STRIDE)

    def hidden(self, y: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        """:meth:`level0` on the support, the empty feature elsewhere (training: one crop per image)."""
        p0 = self.level0(y)
        return p0 * support + self.empty(p0) * (1 - support)

    def compose(self, height: int, width: int, parts: list[tuple[torch.Tensor, torch.Tensor, int, int]]
                ) -> "OrderedDict[str, torch.Tensor]":
        """Image-level maps from decoded groups: ``parts`` = (:meth:`level0` features, support, crop x0,
        crop y0) per group or tile, as :meth:`FeatureHead.compose`."""
        canvas = paste_parts(self.empty(parts[0][0]) if parts else None, height, width, parts)
        return self.maps(canvas, height, width)
