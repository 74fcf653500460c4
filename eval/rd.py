"""Rate-distortion benchmark: ssc against JPEG / WebP / AVIF (Pillow) measured in the same run,
with BD-rate tables. Two parts:

* ``kodak``: full images as one group (ssc-1group) against the anchors.
* ``coco``: COCO val images with annotation masks, ssc with one group per instance against ssc with
  one group: the rate cost of group independence.

    python -m ssc.eval.rd --part kodak --images ../shared/data/kodak --limit 24
    python -m ssc.eval.rd --part coco --images ../shared/data/coco/val2017 \
        --ann ../shared/data/coco/annotations/instances_val2017_subset158.json --limit 10
"""
from __future__ import annotations

import argparse
import io
import json
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, features
from tqdm import tqdm

from ssc.api import decode_image, encode_image, read_image
from ssc.masks import GroupMap, apply_policy, from_coco
from ssc.models.zoo import load_codec

from .bdrate import bd_rate
from .metrics import bpp, psnr

ANCHOR_QUALITIES = {"jpeg": [5, 10, 20, 30, 45, 60, 75, 90], "webp": [2, 8, 20, 35, 50, 70, 85, 95],
                    "avif": [10, 25, 40, 55, 70, 85]}
SSC_QUALITIES = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]


@dataclass
class Point:
    codec: str
    image: str
    setting: float
    bpp: float
    psnr: float


def anchor_point(name: str, x: np.ndarray, q: int) -> tuple[float, float]:
    buf = io.BytesIO()
    fmt = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}[name]
    Image.fromarray(x).save(buf, fmt, quality=q)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        y = np.asarray(im.convert("RGB"))
    return bpp(len(buf.getvalue()), x.shape[0] * x.shape[1]), psnr(x, y)


def ssc_point(codec, x: np.ndarray, gm: GroupMap, q: float) -> tuple[float, float]:
    enc = encode_image(x, gm, codec, quality=q)
    dec = decode_image(enc.data, codec)
    return bpp(len(enc.data), x.shape[0] * x.shape[1]), psnr(x, dec.image)


def average_curve(points: list[Point], codec: str) -> tuple[list[float], list[float]]:
    """Per setting, mean bpp and mean PSNR over images (the usual way RD curves are averaged)."""
    settings = sorted({p.setting for p in points if p.codec == codec})
    r = [float(np.mean([p.bpp for p in points if p.codec == codec and p.setting == s])) for s in settings]
    d = [float(np.mean([p.psnr for p in points if p.codec == codec and p.setting == s])) for s in settings]
    return r, d


def plot(curves: dict[str, tuple[list[float], list[float]]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, (r, d) in curves.items():
        ax.plot(r, d, "o-", label=name, markersize=3)
    ax.set_xlabel("bpp")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    codec = load_codec(args.model)
    paths = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in (".png", ".jpg"))
    if args.part == "coco":
        names = {r["file_name"] for r in json.loads(Path(args.ann).read_text())["images"]}
        paths = [p for p in paths if p.name in names]
    paths = paths[: args.limit]
    anchors = [a for a in args.anchors if a != "avif" or features.check("avif")]
    points: list[Point] = []
    for p in tqdm(paths, desc=f"rd {args.part}"):
        x = read_image(p)
        one = GroupMap.from_labels(np.zeros(x.shape[:2], np.int32))
        for q in SSC_QUALITIES:
            points.append(Point("ssc-1group", p.name, q, *ssc_point(codec, x, one, q)))
        if args.part == "coco":
            gm = apply_policy(from_coco(args.ann, p), "instance", min_area=args.min_area)
            for q in SSC_QUALITIES:
                points.append(Point("ssc-groups", p.name, q, *ssc_point(codec, x, gm, q)))
        else:
            for a in anchors:
                for q in ANCHOR_QUALITIES[a]:
                    points.append(Point(a, p.name, q, *anchor_point(a, x, q)))
    codecs = sorted({p.codec for p in points})
    curves = {c: average_curve(points, c) for c in codecs}
    ref = "ssc-groups" if args.part == "coco" else "ssc-1group"
    bd = {}
    for c in codecs:
        if c == ref:
            continue
        try:
            bd[f"{ref} vs {c}"] = bd_rate(*curves[c], *curves[ref])
        except ValueError as e:
            bd[f"{ref} vs {c}"] = f"n/a ({e})"
    return {"meta": {"part": args.part, "model": args.model, "images": [p.name for p in paths], "threads": args.threads,
                     "machine": platform.machine(), "torch": torch.__version__},
            "curves": curves, "bd_rate_percent": bd, "points": [asdict(p) for p in points]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["kodak", "coco"], default="kodak")
    ap.add_argument("--images", required=True)
    ap.add_argument("--ann", default=None)
    ap.add_argument("--model", default="gi-hyper-ckbd-s")
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--min-area", type=int, default=256)
    ap.add_argument("--anchors", nargs="+", default=["jpeg", "webp", "avif"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="out/eval/rd")
    args = ap.parse_args(argv)
    if args.part == "coco" and not args.ann:
        ap.error("--part coco needs --ann")
    res = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rd_{args.part}.json").write_text(json.dumps(res, indent=1))
    lines = ["| codec | points (bpp, PSNR dB) |", "|---|---|"]
    for c, (r, d) in res["curves"].items():
        lines.append(f"| {c} | " + ", ".join(f"({a:.3f}, {b:.2f})" for a, b in zip(r, d)) + " |")
    lines += ["", "| BD-rate | % |", "|---|---|"]
    lines += [f"| {k} | {v:+.1f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in res["bd_rate_percent"].items()]
    (out / f"rd_{args.part}.md").write_text("\n".join(lines) + "\n")
    plot(res["curves"], f"RD on {args.part} ({len(res['meta']['images'])} images)", out / f"rd_{args.part}.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
