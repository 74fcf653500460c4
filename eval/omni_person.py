"""Omni-ICM feature path against the pixel path and the image-codec anchors, with the real person
detector (``ssdlite-person``) as the task model: person bbox AP / AP50 on COCO val against bpp over
all pixels, every point measured in one run (issue 17; Feng et al., ECCV 2022).

Operating points (``kind``):

* ``original``: the detector on the uncompressed images;
* ``jpeg`` / ``webp`` / ``avif`` (Pillow): whole-image anchors;
* ``pixels`` / ``features``: one stream per image and quality (one group), decoded to pixels then
  the detector, or decoded by the feature head (the codec's first synthesis stage, then a trunk on the
  detector's grid) to the output of the detector's MobileNetV2 block 5, then only the backbone's
  blocks 6 to 16, the extra layers, box predictors and NMS (no pixel synthesis, none of the backbone's
  full-resolution blocks). A feature model
  without an information filter codes the pixel codec's own latents, so both paths read the same
  stream;
* ``pixels-persons`` / ``features-persons``: groups made by the same detector on the encoder side
  (score >= 0.2, padded 16 px), persons at the quality given and the background at the lowest; only
  the person groups are read (an image whose header lists no person costs its header only).

Per point: bpp (bytes read / all pixels), AP, AP50, *feature error* (squared error of the two
backbone maps the box predictors read, relative to their energy on the original image, mean of the
two; pixel paths: the detector's backbone on the decoded image; feature path: the backbone's last
blocks on the decoded block-5 output), and decode + detector milliseconds per image (median, 2
threads, after one warm-up image).

    python -m ssc.eval.omni --omni-model gi-omni-person --images ../shared/data/coco/val2017 \\
        --ann ../shared/data/coco/annotations/instances_val2017_subset158.json --limit 158
"""
from __future__ import annotations

import argparse
import contextlib
import io
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ssc.analyze import FILL, results_in_region
from ssc.api import encode_image, read_image
from ssc.bitstream import StreamReader
from ssc.masks.detect import DetectSpec, detected_groups, whole_image

from .coco import COCOEvaluator
from .person import ANCHORS, PERSON, Accumulator, anchor_code, detect, persons, ssc_point
from .report import markdown_table, run_meta, save_figure, style_axis, subplots, write_outputs

FULL_QUALITIES = [0.0, 1.0, 1.5, 2.0, 3.0]
PERSON_QUALITIES = [0.0, 0.5, 1.0, 1.5, 3.0]
ANCHOR_KINDS = ("jpeg", "webp", "avif")


@dataclass
class Point:
    kind: str
    setting: float
    images: int
    bpp: float
    feature_error: float | None  # mean over the images that have maps (not the header-only ones)
    AP: float | None
    AP50: float | None
    decode_detect_ms: float  # median per image


@dataclass
class Acc(Accumulator):
    """One operating point over the images; ``decode_s`` holds decode + detector seconds."""

    feat_err: list[float] = field(default_factory=list)

    def add_point(self, image_id: int, nbytes: int, pixels: int, results: list[dict], seconds: float,
                  feat_err: float | None) -> None:
        self.count(image_id, nbytes, pixels, results)
        self.decode_s.append(seconds)
        if feat_err is not None:
            self.feat_err.append(feat_err)

    def feature_point(self, kind: str, setting: float) -> Point:
        m = self.ev.evaluate()
        return Point(kind, setting, len(self.decode_s), self.bpp, float(np.mean(self.feat_err)) if self.feat_err else None,
                     m["bbox_AP"], m["bbox_AP50"], 1000 * float(np.median(self.decode_s)))


def feature_error(feats: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> float:
    """Squared error relative to the reference's energy, mean over the maps."""
    return float(np.mean([float(((feats[k].float() - ref[k]) ** 2).mean() / (ref[k] ** 2).mean().clamp(min=1e-12))
                          for k in ref]))


@torch.no_grad()
def maps_of(head, image: np.ndarray) -> dict[str, torch.Tensor]:
    """The two maps the detector's box predictors read, computed from the image's pixels."""
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
    return head.feature_maps(head.backbone_features(x))


def feature_point(codec, head, data: bytes, decode_ids: list[int] | None, hw: tuple[int, int], image_id: int
                  ) -> tuple[list[dict], int, float, dict | None]:
    """Feature decode of ``decode_ids`` (all when None) + the detector's heads: (results, bytes read,
    seconds, maps or None when the header lists no person)."""
    from ssc.omni.decode import decode_features

    if decode_ids is not None and not decode_ids:
        with StreamReader(data) as rd:
            return [], rd.bytes_read, 0.0, None
    t = time.perf_counter()
    fd = decode_features(data, codec, groups=decode_ids)
    inst = head.predict_features(fd.features, hw)
    dt = time.perf_counter() - t
    region = np.isin(fd.group_map, fd.decoded) if decode_ids is not None else np.ones(hw, bool)
    nbytes = fd.bytes_read if decode_ids is not None else len(data)
    with torch.no_grad():
        maps = head.feature_maps(fd.features)  # for the feature error only, outside the timing
    return results_in_region(inst, region, image_id, "detect"), nbytes, dt, maps


def run_image(x: np.ndarray, image_id: int, head, codec, acc: dict, args: argparse.Namespace) -> None:
    hw, px = x.shape[:2], x.shape[0] * x.shape[1]
    ref = maps_of(head, x)
    res, dt = detect(head, x, image_id, None)
    acc[("original", 0.0)].add_point(image_id, 0, px, res, dt, 0.0)
    for kind in ANCHOR_KINDS:
        for s in args.anchor_settings[kind]:
            c = anchor_code(kind, x, s)
            res, dt = detect(head, c.decoded, image_id, None)
            acc[(kind, s)].add_point(image_id, c.nbytes, px, res, dt, feature_error(maps_of(head, c.decoded), ref))
    det = detected_groups(x, DetectSpec("ssdlite-person", args.det_score, args.det_pad), head, quiet=True)
    pids = persons(det)
    for q in args.quality:
        data = encode_image(x, whole_image(*hw), codec, quality=q).data
        y, nbytes, _, dec_s = ssc_point(codec, x, data, None)
        res, dt = detect(head, y, image_id, None)
        acc[("pixels", q)].add_point(image_id, nbytes, px, res, dec_s + dt, feature_error(maps_of(head, y), ref))
        res, nbytes, sec, feats = feature_point(codec, head, data, None, hw, image_id)
        acc[("features", q)].add_point(image_id, nbytes, px, res, sec, feature_error(feats, ref))
    for q in args.persons:
        data = encode_image(x, det, codec, quality=0.0, group_quality={g: q for g in pids} or None).data
        y, nbytes, region, dec_s = ssc_point(codec, x, data, pids)
        res, dt = detect(head, y, image_id, region) if pids else ([], 0.0)
        acc[("pixels-persons", q)].add_point(image_id, nbytes, px, res, dec_s + dt,
                                       feature_error(maps_of(head, y), ref) if pids else None)
        res, nbytes, sec, feats = feature_point(codec, head, data, pids, hw, image_id)
        acc[("features-persons", q)].add_point(image_id, nbytes, px, res, sec,
                                         feature_error(feats, ref) if feats is not None else None)


def targets(points: list[Point]) -> dict:
    """Issue 17's targets read off the points: T1 the feature path's AP equals or beats the pixel
    path's best AP at <= 0.6x its bpp; T2 persons-only feature decode AP >= 16 at <= 0.08 bpp; T3
    decode + detector of the feature path >= 2x faster than the pixel path at each quality."""
    pix = [p for p in points if p.kind == "pixels" and p.AP is not None]
    feat = [p for p in points if p.kind == "features" and p.AP is not None]
    best = max(pix, key=lambda p: p.AP, default=None)
    ok = sorted((p for p in feat if best and p.AP >= best.AP), key=lambda p: p.bpp)
    t1 = {"pixel_best_AP": best.AP if best else None, "pixel_bpp": best.bpp if best else None,
          "feature_bpp": ok[0].bpp if ok else None,
          "ratio": ok[0].bpp / best.bpp if (ok and best) else None}
    t1["met"] = t1["ratio"] is not None and t1["ratio"] <= 0.6
    fp = [p for p in points if p.kind == "features-persons" and p.AP is not None]
    t2 = {"met": any(p.AP >= 16 and p.bpp <= 0.08 for p in fp),
          "points": [(p.setting, round(p.bpp, 4), p.AP) for p in fp]}
    speed = {p.setting: q.decode_detect_ms / p.decode_detect_ms for p in feat for q in pix if q.setting == p.setting}
    t3 = {"speedup": speed, "met": bool(speed) and min(speed.values()) >= 2}
    return {"T1": t1, "T2": t2, "T3": t3}


def plot(points: list[dict], path: Path) -> None:
    fig, axes = subplots(1, 3, figsize=(16, 4.3))
    orig = next(p for p in points if p["kind"] == "original")
    for kind in dict.fromkeys(p["kind"] for p in points if p["kind"] != "original"):
        ps = sorted((p for p in points if p["kind"] == kind), key=lambda p: p["bpp"])
        style = "o-" if kind.startswith(("pixels", "features")) else "s--"
        for ax, key in zip(axes, ("AP", "feature_error", "decode_detect_ms")):
            ax.plot([p["bpp"] for p in ps], [p[key] if p[key] is not None else np.nan for p in ps], style,
                    label=kind, markersize=3)
    axes[0].axhline(orig["AP"], color="k", ls=":", lw=1, label="original")
    for ax, yl in zip(axes, ("person AP (%)", "feature error (relative)", "decode + detector ms / image")):
        ax.set_xscale("log")
        style_axis(ax, "bpp (all pixels)", yl, yl + ", ssdlite-person, COCO val")
    save_figure(fig, path)


def run(args: argparse.Namespace) -> dict:
    from pycocotools.coco import COCO

    from ssc.models.zoo import load_codec
    from ssc.omni.decode import require_feature_codec
    from ssc.tasks import resolve_head

    torch.set_num_threads(args.threads)
    codec = load_codec(args.omni_model)
    require_feature_codec(codec)
    head = resolve_head()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(args.ann)
    records = sorted(gt.dataset["images"], key=lambda r: r["id"])[: args.limit]
    args.anchor_settings = {k: ANCHORS[k] for k in ANCHOR_KINDS}
    plan = [("original", 0.0)] + [(k, s) for k in ANCHOR_KINDS for s in ANCHORS[k]]
    plan += [(k, q) for k in ("pixels", "features") for q in args.quality]
    plan += [(k, q) for k in ("pixels-persons", "features-persons") for q in args.persons]

    def fresh() -> dict:
        return {p: Acc(COCOEvaluator(gt, ("bbox",), cat_ids=[PERSON])) for p in plan}

    first = records[0]
    run_image(read_image(Path(args.images) / first["file_name"]), int(first["id"]), head, codec, fresh(), args)  # warm-up
    acc = fresh()
    for rec in tqdm(records, desc="omni (person)", unit="image"):
        run_image(read_image(Path(args.images) / rec["file_name"]), int(rec["id"]), head, codec, acc, args)
    points = [acc[p].feature_point(*p) for p in plan]
    return {"points": [asdict(p) for p in points], "targets": targets(points),
            "meta": run_meta(omni_model=args.omni_model, weights_sha256=codec.card.sha256, detector=head.info.weights,
                             images=len(records), ann=args.ann, threads=args.threads, det_score=args.det_score,
                             det_pad=args.det_pad)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--ann", required=True)
    ap.add_argument("--omni-model", default="gi-omni-person")
    ap.add_argument("--quality", type=float, nargs="+", default=FULL_QUALITIES)
    ap.add_argument("--persons", type=float, nargs="+", default=PERSON_QUALITIES)
    ap.add_argument("--det-score", type=float, default=0.2)
    ap.add_argument("--det-pad", type=int, default=16)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="out/eval/omni_person")
    args = ap.parse_args(argv)
    out = run(args)
    pts = out["points"]
    lines = markdown_table(["kind", "setting", "bpp", "person AP", "AP50", "feature error", "decode+detector ms"],
                           [[p["kind"], p["setting"], p["bpp"], p["AP"], p["AP50"], p["feature_error"],
                             p["decode_detect_ms"]] for p in pts])
    lines += ["", f"targets: {out['targets']}"]
    folder = write_outputs(args.out, "omni_person", out, lines)
    plot(pts, folder / "omni_person.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
