"""Instances <-> COCO result JSON (the format pycocotools' ``loadRes`` reads)."""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from .structures import Instances


def encode_mask(m: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def instances_to_coco(inst: Instances, image_id: int, task: str = "segment") -> list[dict]:
    """One dict per instance: image_id, category_id, bbox (x, y, w, h), score, and the RLE
    segmentation when ``task == "segment"`` and masks are present, or the keypoints (x, y, v per
    keypoint) when ``task == "pose"``."""
    out = []
    boxes = inst.boxes.double().numpy()
    for i in range(len(inst)):
        x0, y0, x1, y1 = (float(v) for v in boxes[i])
        r = {"image_id": int(image_id), "category_id": int(inst.classes[i]),
             "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)], "score": round(float(inst.scores[i]), 5)}
        if task == "segment" and inst.masks is not None:
            r["segmentation"] = encode_mask(inst.masks[i].numpy())
        if task == "pose" and inst.keypoints is not None:
            r["keypoints"] = [round(float(v), 2) for v in inst.keypoints[i].flatten()]
        out.append(r)
    return out


def keep_inside(inst: Instances, region: np.ndarray, min_frac: float = 0.5) -> Instances:
    """Instances whose mask (or box, without masks) lies at least ``min_frac`` inside ``region``
    ((H, W) bool: the decoded groups), so predictions on undecoded fill are dropped."""
    if len(inst) == 0:
        return inst
    keep = []
    for i in range(len(inst)):
        if inst.masks is not None and bool(inst.masks[i].any()):
            m = inst.masks[i].numpy()
        else:
            x0, y0, x1, y1 = (int(round(float(v))) for v in inst.boxes[i])
            m = np.zeros(region.shape, bool)
            m[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
        area = m.sum()
        keep.append(area > 0 and (m & region).sum() >= min_frac * area)
    import torch

    return inst[torch.tensor(keep, dtype=torch.bool)]
