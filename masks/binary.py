"""Group maps from a list of binary masks (arrays or image files)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ssc.errors import MaskError

from .groupmap import GroupMap, paint_instances


def _load_mask(m: np.ndarray | str | Path) -> np.ndarray:
    if isinstance(m, np.ndarray):
        if m.ndim != 2:
            raise MaskError(f"binary mask must be 2-D, got {m.shape}")
        return m.astype(bool)
    p = Path(m)
    try:
        with Image.open(p) as im:
            return np.asarray(im.convert("L")) > 127
    except (FileNotFoundError, UnidentifiedImageError, OSError) as e:
        raise MaskError(f"cannot read mask {p}: {e}") from e


def from_binary_masks(
    masks: Sequence[np.ndarray | str | Path],
    classes: Sequence[tuple[int, str]] | None = None,
    size: tuple[int, int] | None = None,
) -> GroupMap:
    """Mask i becomes group i + 1 (overlaps: smallest wins). ``size`` = (height, width) to check."""
    loaded = [_load_mask(m) for m in masks]
    if not loaded and size is None:
        raise MaskError("no masks given and no size to make an all-background map")
    h, w = size if size is not None else loaded[0].shape
    classes = list(classes) if classes is not None else [(0, "")] * len(loaded)
    return paint_instances(h, w, loaded, classes)
