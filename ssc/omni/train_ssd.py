"""Training of the Omni-ICM feature codec for the SSDLite person detector (``kind: omni-ssd``; Feng et
al., ECCV 2022): feature distillation on the output of the detector block the head writes (block 5,
:mod:`.synth_head`) and, through its frozen later blocks, on the two
backbone maps its box predictors read + output distillation through its frozen
extra layers and box predictors + an InfoNCE term between two views, on whole images
(:mod:`.distill_set`), at every quality level of the codec.

On the 2-core CPU budget the codec stays frozen and has no information filter (``info_filter:
false``): its quantised latents are cached once, a step costs only the feature head (about 1.3 s
for 8 pairs instead of about 4 s with the entropy model in the graph), and the coded latents are the
pixel codec's own, so the rate is the codec's. Resumable, JSON-lines log, safetensors checkpoints
and export, as the pixel codec's campaign (:mod:`ssc.train`).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..task_loss import binary_kl, focus_weights
from ..train import (RunLog, StopRequest, TrainConfig, backprop, ckpt_path, export, finish_run, finish_step,
                     register_trainer, resume_from, set_lr, start_run, warm_start)
from .options import OmniOptions
from . import distill_set
from .ssl import info_nce
from .train import distill_loss, init_from_codec, load_teacher_head

TRAINED = ("feature_head", "projector")
#: images per shard of a new distillation set (about 2.8 GB at 448x640; building one holds it twice)
SHARD_IMAGES = 320


def grow_from(model: torch.nn.Module, name: str) -> list[str]:
    """Start the trained modules from a trained feature codec whose head has fewer trunk blocks
    (``extra.init_head``): every tensor it has is copied (same name and shape, or a
    :class:`WeightsError`); the blocks it lacks keep their zero-initialised residual, so the grown head
    starts as the trained one's function. Returns the names of the tensors it did not have."""
    from ..errors import WeightsError
    from ..models.zoo import load_verified

    _, state, _, wpath = load_verified(name)
    prefixes = tuple(f"{m}." for m in TRAINED)
    own = {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)}
    theirs = {k: v for k, v in state.items() if k.startswith(prefixes)}
    bad = [k for k, v in theirs.items() if k not in own or v.shape != own[k].shape]
    new = [k for k in own if k not in theirs]
    bad += [k for k in new if not k.startswith("feature_head.trunk.")]
    if bad:
        raise WeightsError(f"{wpath} does not fit this head (only trunk blocks can be added): {bad[:5]}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in theirs.items()}, strict=False)
    print(f"feature head from {wpath}; new tensors: {len(new)}")
    return new


def anchor_kl(logits: torch.Tensor, pt: torch.Tensor, focus: float = 0.0) -> torch.Tensor:
    """(B,) binary KL(teacher || student) of per-anchor person probabilities (``logits`` the
    student's, ``pt`` the teacher's, both (B, A)), averaged over anchors. ``focus``
    (``extra.kd_focus``) > 0 weighs an anchor by ``1 + focus * p``, ``p`` the larger of the two
    probabilities, normalised to the weights' mean: of the detector's 3,000 anchors a handful hold a
    person, and a plain mean lets the easy background ones set the term. 0 is the plain mean."""
    kl = binary_kl(logits, pt)
    if focus > 0:
        w = focus_weights(logits, pt, focus)
        kl = kl * (w / w.mean(1, keepdim=True))
    return kl.mean(1)


def output_distill(net, student: dict, teacher: dict, focus: float = 0.0) -> torch.Tensor:
    """Per-sample distillation of the detector's outputs: KL between the teacher's and the student's
    per-anchor person probabilities (:func:`anchor_kl`, ``focus`` as there), plus the box encodings'
    smooth-L1 weighted by the teacher's person probability (only anchors the teacher believes in
    teach boxes)."""

    def heads(f):
        return net.predict_heads(net.with_extras([f["0"], f["1"]]))

    with torch.no_grad():
        t_enc, t_log = heads(teacher)
        pt = torch.sigmoid(t_log[..., 1])
    s_enc, s_log = heads(student)
    kl = anchor_kl(s_log[..., 1], pt, focus)
    box = (F.smooth_l1_loss(s_enc, t_enc, reduction="none").sum(-1) * pt).sum(1) / pt.sum(1).clamp(min=1)
    return kl * 100 + box


def sample(buckets: "list[distill_set.Bucket]", step: int, batch: int, seed: int) -> dict[str, torch.Tensor]:
    """``batch`` pairs of one bucket (one shape of one shard, chosen in proportion to the pairs it
    has), seeded by the step."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    sizes = torch.tensor([len(b) // 2 for b in buckets], dtype=torch.float)
    b = buckets[int(torch.multinomial(sizes, 1, generator=g))]
    idx = torch.randint(0, len(b) // 2, (batch,), generator=g)
    q = torch.randint(0, b.y.shape[1], (batch,), generator=g)
    return {**b.pairs(idx, q), "quality": q}


def distill_set_for(cfg: TrainConfig, out: Path, model, teacher) -> "list[distill_set.Bucket]":
    """The run's cached distillation set for the block its head writes (``extra.photos``: how many
    training photos join the COCO train subset; ``extra.distill_target``:
    :data:`.distill_set.TARGETS`, what the teacher sees of a partial mask's view). Images the cache
    does not hold yet (a first run, or more photos) are built first, into shards of at most
    :data:`SHARD_IMAGES`."""
    block = model.feature_head.block
    opts = OmniOptions.from_extra(cfg.extra)
    target = opts.distill_target
    shards = distill_set.Shards(out, f"distill_set_b{block}" if target == "decoded" else f"distill_set_b{block}_{target}")
    paths = distill_set.training_images(cfg.data, opts.photos, cfg.seed)
    missing = shards.missing(paths)
    for i in range(0, len(missing), SHARD_IMAGES):  # shard by shard: building holds one shard twice
        part = missing[i : i + SHARD_IMAGES]
        seed = cfg.seed + shards.next_number() - 1  # each shard draws its own crops and views
        shards.add(distill_set.build(part, model, teacher, seed, block, target=target), part)
    return shards.load()


def near_weight(support: torch.Tensor, floor: float, reach: int) -> torch.Tensor:
    """(B, 1, n, n) spatial weight of the distillation terms: 1 within ``reach`` cells of the decoded
    support, ``floor`` elsewhere. A persons-only view's whole-image targets far from the persons ask
    for what was not decoded; at full weight they are noise the head cannot fit (``extra.near_floor``,
    ``extra.near_reach``; a floor of 1 weighs every cell alike)."""
    near = F.max_pool2d(support, 2 * reach + 1, stride=1, padding=reach)
    return floor + (1 - floor) * near


def student_maps(model, b: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(the head's block output, the trunk features the SSL term embeds, their support) of a batch."""
    head = model.feature_head
    feat, sup = head.features(head.level0(b["y"], b["support8"]), *(16 * n for n in b["y"].shape[-2:]))
    return head.out(feat), feat, (sup > 0.5).float()


@register_trainer("omni-ssd")
def train_omni_ssd(cfg: TrainConfig, resume: bool = True, minutes: float | None = None) -> Path:
    """Run (or resume) the feature codec's training; returns the exported weights path."""
    ex = OmniOptions.from_extra(cfg.extra)
    floor, reach, focus = ex.near_floor, ex.near_reach, ex.kd_focus
    out, ctx, model = start_run(cfg)
    fresh = not (resume and ckpt_path(cfg).is_file())
    warm = fresh and resume and bool(cfg.init_from)  # a new machine: continue from committed weights
    if fresh and not warm:
        init_from_codec(model, ex.init_from)
        if ex.init_head:
            grow_from(model, ex.init_head)
    # parts copied from the codec stay as trained, unless listed in extra.tune
    frozen, tune = set(getattr(model.feature_head, "frozen", ())), set(ex.tune)
    if tune - frozen:
        raise ValueError(f"extra.tune: {sorted(tune - frozen)} are not frozen parts of the head "
                         f"({', '.join(sorted(frozen)) or 'it has none'})")
    model.requires_grad_(False).eval()
    params = []
    for name in TRAINED:
        mod = getattr(model, name)
        mod.requires_grad_(True).train()
        for sub in set(getattr(mod, "frozen", ())) - tune:
            getattr(mod, sub).requires_grad_(False).eval()
        params += [p for p in mod.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    step, before = resume_from(cfg, model, opt, resume, ctx)
    if warm:
        step, before = warm_start(cfg, model, ctx)
    teacher = load_teacher_head(model)
    # a plan already done (a fresh machine at the committed step count) needs no distillation set
    buckets = distill_set_for(cfg, out, model, teacher) if step < cfg.steps else []
    done = step
    net = teacher.detector.net
    block = model.feature_head.block
    ssl_w, tau, kd_w = ex.ssl_weight, ex.temperature, ex.kd_weight
    # extra weight on the head's own map: through the detector's later blocks alone, the head finds maps
    # that score well downstream without resembling the block's output (and detect badly)
    cut_w = ex.cut_weight
    t0 = time.time() - before
    deadline = None if minutes is None else time.time() + 60 * minutes
    log = RunLog.open(cfg, ctx, step)
    with StopRequest() as stop:
        for step in log.bar:
            lr = set_lr(cfg, opt, step)
            b = sample(buckets, step, cfg.batch, cfg.seed)
            cut, hid, sup = student_maps(model, b)
            feats = dict(zip("01", net.tail_maps(cut, block + 1)))
            target = {"0": b["map0"], "1": b["map1"]}
            w = None if floor == 1.0 else near_weight(sup, floor, reach)
            dist = distill_loss({"cut": cut, **feats}, {"cut": b["cut"], **target}, w)
            kd = output_distill(net, feats, target, focus)
            emb = model.embed_map(hid, sup)
            ssl = info_nce(emb[: cfg.batch], emb[cfg.batch :], tau)
            cut_err = distill_loss({"cut": cut}, {"cut": b["cut"]}, w)
            loss = (dist + cut_w * cut_err + kd_w * kd).mean() + ssl_w * ssl
            backprop(opt, loss, params, cfg.grad_clip)
            done = step + 1
            last = stop.requested or (deadline is not None and time.time() > deadline)
            finish_step(cfg, step, model, opt, t0, log, lambda: {
                "loss": loss.item(), "distill": dist.mean().item(), "cut": cut_err.mean().item(), "kd": kd.mean().item(),
                "ssl": ssl.item(),
                "lr": lr}, last=last)
            if last:
                break
    log.close()
    return finish_run(cfg, ctx, lambda: export(cfg, model, ctx, time.time() - t0, done))
