"""Group maps from label images: a PNG whose pixel values are group ids (8- or 16-bit grey or
palette), with an optional JSON sidecar ``{"<id>": {"class_id": int, "label": str}}``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ssc.errors import MaskError

from .groupmap import GroupMap


def from_png(path: str | Path, names: str | Path | None = None) -> GroupMap:
    p = Path(path)
    if not p.is_file():
        raise MaskError(f"label map not found: {p}")
    try:
        with Image.open(p) as im:
            if im.mode not in ("L", "P", "I", "I;16", "1"):
                raise MaskError(f"{p}: label map must be single-channel (got mode {im.mode})")
            labels = np.asarray(im).astype(np.int64)
    except (UnidentifiedImageError, OSError) as e:
        raise MaskError(f"cannot read label map {p}: {e}") from e
    meta: dict[int, tuple[int, str]] = {}
    sidecar = Path(names) if names else p.with_suffix(".json")
    if sidecar.is_file():
        try:
            raw = json.loads(sidecar.read_text())
            meta = {int(k): (int(v.get("class_id", 0)), str(v.get("label", ""))) for k, v in raw.items()}
        except (ValueError, AttributeError) as e:
            raise MaskError(f"bad label names file {sidecar}: {e}") from e
    elif names:
        raise MaskError(f"label names file not found: {sidecar}")
    return GroupMap.from_labels(labels, meta)


def save_png(gm: GroupMap, path: str | Path) -> None:
    """Write the labels (8-bit if they fit, else 16-bit) and the JSON sidecar."""
    p = Path(path)
    arr = gm.labels
    im = Image.fromarray(arr.astype(np.uint8) if arr.max() <= 255 else arr.astype(np.uint16))
    im.save(p)
    side = {str(g.group_id): {"class_id": g.class_id, "label": g.label} for g in gm.groups}
    p.with_suffix(".json").write_text(json.dumps(side, indent=1))
