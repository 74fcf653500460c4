"""Training of the group-independent codec: rate + lambda-weighted distortion on the group's own
pixels, one model for several rates (per-sample quality level), soft-then-hard quantisation
(additive noise first, straight-through rounding for the last part of the schedule). Resumable;
checkpoints are safetensors (model and optimizer state), logs are JSON lines."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import yaml
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from .data import CropSampler, load_samples
from .models import create_model
from .models.zoo import ModelCard, export_weights


@dataclass
class TrainConfig:
    name: str
    model: dict
    lambdas: list[float]
    data: dict
    steps: int = 3000
    batch: int = 8
    lr: float = 2e-4
    lr_decay_at: float = 0.85
    hard_from: float = 0.8
    grad_clip: float = 2.0
    seed: int = 0
    threads: int = 0
    ckpt_every: int = 200
    log_every: int = 20
    out_dir: str = "runs"
    extra: dict = field(default_factory=dict)
    kind: str = "codec"  # `ssc train` dispatches on it ("detector": ssc.tasks.train_detector)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        raw = yaml.safe_load(Path(path).read_text())
        return cls(**raw)


def _ckpt_path(cfg: TrainConfig) -> Path:
    return Path(cfg.out_dir) / cfg.name / "checkpoint.safetensors"


def save_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int, elapsed_s: float = 0.0) -> None:
    """Model + optimizer state as safetensors; the step and the training time so far as metadata."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            tensors[f"opt.{i}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"step": str(step), "elapsed_s": f"{elapsed_s:.1f}"})
    tmp.replace(path)


def load_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> tuple[int, float]:
    """Restore model and optimizer; returns (step, training seconds before this run)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        step = int(meta["step"])
        elapsed = float(meta.get("elapsed_s", 0.0))
    t = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
    sd = opt.state_dict()
    state: dict[int, dict] = {}
    for k, v in t.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    sd["state"] = state
    opt.load_state_dict(sd)
    return step, elapsed


def start_run(cfg: TrainConfig) -> tuple[Path, str, torch.nn.Module]:
    """Seed, threads, run folder (with the config), device, and the untrained model of ``cfg``."""
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
    return out, device, model


def resume_from(cfg: TrainConfig, model: torch.nn.Module, opt: torch.optim.Optimizer, resume: bool) -> tuple[int, float]:
    """(step, training seconds so far): from the run's checkpoint when resuming, else (0, 0)."""
    ck = _ckpt_path(cfg)
    if resume and ck.is_file():
        step, before = load_checkpoint(ck, model, opt)
        print(f"resumed from {ck} at step {step}")
        return step, before
    return 0, 0.0


def crop_sampler(cfg: TrainConfig, step: int, default_crop: int) -> CropSampler:
    d = cfg.data
    samples = load_samples(d["photos"], d.get("coco_images"), d.get("coco_ann"), d.get("max_side", 512))
    return CropSampler(samples, d.get("crop", default_crop), d.get("mix", {"full": 1.0}), seed=cfg.seed + step)


def set_lr(cfg: TrainConfig, opt: torch.optim.Optimizer, step: int) -> float:
    """Step schedule: ``lr`` until ``lr_decay_at`` of the steps, a tenth after."""
    lr = cfg.lr * (0.1 if step >= cfg.lr_decay_at * cfg.steps else 1.0)
    for g in opt.param_groups:
        g["lr"] = lr
    return lr


def backprop(opt: torch.optim.Optimizer, loss: torch.Tensor, params, clip: float) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()


def finish_step(cfg: TrainConfig, step: int, model: torch.nn.Module, opt: torch.optim.Optimizer, t0: float, log,
                bar: tqdm, metrics: Callable[[], dict]) -> None:
    """Every ``log_every`` steps a JSON line (and the progress bar) with ``metrics()``; every
    ``ckpt_every`` steps and at the end a checkpoint."""
    if (step + 1) % cfg.log_every == 0:
        rec = {"step": step + 1, **metrics(), "elapsed_s": round(time.time() - t0, 1)}
        log.write(json.dumps(rec) + "\n")
        log.flush()
        bar.set_postfix({k: f"{v:.3f}" for k, v in rec.items() if k not in ("step", "lr", "elapsed_s")})
    if (step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps:
        save_checkpoint(_ckpt_path(cfg), model, opt, step + 1, time.time() - t0)


def train(cfg: TrainConfig, resume: bool = True) -> Path:
    """Run (or resume) training; returns the exported weights path."""
    out, device, model = start_run(cfg)
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step, before = resume_from(cfg, model, opt, resume)
    sampler = crop_sampler(cfg, step, 128)
    lam = torch.tensor(cfg.lambdas, device=device)
    log = open(out / "log.jsonl", "a")
    t0 = time.time() - before  # training time accumulates across resumes
    model.train()
    bar = tqdm(range(step, cfg.steps), initial=step, total=cfg.steps, desc=f"train {cfg.name}")
    for step in bar:
        lr = set_lr(cfg, opt, step)
        x, m = sampler.batch(cfg.batch)
        x, m = x.to(device), m.to(device)
        q = torch.randint(0, model.num_qualities, (cfg.batch,), device=device)
        res = model(x, m, q.float(), hard=step >= cfg.hard_from * cfg.steps)
        mse = ((res.x_hat - x * m) ** 2).sum((1, 2, 3)) / (3 * res.pixels)
        loss = (lam[q] * 255**2 * mse + res.bpp).mean()
        backprop(opt, loss, model.parameters(), cfg.grad_clip)
        finish_step(cfg, step, model, opt, t0, log, bar, lambda: {
            "loss": loss.item(), "bpp": res.bpp.mean().item(),
            "psnr": (-10 * torch.log10(mse.detach().clamp(min=1e-10))).mean().item(), "lr": lr})
    log.close()
    return export(cfg, model, device, time.time() - t0)


def export(cfg: TrainConfig, model: torch.nn.Module, device: str, seconds: float) -> Path:
    """Round to the shipped precision, build the entropy tables from the rounded weights, write
    safetensors + model card into the run directory."""
    model = model.cpu().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    model.update_tables()
    card = ModelCard(
        name=cfg.name,
        architecture=cfg.model["arch"],
        config={k: v for k, v in cfg.model.items() if k != "arch"},
        lambdas=list(cfg.lambdas),
        training={
            "steps": cfg.steps, "batch": cfg.batch, "crop": cfg.data.get("crop", 128), "lr": cfg.lr,
            "data": cfg.data, "device": device, "seconds": round(seconds, 1),
            "command": f"ssc train --config configs/{cfg.name}.yaml",
            **({"kind": cfg.kind, "extra": cfg.extra} if cfg.extra else {}),
        },
    )
    path = Path(cfg.out_dir) / cfg.name / f"{cfg.name}.safetensors"
    export_weights(model, card, path, half=True)
    return path

