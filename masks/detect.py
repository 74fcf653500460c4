"""Detector-made groups (SSIC without annotations): the encoder runs a detector on the image and
each detection's box, padded, becomes a group; the rest of the image is background. An image with
no detection is coded as one group. ``whole`` makes that single group for any image.

Specs (``--masks``): ``detect:ssdlite-person[,score=S][,pad=P]`` and ``whole``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from ssc.errors import MaskError

from .groupmap import GroupMap

DEFAULT_SCORE = 0.3
DEFAULT_PAD = 16


@dataclass(frozen=True)
class DetectSpec:
    backend: str
    score: float = DEFAULT_SCORE
    pad: int = DEFAULT_PAD


def parse_detect_spec(arg: str, options: tuple[str, ...] = ("score", "pad")) -> tuple[str, dict[str, float]]:
    """``MODEL[,k=v...]`` -> (MODEL, {k: v}); unknown keys, missing or non-numeric values are refused."""
    model, *opts = arg.split(",")
    if not model:
        raise MaskError(f"detector mask source needs a detector name, e.g. detect:ssdlite-person (got {arg!r})")
    kw: dict[str, float] = {}
    for o in opts:
        k, _, v = o.partition("=")
        if k not in options or not v:
            raise MaskError(f"unknown detector option {o!r} (expected {', '.join(f'{x}=N' for x in options)})")
        try:
            kw[k] = float(v)
        except ValueError:
            raise MaskError(f"detector option {o!r} needs a number") from None
    return model, kw


def detect_spec(arg: str) -> DetectSpec:
    model, kw = parse_detect_spec(arg)
    score, pad = kw.get("score", DEFAULT_SCORE), kw.get("pad", DEFAULT_PAD)
    if not 0 <= score <= 1:
        raise MaskError(f"score={score:g} must lie in [0, 1]")
    if pad < 0 or pad != int(pad):
        raise MaskError(f"pad={pad:g} must be a whole number of pixels >= 0")
    return DetectSpec(model, score, int(pad))


def whole_image(height: int, width: int) -> GroupMap:
    """One group (id 0, background) covering the image."""
    return GroupMap.from_labels(np.zeros((height, width), np.int32))


def boxes_to_groups(height: int, width: int, boxes: np.ndarray, scores: np.ndarray, classes: list[tuple[int, str]],
                    pad: int) -> GroupMap:
    """Boxes (N, 4) xyxy in pixels, padded by ``pad`` and clipped, as groups 1..N (in descending score
    order, a pixel covered by several boxes belongs to the highest-scoring one); the rest is background
    (group 0). Boxes left with no pixel are dropped."""
    labels = np.zeros((height, width), np.int32)
    meta: dict[int, tuple[int, str]] = {}
    order = np.argsort(-np.asarray(scores), kind="stable")
    gid = 0
    for i in order:
        x0, y0, x1, y1 = boxes[i]
        xa, ya = max(0, int(np.floor(x0)) - pad), max(0, int(np.floor(y0)) - pad)
        xb, yb = min(width, int(np.ceil(x1)) + pad), min(height, int(np.ceil(y1)) + pad)
        if xb <= xa or yb <= ya:
            continue
        region = labels[ya:yb, xa:xb]
        free = region == 0
        if not free.any():
            continue
        gid += 1
        region[free] = gid
        meta[gid] = classes[i]
    return GroupMap.from_labels(labels, meta)


def detected_groups(image: np.ndarray, spec: DetectSpec, head=None, device: str = "cpu", quiet: bool = False) -> GroupMap:
    """Groups from ``spec``'s detector on ``image`` (H, W, 3) uint8. ``head`` reuses a built task head."""
    if head is None:
        from ssc.tasks.heads import shared_head

        head = shared_head(spec.backend, None, device)
    inst = head.predict(image, masks=False)
    keep = inst.scores >= spec.score
    h, w = image.shape[:2]
    boxes, scores = inst.boxes[keep].numpy(), inst.scores[keep].numpy()
    classes = [(int(c), head.info.category_name(int(c))) for c in inst.classes[keep].tolist()]
    gm = boxes_to_groups(h, w, boxes, scores, classes, spec.pad)
    if len(gm.groups) == 1 and gm.groups[0].group_id == 0 and not quiet:
        print(f"ssc: note: {spec.backend} found nothing at score >= {spec.score:g}; the image is coded as one group",
              file=sys.stderr)
    return gm
