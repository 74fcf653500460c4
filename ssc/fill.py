"""What a partial decode shows where it decoded nothing: mid-grey, or the decoded pixels extended
smoothly outward (push-pull: a pyramid of means of the decoded pixels, upsampled into the holes, in
the spirit of Gortler et al.'s push-pull interpolation, SIGGRAPH 1996). A receiver choice: the
decoded pixels themselves are never changed, and nothing here reads the stream."""
from __future__ import annotations

import numpy as np

#: the grey of undecoded pixels (mid-grey)
GREY = 128
FILLS = ("grey", "extend")


def extend(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with the pixels where ``known`` is False filled from those where it
    is True: area means of the known pixels down a pyramid, then bilinear upsampling back into the
    holes (float64, so the same on every machine). The known pixels keep their values exactly; with no
    known pixel the image is mid-grey."""
    import torch
    import torch.nn.functional as F

    if image.ndim != 3 or image.shape[:2] != known.shape:
        raise ValueError(f"image {image.shape} and mask {known.shape} must be (H, W, 3) and (H, W)")
    if not known.any():
        return np.full_like(image, GREY)
    k = torch.from_numpy(np.ascontiguousarray(known, dtype=np.float64))[None, None]
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float64)).permute(2, 0, 1)[None] * k
    levels = []
    w = k
    while max(w.shape[-2:]) > 1:  # down: the sum of known values and their weight per block
        levels.append((x, w))
        x, w = F.avg_pool2d(x, 2, ceil_mode=True), F.avg_pool2d(w, 2, ceil_mode=True)
    mean = x / w.clamp_min(1e-12)
    for xf, wf in reversed(levels):  # up: the level's own mean where it has weight, blended by it
        up = F.interpolate(mean, size=wf.shape[-2:], mode="bilinear", align_corners=False)
        a = wf.clamp(0.0, 1.0)
        mean = torch.where(wf > 0, a * (xf / wf.clamp_min(1e-12)) + (1 - a) * up, up)
    out = mean[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    return np.where(known[..., None], image, out)


def apply_fill(image: np.ndarray, decoded: np.ndarray, fill: str) -> np.ndarray:
    """``image`` with its undecoded pixels (``decoded`` False) shown as ``fill`` (:data:`FILLS`);
    ``image`` itself when every pixel was decoded."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
    if decoded.all():
        return image
    if fill == "grey":
        return np.where(decoded[..., None], image, np.uint8(GREY))
    return extend(image, decoded)
