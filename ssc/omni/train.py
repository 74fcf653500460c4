"""Training of the Omni-ICM feature codec (``kind: omni``): rate + lambda * feature distillation to the
reference detector's backbone + a self-supervised InfoNCE term between two views, on the same crops
and random group masks as the pixel codec (Feng et al., ECCV 2022, inside ssc's group coding).

The teacher sees the group's pixels with everything else mid-grey (what the pixel path's partial
decode shows the detector), at the crop's own scale. Starting weights come from a trained pixel
codec (``extra.init_from``); ``extra.freeze`` lists modules kept fixed (the analysis transform on CPU
budgets). Resumable, JSON-lines log, safetensors checkpoints, as :mod:`ssc.train`."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from tqdm import tqdm

from ..errors import WeightsError
from ..models.layers import support_pyramid
from ..train import TrainConfig, _ckpt_path, backprop, crop_sampler, export, finish_step, resume_from, set_lr, start_run
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


def load_teacher(name: str, device: str):
    """The detector whose backbone the feature head learns to emulate, frozen (its
    :meth:`backbone_features` gives the targets)."""
    from ssc.tasks import build_head

    head = build_head("torchvision", name, device=device)
    head.model.requires_grad_(False)
    return head


def distill_loss(student: dict, teacher: dict) -> torch.Tensor:
    """Per-sample MSE of each pyramid level, normalised by the teacher's energy, averaged over levels."""
    per = [((student[k] - teacher[k]) ** 2).mean((1, 2, 3)) / (teacher[k] ** 2).mean((1, 2, 3)).clamp(min=1e-6)
           for k in teacher]
    return torch.stack(per).mean(0)


def train_omni(cfg: TrainConfig, resume: bool = True) -> Path:
    """Run (or resume) Omni training; returns the exported weights path."""
    ex = cfg.extra
    out, device, model = start_run(cfg)
    ck_exists = resume and _ckpt_path(cfg).is_file()
    if not ck_exists and ex.get("init_from"):
        init_from_codec(model, ex["init_from"])
    model = model.to(device)
    for name in ex.get("freeze", []):
        getattr(model, name).requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    step, before = resume_from(cfg, model, opt, resume)
    teacher = load_teacher(model.teacher, device)
    sampler = crop_sampler(cfg, step, 192)
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
        lr = set_lr(cfg, opt, step)
        x, m = sampler.batch(cfg.batch)
        x2, m2 = second_view(x, m, gen)
        xs, ms = torch.cat([x, x2]).to(device), torch.cat([m, m2]).to(device)
        q = torch.randint(0, model.num_qualities, (cfg.batch,), device=device).repeat(2)
        feats, bits, px = model.forward_features(xs * ms, ms, q.float(), hard=step >= cfg.hard_from * cfg.steps)
        with torch.no_grad():
            target = teacher.backbone_features(xs * ms + 0.5 * (1 - ms))
        dist = distill_loss(feats, target)
        sup = support_pyramid(ms, 4)[4]
        emb = model.embed(feats, sup)
        ssl = info_nce(emb[: cfg.batch], emb[cfg.batch :], tau)
        bpp = bits / px.clamp(min=1)
        loss = (bpp + lam[q] * dist).mean() + ssl_w * ssl
        backprop(opt, loss, params, cfg.grad_clip)
        finish_step(cfg, step, model, opt, t0, log, bar, lambda: {
            "loss": loss.item(), "bpp": bpp.mean().item(), "distill": dist.mean().item(), "ssl": ssl.item(), "lr": lr})
    log.close()
    return export(cfg, model, device, time.time() - t0)
