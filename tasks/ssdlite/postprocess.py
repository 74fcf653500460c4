"""SSD post-processing as in the TF Object Detection API graph: Faster R-CNN box decoding with scale
factors (10, 10, 5, 5), sigmoid scores without the background column, per-class greedy NMS (IoU 0.6,
score > 1e-8, at most 100), then clipping to the image and dropping boxes left with no area."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class PostConfig:
    scale_factors: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    iou_threshold: float = 0.6
    score_threshold: float = 1e-8
    max_detections: int = 100
    logit_scale: float = 1.0


def decode_boxes(enc: torch.Tensor, anchors: torch.Tensor, sf: tuple[float, float, float, float]) -> torch.Tensor:
    """(A, 4) encodings (ty, tx, th, tw) relative to (A, 4) anchors (ymin, xmin, ymax, xmax) ->
    boxes (ymin, xmin, ymax, xmax)."""
    ha = anchors[:, 2] - anchors[:, 0]
    wa = anchors[:, 3] - anchors[:, 1]
    yca = anchors[:, 0] + ha / 2
    xca = anchors[:, 1] + wa / 2
    ty, tx = enc[:, 0] / sf[0], enc[:, 1] / sf[1]
    th, tw = enc[:, 2] / sf[2], enc[:, 3] / sf[3]
    w = torch.exp(tw) * wa
    h = torch.exp(th) * ha
    yc = ty * ha + yca
    xc = tx * wa + xca
    return torch.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], 1)


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, max_out: int) -> torch.Tensor:
    """Indices kept by greedy NMS, in selection order, stopping after ``max_out`` (TF's
    NonMaxSuppressionV3): boxes (N, 4) (ymin, xmin, ymax, xmax) in either corner order, IoUs in
    float32 compared with the float32 threshold, equal scores taken in index order."""
    order = torch.argsort(scores, descending=True, stable=True)
    b = boxes[order].float().cpu().numpy()  # NumPy: cheaper than torch for this many small steps
    y0, x0 = np.minimum(b[:, 0], b[:, 2]), np.minimum(b[:, 1], b[:, 3])
    y1, x1 = np.maximum(b[:, 0], b[:, 2]), np.maximum(b[:, 1], b[:, 3])
    area = (y1 - y0) * (x1 - x0)
    thr = np.float32(iou_threshold)
    zero = np.float32(0)
    alive = area > 0  # TF: a box without area overlaps nothing (it is still selectable)
    free = np.ones(len(b), dtype=bool)
    kept: list[int] = []
    i = 0
    while len(kept) < max_out:
        nxt = np.flatnonzero(free[i:])
        if not len(nxt):
            break
        i += int(nxt[0])
        kept.append(i)
        free[i] = False
        if not alive[i]:
            continue
        ih = np.maximum(np.minimum(y1[i], y1) - np.maximum(y0[i], y0), zero)
        iw = np.maximum(np.minimum(x1[i], x1) - np.maximum(x0[i], x0), zero)
        inter = ih * iw
        iou = inter / (area[i] + area - inter)
        free &= ~((iou > thr) & alive)
    return order[torch.tensor(kept, dtype=torch.long)]


@dataclass
class Detections:
    """One image's detections: boxes (N, 4) as (ymin, xmin, ymax, xmax) in [0, 1], scores (N,),
    classes (N,) starting at 1 (the graph's label ids), score-sorted."""

    boxes: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor


def postprocess(enc: torch.Tensor, logits: torch.Tensor, anchors: torch.Tensor, cfg: PostConfig = PostConfig()) -> Detections:
    """One image: (A, 4) encodings and (A, C + 1) logits -> detections."""
    boxes = decode_boxes(enc.float(), anchors, cfg.scale_factors)
    scores = torch.sigmoid(logits.float() / cfg.logit_scale)[:, 1:]
    all_b, all_s, all_c = [], [], []
    for c in range(scores.shape[1]):
        s = scores[:, c]
        keep = torch.nonzero(s > cfg.score_threshold).squeeze(1)
        sel = keep[greedy_nms(boxes[keep], s[keep], cfg.iou_threshold, cfg.max_detections)]
        all_b.append(boxes[sel])
        all_s.append(s[sel])
        all_c.append(torch.full((len(sel),), c + 1, dtype=torch.long))
    b, s, c = torch.cat(all_b), torch.cat(all_s), torch.cat(all_c)
    order = torch.argsort(s, descending=True, stable=True)
    b, s, c = b[order].clamp(0, 1), s[order], c[order]
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    ok = area > 0
    b, s, c = b[ok][: cfg.max_detections], s[ok][: cfg.max_detections], c[ok][: cfg.max_detections]
    return Detections(b, s, c)
