"""Partial-decode benchmark on COCO val with annotation masks.

For every object group: bytes read and decode time for that object alone, as fractions of the whole
stream / a full decode, against the object's area fraction a (targets: bytes <= a + 0.05,
time <= a + 0.15). Also per-group PSNR and the shares of the header (group table) and of the group
masks in the stream. Writes JSON, a markdown
table and a matplotlib plot.

    python -m ssc.eval.partial_decode --images ../shared/data/coco/val2017 \
        --ann ../shared/data/coco/annotations/instances_val2017_subset158.json --limit 20
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ssc.defaults import DEFAULT_MODEL
from ssc.api import decode_image, encode_image, read_image
from ssc.masks import apply_policy, from_coco
from ssc.models.zoo import load_codec

from ssc.metrics import bpp, psnr
from .report import markdown_table, run_meta, save_figure, style_axis, subplots, write_outputs


@dataclass
class ObjectRecord:
    image: str
    group_id: int
    label: str
    area_frac: float
    bytes_frac: float
    time_frac: float
    psnr: float


@dataclass
class ImageRecord:
    image: str
    pixels: int
    groups: int
    bytes: int
    header_bytes: int  # preamble + group table
    mask_bytes: int  # all mask records
    bpp: float
    psnr: float
    encode_s: float
    decode_s: float


def run_image(path: Path, ann: Path, codec, quality: float, min_area: int) -> tuple[ImageRecord, list[ObjectRecord]]:
    x = read_image(path)
    gm = apply_policy(from_coco(ann, path), "instance", min_area=min_area)
    enc = encode_image(x, gm, codec, quality=quality)
    full = decode_image(enc.data, codec)
    px = x.shape[0] * x.shape[1]
    img = ImageRecord(path.name, px, len(gm.groups), len(enc.data), enc.header.masks_offset,
                      enc.header.masks_length, bpp(len(enc.data), px), psnr(x, full.image), enc.seconds, full.seconds)
    objs = []
    for g in gm.groups:
        if g.group_id == 0:
            continue
        t0 = time.perf_counter()
        one = decode_image(enc.data, codec, groups=[g.group_id])
        dt = time.perf_counter() - t0
        m = gm.labels == g.group_id
        objs.append(ObjectRecord(path.name, g.group_id, g.label, g.area / px, one.bytes_read / len(enc.data),
                                 dt / full.seconds, psnr(x, one.image, m)))
    return img, objs


def summarize(images: list[ImageRecord], objs: list[ObjectRecord]) -> dict:
    ok_b = [o.bytes_frac <= o.area_frac + 0.05 for o in objs]
    ok_t = [o.time_frac <= o.area_frac + 0.15 for o in objs]
    return {
        "images": len(images),
        "objects": len(objs),
        "mean_bpp": statistics.mean(i.bpp for i in images),
        "mean_psnr": statistics.mean(i.psnr for i in images),
        "header_share": statistics.mean(i.header_bytes / i.bytes for i in images),
        "mask_share": statistics.mean(i.mask_bytes / i.bytes for i in images),
        "mean_area_frac": statistics.mean(o.area_frac for o in objs),
        "mean_bytes_frac": statistics.mean(o.bytes_frac for o in objs),
        "median_bytes_excess": statistics.median(o.bytes_frac - o.area_frac for o in objs),
        "mean_time_frac": statistics.mean(o.time_frac for o in objs),
        "median_time_excess": statistics.median(o.time_frac - o.area_frac for o in objs),
        "bytes_target_met": sum(ok_b) / len(objs),
        "time_target_met": sum(ok_t) / len(objs),
        "mean_encode_s": statistics.mean(i.encode_s for i in images),
        "mean_decode_s": statistics.mean(i.decode_s for i in images),
    }


def plot(objs: list[ObjectRecord], path: Path) -> None:
    a = np.array([o.area_frac for o in objs])
    fig, ax = subplots(1, 2, figsize=(10, 4.2))
    for axis, key, slack, name in ((ax[0], "bytes_frac", 0.05, "bytes read"), (ax[1], "time_frac", 0.15, "decode time")):
        v = np.array([getattr(o, key) for o in objs])
        axis.scatter(a, v, s=10, alpha=0.6)
        xs = np.linspace(0, max(1e-3, a.max()), 50)
        axis.plot(xs, xs + slack, "r--", label=f"target a + {slack}")
        style_axis(axis, "object area fraction a", f"{name}, fraction of full", legend_size=None)
    fig.suptitle("ssc partial decode: one object vs whole image (COCO val)")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--ann", required=True)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--quality", type=float, default=2.0)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--min-area", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="out/eval/partial_decode")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    codec = load_codec(args.model)
    ann = Path(args.ann)
    names = {r["file_name"] for r in json.loads(ann.read_text())["images"]}
    paths = sorted(p for p in Path(args.images).glob("*.jpg") if p.name in names)[: args.limit]
    images, objs = [], []
    for p in tqdm(paths, desc="partial decode"):
        i, o = run_image(p, ann, codec, args.quality, args.min_area)
        images.append(i)
        objs.extend(o)
    summary = summarize(images, objs)
    meta = run_meta(model=args.model, quality=args.quality)
    data = {"meta": meta, "summary": summary, "images": [asdict(i) for i in images], "objects": [asdict(o) for o in objs]}
    lines = markdown_table(["metric", "value"], [[k, v] for k, v in summary.items()])
    out = write_outputs(args.out, "results", data, lines)
    plot(objs, out / "partial_decode.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
