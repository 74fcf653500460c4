"""Training of the Omni-ICM feature codec (``kind: omni``): rate + lambda * feature distillation to the
reference detector's backbone + a self-supervised InfoNCE term between two views, on the same crops
and random group masks as the pixel codec (Feng et al., ECCV 2022, inside ssc's group coding).

The teacher sees the group's pixels with everything else mid-grey (what the pixel path's partial
decode shows the detector), at the crop's own scale. Starting weights come from a trained pixel
codec (``extra.init_from``); ``extra.freeze`` lists modules kept fixed (the analysis transform on CPU
budgets). Resumable, JSON-lines log, safetensors checkpoints, torchrun/DDP, as :mod:`ssc.train`."""
from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import WeightsError
from ..models.layers import support_pyramid
from ..distributed import wrap
from ..train import (RunLog, TrainConfig, backprop, ckpt_path, crop_sampler, export, finish_run, finish_step,
                     register_trainer, resume_from, set_lr, start_run)
from .options import OmniOptions
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
    head = getattr(model, "feature_head", None)
    if hasattr(head, "seed_from"):  # a head built from the codec's synthesis transform
        head.seed_from(model.g_s)


def load_teacher_head(model: torch.nn.Module, device: str = "cpu"):
    """The frozen detector a feature codec learns to feed (``model.teacher_backend`` /
    ``model.teacher``): its :meth:`backbone_features` give the targets."""
    from ssc.tasks import WEIGHTS_BACKEND, build_head

    head = build_head(getattr(model, "teacher_backend", WEIGHTS_BACKEND), model.teacher, device=device)
    for m in (getattr(head, "model", None), getattr(getattr(head, "detector", None), "net", None)):
        if m is not None:
            m.requires_grad_(False)
    return head


def distill_loss(student: dict, teacher: dict, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample MSE of each pyramid level, normalised by the teacher's energy, averaged over levels.
    ``weight`` (B, 1, h, w), optional: a spatial weight of both, max-pooled to each level's grid."""
    per = []
    for k in teacher:
        err, energy = (student[k] - teacher[k]) ** 2, teacher[k] ** 2
        if weight is not None:
            w = weight if weight.shape[-2:] == err.shape[-2:] else F.adaptive_max_pool2d(weight, err.shape[-2:])
            err, energy = err * w, energy * w
        per.append(err.mean((1, 2, 3)) / energy.mean((1, 2, 3)).clamp(min=1e-6))
    return torch.stack(per).mean(0)


class OmniStep(torch.nn.Module):
    """The student's differentiable pass (features, rate, SSL embedding) as one ``forward``, so
    DistributedDataParallel sees every parameter the step uses."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, m: torch.Tensor, q: torch.Tensor, hard: bool):
        feats, bits, px = self.model.forward_features(x * m, m, q, hard=hard)
        emb = self.model.embed(feats, support_pyramid(m, 4)[4])
        return feats, bits, px, emb


@register_trainer("omni")
def train_omni(cfg: TrainConfig, resume: bool = True) -> Path:
    """Run (or resume) Omni training, alone or as one rank of a torchrun job; returns the exported
    weights path (written by rank 0)."""
    ex = OmniOptions.from_extra(cfg.extra)
    out, ctx, model = start_run(cfg)
    ck_exists = resume and ckpt_path(cfg).is_file()
    if not ck_exists and ex.init_from:
        init_from_codec(model, ex.init_from)
    model = model.to(ctx.device)
    for name in ex.freeze:
        getattr(model, name).requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    step, before = resume_from(cfg, model, opt, resume, ctx)
    net = wrap(OmniStep(model), ctx)
    teacher = load_teacher_head(model, ctx.device)
    sampler = crop_sampler(cfg, 192, ctx, model.num_qualities)
    per_rank = ctx.local_batch(cfg.batch)
    lam = torch.tensor(cfg.lambdas, device=ctx.device)
    ssl_w, tau = ex.ssl_weight, ex.temperature
    t0 = time.time() - before
    model.train()
    for name in ex.freeze:
        getattr(model, name).eval()
    log = RunLog.open(cfg, ctx, step)
    for step in log.bar:
        lr = set_lr(cfg, opt, step)
        b = sampler.batch(step, per_rank)
        # second views: seeded by (seed, step, rank), so a resumed run repeats them
        gen = torch.Generator().manual_seed(cfg.seed + 7919 * step + 104729 * ctx.rank)
        x2, m2 = second_view(b.x, b.mask, gen)
        xs, ms = torch.cat([b.x, x2]).to(ctx.device), torch.cat([b.mask, m2]).to(ctx.device)
        q = b.quality.to(ctx.device).repeat(2)
        feats, bits, px, emb = net(xs, ms, q.float(), step >= cfg.hard_from * cfg.steps)
        with torch.no_grad():
            target = teacher.backbone_features(xs * ms + 0.5 * (1 - ms))
        dist = distill_loss(feats, target)
        ssl = info_nce(emb[:per_rank], emb[per_rank:], tau)
        bpp = bits / px.clamp(min=1)
        loss = (bpp + lam[q] * dist).mean() + ssl_w * ssl
        backprop(opt, loss, params, cfg.grad_clip)
        finish_step(cfg, step, model, opt, t0, log, lambda: {
            "loss": loss.item(), "bpp": bpp.mean().item(), "distill": dist.mean().item(), "ssl": ssl.item(), "lr": lr})
    log.close()
    seconds = time.time() - t0
    return finish_run(cfg, ctx, lambda: export(cfg, model, ctx, seconds))
