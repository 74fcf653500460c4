"""Training data: random crops of natural photos with random irregular group masks (random blobs,
random polygons, real COCO instance masks and their background complements), so the codec learns
to code arbitrary group shapes (Feng et al., ICCV 2023, irregular groups)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from tqdm import tqdm

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def list_images(folders: list[str | Path]) -> list[Path]:
    out: list[Path] = []
    for f in folders:
        p = Path(f)
        if not p.is_dir():
            raise FileNotFoundError(f"training folder not found: {p}")
        out.extend(sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_EXTS))
    return out


def load_rgb(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@dataclass
class Sample:
    image: np.ndarray  # (H, W, 3) uint8
    labels: np.ndarray | None  # (H, W) int32 group map, when the image has instance masks


def random_blob(size: int, rng: np.random.Generator) -> np.ndarray:
    """Thresholded smooth noise: irregular, possibly multi-component shapes."""
    g = int(rng.integers(2, 7))
    noise = torch.from_numpy(rng.standard_normal((1, 1, g, g)).astype(np.float32))
    up = F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False)[0, 0].numpy()
    return up > np.quantile(up, rng.uniform(0.3, 0.85))


def random_polygon(size: int, rng: np.random.Generator) -> np.ndarray:
    im = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(1, 4))):
        c = rng.uniform(0.1, 0.9, 2) * size
        r = rng.uniform(0.1, 0.45) * size
        n = int(rng.integers(3, 10))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = r * rng.uniform(0.4, 1.0, n)
        pts = [(float(c[0] + a * np.cos(t)), float(c[1] + a * np.sin(t))) for a, t in zip(rad, ang)]
        draw.polygon(pts, fill=255)
    return np.asarray(im) > 0


class CropSampler:
    """Draws (crop, mask) pairs. ``mix`` gives the probability of each mask kind."""

    def __init__(self, samples: list[Sample], crop: int, mix: dict[str, float], seed: int = 0) -> None:
        if not samples:
            raise ValueError("no training images")
        self.samples = samples
        self.crop = crop
        kinds = ["full", "blob", "polygon", "coco"]
        p = np.array([mix.get(k, 0.0) for k in kinds], dtype=np.float64)
        self.kinds, self.p = kinds, p / p.sum()
        self.rng = np.random.default_rng(seed)
        self.coco_idx = [i for i, s in enumerate(samples) if s.labels is not None]

    def _crop(self, s: Sample) -> tuple[np.ndarray, np.ndarray | None]:
        img, lab = s.image, s.labels
        h, w = img.shape[:2]
        c = self.crop
        if h < c or w < c:
            sc = c / min(h, w)
            nh, nw = max(c, round(h * sc)), max(c, round(w * sc))
            img = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BICUBIC))
            if lab is not None:
                lab = np.asarray(Image.fromarray(lab.astype(np.int32)).resize((nw, nh), Image.NEAREST))
            h, w = nh, nw
        y0 = int(self.rng.integers(0, h - c + 1))
        x0 = int(self.rng.integers(0, w - c + 1))
        img = img[y0 : y0 + c, x0 : x0 + c]
        lab = lab[y0 : y0 + c, x0 : x0 + c] if lab is not None else None
        if self.rng.random() < 0.5:
            img = img[:, ::-1]
            lab = lab[:, ::-1] if lab is not None else None
        return img, lab

    def draw(self) -> tuple[np.ndarray, np.ndarray]:
        kind = self.kinds[int(self.rng.choice(len(self.kinds), p=self.p))]
        if kind == "coco" and self.coco_idx:
            s = self.samples[self.coco_idx[int(self.rng.integers(len(self.coco_idx)))]]
        else:
            s = self.samples[int(self.rng.integers(len(self.samples)))]
        img, lab = self._crop(s)
        c = self.crop
        if kind == "coco" and lab is not None:
            ids = np.unique(lab)
            mask = lab == ids[int(self.rng.integers(len(ids)))]
        elif kind == "blob":
            mask = random_blob(c, self.rng)
        elif kind == "polygon":
            mask = random_polygon(c, self.rng)
        else:
            mask = np.ones((c, c), dtype=bool)
        if mask.sum() < 64:
            mask = np.ones((c, c), dtype=bool)
        return np.ascontiguousarray(img), mask

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        imgs, masks = zip(*(self.draw() for _ in range(n)))
        x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0
        m = torch.from_numpy(np.stack(masks)).unsqueeze(1).float()
        return x, m


def load_samples(photo_dirs: list[str], coco_images: str | None, coco_ann: str | None, max_side: int = 512) -> list[Sample]:
    """Load training images into memory (downscaled so the longer side is at most ``max_side``)."""
    from ssc.masks import from_coco

    samples = []
    paths = list_images(photo_dirs)
    coco_paths = list_images([coco_images]) if coco_images else []
    for p in tqdm(paths + coco_paths, desc="loading training images"):
        img = load_rgb(p)
        lab = from_coco(coco_ann, p).labels if (coco_ann and p in coco_paths) else None
        h, w = img.shape[:2]
        if max(h, w) > max_side:
            sc = max_side / max(h, w)
            size = (round(w * sc), round(h * sc))
            img = np.asarray(Image.fromarray(img).resize(size, Image.BICUBIC))
            if lab is not None:
                lab = np.asarray(Image.fromarray(lab).resize(size, Image.NEAREST))
        samples.append(Sample(img, lab))
    return samples
