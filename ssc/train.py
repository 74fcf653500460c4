"""Training of the group-independent codec: rate + lambda-weighted distortion on the group's own
pixels, one model for several rates (per-sample quality level), soft-then-hard quantisation
(additive noise first, straight-through rounding for the last part of the schedule). Resumable;
checkpoints are safetensors (model and optimizer state), logs are JSON lines. Runs alone or as one
rank of ``torchrun --nproc_per_node N --no-python ssc train ...`` (:mod:`ssc.distributed`)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable

import torch
import yaml
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from .data import CropBatch, CropSampler, load_samples, prefetched
from .distributed import DistContext, barrier, init_distributed, mean_over_ranks, shutdown, wrap
from .models import create_model
from .models.zoo import ModelCard, export_weights
from .pose_loss import PoseDistortion, PoseLossOptions
from .task_loss import DetectorDistortion, TaskLossOptions, level_weights


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
    kind: str = "codec"  # `ssc train` dispatches on it (the trainers: run_config)
    #: "bf16": the codec's analysis/synthesis transforms train under bfloat16 autocast (the entropy
    #: model stays float32); "fp32": everything float32
    precision: str = "fp32"
    #: channels-last activations and weights (faster NHWC convolution kernels on CPU)
    channels_last: bool = False
    #: where a fresh run's weights come from (a zoo name or .safetensors); ignored when resuming
    init_from: str | None = None
    #: threads drawing training batches ahead of the step being trained (0: drawn in the loop)
    prefetch: int = 0
    #: quality levels this model has below those of ``init_from`` (a codec's rate range extended
    #: downwards); their gains start half a level-step below the lowest trained level
    levels_below_init: int = 0
    #: a task distortion beside the pixel one (:class:`ssc.task_loss.TaskLossOptions`): a codec
    #: tuned to the machine that reads it; None trains for pixels alone
    task: dict | None = None
    #: the pose head's distortion on person samples (:class:`ssc.pose_loss.PoseLossOptions`; the data's
    #: ``mix`` needs a ``person`` share): a codec tuned to the masks and keypoints BlazePose reads
    pose: dict | None = None
    #: the distortion of pixels within ``seam_width`` pixels of their group's edge (inside the group,
    #: not at the image's border) counts ``1 + seam_weight`` times: a group is synthesised from its own
    #: cells alone, and its edge is where that costs (issue 35's seams); one-group samples are unchanged
    seam_weight: float = 0.0
    seam_width: int = 8

    @property
    def model_kwargs(self) -> dict:
        """The model's constructor arguments (``model`` without its ``arch``): what a card's config holds."""
        return {k: v for k, v in self.model.items() if k != "arch"}

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        raw = yaml.safe_load(Path(path).read_text())
        return cls(**raw)


def ckpt_path(cfg) -> Path:
    """The run's resumable checkpoint (model and optimizer state)."""
    return Path(cfg.out_dir) / cfg.name / "checkpoint.safetensors"


#: trainers by a config's ``kind``: (config class, function); each module registers its own, and is
#: imported when its kind is first asked for
_TRAINER_MODULES = {"codec": "ssc.train", "omni": "ssc.omni.train", "omni-ssd": "ssc.omni.train_ssd",
                    "detector": "ssc.train_detector"}
_TRAINERS: dict[str, tuple[type, Callable[..., Path]]] = {}


def register_trainer(kind: str, config: type = TrainConfig) -> Callable[[Callable[..., Path]], Callable[..., Path]]:
    """Register ``fn(cfg, resume=..., [minutes=...]) -> weights path`` for configs of ``kind``."""
    def deco(fn: Callable[..., Path]) -> Callable[..., Path]:
        if kind in _TRAINERS:
            raise ValueError(f"trainer {kind!r} registered twice")
        _TRAINERS[kind] = (config, fn)
        return fn

    return deco


def run_config(raw: dict, resume: bool = True, minutes: float | None = None, steps: int | None = None) -> Path:
    """Train what a config mapping describes with the trainer of its ``kind``; returns the weights."""
    import importlib
    import inspect

    kind = raw.get("kind", "codec")
    if kind not in _TRAINER_MODULES:
        raise ValueError(f"unknown training kind {kind!r}; known: {', '.join(sorted(_TRAINER_MODULES))}")
    importlib.import_module(_TRAINER_MODULES[kind])
    config, fn = _TRAINERS[kind]
    cfg = config(**raw)
    if steps:
        cfg.steps = steps
    if minutes is not None and "minutes" not in inspect.signature(fn).parameters:
        raise ValueError(f"the {kind} trainer does not stop after --minutes; stop it with SIGTERM or --steps")
    return fn(cfg, resume=resume, **({} if minutes is None else {"minutes": minutes}))


def save_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int, elapsed_s: float = 0.0) -> None:
    """Model + optimizer state as safetensors; the step and the training time so far as metadata."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            tensors[f"opt.{i}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"step": str(step), "elapsed_s": f"{elapsed_s:.1f}"})
    tmp.replace(path)


def load_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer | None = None) -> tuple[int, float]:
    """Restore the model and (when given) the optimizer; returns (step, training seconds before this run)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        step = int(meta["step"])
        elapsed = float(meta.get("elapsed_s", 0.0))
    t = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
    if opt is None:
        return step, elapsed
    sd = opt.state_dict()
    state: dict[int, dict] = {}
    for k, v in t.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    sd["state"] = state
    opt.load_state_dict(sd)
    return step, elapsed


def open_run(cfg) -> tuple[Path, DistContext]:
    """Process group (under torchrun), seed, threads, and the run folder with the config in it
    (written by rank 0). Shared by every trainer (``cfg``: a TrainConfig or a DetectorConfig)."""
    ctx = init_distributed()
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir) / cfg.name
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.__dict__))
    return out, ctx


def start_run(cfg: TrainConfig) -> tuple[Path, DistContext, torch.nn.Module]:
    """:func:`open_run`, then the untrained model of ``cfg``. Each rank seeds its own noise with
    ``seed + rank``; the weights start equal everywhere (DDP broadcasts rank 0's)."""
    out, ctx = open_run(cfg)
    model = create_model(cfg.model["arch"], **cfg.model_kwargs)
    if len(cfg.lambdas) != model.num_qualities:
        raise ValueError(f"{len(cfg.lambdas)} lambdas for {model.num_qualities} quality levels")
    torch.manual_seed(cfg.seed + ctx.rank)
    barrier(ctx)
    return out, ctx, model


def resume_from(cfg, model: torch.nn.Module, opt: torch.optim.Optimizer, resume: bool,
                ctx: DistContext | None = None) -> tuple[int, float]:
    """(step, training seconds so far): from the run's checkpoint when resuming, else (0, 0). Every
    rank reads the same checkpoint (rank 0 wrote it)."""
    ck = ckpt_path(cfg)
    if resume and ck.is_file():
        step, before = load_checkpoint(ck, model, opt)
        if ctx is None or ctx.is_main:
            print(f"resumed from {ck} at step {step}")
        return step, before
    return 0, 0.0


def seam_weighted_mse(err: torch.Tensor, mask: torch.Tensor, weight: float, width: int) -> torch.Tensor:
    """Per-sample weighted mean of ``err`` (B, 3, H, W) over ``mask`` (B, 1, H, W): pixels of the mask
    within ``width`` pixels of a pixel outside it count ``1 + weight`` times. Beyond the image's border
    is not outside (max pooling pads with -inf), so one-group samples get the plain mean."""
    import torch.nn.functional as F

    near = F.max_pool2d(1 - mask, 2 * width + 1, stride=1, padding=width)
    w = mask * (1 + weight * near)
    return (w * err).sum((1, 2, 3)) / (3 * w.sum((1, 2, 3))).clamp(min=1e-9)


def warm_start(cfg: TrainConfig, model: torch.nn.Module, ctx: DistContext | None = None) -> tuple[int, float]:
    """(step, training seconds) after loading ``cfg.init_from`` (exported weights with a model card)
    into a run that has no checkpoint. When the card is this run's own export (same name), the run
    continues its campaign from the card's step count and time with a fresh optimizer, so a new
    machine resumes from committed weights alone; other weights only initialise the model."""
    from .models.zoo import load_state_checked, load_verified

    card, state, _, wpath = load_verified(cfg.init_from)
    same = card.name == cfg.name
    if not same and cfg.levels_below_init:
        state = extend_levels_below(card, state, cfg.levels_below_init)
        card.config = {**card.config, "num_qualities": card.config["num_qualities"] + cfg.levels_below_init}
    if card.architecture != cfg.model["arch"] or card.config != cfg.model_kwargs:
        raise ValueError(f"init_from {wpath} is a {card.architecture} {card.config}, not this run's model")
    load_state_checked(model, state, f"weights {wpath}", card.architecture)
    step = int(card.training.get("steps", 0)) if same else 0
    seconds = float(card.training.get("seconds", 0.0)) if same else 0.0
    log = wpath.with_name(f"{wpath.stem}.train_log.jsonl")
    run_log = Path(cfg.out_dir) / cfg.name / "log.jsonl"
    if same and log.is_file() and not run_log.exists() and (ctx is None or ctx.is_main):
        run_log.write_text(log.read_text())  # the learning curve continues in the run's log
    if ctx is None or ctx.is_main:
        print(f"initialised from {wpath}" + (f" (continuing at step {step}, {seconds / 3600:.2f} h)" if same else ""))
    return step, seconds


def extend_levels_below(card, state: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """``state`` with ``n`` quality levels added below the lowest: each new row of the per-level
    log-gains continues the lowest level half a level-step further (coarser quantisation)."""
    if card.config.get("num_qualities", 1) < 2:
        raise ValueError(f"levels_below_init needs init weights with >= 2 quality levels ({card.name})")
    out = dict(state)
    for key in ("log_gain", "log_inv_gain"):
        t = state[key].float()
        for _ in range(n):
            t = torch.cat([(t[0] - 0.5 * (t[1] - t[0]))[None], t])
        out[key] = t.to(state[key].dtype)
    return out


class StopRequest:
    """SIGTERM / SIGINT while training: finish the step, checkpoint and export, then return (so a
    background campaign is stopped with one ``kill`` and leaves weights behind). Installed only in
    the main thread; the previous handlers come back on exit."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict = {}

    def __enter__(self) -> "StopRequest":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        self.requested = True

    def __exit__(self, *exc) -> None:
        import signal

        for sig, h in self._old.items():
            signal.signal(sig, h)


def crop_sampler(cfg: TrainConfig, default_crop: int, ctx: DistContext, num_qualities: int) -> CropSampler:
    d = cfg.data
    samples = load_samples(d["photos"], d.get("coco_images"), d.get("coco_ann"), d.get("max_side", 512),
                           quiet=not ctx.is_main)
    return CropSampler(samples, d.get("crop", default_crop), d.get("mix", {"full": 1.0}), seed=cfg.seed,
                       num_qualities=num_qualities, ctx=ctx, cells=bool(d.get("cells", False)))


def set_lr(cfg: TrainConfig, opt: torch.optim.Optimizer, step: int) -> float:
    """Step schedule: ``lr`` until ``lr_decay_at`` of the steps, a tenth after."""
    lr = cfg.lr * (0.1 if step >= cfg.lr_decay_at * cfg.steps else 1.0)
    for g in opt.param_groups:
        g["lr"] = lr
    return lr


def backprop(opt: torch.optim.Optimizer, loss: torch.Tensor, params, clip: float) -> None:
    """Backward (DDP averages the gradients over the ranks here), clip, step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()


@dataclass
class RunLog:
    """Rank 0's JSON-lines log and progress bar; on the other ranks both stay silent."""

    ctx: DistContext
    bar: tqdm
    file: IO[str] | None

    @classmethod
    def open(cls, cfg, ctx: DistContext, step: int) -> "RunLog":
        """The log of run ``cfg`` (appended to) and a bar over its steps from ``step`` on."""
        bar = tqdm(range(step, cfg.steps), initial=step, total=cfg.steps, desc=f"train {cfg.name}", disable=not ctx.is_main)
        return cls(ctx, bar, open(Path(cfg.out_dir) / cfg.name / "log.jsonl", "a") if ctx.is_main else None)

    def close(self) -> None:
        if self.file:
            self.file.close()


def finish_step(cfg, step: int, model: torch.nn.Module, opt: torch.optim.Optimizer, t0: float, log: RunLog,
                metrics: Callable[[], dict], last: bool = False) -> None:
    """Every ``log_every`` steps a JSON line (and the progress bar) with ``metrics()`` averaged over
    the ranks; every ``ckpt_every`` steps and at the end a checkpoint, written by rank 0. ``model``
    is the bare module (not the DDP wrapper), so checkpoints load at any process count."""
    if (step + 1) % cfg.log_every == 0:
        rec = {"step": step + 1, **mean_over_ranks(metrics(), log.ctx), "elapsed_s": round(time.time() - t0, 1)}
        if log.file:
            if log.ctx.enabled:
                rec["processes"] = log.ctx.world_size
            log.file.write(json.dumps(rec) + "\n")
            log.file.flush()
        log.bar.set_postfix({k: f"{v:.3f}" for k, v in rec.items() if k not in ("step", "lr", "elapsed_s", "processes")})
    if ((step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps or last) and log.ctx.is_main:
        save_checkpoint(ckpt_path(cfg), model, opt, step + 1, time.time() - t0)


@register_trainer("codec")
def train(cfg: TrainConfig, resume: bool = True, minutes: float | None = None) -> Path:
    """Run (or resume) training, alone or as one rank of a torchrun job; returns the exported
    weights path (written by rank 0). ``minutes`` (or SIGTERM / SIGINT) ends the run early, after a
    checkpoint and an export at the step reached; the next run resumes from there."""
    out, ctx, model = start_run(cfg)
    model = model.to(ctx.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step, before = resume_from(cfg, model, opt, resume, ctx)
    if step == 0 and cfg.init_from and resume:
        step, before = warm_start(cfg, model, ctx)
    if cfg.precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16, got {cfg.precision!r}")
    model.train_dtype = torch.bfloat16 if cfg.precision == "bf16" else None
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    net = wrap(model, ctx)
    sampler = crop_sampler(cfg, 128, ctx, model.num_qualities)
    per_rank = ctx.local_batch(cfg.batch)
    lam = torch.tensor(cfg.lambdas, device=ctx.device)
    task = TaskLossOptions.from_config(cfg.task)
    task_dist = DetectorDistortion(task, ctx.device) if task else None
    task_w = level_weights(task, model.num_qualities).to(ctx.device) if task else None
    pose = PoseLossOptions.from_config(cfg.pose)
    pose_dist = PoseDistortion(pose, ctx.device) if pose else None
    pose_w = pose.level_weights(model.num_qualities).to(ctx.device) if pose else None
    t0 = time.time() - before  # training time accumulates across resumes
    deadline = time.time() + 60 * minutes if minutes else None
    model.train()
    log = RunLog.open(cfg, ctx, step)
    done = step
    batches = prefetched(sampler, step, cfg.steps, per_rank, cfg.prefetch)
    cuda = str(ctx.device).startswith("cuda")
    with StopRequest() as stop:
        for step in log.bar:
            lr = set_lr(cfg, opt, step)
            b = next(batches)
            if cuda:
                b = CropBatch(b.x.pin_memory(), b.mask.pin_memory(), b.quality.pin_memory(), b.square)
            x = b.x.to(ctx.device, memory_format=fmt, non_blocking=cuda)
            m, q = b.mask.to(ctx.device, non_blocking=cuda), b.quality.to(ctx.device, non_blocking=cuda)
            res = net(x, m, q.float(), hard=step >= cfg.hard_from * cfg.steps)
            err = (res.x_hat - x * m) ** 2
            mse = err.sum((1, 2, 3)) / (3 * res.pixels)
            dist = 255**2 * (mse if cfg.seam_weight <= 0 else seam_weighted_mse(err, m, cfg.seam_weight, cfg.seam_width))
            if task_dist is not None:
                td = task_dist(x * m, res.x_hat.clamp(0, 1))
                dist = task.pixel * dist + task_w[q] * td
            if pose_dist is not None:
                cap = None
                if pose.grad_cap > 0:  # the pixel term's gradient norm per sample, in closed form
                    g_pix = 255**2 * 2 * (res.x_hat - x * m).detach().flatten(1).norm(dim=1) / (3 * res.pixels)
                    cap = pose.grad_cap * pose.pixel * g_pix / pose_w[q]
                pd = pose_dist(x, res.x_hat.clamp(0, 1), m, b.square, cap)
                framed = (b.square[:, 2] > 0).to(ctx.device)
                dist = torch.where(framed, pose.pixel * dist + pose_w[q] * pd, dist)
            loss = (lam[q] * dist + res.bpp).mean()
            backprop(opt, loss, model.parameters(), cfg.grad_clip)
            done = step + 1
            last = stop.requested or (deadline is not None and time.time() >= deadline)
            if ctx.enabled:  # every rank stops at the same step (any rank's request counts)
                last = mean_over_ranks({"stop": float(last)}, ctx)["stop"] > 0
            finish_step(cfg, step, model, opt, t0, log, lambda: {
                "loss": loss.item(), "bpp": res.bpp.mean().item(),
                "psnr": (-10 * torch.log10(mse.detach().clamp(min=1e-10))).mean().item(), "lr": lr,
                **({"task": td.mean().item()} if task_dist is not None else {}),
                **({"pose": pd.sum().item() / max(1, int(framed.sum()))} if pose_dist is not None else {})}, last=last)
            if last:
                break
    batches.close()
    log.close()
    seconds = time.time() - t0
    model.to(memory_format=torch.contiguous_format)
    return finish_run(cfg, ctx, lambda: export(cfg, model, ctx, seconds, done))


def export_checkpoint(cfg: TrainConfig) -> Path:
    """Export the run's latest checkpoint (weights, entropy tables, card) without training: what
    ``make campaign-weights`` commits while the campaign may go on."""
    ck = ckpt_path(cfg)
    if not ck.is_file():
        raise FileNotFoundError(f"no checkpoint to export: {ck}")
    model = create_model(cfg.model["arch"], **cfg.model_kwargs)
    step, seconds = load_checkpoint(ck, model)
    return export(cfg, model, DistContext(), seconds, step)


def finish_run(cfg, ctx: DistContext, write: Callable[[], Path]) -> Path:
    """Rank 0 exports (``write``); every rank waits for it, leaves the process group and gets the
    weights path."""
    path = write() if ctx.is_main else weights_path(cfg)
    shutdown(ctx)
    return path


def weights_path(cfg) -> Path:
    return Path(cfg.out_dir) / cfg.name / f"{cfg.name}.safetensors"


def export(cfg: TrainConfig, model: torch.nn.Module, ctx: DistContext, seconds: float, steps: int | None = None) -> Path:
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
        config=cfg.model_kwargs,
        lambdas=list(cfg.lambdas),
        training={
            "steps": cfg.steps if steps is None else steps, "schedule_steps": cfg.steps,
            "batch": cfg.batch, "crop": cfg.data.get("crop", 128), "lr": cfg.lr,
            "precision": cfg.precision,
            "data": cfg.data, "device": ctx.device_type, "processes": ctx.world_size,
            "seconds": round(seconds, 1), "command": train_command(cfg.name, ctx),
            "hardware": f"{ctx.device_type}, {torch.get_num_threads()} threads" if ctx.device_type == "cpu"
            else torch.cuda.get_device_name(ctx.local_rank),
            **({"kind": cfg.kind, "extra": cfg.extra} if cfg.extra else {}),
            **({"task": cfg.task} if cfg.task else {}),
            **({"pose": cfg.pose} if cfg.pose else {}),
        },
    )
    path = weights_path(cfg)
    export_weights(model, card, path, half=True)
    return path


def train_command(name: str, ctx: DistContext) -> str:
    """The command line that reproduces a run (recorded in the model card)."""
    cmd = f"ssc train --config configs/{name}.yaml"
    return f"torchrun --nproc_per_node {ctx.world_size} --no-python {cmd}" if ctx.enabled else cmd

