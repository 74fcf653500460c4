"""Speed benchmark: encode / decode time of a 768x512 image (Kodak) on CPU and, when one is present,
on the GPU; and the checkerboard context (He et al., CVPR 2021) against serial raster-order context
decoding on the same model (:mod:`ssc.models.serial`). Targets of issue 3: decode <= 1 s on CPU
(2 threads), <= 30 ms on the GPU, checkerboard >= 10x faster than serial.

    python -m ssc.eval.speed --image ../shared/data/kodak/kodim01.png --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from ssc.defaults import DEFAULT_MODEL
from ssc.api import decode_image, encode_image, read_image
from ssc.masks import GroupMap
from ssc.models.serial import SerialContextCoder
from ssc.models.zoo import load_codec

from .report import markdown_table, run_meta, save_figure, subplots, write_outputs


@dataclass
class Timing:
    device: str
    what: str
    ms_median: float
    ms_min: float
    repeats: int


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_it(fn: Callable[[], object], device: str, repeats: int, warmup: int = 1) -> tuple[float, float, object]:
    """(median ms, min ms, last result) over ``repeats`` runs after ``warmup`` runs."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times), min(times), out


def bench_device(device: str, image: np.ndarray, model: str, quality: float, repeats: int, serial_repeats: int) -> list[Timing]:
    codec = load_codec(model, device=device)
    gm = GroupMap.from_labels(np.zeros(image.shape[:2], np.int32))
    out: list[Timing] = []

    def add(what: str, fn: Callable[[], object], n: int = repeats) -> object:
        med, mn, res = time_it(fn, device, n)
        out.append(Timing(device, what, med, mn, n))
        return res

    with torch.no_grad():
        enc = add("encode (end to end)", lambda: encode_image(image, gm, codec, quality=quality))
        dec = add("decode (end to end)", lambda: decode_image(enc.data, codec, device=device))
        if dec.failed:
            raise RuntimeError(f"decode failed: {dec.failed}")
        h, w = image.shape[:2]
        x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float().div(255).to(device)
        x = x[..., : h - h % 64, : w - w % 64]
        mask = torch.ones(1, 1, *x.shape[-2:], device=device)
        m = codec.model
        body, y_hat = m.compress_latents(x, mask, quality)
        add("latents, checkerboard decode", lambda: m.decompress_latents(body, mask))
        add("synthesis", lambda: m.synthesize(y_hat, mask, quality))
        serial = SerialContextCoder(m)
        sbody, sy = serial.compress_latents(x, mask, quality)
        sy2 = add("latents, serial decode", lambda: serial.decompress_latents(sbody, mask), serial_repeats)
        if not torch.equal(sy, sy2):
            raise RuntimeError("serial context decode does not reproduce the encoder's latents")
    return out


def plot(timings: list[Timing], path) -> None:
    fig, ax = subplots(figsize=(7, 4))
    labels = [f"{t.what}\n[{t.device}]" for t in timings]
    ax.barh(labels, [t.ms_median for t in timings])
    ax.set_xscale("log")
    ax.set_xlabel("ms (median)")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(alpha=0.3, axis="x")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", default="../shared/data/kodak/kodim01.png")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--quality", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--serial-repeats", type=int, default=2)
    ap.add_argument("--out", default="out/eval/speed")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    image = read_image(args.image)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    timings = [t for d in devices for t in bench_device(d, image, args.model, args.quality, args.repeats, args.serial_repeats)]
    median = {(t.device, t.what): t.ms_median for t in timings}
    ratio = {d: median[d, "latents, serial decode"] / median[d, "latents, checkerboard decode"] for d in devices}
    targets = {
        "cpu decode <= 1000 ms": median["cpu", "decode (end to end)"] <= 1000,
        "gpu decode <= 30 ms": median["cuda", "decode (end to end)"] <= 30 if "cuda" in devices else None,
        "checkerboard >= 10x serial": {d: r >= 10 for d, r in ratio.items()},
    }
    h, w = image.shape[:2]
    lines = [f"image {args.image} ({w}x{h}), model {args.model}, quality {args.quality}, {args.threads} CPU threads", ""]
    lines += markdown_table(["device", "what", "median ms", "min ms", "runs"],
                            [[t.device, t.what, t.ms_median, t.ms_min, t.repeats] for t in timings])
    lines += ["", *markdown_table(["device", "serial / checkerboard latent decode"], [[d, r] for d, r in ratio.items()])]
    lines += ["", *markdown_table(["target", "met"], [[k, v] for k, v in targets.items()])]
    data = {"meta": run_meta(image=args.image, width=w, height=h, model=args.model, quality=args.quality),
            "timings": [asdict(t) for t in timings], "serial_over_checkerboard": ratio, "targets": targets}
    out = write_outputs(args.out, "speed", data, lines)
    plot(timings, out / "speed.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
