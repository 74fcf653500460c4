"""Learning curve of the training campaign, and RD of trained weights compared at equal training time.

Every weights file (exported safetensors + model card) is coded for real (``encode_image`` with one
group, ``decode_image``) on the Kodak images at the given qualities; its card says how many steps and
CPU seconds made it. ``--append FILE`` adds the points to a learning-curve JSON kept in the
repository (one record per weights hash and quality) and redraws its plot: PSNR and bpp at the fixed
qualities against steps and CPU hours. With two or more weights files and at least four qualities,
the BD-rate of each against the first is reported (the equal-training-time comparison of two
architectures).

    python -m ssc.eval.curve --weights ssc/weights/gi-hyper-ckbd-m.safetensors --images ../shared/data/kodak \
        --qualities 1 3 --append docs/curve/gi-hyper-ckbd-m.json
    python -m ssc.eval.curve --weights runs/a/a.safetensors runs/b/b.safetensors --qualities 0 1 2 3 --limit 8
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ssc.api import read_image
from ssc.masks import GroupMap
from ssc.models.zoo import load_codec

from .bdrate import bd_rate
from ssc.metrics import bpp, psnr
from .rd import ssc_code
from .report import markdown_table, run_meta, save_figure, style_axis, subplots, write_outputs


def measure(weights: str, images: list[Path], qualities: list[float]) -> dict:
    """Mean bpp and PSNR over ``images`` at each quality, plus the card's training record."""
    codec = load_codec(weights)
    tr = codec.card.training
    per_q: dict[str, dict] = {}
    for q in qualities:
        rates, dists = [], []
        for p in tqdm(images, desc=f"{Path(weights).stem} q={q:g}", leave=False):
            x = read_image(p)
            c = ssc_code(codec, x, GroupMap.from_labels(np.zeros(x.shape[:2], np.int32)), q)
            rates.append(bpp(c.nbytes, x.shape[0] * x.shape[1]))
            dists.append(psnr(x, c.decoded))
        per_q[f"{q:g}"] = {"bpp": float(np.mean(rates)), "psnr": float(np.mean(dists))}
    return {"weights": str(weights), "name": codec.card.name, "sha256": codec.card.sha256,
            "config": codec.card.config, "steps": int(tr.get("steps", 0)),
            "cpu_hours": float(tr.get("seconds", 0.0)) / 3600, "hardware": tr.get("hardware", "cpu"),
            "qualities": per_q}


def append_curve(path: Path, records: list[dict], images: int) -> dict:
    """Add ``records`` to the learning-curve file (replacing earlier ones of the same weights)."""
    store = json.loads(path.read_text()) if path.is_file() else {"images": images, "points": []}
    keep = {r["sha256"] for r in records}
    store["points"] = [p for p in store["points"] if p["sha256"] not in keep] + records
    store["points"].sort(key=lambda p: p["steps"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(store, indent=1) + "\n")
    return store


def plot_curve(store: dict, path: Path) -> None:
    pts = store["points"]
    qs = sorted({q for p in pts for q in p["qualities"]}, key=float)
    fig, axes = subplots(1, 3, figsize=(14, 4))
    for q in qs:
        ps = [p for p in pts if q in p["qualities"]]
        axes[0].plot([p["steps"] for p in ps], [p["qualities"][q]["psnr"] for p in ps], "o-", label=f"q={q}", markersize=3)
        axes[1].plot([p["cpu_hours"] for p in ps], [p["qualities"][q]["psnr"] for p in ps], "o-", label=f"q={q}", markersize=3)
        axes[2].plot([p["steps"] for p in ps], [p["qualities"][q]["bpp"] for p in ps], "o-", label=f"q={q}", markersize=3)
    style_axis(axes[0], "training steps", "Kodak PSNR (dB)", "PSNR vs steps")
    style_axis(axes[1], "training hours (2-core CPU; H200 minutes counted as they ran)", "Kodak PSNR (dB)",
               "PSNR vs training hours")
    style_axis(axes[2], "training steps", "Kodak bpp", "bpp vs steps")
    save_figure(fig, path)


def compare(records: list[dict]) -> list[list]:
    """BD-rate (PSNR) of every record against the first, over their common qualities."""
    rows = []
    base = records[0]
    for r in records[1:]:
        qs = sorted(set(base["qualities"]) & set(r["qualities"]), key=float)
        try:
            v = bd_rate([base["qualities"][q]["bpp"] for q in qs], [base["qualities"][q]["psnr"] for q in qs],
                        [r["qualities"][q]["bpp"] for q in qs], [r["qualities"][q]["psnr"] for q in qs])
            rows.append([r["name"], base["name"], f"{v:+.1f}"])
        except ValueError as e:
            rows.append([r["name"], base["name"], f"n/a ({e})"])
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", nargs="+", required=True, help="exported .safetensors files (model card beside)")
    ap.add_argument("--images", default="../shared/data/kodak")
    ap.add_argument("--qualities", type=float, nargs="+", default=[1.0, 3.0])
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--append", default=None, help="learning-curve JSON to add the points to (its plot is redrawn)")
    ap.add_argument("--out", default="out/eval/curve")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in (".png", ".jpg"))[: args.limit]
    records = [measure(w, images, args.qualities) for w in args.weights]
    rows = [[r["name"], r["sha256"][:12], r["steps"], f"{r['cpu_hours']:.2f}"]
            + [f"{r['qualities'][f'{q:g}']['bpp']:.4f} / {r['qualities'][f'{q:g}']['psnr']:.2f}" for q in args.qualities]
            for r in records]
    lines = [f"Kodak ({len(images)} images), one group, real coding", ""]
    lines += markdown_table(["weights", "sha256", "steps", "CPU h"] + [f"q={q:g} bpp / PSNR" for q in args.qualities], rows)
    if len(records) > 1:
        lines += ["", *markdown_table(["test", "anchor", "BD-rate PSNR (%)"], compare(records))]
    write_outputs(args.out, "curve", {"meta": run_meta(images=[p.name for p in images]), "records": records}, lines)
    if args.append:
        store = append_curve(Path(args.append), records, len(images))
        plot_curve(store, Path(args.append).with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
