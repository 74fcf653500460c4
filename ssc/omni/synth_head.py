"""Feature head of the Omni-ICM path built from the codec's own synthesis transform, for a fixed-input
single-shot detector (SSDLite-MobileNetV2, the ``ssdlite-person`` backend; Feng et al., ECCV 2022,
Omni-ICM, with the group-local synthesis of Feng et al., ICCV 2023).

A group's decoded latents go through the codec's first synthesis stage (deconvolution + inverse GDN,
1/16 -> 1/8 of the image), a copy kept frozen: the pixel campaign trained it on far more images than
a head can be distilled on. Each group's 1/8 map is pasted on the image's canvas with its support as
one more channel (where no decoded group lies, the map is zero and the support says so). The canvas
is resized to twice the detector's stride-8 grid (the detector squashes every image to 300x300, so
this is its own view) and each 2x2 block is stacked on the channels, so nothing decoded is dropped;
a small trained trunk on the 38 x 38 grid then writes the output of MobileNetV2's block 5 (32 x 38 x
38). The detector's blocks 6 to 16, Conv_1, extra layers, box
predictors, anchors and NMS run on it: no pixels are synthesised and the backbone's first, full
resolution blocks do not run.

It replaces a first design (retired 2026-12-01) that ran convolutions on the latent grid, sampled
them at the centres of block 12's 19 x 19 cells and wrote block 12's output: it detected almost
nothing on COCO val (person AP 2-3), and longer training lowered its training loss and its AP.
Sampling a 40-cell side at 19 points drops half of what was decoded; block 5 is a lower-level map,
a short way from pixels; and the frozen synthesis stage carries the codec's own knowledge of what the
latents mean. Trained on the later blocks' maps alone, a head finds block-5 maps that score well
downstream without resembling block 5 (and detect badly), hence the extra weight on block 5 itself
(``extra.cut_weight``, :mod:`.train_ssd`).
"""
from __future__ import annotations

import copy
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..models.layers import GDN
from ..models.transforms import _group_ids, deconv
from .feature_head import _Block, paste_parts

#: the detector block the head writes, its channels and grid at the 300x300 input
BLOCK, OUT_CHANNELS, GRID = 5, 32, 38
#: the synthesis stage's output: support-pyramid level and stride in pixels
LEVEL, STRIDE = 3, 8


class SynthSSDHead(nn.Module):
    """Latents (B, M, h, w) -> OrderedDict "5" (B, 32, 38, 38). :meth:`level0` is the per-group part (the
    frozen synthesis stage, 1/8 grid), :meth:`maps` the image-level part (detector grid)."""

    #: submodules copied from the codec's synthesis transform and kept fixed in training
    frozen = ("stage", "igdn", "swin")
    level, stride = LEVEL, STRIDE
    #: the detector block written and its grid (fixed together: the detector's later blocks read it)
    block, grid = BLOCK, GRID

    def __init__(self, latent_channels: int, synth_channels: int, width: int = 128, blocks: int = 2,
                 swin: nn.ModuleList | None = None) -> None:
        super().__init__()
        self.stage = deconv(latent_channels, synth_channels)
        self.igdn = GDN(synth_channels, inverse=True)
        # the codec's GI Swin blocks at 1/8 (a copy of the synthesis transform's; none at depth 0)
        self.swin = copy.deepcopy(swin) if swin is not None else nn.ModuleList()
        self.inp = nn.Conv2d(4 * (synth_channels + 1), width, 3, padding=1)
        self.trunk = nn.Sequential(*[_Block(width) for _ in range(blocks)])
        for blk in self.trunk:  # residual blocks start as identities, so a head can grow by blocks (train_ssd)
            nn.init.zeros_(blk.body[-1].weight)
            nn.init.zeros_(blk.body[-1].bias)
        self.out = nn.Conv2d(width, OUT_CHANNELS, 1)

    def seed_from(self, g_s: nn.Module) -> None:
        """Copy the codec's first synthesis stage (``g_s.deconvs[0]``, ``g_s.igdns[0]``, ``g_s.swin["3"]``)."""
        self.stage.load_state_dict(g_s.deconvs[0].state_dict())
        self.igdn.load_state_dict(g_s.igdns[0].state_dict())
        self.swin.load_state_dict(g_s.swin["3"].state_dict())

    def level0(self, y: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        """One crop's synthesis features and support (B, N + 1, 2h, 2w) on the 1/8 grid; ``support``
        is the crop's support at 1/8 (its support pyramid's level 3)."""
        x = self.igdn(self.stage(y)) * support
        for blk in self.swin:
            x = blk(x, _group_ids(support), support)
        return torch.cat([x, support], 1)

    def empty(self, like: torch.Tensor) -> torch.Tensor:
        """(1, N + 1, 1, 1): no synthesis features, no support."""
        return like.new_zeros(1, like.shape[1], 1, 1)

    def resample(self, canvas: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The 1/8 canvas of a ``height`` x ``width`` image (B, C, >= h/8, >= w/8) on the detector's grid
        (B, 4C, n, n): the image's cells resized to 2n x 2n (as the detector squashes the image), then
        each 2x2 block stacked on the channels. A 640-pixel side has 80 cells at 1/8 and the grid 38:
        sampling or averaging down to 38 would drop half of what the synthesis stage decoded."""
        img = canvas[..., : -(-height // STRIDE), : -(-width // STRIDE)]
        img = F.interpolate(img, (2 * self.grid, 2 * self.grid), mode="bilinear", align_corners=False,
                            antialias=True)
        return F.pixel_unshuffle(img, 2)

    def features(self, canvas: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(trunk features (B, width, n, n), support on the detector grid (B, 1, n, n))."""
        x = self.resample(canvas, height, width)
        return self.trunk(F.gelu(self.inp(x))), x[:, -4:].mean(1, keepdim=True)  # the support's 2x2 block

    def maps(self, canvas: torch.Tensor, height: int, width: int) -> "OrderedDict[str, torch.Tensor]":
        """Block 5's output from an image's 1/8 canvas."""
        return OrderedDict([(str(self.block), self.out(self.features(canvas, height, width)[0]))])

    def forward(self, y: torch.Tensor, support: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """Training path: crops that are whole images; ``support`` at 1/8."""
        return self.maps(self.level0(y, support), y.shape[-2] * 16, y.shape[-1] * 16)

    def compose(self, height: int, width: int, parts: list[tuple[torch.Tensor, torch.Tensor, int, int]]
                ) -> "OrderedDict[str, torch.Tensor]":
        """Image-level maps from decoded groups: ``parts`` = (:meth:`level0` features, support at 1/8,
        crop x0, crop y0) per group or tile."""
        canvas = paste_parts(self.empty(parts[0][0]) if parts else None, height, width, parts, STRIDE)
        return self.maps(canvas, height, width)
