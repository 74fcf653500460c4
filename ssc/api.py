"""The public Python API: read an image, encode it into a stream of per-group segments, decode the
groups chosen (Feng et al., ICCV 2023). The work is done in :mod:`ssc.encode` and :mod:`ssc.decode`.

Each group is coded on its bounding-box crop, padded at the bottom/right to the latent grid, with
everything outside the group zeroed. Decoding reads the header and the chosen groups' mask records and
segments only; a group whose mask or segment is corrupt is reported and skipped while all others
decode bit-exactly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .decode import DecodeResult, decode_image
from .encode import EncodeResult, encode_image
from .errors import SSCError

__all__ = ["DecodeResult", "EncodeResult", "decode_image", "encode_image", "read_image"]


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; clear errors for missing or non-image files."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image not found: {p}")
    try:
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise SSCError(f"{p} is not a readable image ({e})") from e
