"""Typed detection results shaped like detectron2's ``Instances``: per-image fields of equal length."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Instances:
    """Detections of one image: boxes (N, 4) xyxy, scores (N,), classes (N,), optional masks (N, H, W)
    and keypoints (N, K, 3): x, y in pixels and COCO visibility."""

    image_size: tuple[int, int]
    boxes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4))
    scores: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    classes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    masks: torch.Tensor | None = None
    keypoints: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if len(self.scores) != n or len(self.classes) != n or any(
                t is not None and len(t) != n for t in (self.masks, self.keypoints)):
            raise ValueError("all Instances fields must have the same length")

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, idx: int | slice | torch.Tensor) -> "Instances":
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return Instances(self.image_size, self.boxes[idx], self.scores[idx], self.classes[idx],
                         None if self.masks is None else self.masks[idx],
                         None if self.keypoints is None else self.keypoints[idx])
