"""Rate-distortion benchmark: ssc against anchors measured in the same run (PSNR and MS-SSIM vs
bpp), with BD-rate tables (Bjontegaard, :mod:`ssc.eval.bdrate`). Two parts:

* ``kodak``: ssc with one group, ssc with groups (unsupervised k-means regions, Kodak has no
  annotations), JPEG / WebP / AVIF (Pillow), x265 intra (ffmpeg) and the scale-hyperprior peer
  trained on the same data (``eval/weights``).
* ``coco``: COCO val images with annotation masks, ssc with one group per instance against ssc with
  one group: the rate cost of group independence with COCO-style masks, with cell-owned groups (the
  default) and with pixel-exact groups (``ssc-groups-pixel``, the version-2 layout), both written as
  bitstream v4;
  where the bytes go (table, masks, framing, segments), and what a one-object decode reads against
  the object's share of the image (``partial``) and against its information share: the share of a
  one-group code's bits that falls in the object's cells (the entropy model's estimate), what a
  coder with no overhead would read for it.

``--ref-model NAME`` adds the one-group curve of another model (``ref-1group``, at
``--ref-qualities``) and its BD-rate against this run's: a retrained model against the one it replaces.

``--refine STEPS`` adds the same ssc curves encoded with the encoder-side latent refinement
(:mod:`ssc.models.refine`), BD-rate against the plain encoder and the anchors of the same run;
``--ssc-qualities`` thins the ssc points (the refinement costs about a minute per Kodak image and point).

    python -m ssc.eval.rd --part kodak --images ../shared/data/kodak --limit 24
    python -m ssc.eval.rd --part coco --images ../shared/data/coco/val2017 \
        --ann ../shared/data/coco/annotations/instances_val2017_subset158.json --limit 10
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from ssc.defaults import DEFAULT_MODEL
from ssc.api import decode_image, encode_image, read_image
from ssc.bitstream import StreamReader
from ssc.bitstream.format import mask_crc_size, segment_overhead
from ssc.crop import codec_device, tile_input
from ssc.masks import GroupMap, apply_policy, from_coco, kmeans_groups
from ssc.masks.cells import cell_owners
from ssc.models.codec import ALIGN
from ssc.models.refine import Refinement
from ssc.models.zoo import LoadedCodec, load_codec

from .anchors import (
    PEER_DIR,
    Coded,
    load_peers,
    peer_code,
    pillow_available,
    pillow_code,
    require_ffmpeg,
    x265_intra_code,
)
from .bdrate import bd_rate
from ssc.metrics import bpp, ms_ssim, psnr
from .report import markdown_table, run_meta, save_figure, style_axis, subplots, write_outputs

ANCHOR_SETTINGS = {"jpeg": [5, 10, 20, 30, 45, 60, 75, 90], "webp": [2, 8, 20, 35, 50, 70, 85, 95],
                   "avif": [10, 25, 40, 55, 70, 85], "x265": [51, 47, 43, 39, 35, 31, 27]}
SSC_QUALITIES = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]


@dataclass
class Point:
    codec: str
    image: str
    setting: float
    bpp: float
    psnr: float
    ms_ssim_db: float  # -10 log10(1 - MS-SSIM)
    seconds: float = 0.0  # encode + decode
    parts: dict | None = None  # ssc: bytes of the stream's table, masks, framing and segment bodies


def msssim_db(a: np.ndarray, b: np.ndarray) -> float:
    v = ms_ssim(a, b)
    return math.inf if v >= 1 else -10 * math.log10(1 - v)


@dataclass
class SSCCoded(Coded):
    """An ssc encode: also the stream's byte breakdown and its one-object decodes."""

    parts: dict | None = None
    partial: list[dict] | None = None


def stream_parts(data: bytes) -> dict[str, int]:
    """Where a stream's bytes go: the table (preamble + header), the mask records (less their CRCs),
    the framing (segment prefixes and CRCs, mask CRCs) and the segment bodies."""
    h = StreamReader(data).header
    n_masks = sum(not g.is_complement for g in h.groups)
    seg, crc = segment_overhead(h.version), mask_crc_size(h.version)
    framing = len(h.groups) * seg + n_masks * crc
    return {"table": h.masks_offset, "masks": h.masks_length - n_masks * crc, "framing": framing,
            "segments": h.payload_length - len(h.groups) * seg}


def one_object_reads(data: bytes, gm: GroupMap) -> list[dict]:
    """For every object group (class > 0): the share of the stream a decode of that group alone reads
    (header, its mask record, its segment; the complement reads every record), the object's share
    of the image's pixels and its decoded region's (its cells, in a cell-owned stream). Nothing is
    entropy-decoded."""
    out = []
    total = gm.labels.size
    for g in gm.groups:
        if g.class_id > 0:
            with StreamReader(data) as rd:
                if g.group_id not in rd.header.group_ids:
                    continue
                rd.group_mask(g.group_id)
                rd.read_segment(g.group_id)
                out.append({"group": g.group_id, "area_frac": g.area / total, "bytes_frac": rd.bytes_read / len(data),
                            "region_frac": rd.header.group(g.group_id).area / total})
    return out


def information_shares(codec: LoadedCodec, x: np.ndarray, gm: GroupMap, q: float) -> dict[int, float]:
    """Per group of ``gm``: the share of a one-group code's bits (the entropy model's estimate,
    :meth:`GroupCodec.rate_maps`) that falls in the group's cells, the cells a cell-owned stream
    gives it (:func:`ssc.masks.cells.cell_owners`); z's bits are shared out over the 4 x 4 cells of
    each hyper cell. What a one-object decode would read from a coder without any overhead: objects
    that carry more detail than their area share read more than their area share."""
    h, w = x.shape[:2]
    aw, ah = -(-w // ALIGN) * ALIGN, -(-h // ALIGN) * ALIGN
    t, mask = tile_input(x, np.zeros((h, w), np.int32), 0, (0, 0, aw, ah), codec_device(codec))
    by, bz = (m.double().cpu().numpy() for m in codec.model.rate_maps(t, mask, q))
    bits = by + np.kron(bz, np.ones((4, 4))) / 16  # per 16-px cell
    owners = cell_owners(gm.labels)
    bits = bits[: owners.shape[0], : owners.shape[1]]
    total = bits.sum()
    return {g.group_id: float(bits[owners == g.group_id].sum() / total) for g in gm.groups}


def ssc_code(codec: LoadedCodec, x: np.ndarray, gm: GroupMap, q: float, refine: Refinement | None = None,
             cells: bool = True) -> SSCCoded:
    enc = encode_image(x, gm, codec, quality=q, refine=refine, cells=cells)
    dec = decode_image(enc.data, codec)
    if dec.failed:
        raise RuntimeError(f"ssc decode failed: {dec.failed}")
    return SSCCoded(len(enc.data), dec.image, stream_parts(enc.data), one_object_reads(enc.data, gm))


Coder = Callable[[np.ndarray, float], Coded]


def groups_of(args: argparse.Namespace, image_path: Path, x: np.ndarray) -> GroupMap:
    """The groups of an image: its COCO instances (``coco``) or k-means regions (``kodak``)."""
    if args.part == "coco":
        return apply_policy(from_coco(args.ann, image_path), "instance", min_area=args.min_area)
    return kmeans_groups(x, k=args.kmeans)


def coders_for(part: str, args: argparse.Namespace, codec: LoadedCodec, peers: list[LoadedCodec], image_path: Path,
               x: np.ndarray, ref: LoadedCodec | None = None) -> dict[str, tuple[list, Coder]]:
    """Every codec of this part of the benchmark with its settings, for one image."""
    one = GroupMap.from_labels(np.zeros(x.shape[:2], np.int32))
    qs = args.ssc_qualities
    refine = Refinement(steps=args.refine) if args.refine else None
    gm = groups_of(args, image_path, x)
    out: dict[str, tuple[list, Coder]] = {}
    if ref is not None:
        out["ref-1group"] = (args.ref_qualities, lambda im, q: ssc_code(ref, im, one, q))
    for name, groups in (("ssc-1group", one), ("ssc-groups", gm))[: 2 if args.groups else 1]:
        out[name] = (qs, lambda im, q, g=groups: ssc_code(codec, im, g, q))
        if name == "ssc-groups" and args.pixel_groups:
            out["ssc-groups-pixel"] = (qs, lambda im, q, g=groups: ssc_code(codec, im, g, q, cells=False))
        if refine and name.removeprefix("ssc-") in args.refine_curves:
            out[f"{name}-refined"] = (qs, lambda im, q, g=groups: ssc_code(codec, im, g, q, refine))
    if part == "coco":
        return out
    for a in args.anchors:
        if a in ("jpeg", "webp", "avif") and pillow_available(a):
            out[a] = (ANCHOR_SETTINGS[a], lambda im, q, a=a: pillow_code(a, im, int(q)))
        elif a == "x265":
            out[a] = (ANCHOR_SETTINGS[a], lambda im, q: x265_intra_code(im, int(q)))
        elif a == "peer":
            out["bmshj2018-peer"] = (list(range(len(peers))), lambda im, q: peer_code(peers[int(q)], im))
    return out


def average_curve(points: list[Point], codec: str, metric: str = "psnr") -> tuple[list[float], list[float]]:
    """Per setting, mean bpp and mean quality over images (the usual way RD curves are averaged)."""
    settings = sorted({p.setting for p in points if p.codec == codec})
    sel = [[p for p in points if p.codec == codec and p.setting == s] for s in settings]
    r = [float(np.mean([p.bpp for p in ps])) for ps in sel]
    d = [float(np.mean([getattr(p, metric) for p in ps])) for ps in sel]
    order = np.argsort(r)
    return [r[i] for i in order], [d[i] for i in order]


def plot(curves: dict[str, dict[str, tuple[list[float], list[float]]]], title: str, path: Path) -> None:
    fig, axes = subplots(1, 2, figsize=(11, 4.5))
    for ax, metric, label in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ms_ssim_db", "MS-SSIM (dB)")):
        for name, c in curves[metric].items():
            ax.plot(*c, "o-", label=name, markersize=3)
        style_axis(ax, "bpp", label)
    fig.suptitle(title)
    save_figure(fig, path)


def bd_table(curves: dict[str, tuple[list[float], list[float]]], pairs: list[tuple[str, str]]) -> dict[str, float | str]:
    out: dict[str, float | str] = {}
    for test, anchor in pairs:
        if test not in curves or anchor not in curves:
            continue
        try:
            out[f"{test} vs {anchor}"] = bd_rate(*curves[anchor], *curves[test])
        except ValueError as e:
            out[f"{test} vs {anchor}"] = f"n/a ({e})"
    return out


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    codec = load_codec(args.model)
    ref = load_codec(args.ref_model) if args.ref_model else None
    if args.part == "kodak" and "x265" in args.anchors:
        require_ffmpeg()
    peers = load_peers(args.peer_dir) if (args.part == "kodak" and "peer" in args.anchors) else []
    paths = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in (".png", ".jpg"))
    if args.part == "coco":
        names = {r["file_name"] for r in json.loads(Path(args.ann).read_text())["images"]}
        paths = [p for p in paths if p.name in names]
    paths = paths[: args.limit]
    points: list[Point] = []
    partial: list[dict] = []
    for p in tqdm(paths, desc=f"rd {args.part}"):
        x = read_image(p)
        for name, (settings, code) in coders_for(args.part, args, codec, peers, p, x, ref).items():
            for s in settings:
                t0 = time.perf_counter()
                c = code(x, s)
                points.append(Point(name, p.name, float(s), bpp(c.nbytes, x.shape[0] * x.shape[1]),
                                    psnr(x, c.decoded), msssim_db(x, c.decoded), time.perf_counter() - t0,
                                    getattr(c, "parts", None)))
                if name.startswith("ssc-groups"):
                    info = information_shares(codec, x, groups_of(args, p, x), s) if args.part == "coco" else {}
                    partial += [{"codec": name, "image": p.name, "setting": float(s), **r,
                                 **({"info_frac": info[r["group"]]} if r["group"] in info else {})} for r in c.partial]
    codecs = sorted({p.codec for p in points})
    curves = {m: {c: average_curve(points, c, m) for c in codecs} for m in ("psnr", "ms_ssim_db")}
    pairs = [("ssc-groups", "ssc-1group"), ("ssc-groups-pixel", "ssc-1group"), ("ssc-1group", "ref-1group"), ("ssc-groups-refined", "ssc-1group-refined"),
             ("ssc-1group-refined", "ssc-1group"), ("ssc-groups-refined", "ssc-groups")]
    pairs += [(t, a) for t in ("ssc-1group", "ssc-groups", "ssc-1group-refined", "ssc-groups-refined")
              for a in codecs if not a.startswith("ssc")]
    bd = {m: bd_table(curves[m], pairs) for m in curves}
    seconds = {c: float(np.mean([p.seconds for p in points if p.codec == c])) for c in codecs}
    return {"meta": run_meta(part=args.part, model=args.model, images=[p.name for p in paths], refine_steps=args.refine,
                             weights_sha256=codec.card.sha256, ref_model=args.ref_model,
                             ref_sha256=ref.card.sha256 if ref else None),
            "curves": curves, "bd_rate_percent": bd, "seconds_per_point": seconds, "points": [asdict(p) for p in points],
            "byte_parts": byte_parts(points), "partial": partial_summary(partial), "partial_objects": partial}


def byte_parts(points: list[Point]) -> dict[str, dict[str, dict[str, float]]]:
    """Per ssc curve and setting: the mean bytes per image of each part of the stream."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for p in points:
        if p.parts:
            out.setdefault(p.codec, {}).setdefault(f"{p.setting:g}", []).append(p.parts)
    return {c: {s: {k: float(np.mean([d[k] for d in ds])) for k in ds[0]} for s, ds in by.items()} for c, by in out.items()}


def partial_summary(partial: list[dict], margin: float = 0.05) -> dict[str, dict]:
    """Per ssc curve: the share of one-object decodes reading at most their area share + ``margin``
    of the stream (issue 3's target: 95%), over all objects and settings."""
    out = {}
    for c in sorted({r["codec"] for r in partial}):
        rs = [r for r in partial if r["codec"] == c]
        ok = [r["bytes_frac"] <= r["area_frac"] + margin for r in rs]
        ok_region = [r["bytes_frac"] <= r["region_frac"] + margin for r in rs]
        out[c] = {"objects": len(rs), "within_margin": float(np.mean(ok)) if rs else None, "margin": margin,
                  "within_margin_of_region": float(np.mean(ok_region)) if rs else None,
                  "median_excess": float(np.median([r["bytes_frac"] - r["area_frac"] for r in rs])) if rs else None,
                  **information_summary(rs, margin)}
    return out


def information_summary(rs: list[dict], margin: float = 0.05) -> dict:
    """Against the objects' information shares (:func:`information_shares`): the share of one-object
    decodes reading at most their information share + ``margin``, and the share of objects whose
    information share alone is within their area share + ``margin`` (the most any coder that spends
    a one-group code's bits where it spends them can meet of issue 3's target)."""
    ri = [r for r in rs if "info_frac" in r]
    if not ri:
        return {}
    return {"within_margin_of_information": float(np.mean([r["bytes_frac"] <= r["info_frac"] + margin for r in ri])),
            "information_within_area_margin": float(np.mean([r["info_frac"] <= r["area_frac"] + margin for r in ri])),
            "median_excess_over_information": float(np.median([r["bytes_frac"] - r["info_frac"] for r in ri]))}


def report_lines(res: dict) -> list[str]:
    lines = []
    for m, title in (("psnr", "PSNR dB"), ("ms_ssim_db", "MS-SSIM dB")):
        rows = [[c, ", ".join(f"({a:.3f}, {b:.2f})" for a, b in zip(*res["curves"][m][c]))] for c in res["curves"][m]]
        lines += markdown_table(["codec", f"points (bpp, {title})"], rows) + [""]
    pairs = sorted({k for m in res["bd_rate_percent"].values() for k in m})
    rows = [[k] + [res["bd_rate_percent"][m].get(k) for m in ("psnr", "ms_ssim_db")] for k in pairs]
    rows = [[r[0]] + [f"{v:+.1f}" if isinstance(v, float) else v for v in r[1:]] for r in rows]
    lines += markdown_table(["BD-rate (%, negative = fewer bits)", "PSNR", "MS-SSIM"], rows)
    sec = res.get("seconds_per_point", {})
    lines += [""] + markdown_table(["codec", "s per point (encode + decode)"], [[c, f"{v:.2f}"] for c, v in sec.items()])
    parts = res.get("byte_parts", {})
    one = parts.get("ssc-1group", {})
    rows = []
    for c, by in parts.items():
        if c.startswith("ref-"):  # another model's settings: no like-for-like setting to compare
            continue
        for s, d in by.items():
            base = sum(one.get(s, d).values())
            rows.append([c, s, *(f"{d[k]:.0f} ({100 * (d[k] - one.get(s, {}).get(k, 0)) / base:+.1f}%)" for k in d)])
    if rows:
        lines += ["", "bytes per image by part (change against ssc-1group's total at the same setting)"]
        lines += markdown_table(["codec", "setting", "table", "masks", "framing", "segments"], rows)
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    def row(name: str, d: dict) -> list:
        return [name, d["objects"], pct(d["within_margin"]), pct(d["within_margin_of_region"]), f"{d['median_excess']:+.3f}",
                pct(d.get("within_margin_of_information")), pct(d.get("information_within_area_margin"))]

    rows = [row(c, d) for c, d in res.get("partial", {}).items() if d["objects"]]
    for c in sorted({r["codec"] for r in res.get("partial_objects", [])}):
        for s in sorted({r["setting"] for r in res["partial_objects"] if r["codec"] == c}):
            rs = [r for r in res["partial_objects"] if r["codec"] == c and r["setting"] == s]
            rows.append(row(f"{c} at {s:g}", partial_summary([{**r, "codec": c} for r in rs])[c]))
    if rows:
        lines += ["", "one-object decodes: share reading <= the object's (its decoded region's, its information's) share "
                  "+ 0.05 of the stream; information: the share of a one-group code's bits in the object's cells",
                  "(last column: objects whose information share alone is within their area share + 0.05)"]
        lines += markdown_table(["codec", "objects", "within (object)", "within (region)", "median excess",
                                 "within (information)", "information within (object)"], rows)
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["kodak", "coco"], default="kodak")
    ap.add_argument("--images", required=True)
    ap.add_argument("--ann", default=None)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--min-area", type=int, default=256)
    ap.add_argument("--kmeans", type=int, default=4, help="regions per Kodak image for ssc-groups")
    ap.add_argument("--anchors", nargs="+", default=["jpeg", "webp", "avif", "x265", "peer"])
    ap.add_argument("--peer-dir", default=PEER_DIR)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ssc-qualities", type=float, nargs="+", default=SSC_QUALITIES, help="ssc quality levels")
    ap.add_argument("--refine", type=int, default=0, metavar="STEPS",
                    help="also code the ssc curves with the encoder-side latent refinement of STEPS steps")
    ap.add_argument("--refine-curves", nargs="+", choices=["1group", "groups"], default=["1group", "groups"],
                    help="which ssc curves --refine repeats")
    ap.add_argument("--ref-model", default=None, help="also the one-group curve of this model (BD-rate against it)")
    ap.add_argument("--ref-qualities", type=float, nargs="+", default=SSC_QUALITIES, help="--ref-model's quality levels")
    ap.add_argument("--groups", action=argparse.BooleanOptionalAction, default=True,
                    help="also the grouped curve (instances on COCO, k-means regions on Kodak); --no-groups: "
                         "one-group curves only (a model against --ref-model)")
    ap.add_argument("--pixel-groups", action=argparse.BooleanOptionalAction, default=True,
                    help="also code the groups pixel-exact (bitstream v2's layout) beside the cell-owned groups")
    ap.add_argument("--out", default="out/eval/rd")
    args = ap.parse_args(argv)
    if args.part == "coco" and not args.ann:
        ap.error("--part coco needs --ann")
    res = run(args)
    out = write_outputs(args.out, f"rd_{args.part}", res, report_lines(res))
    plot(res["curves"], f"RD on {args.part} ({len(res['meta']['images'])} images)", out / f"rd_{args.part}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
