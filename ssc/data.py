"""Training data: random crops of natural photos with random irregular group masks (random blobs,
random polygons, real COCO instance masks and their background complements), so the codec learns
to code arbitrary group shapes (Feng et al., ICCV 2023, irregular groups). The ``person`` kind frames
one annotated COCO person as the pose head reads it (BlazePose's square crop) inside the training
crop, with the person's padded box as its group, as ``ssc encode --for`` groups persons."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from tqdm import tqdm

from ssc.masks.cells import owned_labels
from ssc.tasks.blazepose import CROP_SCALE, Crop

from .distributed import DistContext, ShardedStream

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
    #: annotated persons' boxes (x0, y0, x1, y1) in this image's pixels (COCO images; not crowds)
    persons: list[tuple[float, float, float, float]] = field(default_factory=list)


#: a person sample's group: its box padded by this share of the square's side (``--for`` pads 48 px)
PERSON_PAD = 0.1
#: persons whose box's longer side is shorter are not drawn
PERSON_MIN_SIDE = 48


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


@dataclass
class CropBatch:
    """One step's training inputs on one rank."""

    x: torch.Tensor  # (B, 3, C, C) in [0, 1]
    mask: torch.Tensor  # (B, 1, C, C) in {0, 1}
    quality: torch.Tensor  # (B,) int64 quality level of each sample
    #: (B, 3) per sample the square a pose head reads (left, top, side in crop pixels), -1 where the
    #: sample frames no person
    square: torch.Tensor | None = None


class CropSampler:
    """Per-step batches of (crop, group mask, quality level). ``mix`` gives the probability of each
    mask kind. Which images a rank sees comes from :class:`ssc.distributed.ShardedStream` (torch's
    DistributedSampler); everything random about a sample is drawn from a generator seeded by the
    sample's position in the single-process stream, so batches do not depend on the process count
    or on where a run was resumed."""

    def __init__(self, samples: list[Sample], crop: int, mix: dict[str, float], seed: int = 0,
                 num_qualities: int = 1, ctx: DistContext | None = None, cells: bool = False) -> None:
        if not samples:
            raise ValueError("no training images")
        self.samples = samples
        self.crop = crop
        kinds = ["full", "blob", "polygon", "coco", "person"]
        p = np.array([mix.get(k, 0.0) for k in kinds], dtype=np.float64)
        self.kinds, self.p = kinds, p / p.sum()
        self.seed, self.num_qualities = seed, num_qualities
        #: masks are cell-owned groups (:mod:`ssc.masks.cells`): a shape or instance is snapped to
        #: the cells it owns, or its complement (the background's cells) is drawn instead
        self.cells = cells
        self.coco_idx = [i for i, s in enumerate(samples) if s.labels is not None]
        self.persons = [(i, j) for i, s in enumerate(samples) for j, b in enumerate(s.persons)
                        if max(b[2] - b[0], b[3] - b[1]) >= PERSON_MIN_SIDE]
        if mix.get("person", 0.0) > 0 and not self.persons:
            raise ValueError(f"mix.person: no annotated person of at least {PERSON_MIN_SIDE} px in the training images")
        self.stream = ShardedStream(len(samples), ctx or DistContext(), seed)

    def _crop(self, s: Sample, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
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
        y0 = int(rng.integers(0, h - c + 1))
        x0 = int(rng.integers(0, w - c + 1))
        img = img[y0 : y0 + c, x0 : x0 + c]
        lab = lab[y0 : y0 + c, x0 : x0 + c] if lab is not None else None
        if rng.random() < 0.5:
            img = img[:, ::-1]
            lab = lab[:, ::-1] if lab is not None else None
        return img, lab

    def _person(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
        """A random annotated person: the crop holds its square (BlazePose's rule, shrunk with the
        image when it would not fit) at a random place; the mask is its padded box."""
        i, j = self.persons[int(rng.integers(len(self.persons)))]
        s = self.samples[i]
        x0, y0, x1, y1 = s.persons[j]
        c = self.crop
        side = CROP_SCALE * max(x1 - x0, y1 - y0)  # BlazePose's square
        sc = min(1.0, c / side)
        img = s.image
        if sc < 1.0:
            h, w = img.shape[:2]
            img = np.asarray(Image.fromarray(img).resize((max(1, round(w * sc)), max(1, round(h * sc))), Image.BICUBIC))
            x0, y0, x1, y1, side = x0 * sc, y0 * sc, x1 * sc, y1 * sc, side * sc
        side_i = min(c, max(1, round(side)))
        sl, st = round((x0 + x1) / 2 - side_i / 2), round((y0 + y1) / 2 - side_i / 2)
        # the crop's origin in the image: the square at a random place inside it
        ox, oy = sl - int(rng.integers(0, c - side_i + 1)), st - int(rng.integers(0, c - side_i + 1))
        out = Crop(ox, oy, c).cut(img)  # zeros outside the image, as the head's crops
        pad = PERSON_PAD * side_i
        mask = np.zeros((c, c), dtype=bool)
        mx0, my0 = max(0, int(x0 - pad) - ox), max(0, int(y0 - pad) - oy)
        mx1, my1 = min(c, int(np.ceil(x1 + pad)) - ox), min(c, int(np.ceil(y1 + pad)) - oy)
        mask[my0:my1, mx0:mx1] = True
        if self.cells:
            mask = owned_labels(mask.astype(np.int32)) == 1
        return out, mask, (sl - ox, st - oy, side_i)

    def draw(self, index: int, key: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(crop, mask, quality level) of image ``index``; ``key`` seeds the randomness. A "coco"
        mask comes from a random annotated image instead."""
        return self.draw_framed(index, key)[:3]

    def draw_framed(self, index: int, key: int) -> tuple[np.ndarray, np.ndarray, int, tuple[int, int, int] | None]:
        """:meth:`draw` and the square a pose head reads (left, top, side), for "person" samples."""
        rng = np.random.default_rng([self.seed, key])
        kind = self.kinds[int(rng.choice(len(self.kinds), p=self.p))]
        if kind == "person":
            img, mask, square = self._person(rng)
            if mask.sum() < 64:
                mask = np.ones(mask.shape, dtype=bool)
            return np.ascontiguousarray(img), mask, int(rng.integers(self.num_qualities)), square
        if kind == "coco" and self.coco_idx:
            s = self.samples[self.coco_idx[int(rng.integers(len(self.coco_idx)))]]
        else:
            s = self.samples[index]
        img, lab = self._crop(s, rng)
        c = self.crop
        if kind == "coco" and lab is not None:
            if self.cells:
                lab = owned_labels(lab)
            ids = np.unique(lab)
            mask = lab == ids[int(rng.integers(len(ids)))]
        elif kind in ("blob", "polygon"):
            mask = (random_blob if kind == "blob" else random_polygon)(c, rng)
            if self.cells:
                mask = owned_labels(mask.astype(np.int32)) == int(rng.integers(2))
        else:
            mask = np.ones((c, c), dtype=bool)
        if mask.sum() < 64:
            mask = np.ones((c, c), dtype=bool)
        return np.ascontiguousarray(img), mask, int(rng.integers(self.num_qualities)), None

    def batch(self, step: int, n: int) -> CropBatch:
        """This rank's ``n`` samples of training step ``step``."""
        imgs, masks, qs, squares = zip(*(self.draw_framed(i, k) for i, k in self.stream.take(step, n)))
        x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0
        m = torch.from_numpy(np.stack(masks)).unsqueeze(1).float()
        sq = torch.tensor([q if q is not None else (-1, -1, -1) for q in squares], dtype=torch.int64)
        return CropBatch(x, m, torch.tensor(qs, dtype=torch.int64), sq)


def prefetched(sampler: CropSampler, start: int, stop: int, n: int, workers: int = 0) -> Iterator[CropBatch]:
    """The batches of steps ``start .. stop-1`` in order. With ``workers`` > 0 a thread pool draws
    up to ``2 * workers`` steps ahead while the model trains on the current one (batches depend only
    on their step, so they are identical either way); on a GPU this keeps the device fed."""
    if workers <= 0:
        for step in range(start, stop):
            yield sampler.batch(step, n)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers, thread_name_prefix="ssc-batch") as pool:
        ahead: deque = deque()
        nxt = start
        try:
            while nxt < stop or ahead:
                while nxt < stop and len(ahead) < 2 * workers:
                    ahead.append(pool.submit(sampler.batch, nxt, n))
                    nxt += 1
                yield ahead.popleft().result()
        finally:
            for f in ahead:
                f.cancel()


def load_samples(photo_dirs: list[str], coco_images: str | None, coco_ann: str | None, max_side: int = 512,
                 quiet: bool = False) -> list[Sample]:
    """Load training images into memory (downscaled so the longer side is at most ``max_side``)."""
    from ssc.masks import from_coco

    boxes = person_boxes(coco_ann) if coco_ann else {}
    samples = []
    paths = list_images(photo_dirs)
    coco_paths = list_images([coco_images]) if coco_images else []
    for p in tqdm(paths + coco_paths, desc="loading training images", disable=quiet):
        img = load_rgb(p)
        lab = from_coco(coco_ann, p).labels if (coco_ann and p in coco_paths) else None
        h, w = img.shape[:2]
        sc = 1.0
        if max(h, w) > max_side:
            sc = max_side / max(h, w)
            size = (round(w * sc), round(h * sc))
            img = np.asarray(Image.fromarray(img).resize(size, Image.BICUBIC))
            if lab is not None:
                lab = np.asarray(Image.fromarray(lab).resize(size, Image.NEAREST))
        persons = [tuple(v * sc for v in b) for b in boxes.get(p.name, [])] if p in coco_paths else []
        samples.append(Sample(img, lab, persons))
    return samples


def person_boxes(coco_ann: str | Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """Per image file name, its annotated persons' boxes (x0, y0, x1, y1), crowds left out."""
    from ssc.masks.coco import _load

    data = _load(str(coco_ann))
    names = {im["id"]: im["file_name"] for im in data["images"]}
    person = {c["id"] for c in data.get("categories", []) if c["name"] == "person"}
    out: dict[str, list[tuple[float, float, float, float]]] = {}
    for a in sorted(data["annotations"], key=lambda a: a["id"]):
        if a["category_id"] in person and not a.get("iscrowd", 0) and a["image_id"] in names:
            x, y, bw, bh = a["bbox"]
            out.setdefault(names[a["image_id"]], []).append((x, y, x + bw, y + bh))
    return out
