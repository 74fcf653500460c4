"""Codecs against the BlazePose heads on held-out person groups: a quick check of a pose-tuned campaign
(issue 38; ``ssc/pose_loss.py``) before the full ``ssc eval person`` run.

The samples are the training pipeline's ``person`` kind (:mod:`ssc.data`) drawn from COCO *val* (never
trained on): one annotated person framed as the head reads it, its padded box as the group, the same
samples for every codec. Each codec codes the group through its ``forward`` at each quality (hard
quantisation; the rate is the entropy model's estimate, in bits per pixel of the group). Measured on
the decoded group against the original group, both over mid-grey: PSNR, the pose term of
:class:`ssc.pose_loss.PoseDistortion`, the IoU of the two person masks (logits > 0) and the median
landmark error in the head's 256-px input.

    python -m ssc.eval.pose_codec --models gi-cell-m runs/gi-cell-m-pose/gi-cell-m-pose.safetensors
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .report import markdown_table, run_meta, write_outputs

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def measure(models: list[str], qualities: list[float], batches: int, seed: int, images: Path, ann: Path) -> list[dict]:
    """One row per (model, quality): the means over ``4 * batches`` person samples."""
    from ssc.data import CropSampler, load_samples
    from ssc.models.zoo import load_codec
    from ssc.pose_loss import PoseDistortion, PoseLossOptions

    samples = load_samples([], str(images), str(ann), 512, quiet=True)
    sampler = CropSampler(samples, 256, {"person": 1.0}, seed=seed, num_qualities=1, cells=True)
    batch = [sampler.batch(i, 4) for i in range(batches)]
    pose = PoseDistortion(PoseLossOptions())
    rows = []
    for name in models:
        model = load_codec(name).model.eval()
        for q in qualities:
            acc = []
            for b in tqdm(batch, desc=f"{Path(name).stem} q {q:g}", unit="batch", leave=False):
                with torch.no_grad():
                    res = model(b.x, b.mask, torch.full((len(b.x),), float(q)), hard=True)
                    xh = res.x_hat.clamp(0, 1)
                    mse = ((xh - b.x * b.mask) ** 2).sum((1, 2, 3)) / (3 * res.pixels)
                    _, teacher, student = pose.heads(b.x, xh, b.mask, b.square)
                    term = pose.term(teacher, student)
                    (t, tl), (s, sl) = teacher, student
                    inter = ((t > 0) & (s > 0)).flatten(1).sum(1)
                    union = ((t > 0) | (s > 0)).flatten(1).sum(1).clamp(min=1)
                    lm = (tl[..., :2] - sl[..., :2]).norm(dim=-1).median(1).values
                    bits = res.bpp  # per pixel of the group
                acc.append(np.stack([bits.numpy(), (-10 * torch.log10(mse.clamp(min=1e-10))).numpy(), term.numpy(),
                                     (inter / union).numpy(), lm.numpy()], 1))
            m = np.concatenate(acc).mean(0)
            rows.append({"model": name, "quality": q, "samples": 4 * batches, "bits_per_group_px": float(m[0]),
                         "psnr": float(m[1]), "pose_term": float(m[2]), "mask_iou": float(m[3]),
                         "landmark_px_median": float(m[4])})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ssc.eval.pose_codec", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", required=True, help="zoo names or exported .safetensors (with their cards)")
    ap.add_argument("--qualities", type=float, nargs="+", default=[3.0, 4.0])
    ap.add_argument("--batches", type=int, default=8, help="batches of 4 person samples")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--images", default=str(DATA / "coco" / "val2017"))
    ap.add_argument("--ann", default=str(DATA / "coco" / "annotations" / "instances_val2017_subset158.json"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="out/eval/pose_codec")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = measure(args.models, args.qualities, args.batches, args.seed, Path(args.images), Path(args.ann))
    cols = ["model", "quality", "bits_per_group_px", "psnr", "pose_term", "mask_iou", "landmark_px_median"]
    write_outputs(args.out, "pose_codec", {"rows": rows, "meta": {**run_meta(), **vars(args)}},
                  markdown_table(cols, [[r[c] for c in cols] for r in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
