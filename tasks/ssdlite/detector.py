"""The pretrained SSDLite-MobileNetV2 person detector in PyTorch: preprocessing, network, anchors and
post-processing, equal to the TF graph's (see :mod:`.convert` for where the weights come from).

``input_size`` is the graph's 300x300 by default. ``input_size=None`` runs the fully convolutional
part at the image's own size instead (anchors follow the feature-map grids), the mapping the
Omni-ICM feature path uses when the image is not resized.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

from .anchors import AnchorSpec, grid_anchors
from .convert import load_or_convert
from .model import SSDLiteMobileNetV2
from .postprocess import Detections, PostConfig, postprocess
from .preprocess import resize_linear_u8

INPUT_SIZE = 300


@dataclass
class PixelDetections:
    """Detections in image pixels: boxes (N, 4) xyxy, scores (N,), classes (N,) (1 = person)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor


class SSDLitePerson:
    """``detect(image)`` on (H, W, 3) uint8 RGB -> :class:`PixelDetections` (all detections the graph
    returns, score-sorted; callers apply their own score threshold)."""

    def __init__(self, device: str | torch.device = "cpu", input_size: int | None = INPUT_SIZE,
                 post: PostConfig = PostConfig()) -> None:
        state, self.card = load_or_convert()
        self.net = SSDLiteMobileNetV2()
        self.net.load_state_dict(state)
        self.device = torch.device(device)
        # channels-last: the NHWC convolution kernels are ~25% faster on CPU; only float rounding differs
        self.net.to(self.device, memory_format=torch.channels_last).eval()
        self.input_size = input_size
        self.post = post
        self.spec = AnchorSpec()
        self._anchors: dict[tuple, torch.Tensor] = {}
        self._lock = threading.Lock()

    def anchors(self, grids: list[tuple[int, int]], image_hw: tuple[int, int]) -> torch.Tensor:
        key = (tuple(grids), image_hw)
        with self._lock:
            if key not in self._anchors:
                self._anchors[key] = grid_anchors(grids, self.spec, image_hw).to(self.device)
            return self._anchors[key]

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, h, w) float in [-1, 1] (resized to the input size, if any)."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
        if self.input_size:
            image = resize_linear_u8(image, self.input_size, self.input_size)
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)[None].float()
        return (x * np.float32(2.0 / 255.0) - 1.0).contiguous(memory_format=torch.channels_last)

    def image_hw(self, x: torch.Tensor) -> tuple[int, int]:
        """The size the anchors are laid out for: the graph's fixed input is square."""
        return (1, 1) if self.input_size else tuple(x.shape[-2:])  # type: ignore[return-value]

    def _fp32(self):
        """Full float32 convolutions on CUDA (cuDNN would use TF32 and move boxes by ~1e-3): the same
        boxes as on the CPU and as TensorFlow's; the flag is scoped to the call."""
        cudnn = torch.backends.cudnn
        return cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                           allow_tf32=False)

    def _postprocess(self, feats: list[torch.Tensor], image_hw: tuple[int, int]) -> Detections:
        enc, logits = self.net.predict_heads(feats)
        grids = [tuple(f.shape[-2:]) for f in feats]
        return postprocess(enc[0].cpu(), logits[0].cpu(), self.anchors(grids, image_hw).cpu(), self.post)

    @torch.no_grad()
    def detect_normalized(self, image: np.ndarray) -> Detections:
        """Detections with boxes (ymin, xmin, ymax, xmax) normalised to [0, 1], as the graph returns."""
        x = self.prepare(image)
        with self._fp32():
            feats = self.net.features(x)
            return self._postprocess(feats, self.image_hw(x))

    def block_output(self, x: torch.Tensor, block: int) -> torch.Tensor:
        """The output of MobileNetV2 block ``block`` (0 to 12) of images ``x`` (B, 3, H, W) in [0, 1],
        resized to the graph's input (bilinear without antialiasing, OpenCV's INTER_LINEAR up to its
        uint8 rounding): what an Omni-ICM feature head writes. Differentiable; the caller chooses
        ``no_grad``."""
        if self.input_size:
            x = torch.nn.functional.interpolate(x, (self.input_size, self.input_size), mode="bilinear",
                                                align_corners=False, antialias=False)
        x = (x * 2.0 - 1.0).to(self.device).contiguous(memory_format=torch.channels_last)
        with self._fp32():
            return self.net.trunk(x, block + 1)

    def tail_maps(self, features: torch.Tensor, block: int = 12) -> list[torch.Tensor]:
        """The two backbone maps the box predictors read, from block ``block``'s output (from block 12's:
        blocks 13 to 16 and Conv_1, the last quarter of the backbone's multiply-adds at 300x300)."""
        with self._fp32():
            return self.net.tail_maps(features.to(self.device), block + 1)

    @torch.no_grad()
    def detect_maps_normalized(self, maps: list[torch.Tensor]) -> Detections:
        """Detections from ready backbone maps (one image): the extra layers, box predictors, anchors
        and NMS of the graph, no backbone. The maps are at the graph's input grid (19x19 and 10x10
        at 300x300)."""
        maps = [m.to(self.device).float() for m in maps]
        with self._fp32():
            return self._postprocess(self.net.with_extras(maps), (1, 1) if self.input_size else
                                     (16 * maps[0].shape[-2], 16 * maps[0].shape[-1]))

    @staticmethod
    def to_pixels(d: Detections, image_hw: tuple[int, int]) -> PixelDetections:
        h, w = image_hw
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        return PixelDetections(d.boxes[:, [1, 0, 3, 2]] * scale, d.scores, d.classes)

    def detect(self, image: np.ndarray) -> PixelDetections:
        return self.to_pixels(self.detect_normalized(image), image.shape[:2])
