"""Training of ssc's reference detector: torchvision Mask R-CNN from scratch on the COCO train subset
in ../shared/data (never COCO val), with scale jitter, flips and Copy-Paste augmentation (Ghiasi et
al., "Simple Copy-Paste is a Strong Data Augmentation Method for Instance Segmentation", CVPR 2021).
Resumable, safetensors checkpoints, JSON-lines log, exported fp16 with a model card; runs under
torchrun (DDP) like the codec trainer.

    ssc train --config configs/det-ref.yaml
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ssc.distributed import DistContext, ShardedStream, wrap
from ssc.models.zoo import ModelCard, export_weights
from ssc.train import (RunLog, backprop, finish_run, finish_step, open_run, register_trainer, resume_from,
                       train_command, weights_path)

from ssc.tasks.torchvision_backend import NUM_LABEL_SLOTS, build_maskrcnn, categories_from_coco


@dataclass
class DetectorConfig:
    name: str
    arch: str
    data: dict
    kind: str = "detector"
    min_size: int = 384
    max_size: int = 640
    steps: int = 2000
    batch: int = 4
    lr: float = 2e-4
    weight_decay: float = 1e-4
    lr_decay_at: float = 0.8
    copy_paste: float = 0.5
    scale_jitter: tuple[float, float] = (0.5, 1.5)
    seed: int = 0
    threads: int = 0
    ckpt_every: int = 100
    log_every: int = 10
    out_dir: str = "runs"
    notes: str = ""
    extra: dict = field(default_factory=dict)


@dataclass
class Annotated:
    image: np.ndarray  # (H, W, 3) uint8
    masks: np.ndarray  # (N, H, W) bool
    labels: np.ndarray  # (N,) COCO category ids


def load_coco_train(images: str | Path, ann: str | Path, max_side: int, quiet: bool = False) -> list[Annotated]:
    """Every annotated, non-crowd instance of the subset, images downscaled to ``max_side``."""
    from pycocotools.coco import COCO
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ann))
    out = []
    for img_id in tqdm(sorted(coco.getImgIds()), desc="loading detector data", disable=quiet):
        rec = coco.loadImgs(img_id)[0]
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=False)) if a["area"] > 16]
        if not anns:
            continue
        with Image.open(Path(images) / rec["file_name"]) as im:
            img = im.convert("RGB")
        masks = np.stack([coco.annToMask(a).astype(bool) for a in anns])
        sc = min(1.0, max_side / max(img.size))
        if sc < 1:
            size = (round(img.width * sc), round(img.height * sc))
            img = img.resize(size, Image.BICUBIC)
            masks = np.stack([np.asarray(Image.fromarray(m).resize(size, Image.NEAREST)) for m in masks])
        out.append(Annotated(np.asarray(img), masks, np.array([a["category_id"] for a in anns], np.int64)))
    return out


class CopyPasteSampler:
    """Random scale jitter + flip of one image, then (with probability ``p``) the instances of another
    jittered image pasted on top; occluded parts are removed from the masks underneath. Images come
    from this rank's share of the data (:class:`ssc.distributed.ShardedStream`); the randomness of a
    sample is seeded by its position in the single-process stream."""

    def __init__(self, data: list[Annotated], p: float, jitter: tuple[float, float], seed: int,
                 ctx: DistContext | None = None) -> None:
        self.data, self.p, self.jitter, self.seed = data, p, jitter, seed
        self.stream = ShardedStream(len(data), ctx or DistContext(), seed)

    def _jittered(self, a: Annotated, rng: np.random.Generator) -> Annotated:
        s = float(rng.uniform(*self.jitter))
        h, w = a.image.shape[:2]
        size = (max(32, round(w * s)), max(32, round(h * s)))
        img = np.asarray(Image.fromarray(a.image).resize(size, Image.BILINEAR))
        masks = np.stack([np.asarray(Image.fromarray(m).resize(size, Image.NEAREST)) for m in a.masks])
        if rng.random() < 0.5:
            img, masks = img[:, ::-1], masks[:, :, ::-1]
        return Annotated(np.ascontiguousarray(img), np.ascontiguousarray(masks), a.labels)

    def draw(self, index: int, key: int) -> Annotated:
        rng = np.random.default_rng([self.seed, key])
        a = self._jittered(self.data[index], rng)
        if rng.random() < self.p:
            b = self._jittered(self.data[int(rng.integers(len(self.data)))], rng)
            h, w = a.image.shape[:2]
            bh, bw = min(h, b.image.shape[0]), min(w, b.image.shape[1])
            oy, ox = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
            pick = rng.random(len(b.labels)) < 0.5
            if pick.any():
                src = np.zeros((int(pick.sum()), h, w), bool)
                src[:, oy : oy + bh, ox : ox + bw] = b.masks[pick, :bh, :bw]
                paste = src.any(0)
                img = a.image.copy()
                img[paste] = np.roll(np.roll(np.pad(b.image[:bh, :bw], ((0, h - bh), (0, w - bw), (0, 0))), oy, 0), ox, 1)[paste]
                masks = a.masks & ~paste
                masks = np.concatenate([masks, src])
                labels = np.concatenate([a.labels, b.labels[pick]])
                a = Annotated(img, masks, labels)
        keep = a.masks.reshape(len(a.masks), -1).sum(1) >= 16
        return Annotated(a.image, a.masks[keep], a.labels[keep])

    def batch(self, step: int, n: int) -> list[Annotated]:
        """This rank's ``n`` samples of training step ``step``."""
        return [self.draw(i, k) for i, k in self.stream.take(step, n)]


def to_target(a: Annotated, device: str) -> tuple[torch.Tensor, dict]:
    m = torch.from_numpy(a.masks)
    ys, xs = m.any(2), m.any(1)
    boxes = []
    for i in range(len(m)):
        y = torch.nonzero(ys[i]).squeeze(1)
        x = torch.nonzero(xs[i]).squeeze(1)
        boxes.append([float(x[0]), float(y[0]), float(x[-1]) + 1, float(y[-1]) + 1])
    img = torch.from_numpy(np.array(a.image)).permute(2, 0, 1).float().div(255).to(device)
    tgt = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4).to(device),
           "labels": torch.from_numpy(a.labels).to(device), "masks": m.to(torch.uint8).to(device)}
    return img, tgt


@register_trainer("detector", DetectorConfig)
def train_detector(cfg: DetectorConfig, resume: bool = True) -> Path:
    """Run (or resume) detector training, alone or as one rank of a torchrun job (DDP); returns the
    exported weights path (written by rank 0)."""
    _, ctx = open_run(cfg)
    model = build_maskrcnn(cfg.arch, NUM_LABEL_SLOTS, cfg.min_size, cfg.max_size).to(ctx.device)
    torch.manual_seed(cfg.seed + ctx.rank)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, before = resume_from(cfg, model, opt, resume, ctx)
    net = wrap(model, ctx, find_unused=True)  # an image whose instances were all cut away leaves the mask head idle
    data = load_coco_train(cfg.data["images"], cfg.data["ann"], cfg.max_size, quiet=not ctx.is_main)
    sampler = CopyPasteSampler(data, cfg.copy_paste, tuple(cfg.scale_jitter), cfg.seed, ctx)
    per_rank = ctx.local_batch(cfg.batch)
    t0 = time.time() - before  # training time accumulates across resumes
    model.train()
    log = RunLog.open(cfg, ctx, step)
    for step in log.bar:
        lr = cfg.lr * (0.1 if step >= cfg.lr_decay_at * cfg.steps else 1.0) * min(1.0, (step + 1) / 100)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = [to_target(a, ctx.device) for a in sampler.batch(step, per_rank)]
        losses = net([b[0] for b in batch], [b[1] for b in batch])
        loss = sum(losses.values())
        backprop(opt, loss, model.parameters(), 10.0)
        finish_step(cfg, step, model, opt, t0, log, lambda: {
            "loss": loss.item(), **{k: v.item() for k, v in losses.items()}, "lr": lr})
    log.close()
    seconds = time.time() - t0
    return finish_run(cfg, ctx, lambda: export_detector(cfg, model, ctx, seconds))


def export_detector(cfg: DetectorConfig, model: torch.nn.Module, ctx: DistContext, seconds: float) -> Path:
    """fp16 safetensors with its model card, in the run folder."""
    model.cpu().eval()
    card = ModelCard(
        name=cfg.name, architecture=cfg.arch,
        config={"num_classes": NUM_LABEL_SLOTS, "min_size": cfg.min_size, "max_size": cfg.max_size,
                "categories": categories_from_coco(cfg.data["ann"])},
        training={"steps": cfg.steps, "batch": cfg.batch, "lr": cfg.lr, "copy_paste": cfg.copy_paste, "data": cfg.data,
                  "device": ctx.device_type, "processes": ctx.world_size, "seconds": round(seconds, 1),
                  "command": train_command(cfg.name, ctx)},
        notes=cfg.notes,
    )
    path = weights_path(cfg)
    export_weights(model, card, path, half=True)
    return path
