"""Training-step speed: seconds per step and training pixels per second of the codec trainer's step
(batch drawn by the sampler, forward, backward, optimizer), for several settings in one run, and for
the code of an earlier git revision (``--baseline-rev``, run from a temporary worktree in a
subprocess) so "before" and "after" are measured on the same machine at the same time.

Stop any background training first (``kill -STOP``): figures taken on a busy CPU are not figures.

    python -m ssc.eval.train_speed --baseline-rev c31e412 --steps 20
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

#: (label, model config, crop, batch, precision, channels_last); "shipped" is the configuration the
#: 82-minute weights were trained with.
SETTINGS = [
    ("shipped N64/M96 Swin d2, 128x8, fp32", {"N": 64, "M": 96, "depth": 2}, 128, 8, "fp32", False),
    ("shipped model, 256x4, bf16 + channels-last", {"N": 64, "M": 96, "depth": 2}, 256, 4, "bf16", True),
    ("campaign N128/M160 no Swin, 256x4, bf16 + channels-last", {"N": 128, "M": 160, "depth": 0}, 256, 4, "bf16", True),
    ("campaign model, 256x4, fp32", {"N": 128, "M": 160, "depth": 0}, 256, 4, "fp32", False),
]

# The step measured, as a standalone program: it must run against old revisions of ssc too, so it
# uses only APIs they have (create_model, load_samples, CropSampler) and sets bf16 only if supported.
STEP_PROGRAM = r'''
import json, sys, time
import numpy as np, torch
from ssc.data import CropSampler, load_samples
from ssc.models import create_model
a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
torch.manual_seed(0)
model = create_model("gi-hyper-ckbd", Nz=64, heads=4, window=8, num_qualities=4, **a["model"])
if a["precision"] == "bf16":
    if not hasattr(model, "train_dtype"):
        print(json.dumps({"unsupported": True})); sys.exit(0)
    model.train_dtype = torch.bfloat16
fmt = torch.channels_last if a["channels_last"] else torch.contiguous_format
model.to(memory_format=fmt).train()
samples = load_samples(a["photos"], a.get("coco_images"), a.get("coco_ann"), 512, quiet=True)
sampler = CropSampler(samples, a["crop"], a["mix"], seed=0, num_qualities=4)
opt = torch.optim.Adam(model.parameters(), lr=1e-4)
lam = torch.tensor([0.0018, 0.0067, 0.025, 0.0932])
times = []
for step in range(a["warmup"] + a["steps"]):
    t0 = time.perf_counter()
    b = sampler.batch(step, a["batch"])
    x = b.x.contiguous(memory_format=fmt)
    res = model(x, b.mask, b.quality.float())
    mse = ((res.x_hat - x * b.mask) ** 2).sum((1, 2, 3)) / (3 * res.pixels)
    loss = (lam[b.quality] * 255**2 * mse + res.bpp).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
    opt.step()
    if step >= a["warmup"]:
        times.append(time.perf_counter() - t0)
print(json.dumps({"s_per_step": float(np.median(times)), "s_min": float(min(times))}))
'''


def run_setting(cwd: Path, setting: tuple, args: argparse.Namespace) -> dict:
    label, model, crop, batch, precision, cl = setting
    a = {"model": model, "crop": crop, "batch": batch, "precision": precision, "channels_last": cl,
         "threads": args.threads, "steps": args.steps, "warmup": args.warmup, "photos": args.photos,
         "coco_images": args.coco_images, "coco_ann": args.coco_ann,
         "mix": {"full": 0.25, "blob": 0.2, "polygon": 0.15, "coco": 0.4}}
    prog = f"import ssc; print('ssc from', ssc.__file__, file=__import__('sys').stderr)\n{STEP_PROGRAM}"
    p = subprocess.run([sys.executable, "-c", prog, json.dumps(a)], cwd=cwd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{label} at {cwd}: {p.stderr[-2000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    if out.get("unsupported"):
        return {"label": label, "unsupported": True}
    px = crop * crop * batch
    return {"label": label, "crop": crop, "batch": batch, "precision": precision, "channels_last": cl, **model,
            "s_per_step": out["s_per_step"], "kpixels_per_s": px / out["s_per_step"] / 1e3}


def main(argv: list[str] | None = None) -> int:
    from .report import markdown_table, run_meta, write_outputs

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline-rev", default=None, help="git revision measured as 'before' (shipped setting)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--photos", nargs="+", default=["../shared/data/train_photos", "../shared/data/pypi_wheel_images"])
    ap.add_argument("--coco-images", default="../shared/data/coco/train2017")
    ap.add_argument("--coco-ann", default="../shared/data/coco/annotations/instances_train2017_subset160.json")
    ap.add_argument("--out", default="out/eval/train_speed")
    args = ap.parse_args(argv)
    args.photos = [str(Path(p).resolve()) for p in args.photos]
    args.coco_images, args.coco_ann = str(Path(args.coco_images).resolve()), str(Path(args.coco_ann).resolve())
    rows = []
    if args.baseline_rev:
        site = baseline_site(args.baseline_rev)
        try:
            rows.append({**run_setting(site, SETTINGS[0], args), "code": args.baseline_rev})
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(site.parent / "src")], capture_output=True)
    for s in SETTINGS:
        rows.append({**run_setting(Path.cwd(), s, args), "code": "this revision"})
    base = rows[0]["kpixels_per_s"]
    for r in rows:
        if "kpixels_per_s" in r:
            r["vs_first"] = r["kpixels_per_s"] / base
    table = [[r["code"], r["label"], r.get("s_per_step"), r.get("kpixels_per_s"), r.get("vs_first")] for r in rows]
    lines = markdown_table(["code", "setting", "s/step", "training kpixels/s", "vs first row"], table)
    write_outputs(args.out, "train_speed", {"meta": run_meta(threads=args.threads, steps=args.steps), "rows": rows}, lines)
    return 0


def baseline_site(rev: str) -> Path:
    """An importable copy of revision ``rev``: a git worktree plus a folder in which ``ssc`` is the
    worktree's package with masks/tasks/eval placed as pyproject maps them (ssc.masks, ...)."""
    d = Path(tempfile.mkdtemp(prefix="ssc-baseline-"))
    src = d / "src"
    subprocess.run(["git", "worktree", "add", "--detach", str(src), rev], check=True, capture_output=True)
    site = d / "site"
    (site / "ssc").mkdir(parents=True)
    for item in (src / "ssc").iterdir():
        (site / "ssc" / item.name).symlink_to(item)
    for sub in ("masks", "tasks", "eval"):
        (site / "ssc" / sub).symlink_to(src / sub)
    return site


if __name__ == "__main__":
    raise SystemExit(main())
