"""`ssc demo` / `make demo`: encode a real COCO val2017 image with its annotation masks, decode one
object alone and then every group, print bytes and PSNR per group and write the PNGs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .api import decode_image, encode_image, read_image
from .errors import SSCError
from .metrics import bpp, psnr
from .masks import apply_policy, from_coco
from .models.zoo import load_codec
from .outputs import save_image, write_bytes

DATA = Path(os.environ.get("SSC_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "coco"
DEMO_IMAGE = "000000000139.jpg"
DEMO_ANN = "annotations/instances_val2017_subset158.json"


def _colorize(labels: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(7)
    lut = rng.integers(40, 255, size=(int(labels.max()) + 1, 3), dtype=np.uint8)
    lut[0] = 0
    return lut[labels]


def run_demo(image: str | None, ann: str | None, out_dir: Path, model: str, quality: float, device: str = "cpu") -> dict:
    img_path = Path(image) if image else DATA / "val2017" / DEMO_IMAGE
    ann_path = Path(ann) if ann else DATA / DEMO_ANN
    if not img_path.is_file() or not ann_path.is_file():
        raise SSCError(f"demo data not found ({img_path}, {ann_path}); pass --image and --ann")
    out_dir.mkdir(parents=True, exist_ok=True)
    codec = load_codec(model, device=device)
    x = read_image(img_path)
    gm = apply_policy(from_coco(ann_path, img_path), "instance", min_area=256)
    enc = encode_image(x, gm, codec, quality=quality)
    stream = out_dir / (img_path.stem + ".ssc")
    write_bytes(stream, enc.data)
    objects = [g for g in gm.groups if g.group_id != 0]
    pick = max(objects, key=lambda g: g.area) if objects else gm.groups[0]
    one = decode_image(enc.data, codec, groups=[pick.group_id])
    full = decode_image(enc.data, codec)
    save_image(out_dir / "original.png", x)
    save_image(out_dir / "groups.png", _colorize(gm.labels))
    save_image(out_dir / f"group{pick.group_id}_{pick.label.replace(' ', '_')}.png", one.image)
    save_image(out_dir / "all_groups.png", full.image)
    people = [g.group_id for g in gm.groups if g.class_id == 1]  # COCO person
    only = decode_image(enc.data, codec, groups=people or [pick.group_id], fill=128)
    save_image(out_dir / "figure.png", np.concatenate([x, _colorize(gm.labels), only.image], 1))
    h, w = x.shape[:2]
    rows = []
    print(f"\n{img_path.name}: {w}x{h}, model {codec.card.name}, quality {quality}, "
          f"{len(enc.data)} bytes = {bpp(len(enc.data), h * w):.3f} bpp, encode {enc.seconds:.2f} s")
    print(f"header: {enc.header.masks_offset} bytes, group masks: {enc.header.masks_length} bytes")
    print(f"{'id':>3} {'class':<16} {'area':>7} {'bytes':>7} {'bpp(group)':>10} {'PSNR dB':>8}")
    for g in enc.header.groups:
        m = gm.labels == g.group_id
        p = psnr(x, full.image, m)
        rows.append({"id": g.group_id, "label": g.label, "area": g.area, "bytes": g.seg_length, "psnr": p})
        print(f"{g.group_id:>3} {g.label[:16]:<16} {g.area:>7} {g.seg_length:>7} {bpp(g.seg_length, g.area):>10.3f} {p:>8.2f}")
    print(f"all groups: PSNR {psnr(x, full.image):.2f} dB, decode {full.seconds:.2f} s, read {full.bytes_read} bytes")
    region = one.group_map == pick.group_id  # what its segment codes: its cells
    same = np.array_equal(one.image[region], full.image[region])
    print(f"group {pick.group_id} ({pick.label}) alone: read {one.bytes_read} of {len(enc.data)} bytes "
          f"({100 * one.bytes_read / len(enc.data):.1f}%), area {100 * pick.area / (h * w):.1f}% of the image, "
          f"decode {one.seconds:.2f} s, identical to full decode: {same}")
    print(f"wrote {stream} and PNGs to {out_dir}/")
    return {"rows": rows, "bytes": len(enc.data), "partial_bytes": one.bytes_read, "identical": same}
