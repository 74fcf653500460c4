"""SSD default boxes (Liu et al., ECCV 2016, section 2.2) as the TF Object Detection API's
``ssd_anchor_generator`` lays them out: scales spaced linearly from ``min_scale`` to ``max_scale``
over the feature maps, one box per aspect ratio plus one at the geometric mean of this and the next
scale, and the lowest map reduced to three boxes (scale 0.1 at ratio 1, ``min_scale`` at 2 and 1/2).
Boxes are (ymin, xmin, ymax, xmax), normalised to the image, centred on the cells of each grid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AnchorSpec:
    num_layers: int = 6
    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
    interpolated_ratio: float = 1.0
    reduce_lowest: bool = True

    def layer_boxes(self) -> list[list[tuple[float, float]]]:
        """(scale, aspect ratio) of every box at one location, per feature map."""
        n = self.num_layers
        scales = [self.min_scale + (self.max_scale - self.min_scale) * i / (n - 1) for i in range(n)] + [1.0]
        out = []
        for i in range(n):
            if i == 0 and self.reduce_lowest:
                out.append([(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)])
                continue
            specs = [(scales[i], a) for a in self.aspect_ratios]
            if self.interpolated_ratio > 0:
                specs.append((math.sqrt(scales[i] * scales[i + 1]), self.interpolated_ratio))
            out.append(specs)
        return out

    def per_location(self) -> tuple[int, ...]:
        return tuple(len(b) for b in self.layer_boxes())


def grid_anchors(grids: list[tuple[int, int]], spec: AnchorSpec = AnchorSpec(), image_hw: tuple[int, int] = (1, 1)) -> torch.Tensor:
    """(A, 4) anchors over feature maps of sizes ``grids`` (rows, columns), ordered map, row, column,
    box. ``image_hw`` makes the boxes square in pixels on a non-square input (the shorter side sets
    the base size), as the TF generator does with the image's own shape."""
    h, w = image_hw
    base_h, base_w = min(h, w) / h, min(h, w) / w
    out = []
    for (gh, gw), boxes in zip(grids, spec.layer_boxes()):
        scale = torch.tensor([s for s, _ in boxes], dtype=torch.float32)
        ratio = torch.tensor([a for _, a in boxes], dtype=torch.float32).sqrt()
        bh = scale / ratio * base_h
        bw = scale * ratio * base_w
        yc = (torch.arange(gh, dtype=torch.float32) + 0.5) / gh
        xc = (torch.arange(gw, dtype=torch.float32) + 0.5) / gw
        yy, xx = torch.meshgrid(yc, xc, indexing="ij")
        yy, xx = yy.reshape(-1, 1), xx.reshape(-1, 1)
        out.append(torch.stack([yy - bh / 2, xx - bw / 2, yy + bh / 2, xx + bw / 2], -1).reshape(-1, 4))
    return torch.cat(out)
