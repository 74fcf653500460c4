"""Group maps from COCO instance annotations (polygons and RLE, via pycocotools)."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from ssc.errors import MaskError

from .groupmap import GroupMap, paint_instances

CROWD_MODES = ("group", "background", "drop")


@lru_cache(maxsize=4)
def _load(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise MaskError(f"annotation file not found: {p}")
    try:
        with open(p) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise MaskError(f"cannot read COCO annotations {p}: {e}") from e
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise MaskError(f"{p} is not a COCO instances file (needs 'images' and 'annotations')")
    return data


def find_image(ann_file: str | Path, image: str | Path | int) -> dict:
    """The COCO image record for an id, a file name or a path whose name matches."""
    data = _load(str(ann_file))
    for rec in data["images"]:
        if isinstance(image, int) and rec["id"] == image:
            return rec
        if not isinstance(image, int) and rec["file_name"] == Path(image).name:
            return rec
    raise MaskError(f"image {image} is not in {ann_file}")


def ann_to_mask(ann: dict, height: int, width: int) -> np.ndarray:
    """Binary mask of one annotation (polygon list, uncompressed or compressed RLE)."""
    from pycocotools import mask as mask_utils

    seg = ann.get("segmentation")
    if isinstance(seg, list):
        polys = [p for p in seg if len(p) >= 6]
        if not polys:
            return np.zeros((height, width), dtype=bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):
        rle = mask_utils.frPyObjects(seg, height, width)
    elif isinstance(seg, dict):
        rle = seg
    else:
        raise MaskError(f"annotation {ann.get('id')} has no usable segmentation")
    m = mask_utils.decode(rle)
    if m.shape[:2] != (height, width):
        raise MaskError(f"annotation {ann.get('id')} decodes to {m.shape[:2]}, image is {(height, width)}")
    return m.astype(bool)


def from_coco(ann_file: str | Path, image: str | Path | int, crowd: str = "group") -> GroupMap:
    """Group map of one image: one group per instance, ids 1..K in ascending annotation id.

    Overlaps: the smallest instance wins (see :func:`paint_instances`). Crowd regions
    (``iscrowd=1``): ``group`` gives each its own group (label suffixed " (crowd)"), ``background``
    leaves them in group 0, ``drop`` ignores them (same as background for pixels)."""
    if crowd not in CROWD_MODES:
        raise ValueError(f"crowd must be one of {CROWD_MODES}")
    data = _load(str(ann_file))
    rec = find_image(ann_file, image)
    h, w = int(rec["height"]), int(rec["width"])
    cats = {c["id"]: c["name"] for c in data.get("categories", [])}
    anns = sorted((a for a in data["annotations"] if a["image_id"] == rec["id"]), key=lambda a: a["id"])
    masks, classes = [], []
    for a in anns:
        if a.get("iscrowd", 0) and crowd != "group":
            continue
        m = ann_to_mask(a, h, w)
        if not m.any():
            continue
        name = cats.get(a["category_id"], str(a["category_id"]))
        if a.get("iscrowd", 0):
            name += " (crowd)"
        masks.append(m)
        classes.append((int(a["category_id"]), name))
    gm = paint_instances(h, w, masks, classes)
    from .policies import per_instance

    return per_instance(gm)
