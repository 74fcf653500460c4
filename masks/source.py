"""Parse a mask source spec as used by the CLI: ``coco:ANN.json``, ``png:MAP.png``,
``masks:a.png,b.png``, ``detect:ssdlite-person[,score=S][,pad=P]`` (groups made by a detector on the
image itself) or ``whole`` (one group)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ssc.errors import MaskError

from .binary import from_binary_masks
from .coco import from_coco
from .detect import detect_spec, detected_groups, whole_image
from .groupmap import GroupMap
from .png import from_png

SPECS = "coco:ANN.json, png:MAP.png, masks:A.png,B.png, detect:ssdlite-person[,score=S][,pad=P] or whole"


def load_masks(spec: str, image_path: str | Path, size: tuple[int, int], image: np.ndarray | None = None,
               device: str = "cpu") -> GroupMap:
    """Resolve ``spec`` for the image at ``image_path`` whose size is (height, width); ``detect:``
    needs the decoded ``image`` itself."""
    if spec == "whole":
        return whole_image(*size)
    kind, sep, arg = spec.partition(":")
    if not sep or not arg:
        raise MaskError(f"mask source {spec!r} must look like {SPECS}")
    if kind == "coco":
        gm = from_coco(arg, image_path)
    elif kind == "png":
        gm = from_png(arg)
    elif kind == "masks":
        gm = from_binary_masks([p for p in arg.split(",") if p], size=size)
    elif kind == "detect":
        ds = detect_spec(arg)
        if image is None:
            raise MaskError("detect: mask sources need the image pixels")
        gm = detected_groups(image, ds, device=device)
    else:
        raise MaskError(f"unknown mask source kind {kind!r} ({SPECS})")
    gm.check_size(*size)
    return gm
