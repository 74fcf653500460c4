"""Distillation set of the Omni-ICM feature codec for a fixed-input detector (SSDLite person): whole
training images (not crops: the detector sees the whole image squashed to 300x300) with, per image,

* two group masks: the whole image, and the persons the detector finds (its boxes at score >= 0.2,
  padded 16 px: the groups ``--masks detect:ssdlite-person`` makes) or, without persons, a random
  blob;
* two views of each (the image and a flipped, colour-jittered copy: Omni-ICM's SSL pairs);
* the frozen codec's quantised latents of each view at every quality level, dequantised (what the
  feature head reads after decoding), their support at 1/8, and the teacher's output of the
  block the head writes (``block``, 5) and the two backbone maps its box predictors read, either of
  the view with every pixel off the mask mid-grey (``target="decoded"``: what a partial decode
  shows) or of the whole view (``target="image"``: the maps the detector computes on the image the
  groups come from, so a persons-only decode is taught to give the detector its persons' context;
  the two differ only for the partial mask).

With the codec frozen (the CPU budget), both are computed once and cached in the run folder, so a
training step costs only the head. The cache is a list of shards, each with a manifest of the images
it holds (:class:`Shards`): a run that lists more images builds only the missing ones into a new
shard. Training photos and the COCO train subset only, never COCO val.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data import list_images, load_rgb, random_blob
from ..models.codec import LEVELS
from ..models.layers import support_pyramid
from ..outputs import atomic_output, write_text
from .ssl import second_view

#: training shapes (H, W), multiples of 64: COCO's 4:3 photos, landscape and portrait
SHAPES = ((448, 640), (640, 448))
FILL = 0.5  # mid-grey off the mask (the value undecoded pixels get)
PERSON_SCORE, PERSON_PAD = 0.2, 16
#: what the teacher sees of a partial mask's view: the decoded pixels on grey, or the whole image
TARGETS = ("decoded", "image")


@dataclass
class Bucket:
    """The cached samples of one shape; views come in pairs (rows 2k and 2k + 1)."""

    y: torch.Tensor  # (N, Q, M, H/16, W/16) float16, dequantised latents per quality level
    support8: torch.Tensor  # (N, 1, H/8, W/8) bool, the mask's support at 1/8 (the synthesis stage's grid)
    map0: torch.Tensor  # (N, 576, 19, 19) float16
    map1: torch.Tensor  # (N, 1280, 10, 10) float16
    cut: torch.Tensor  # (N, C, n, n) float16, the output of the block the head writes (block 5: 32 x 38 x 38)

    def __len__(self) -> int:
        return len(self.y)

    def pairs(self, idx: torch.Tensor, quality: torch.Tensor) -> "dict[str, torch.Tensor]":
        """Both views of pairs ``idx`` at ``quality`` (one level per pair): first views, then second
        views (float32)."""
        rows, q = torch.cat([2 * idx, 2 * idx + 1]), quality.repeat(2)
        return {"y": self.y[rows, q].float(), "support8": self.support8[rows].float(),
                "map0": self.map0[rows].float(), "map1": self.map1[rows].float(), "cut": self.cut[rows].float()}


def fit(img: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, h, w) in [0, 1]: scaled to cover ``shape`` then randomly cropped."""
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255
    h, w = shape
    s = max(h / x.shape[2], w / x.shape[3])
    size = (max(h, round(x.shape[2] * s)), max(w, round(x.shape[3] * s)))
    x = F.interpolate(x, size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    oy, ox = int(rng.integers(0, size[0] - h + 1)), int(rng.integers(0, size[1] - w + 1))
    return x[:, :, oy : oy + h, ox : ox + w]


def latents(model, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(1, Q, M, h, w) dequantised latents of ``x`` on ``mask`` at every quality level, as the codec
    quantises them (rounded around the entropy model's means), and the support pyramid."""
    pyr = support_pyramid(mask, LEVELS)
    y_raw = model.g_a(x * mask, pyr)
    out = []
    for q in range(model.num_qualities):
        qt = torch.tensor([float(q)])
        y_hat = model.quantize_rate(model.from_analysis(y_raw, pyr, qt), mask, pyr, hard=True)[0]
        out.append(model.dequantize(y_hat, qt))
    return torch.stack(out, 1), pyr


def person_mask(x: torch.Tensor, head) -> torch.Tensor | None:
    """(1, 1, H, W) union of the detector's padded person boxes on ``x``, or None without persons."""
    from ssc.masks.detect import DetectSpec, detected_groups

    img = (x[0].permute(1, 2, 0) * 255).round().byte().numpy()
    gm = detected_groups(img, DetectSpec("ssdlite-person", PERSON_SCORE, PERSON_PAD), head, quiet=True)
    m = gm.labels > 0
    return torch.from_numpy(m)[None, None] if m.any() else None


def training_images(data: dict, limit_photos: int, seed: int) -> list[Path]:
    """COCO train subset images, then ``limit_photos`` of the training photos (a seeded choice)."""
    coco = list_images([data["coco_images"]]) if data.get("coco_images") else []
    photos = list_images(data["photos"])
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(photos))[:limit_photos]
    return coco + [photos[i] for i in sorted(pick)]


@torch.no_grad()
def build(paths: list[Path], model, teacher, seed: int, block: int = 5, quiet: bool = False,
          target: str = "decoded") -> dict[tuple[int, int], Bucket]:
    """Samples of every image: ``model.g_a`` latents and ``teacher`` maps (block ``block``'s output and
    the two maps the box predictors read), per (mask, view); ``target`` in :data:`TARGETS`."""
    if target not in TARGETS:
        raise ValueError(f"unknown distillation target {target!r}: {' or '.join(TARGETS)}")
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    rows: dict[tuple[int, int], list[tuple]] = {s: [] for s in SHAPES}
    for p in tqdm(paths, desc="distillation set", unit="image", disable=quiet):
        img = load_rgb(p)
        shape = SHAPES[0] if img.shape[1] >= img.shape[0] else SHAPES[1]
        x = fit(img, shape, rng)
        full = torch.ones(1, 1, *shape, dtype=torch.bool)
        pm = person_mask(x, teacher)
        if pm is None:
            pm = torch.from_numpy(random_blob(max(shape), rng)[: shape[0], : shape[1]])[None, None]
        for m in (full, pm):
            x2, m2 = second_view(x, m.float(), gen)
            for xv, mv in ((x, m.float()), (x2, m2)):
                seen = xv if target == "image" else xv * mv + FILL * (1 - mv)
                cut = teacher.detector.block_output(seen, block)
                t0, t1 = teacher.detector.tail_maps(cut, block)
                y, pyr = latents(model, xv, mv)
                rows[shape].append((y.half(), pyr[3].bool(), t0.half(), t1.half(), cut.half()))
    out = {}
    for s, r in rows.items():
        if r:
            out[s] = Bucket(*(torch.cat([row[i] for row in r]) for i in range(5)))
    return out


def save(buckets: dict[tuple[int, int], Bucket], path: Path) -> None:
    with atomic_output(path) as tmp:  # an interrupted save leaves no partial file under ``path``
        torch.save({f"{h}x{w}": b.__dict__ for (h, w), b in buckets.items()}, tmp)


def load(path: Path) -> dict[tuple[int, int], Bucket]:
    raw = torch.load(path, weights_only=True)
    return {tuple(int(v) for v in k.split("x")): Bucket(**d) for k, d in raw.items()}  # type: ignore[misc]


def _key(p: "Path | str") -> str:
    return str(Path(p).resolve())


@dataclass(frozen=True)
class Shards:
    """A distillation cache in shards: ``<stem>.pt``, ``<stem>.2.pt``, ... each beside a manifest
    ``<shard>.json`` that lists the images it was built from, so a longer image list adds a shard
    instead of rebuilding everything (the images' samples do not depend on one another)."""

    folder: Path
    stem: str

    def path(self, number: int) -> Path:
        """Shard ``number``'s file: ``<stem>.pt`` for 1, ``<stem>.<n>.pt`` for n > 1."""
        return self.folder / (f"{self.stem}.pt" if number == 1 else f"{self.stem}.{number}.pt")

    def _numbered(self) -> dict[int, Path]:
        """Shard number -> file, for the shards present (:meth:`path` read back)."""
        out = {1: self.path(1)} if self.path(1).is_file() else {}
        for f in self.folder.glob(f"{self.stem}.*.pt"):
            number = f.name[len(self.stem) + 1 : -3]
            if number.isdigit():
                out[int(number)] = f
        return out

    def next_number(self) -> int:
        """The number the next shard gets: never one in use, even after a shard was deleted."""
        return max(self._numbered(), default=0) + 1

    def files(self) -> list[Path]:
        return [f for _, f in sorted(self._numbered().items())]

    @staticmethod
    def manifest(shard: Path) -> list[str]:
        m = shard.with_suffix(".json")
        if not m.is_file():
            raise FileNotFoundError(f"{shard} has no manifest {m.name} (it does not say which images it holds): "
                                    f"delete it to rebuild the distillation set")
        return json.loads(m.read_text())["images"]

    def missing(self, paths: list[Path]) -> list[Path]:
        """The images of ``paths`` no shard holds; a shard holding an image not in ``paths`` is refused
        (the run's image list changed under it)."""
        want, have = {_key(p) for p in paths}, set()
        for f in self.files():
            held = {_key(p) for p in self.manifest(f)}
            if held - want:
                raise ValueError(f"{f} holds {len(held - want)} images the run no longer lists (e.g. "
                                 f"{sorted(held - want)[0]}): delete {self.stem}.pt, {self.stem}.<n>.pt and their "
                                 f".json manifests to rebuild")
            have |= held
        return [p for p in paths if _key(p) not in have]

    def add(self, buckets: dict[tuple[int, int], Bucket], paths: list[Path]) -> Path:
        """Write a new shard built from ``paths``, its manifest last (a shard without one is refused)."""
        f = self.path(self.next_number())
        save(buckets, f)
        write_text(f.with_suffix(".json"), json.dumps({"images": [str(p) for p in paths]}, indent=0))
        return f

    def load(self) -> list[Bucket]:
        """Every shard's buckets, in shard order then shape order."""
        return [b for f in self.files() for b in load(f).values()]
