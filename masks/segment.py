"""Unsupervised group maps for images without annotations (e.g. Kodak in the RD benchmark): k-means
over colour and position on a downsampled image, giving a few irregular, object-like regions. Fully
deterministic for a given image, ``k`` and ``seed``."""
from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import MaskError
from .groupmap import GroupMap
from .policies import merge_small


def kmeans_labels(features: np.ndarray, k: int, seed: int = 0, iters: int = 30) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; returns (n,) labels 0..k-1 (empty clusters re-seeded)."""
    rng = np.random.default_rng(seed)
    n = len(features)
    centers = [features[int(rng.integers(n))]]
    for _ in range(1, k):
        d = np.min(((features[:, None, :] - np.asarray(centers)[None]) ** 2).sum(-1), 1)
        centers.append(features[int(rng.choice(n, p=d / d.sum()))] if d.sum() > 0 else features[int(rng.integers(n))])
    c = np.asarray(centers)
    lab = np.zeros(n, dtype=np.int64)
    for _ in range(iters):
        lab = ((features[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        new = np.stack([features[lab == j].mean(0) if (lab == j).any() else features[int(rng.integers(n))] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return lab


def kmeans_groups(image: np.ndarray, k: int = 4, spatial: float = 1.0, cell: int = 8, min_area: int = 4096,
                  seed: int = 0) -> GroupMap:
    """Group map of ``k`` colour+position clusters (``spatial`` weights position against colour),
    clustered on ``cell`` x ``cell`` blocks; clusters under ``min_area`` pixels join the largest one,
    which becomes the background (group 0)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise MaskError(f"image must be (H, W, 3), got {image.shape}")
    if k < 1:
        raise MaskError("k must be >= 1")
    h, w = image.shape[:2]
    gh, gw = max(1, h // cell), max(1, w // cell)
    small = np.asarray(Image.fromarray(image).resize((gw, gh), Image.BOX), dtype=np.float64) / 255.0
    yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float64) / max(gh, gw)
    feats = np.concatenate([small.reshape(-1, 3), spatial * np.stack([yy.ravel(), xx.ravel()], 1)], 1)
    lab = kmeans_labels(feats, min(k, len(feats)), seed).reshape(gh, gw).astype(np.int32)
    full = np.asarray(Image.fromarray(lab).resize((w, h), Image.NEAREST), dtype=np.int32)
    counts = np.bincount(full.ravel(), minlength=k)
    order = np.argsort(-counts, kind="stable")  # largest cluster -> 0 (background), then by size
    remap = np.empty(k, dtype=np.int32)
    remap[order] = np.arange(k)
    labels = remap[full]
    meta = {i: (0, "background" if i == 0 else f"region{i}") for i in range(k)}
    return merge_small(GroupMap.from_labels(labels, meta), min_area)
