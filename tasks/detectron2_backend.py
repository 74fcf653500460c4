"""Optional detectron2 backend (Wu et al., 2019). detectron2 is imported only when this backend is
asked for, so ssc never requires it; ``--det-weights`` then takes a detectron2 ``.pkl`` / ``.pth``
checkpoint and ``config`` a detectron2 config file (or a model-zoo config name)."""
from __future__ import annotations

import numpy as np
import torch

from ssc.errors import SSCError

from .heads import Category, HeadInfo, TaskHead, register_backend
from .structures import Instances


def _import_detectron2():
    try:
        import detectron2  # noqa: F401
        from detectron2 import model_zoo
        from detectron2.config import get_cfg
        from detectron2.engine import DefaultPredictor
    except ImportError as e:
        raise SSCError("the detectron2 backend needs detectron2, which is not installed; "
                       "use --backend torchvision (the default)") from e
    return get_cfg, DefaultPredictor, model_zoo


class Detectron2Head(TaskHead):
    def __init__(self, predictor, info: HeadInfo, contiguous_to_coco: list[int]) -> None:
        self.predictor = predictor
        self.info = info
        self.to_coco = contiguous_to_coco

    @torch.no_grad()
    def predict(self, image: np.ndarray, masks: bool = True) -> Instances:
        out = self.predictor(np.ascontiguousarray(image[:, :, ::-1]))["instances"].to("cpu")  # detectron2 wants BGR
        classes = torch.tensor([self.to_coco[int(c)] for c in out.pred_classes], dtype=torch.long)
        m = out.pred_masks.bool() if (masks and out.has("pred_masks")) else None
        return Instances(tuple(image.shape[:2]), out.pred_boxes.tensor, out.scores, classes, m)


@register_backend("detectron2")
def detectron2_head(weights: str | None = None, device: str = "cpu", score_thresh: float = 0.05,
                    config: str = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml", **_) -> Detectron2Head:
    get_cfg, DefaultPredictor, model_zoo = _import_detectron2()
    if not weights:
        raise SSCError("the detectron2 backend needs --det-weights (a COCO-trained .pkl/.pth checkpoint on disk)")
    cfg = get_cfg()
    try:
        cfg.merge_from_file(model_zoo.get_config_file(config))
    except RuntimeError:
        cfg.merge_from_file(config)
    cfg.MODEL.WEIGHTS = weights
    cfg.MODEL.DEVICE = device
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = score_thresh
    from .coco_ids import COCO_CATEGORY_IDS

    info = HeadInfo("detectron2", config, weights, [Category(i, str(i)) for i in COCO_CATEGORY_IDS])
    return Detectron2Head(DefaultPredictor(cfg), info, list(COCO_CATEGORY_IDS))
