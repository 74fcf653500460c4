"""Tiled coding of a large image: peak memory, time, rate and PSNR with and without tiles.

The test image is a mosaic of Kodak images (4 x 4 of 768x512 = 3072x2048, 6.3 MP), one group. Each
setting runs in its own process so that its peak resident memory (``ru_maxrss``) is its own; the
table reports the peak above the process's memory after loading the model and the image. Run it
at two mosaic sizes (``--rows 2 --cols 2`` and the default) to see what grows with the image: the
tiled peak holds one tile's activations plus a few bytes per pixel for the image-sized buffers (the
decoded image, the group map, the masks).

    python -m ssc.eval.tiling --images ../shared/data/kodak --tiles 0 1024 512 256
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ssc.defaults import DEFAULT_MODEL

from ssc.metrics import bpp, psnr
from .report import markdown_table, run_meta, save_figure, subplots, write_outputs


def mosaic(images: Path, rows: int, cols: int) -> np.ndarray:
    """rows x cols landscape Kodak images side by side (sorted by name)."""
    from ssc.api import read_image

    tiles = [x for x in (read_image(p) for p in sorted(images.glob("kodim*.png"))) if x.shape[:2] == (512, 768)]
    if len(tiles) < rows * cols:
        raise SystemExit(f"need {rows * cols} landscape Kodak images in {images}, found {len(tiles)}")
    return np.concatenate([np.concatenate(tiles[r * cols : (r + 1) * cols], axis=1) for r in range(rows)], axis=0)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def child(args: argparse.Namespace) -> dict:
    """One setting, in this process: encode + decode the mosaic with tile size ``args.tile``."""
    from ssc.api import decode_image, encode_image
    from ssc.masks import GroupMap
    from ssc.models.zoo import load_codec

    torch.set_num_threads(args.threads)
    codec = load_codec(args.model)
    x = mosaic(Path(args.images), args.rows, args.cols)
    gm = GroupMap.from_labels(np.zeros(x.shape[:2], np.int32))
    base = _peak_mb()
    t0 = time.perf_counter()
    enc = encode_image(x, gm, codec, quality=args.quality, tile=args.tile)
    t_enc = time.perf_counter() - t0
    peak_enc = _peak_mb()
    dec = decode_image(enc.data, codec)
    peak = _peak_mb()  # before the PSNR's float64 copies of both images
    return {"tile": args.tile, "width": x.shape[1], "height": x.shape[0], "bytes": len(enc.data),
            "bpp": bpp(len(enc.data), x.shape[0] * x.shape[1]), "psnr": psnr(x, dec.image),
            "encode_s": t_enc, "decode_s": dec.seconds, "base_mb": base,
            "encode_peak_mb": peak_enc - base, "peak_mb": peak - base}


def plot(rows: list[dict], path: Path) -> None:
    fig, ax = subplots(1, 2, figsize=(10, 4))
    names = [str(r["tile"] or "none") for r in rows]
    ax[0].bar(names, [r["peak_mb"] for r in rows])
    ax[0].set_xlabel("tile size (px)")
    ax[0].set_ylabel("peak memory above baseline (MB)")
    ax[1].bar(names, [r["psnr"] for r in rows])
    ax[1].set_ylim(min(r["psnr"] for r in rows) - 0.5, max(r["psnr"] for r in rows) + 0.2)
    ax[1].set_xlabel("tile size (px)")
    ax[1].set_ylabel("PSNR (dB)")
    fig.suptitle(f"ssc tiled coding, {rows[0]['width']}x{rows[0]['height']} image")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", required=True, help="folder with the Kodak PNGs")
    ap.add_argument("--tiles", type=int, nargs="+", default=[0, 1024, 512, 256])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--quality", type=float, default=2.0)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--cols", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="out/eval/tiling")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tile", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    rows = []
    for t in args.tiles:
        cmd = [sys.executable, "-m", "ssc.eval.tiling", "--child", "--tile", str(t), "--images", args.images,
               "--model", args.model, "--quality", str(args.quality), "--rows", str(args.rows), "--cols", str(args.cols),
               "--threads", str(args.threads)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"tile {t} failed:\n{r.stderr[-2000:]}")
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(f"tile {t or 'none'}: {rows[-1]['peak_mb']:.0f} MB peak, {rows[-1]['psnr']:.2f} dB", flush=True)
    ref = rows[0]
    lines = markdown_table(
        ["tile", "bytes", "bpp", "PSNR dB", "encode s", "decode s", "peak MB (enc)", "peak MB (enc+dec)", "rate vs first"],
        [[r["tile"] or "none", r["bytes"], f"{r['bpp']:.4f}", f"{r['psnr']:.2f}", f"{r['encode_s']:.1f}",
          f"{r['decode_s']:.1f}", f"{r['encode_peak_mb']:.0f}", f"{r['peak_mb']:.0f}", f"{r['bytes'] / ref['bytes']:.3f}"]
         for r in rows])
    out = write_outputs(args.out, "tiling", {"meta": run_meta(model=args.model, quality=args.quality), "rows": rows}, lines)
    plot(rows, out / "tiling.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
