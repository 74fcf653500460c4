"""Training of the Omni-ICM feature codec (``kind: omni``): rate + lambda * feature distillation to the
reference detector's backbone + a self-supervised InfoNCE term between two views, on the same crops
and random group masks as the pixel codec (Feng et al., ECCV 2022, inside ssc's group coding).

The teacher sees the group's pixels with everything else mid-grey (what the pixel path's partial
decode shows the detector), at the crop's own scale. Starting weights come from a trained pixel
codec (``extra.init_from``); ``extra.freeze`` lists modules kept fixed (the analysis transform on CPU
budgets). Resumable, JSON-lines log, safetensors checkpoints, as :mod:`ssc.train`."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from ..data import CropSampler, load_samples
from ..errors import WeightsError
from ..models import create_model
from ..models.layers import support_pyramid
from ..train import TrainConfig, _ckpt_path, export, load_checkpoint, save_checkpoint
from .ssl import info_nce, second_view

NEW_MODULES = ("filter.", "feature_head.", "projector.")


def init_from_codec(model: torch.nn.Module, name: str) -> None:
    """Copy a trained pixel codec's weights; only the Omni modules may be missing."""
    from ..models.zoo import load_codec

    src = load_codec(name).model.state_dict()
    missing, unexpected = model.load_state_dict(src, strict=False)
    bad = [k for k in missing if not k.startswith(NEW_MODULES)] + list(unexpected)
    if bad:
        raise WeightsError(f"{name} does not fit {type(model).__name__}: {bad[:5]}")


def load_teacher(name: str, device: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The detector backbone the feature head learns to emulate, frozen; with its normalisation."""
    from ssc.tasks import build_head

    det = build_head("torchvision", name).model
    t = det.transform
    mean = torch.tensor(t.image_mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(t.image_std, device=device).view(1, 3, 1, 1)
    backbone = det.backbone.to(device).eval().requires_grad_(False)
    return backbone, mean, std


def distill_loss(student: dict, teacher: dict) -> torch.Tensor:
    """Per-sample MSE of each pyramid level, normalised by the teacher's energy, averaged over levels."""
    per = [((student[k] - teacher[k]) ** 2).mean((1, 2, 3)) / (teacher[k] ** 2).mean((1, 2, 3)).clamp(min=1e-6)
           for k in teacher]
    return torch.stack(per).mean(0)


def train_omni(cfg: TrainConfig, resume: bool = True) -> Path:
    """Run (or resume) Omni training; returns the exported weights path."""
    ex = cfg.extra
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir) / cfg.name
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.__dict__))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = create_model(cfg.model["arch"], **{k: v for k, v in cfg.model.items() if k != "arch"})
    if len(cfg.lambdas) != model.num_qualities:
        raise ValueError(f"{len(cfg.lambdas)} lambdas for {model.num_qualities} quality levels")
    step, before = 0, 0.0
    ck = _ckpt_path(cfg)
    if not (resume and ck.is_file()) and ex.get("init_from"):
        init_from_codec(model, ex["init_from"])
    model = model.to(device)
    for name in ex.get("freeze", []):
        getattr(model, name).requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    if resume and ck.is_file():
        step, before = load_checkpoint(ck, model, opt)
        print(f"resumed from {ck} at step {step}")
    teacher, mean, std = load_teacher(model.teacher, device)
    d = cfg.data
    samples = load_samples(d["photos"], d.get("coco_images"), d.get("coco_ann"), d.get("max_side", 512))
    sampler = CropSampler(samples, d.get("crop", 192), d.get("mix", {"full": 1.0}), seed=cfg.seed + step)
    gen = torch.Generator().manual_seed(cfg.seed + 7919 * step)
    lam = torch.tensor(cfg.lambdas, device=device)
    ssl_w, tau = float(ex.get("ssl_weight", 0.1)), float(ex.get("temperature", 0.2))
    log = open(out / "log.jsonl", "a")
    t0 = time.time() - before
    model.train()
    for name in ex.get("freeze", []):
        getattr(model, name).eval()
    bar = tqdm(range(step, cfg.steps), initial=step, total=cfg.steps, desc=f"train {cfg.name}")
    for step in bar:
        lr = cfg.lr * (0.1 if step >= cfg.lr_decay_at * cfg.steps else 1.0)
        for g in opt.param_groups:
            g["lr"] = lr
        x, m = sampler.batch(cfg.batch)
        x2, m2 = second_view(x, m, gen)
        xs, ms = torch.cat([x, x2]).to(device), torch.cat([m, m2]).to(device)
        q = torch.randint(0, model.num_qualities, (cfg.batch,), device=device).repeat(2)
        feats, bits, px = model.forward_features(xs * ms, ms, q.float(), hard=step >= cfg.hard_from * cfg.steps)
        with torch.no_grad():
            target = teacher(((xs * ms + 0.5 * (1 - ms)) - mean) / std)
        dist = distill_loss(feats, target)
        sup = support_pyramid(ms, 4)[4]
        emb = model.embed(feats, sup)
        ssl = info_nce(emb[: cfg.batch], emb[cfg.batch :], tau)
        bpp = bits / px.clamp(min=1)
        loss = (bpp + lam[q] * dist).mean() + ssl_w * ssl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        if (step + 1) % cfg.log_every == 0:
            rec = {"step": step + 1, "loss": loss.item(), "bpp": bpp.mean().item(), "distill": dist.mean().item(),
                   "ssl": ssl.item(), "lr": lr, "elapsed_s": round(time.time() - t0, 1)}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            bar.set_postfix(bpp=f"{rec['bpp']:.3f}", distill=f"{rec['distill']:.3f}", ssl=f"{rec['ssl']:.2f}")
        if (step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps:
            save_checkpoint(ck, model, opt, step + 1, time.time() - t0)
    log.close()
    return export(cfg, model, device, time.time() - t0)
