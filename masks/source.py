"""Parse a mask source spec as used by the CLI: ``coco:ANN.json``, ``png:MAP.png`` or
``masks:a.png,b.png``."""
from __future__ import annotations

from pathlib import Path

from ssc.errors import MaskError

from .binary import from_binary_masks
from .coco import from_coco
from .groupmap import GroupMap
from .png import from_png


def load_masks(spec: str, image_path: str | Path, size: tuple[int, int]) -> GroupMap:
    """Resolve ``spec`` for the image at ``image_path`` whose size is (height, width)."""
    kind, sep, arg = spec.partition(":")
    if not sep or not arg:
        raise MaskError(f"mask source {spec!r} must look like coco:ANN.json, png:MAP.png or masks:A.png,B.png")
    if kind == "coco":
        gm = from_coco(arg, image_path)
    elif kind == "png":
        gm = from_png(arg)
    elif kind == "masks":
        gm = from_binary_masks([p for p in arg.split(",") if p], size=size)
    else:
        raise MaskError(f"unknown mask source kind {kind!r} (coco, png, masks)")
    gm.check_size(*size)
    return gm
