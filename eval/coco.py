"""COCO rate-accuracy benchmark: masks -> encode -> full or partial decode -> task head ->
pycocotools COCOeval, per rate point, for ssc and the Pillow anchors.

Reports bbox and segm AP against the COCO annotations, and *task fidelity*: the AP of the predictions
on decoded images scored against the same detector's confident predictions (score >= 0.5) on the
original images. Fidelity isolates what compression costs the task, so it stays meaningful with a weak
reference detector. Each invocation adds its rate points to ``out/coco_eval.json`` (keyed by codec,
quality and mode), so several codecs accumulate into one table and one plot.

    ssc eval coco --images ../shared/data/coco/val2017 \
        --ann ../shared/data/coco/annotations/instances_val2017_subset158.json --codec ssc --quality 0 1 2 3
    ssc eval coco ... --codec ssc --partial --quality 2      # decode only the annotated objects
    ssc eval coco ... --codec jpeg --quality 10 30 50 75
    ssc eval coco ... --ray --threads 1       # images as Ray tasks (local cluster, or --address)

Images are independent jobs (:mod:`ssc.parallel`): in this process by default, as Ray tasks with
``--ray``; the rate points are the same either way at equal ``--threads``.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ssc.defaults import DEFAULT_MODEL
from ssc.api import decode_image, encode_image, read_image
from ssc.args import detector_args, executor_args
from ssc.masks import apply_policy, from_coco

from .anchors import pillow_available, pillow_code
from ssc.metrics import bpp
from .report import markdown_table, run_meta, save_figure, style_axis, subplots, write_outputs

CODECS = ("none", "ssc", "jpeg", "webp", "avif")
FIDELITY_SCORE = 0.5


class COCOEvaluator:
    """detectron2-style evaluator: ``reset`` / ``process(image_id, results)`` / ``evaluate``."""

    def __init__(self, coco_gt, iou_types: tuple[str, ...] = ("bbox", "segm"), cat_ids: list[int] | None = None) -> None:
        self.coco_gt = coco_gt
        self.iou_types = iou_types
        self.cat_ids = cat_ids  # score only these categories (a detector's own), None: all
        self.reset()

    def reset(self) -> None:
        self._results: list[dict] = []
        self._image_ids: list[int] = []

    def process(self, image_id: int, results: list[dict]) -> None:
        self._image_ids.append(int(image_id))
        self._results.extend(results)

    def evaluate(self) -> dict[str, float | None]:
        """{"bbox_AP": ..., "bbox_AP50": ..., "segm_AP": ...} in percent (0 when nothing was predicted,
        None when there is no ground truth to score against)."""
        from pycocotools.cocoeval import COCOeval

        out: dict[str, float] = {}
        for t in self.iou_types:
            res = [r for r in self._results if (t == "bbox" or {"segm": "segmentation", "keypoints": "keypoints"}[t] in r)
                   and (self.cat_ids is None or r["category_id"] in self.cat_ids)]
            if not self.coco_gt.dataset.get("annotations"):
                out[f"{t}_AP"] = out[f"{t}_AP50"] = None
                continue
            if not res:
                out[f"{t}_AP"] = out[f"{t}_AP50"] = 0.0
                continue
            with contextlib.redirect_stdout(io.StringIO()):
                dt = self.coco_gt.loadRes(copy.deepcopy(res))
                ev = COCOeval(self.coco_gt, dt, t)
                ev.params.imgIds = sorted(set(self._image_ids))
                if self.cat_ids is not None:
                    ev.params.catIds = list(self.cat_ids)
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
            # pycocotools reports -1 when there is nothing to score against
            out[f"{t}_AP"] = None if ev.stats[0] < 0 else float(ev.stats[0]) * 100
            out[f"{t}_AP50"] = None if ev.stats[1] < 0 else float(ev.stats[1]) * 100
        return out


def pseudo_ground_truth(images: list[dict], categories: list[dict], predictions: list[dict], min_score: float = FIDELITY_SCORE):
    """A COCO object whose annotations are confident predictions on the original images."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    anns = []
    for i, p in enumerate(r for r in predictions if r["score"] >= min_score):
        a = {"id": i + 1, "image_id": p["image_id"], "category_id": p["category_id"], "bbox": p["bbox"],
             "iscrowd": 0, "area": float(p["bbox"][2] * p["bbox"][3])}
        if "segmentation" in p:
            a["segmentation"] = p["segmentation"]
            a["area"] = float(mask_utils.area(p["segmentation"]))
        if "keypoints" in p:  # every predicted keypoint counts as labelled (v = 2)
            a["keypoints"], a["num_keypoints"] = p["keypoints"], len(p["keypoints"]) // 3
        anns.append(a)
    gt = COCO()
    gt.dataset = {"images": images, "categories": categories, "annotations": anns}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


@dataclass
class RatePoint:
    codec: str
    quality: float
    partial: bool
    images: int
    bpp: float
    bbox_AP: float | None
    segm_AP: float | None
    bbox_AP50: float | None
    segm_AP50: float | None
    fid_bbox_AP: float | None  # None when the detector made no confident prediction on the originals
    fid_segm_AP: float | None
    fid_objects: int  # confident original-image predictions used as fidelity ground truth

    @property
    def key(self) -> str:
        return f"{self.codec}|{self.quality:g}|{'partial' if self.partial else 'full'}"


def code_image(codec_name: str, x: np.ndarray, quality: float, ssc_codec, ann: Path, path: Path,
               partial: bool, min_area: int) -> tuple[np.ndarray, int, np.ndarray | None]:
    """(decoded image, bytes counted, decoded-region mask or None) for one image at one setting."""
    if codec_name == "none":
        return x, x.size, None
    if codec_name != "ssc":
        c = pillow_code(codec_name, x, int(quality))
        return c.decoded, c.nbytes, None
    enc, objects = ssc_stream(x, quality, ssc_codec, ann, path, partial, min_area)
    if partial and not objects:
        return np.full_like(x, 128), len(enc.data), np.zeros(x.shape[:2], bool)
    dec = decode_image(enc.data, ssc_codec, groups=objects, fill=128)
    if dec.failed:
        raise RuntimeError(f"{path.name}: decode failed {dec.failed}")
    region = np.isin(dec.group_map, dec.decoded) if partial else None
    return dec.image, dec.bytes_read, region


def ssc_stream(x: np.ndarray, quality: float, ssc_codec, ann: Path, path: Path, partial: bool, min_area: int):
    """(encoded image with the annotations' instance groups, the object groups to decode or None for all)."""
    gm = apply_policy(from_coco(ann, path), "instance", min_area=min_area)
    enc = encode_image(x, gm, ssc_codec, quality=quality)
    return enc, ([g.group_id for g in gm.groups if g.class_id > 0] if partial else None)


def feature_predictions(head, x: np.ndarray, image_id: int, quality: float, ssc_codec, ann: Path, path: Path,
                        partial: bool, min_area: int) -> tuple[list[dict], int]:
    """The feature path (``--domain features``): (COCO results of the head on the decoded latents of
    the stream's groups, bytes read), no pixel reconstruction."""
    from ssc.analyze import results_in_region
    from ssc.omni.decode import decode_features

    enc, objects = ssc_stream(x, quality, ssc_codec, ann, path, partial, min_area)
    if partial and not objects:
        return [], len(enc.data)
    fd = decode_features(enc.data, ssc_codec, groups=objects)
    if fd.failed:
        raise RuntimeError(f"{path.name}: decode failed {fd.failed}")
    inst = head.predict_features(fd.features, x.shape[:2], masks=getattr(head.info, "masks", True))
    region = np.isin(fd.group_map, fd.decoded) if partial else np.ones(x.shape[:2], bool)
    return results_in_region(inst, region, image_id, "segment"), (fd.bytes_read if partial else len(enc.data))


def predict_coco(head, image: np.ndarray, image_id: int, region: np.ndarray | None = None) -> list[dict]:
    """The head's instances on ``image`` as COCO results (only those inside ``region`` when given)."""
    from ssc.tasks.coco_results import instances_to_coco, keep_inside

    inst = head.predict(image)
    if region is not None:
        inst = keep_inside(inst, region)
    return instances_to_coco(inst, image_id, "segment")


class Predictor:
    """The cache (per detector, on disk) of original-image predictions; the driver owns it and
    jobs compute only the originals it lacks."""

    def __init__(self, detector_key: str, cache: Path) -> None:
        self.cache = cache
        self.store = json.loads(cache.read_text()) if cache.is_file() else {}
        if self.store.get("detector") != detector_key:
            self.store = {"detector": detector_key, "original": {}}
        self.dirty = False

    def get(self, image_id: int) -> list[dict] | None:
        return self.store["original"].get(str(image_id))

    def put(self, image_id: int, preds: list[dict]) -> None:
        self.store["original"][str(image_id)] = preds
        self.dirty = True

    def save(self) -> None:
        """Write the cache once per rate point (not once per image)."""
        if self.dirty:
            self.cache.write_text(json.dumps(self.store))
            self.dirty = False


@dataclass(frozen=True)
class CocoImageJob:
    """One image at one rate point: code it, decode it, run the head (a Ray task or a local call)."""

    path: str
    image_id: int
    codec: str
    quality: float
    partial: bool
    min_area: int
    ann: str
    model: str
    backend: str
    det_weights: str | None
    need_original: bool
    score_thresh: float | None = None
    domain: str = "pixels"  # ssc.analyze.DOMAINS (features: ssc only)


@dataclass
class CocoImageResult:
    image_id: int
    nbytes: int
    pixels: int
    preds: list[dict] | None  # None for codec "none": the original predictions are the decode's
    original: list[dict] | None  # computed when the job was asked for them


def coco_image_job(job: CocoImageJob) -> CocoImageResult:
    from ssc.batch import shared_codec
    from ssc.tasks import resolve_head

    head = resolve_head(job.backend, job.det_weights, "cpu", job.score_thresh)
    x = read_image(job.path)
    orig = predict_coco(head, x, job.image_id) if job.need_original else None
    ssc_codec = shared_codec(job.model) if job.codec == "ssc" else None
    if job.domain == "features":
        preds, nbytes = feature_predictions(head, x, job.image_id, job.quality, ssc_codec, Path(job.ann), Path(job.path),
                                            job.partial, job.min_area)
        return CocoImageResult(job.image_id, nbytes, x.shape[0] * x.shape[1], preds, orig)
    y, nbytes, region = code_image(job.codec, x, job.quality, ssc_codec, Path(job.ann), Path(job.path), job.partial, job.min_area)
    preds = None if job.codec == "none" else predict_coco(head, y, job.image_id, region)
    return CocoImageResult(job.image_id, nbytes, x.shape[0] * x.shape[1], preds, orig)


def scored_categories(head, coco_gt) -> list[int] | None:
    """The COCO categories a detector can score on: its own when it knows fewer than the annotations
    hold (the person detector: person only), else None (all)."""
    own = {c.id for c in head.info.categories}
    gt = set(coco_gt.getCatIds())
    return sorted(own & gt) if own and not gt <= own else None


def evaluate_point(args: argparse.Namespace, quality: float, coco_gt, records: list[dict], predictor: Predictor,
                   executor, cat_ids: list[int] | None = None, iou_types: tuple[str, ...] = ("bbox", "segm")) -> RatePoint:
    from ssc.parallel import JobError

    ann = str(Path(args.ann).resolve())
    jobs = [CocoImageJob(str((Path(args.images) / rec["file_name"]).resolve()), int(rec["id"]), args.codec, float(quality),
                         bool(args.partial), args.min_area, ann, args.model, args.backend, args.det_weights,
                         predictor.get(rec["id"]) is None, args.score_thresh, args.domain) for rec in records]
    results = executor.map(coco_image_job, jobs, f"{args.codec} q={quality:g}{' partial' if args.partial else ''}")
    bad = [r for r in results if isinstance(r, JobError)]
    if bad:
        raise RuntimeError(f"{len(bad)} images failed, first: {jobs[bad[0].job].path}: {bad[0].error}")
    ev = COCOEvaluator(coco_gt, iou_types, cat_ids=cat_ids)
    orig_preds, all_bpp, per_image = [], [], []
    for r in results:
        if r.original is not None:
            predictor.put(r.image_id, r.original)
        orig = predictor.get(r.image_id)
        orig_preds.extend(orig)
        preds = orig if r.preds is None else r.preds
        ev.process(r.image_id, preds)
        per_image.append((r.image_id, preds))
        all_bpp.append(bpp(r.nbytes, r.pixels))  # "none" counts 3 bytes per pixel: 24 bpp
    predictor.save()
    gt_m = ev.evaluate()
    pgt = pseudo_ground_truth(records, coco_gt.dataset["categories"], orig_preds, args.fidelity_score)
    fid = COCOEvaluator(pgt, iou_types)
    for iid, preds in per_image:
        fid.process(iid, preds)
    f_m = fid.evaluate()
    return RatePoint(args.codec + (" (features)" if args.domain == "features" else ""), float(quality), bool(args.partial), len(records), float(np.mean(all_bpp)),
                     gt_m["bbox_AP"], gt_m.get("segm_AP"), gt_m["bbox_AP50"], gt_m.get("segm_AP50"), f_m["bbox_AP"], f_m.get("segm_AP"),
                     len(pgt.dataset["annotations"]))


def plot(points: list[dict], path: Path) -> None:
    fig, axes = subplots(1, 2, figsize=(11, 4.3))
    series: dict[str, list[dict]] = {}
    for p in points:
        if p["codec"] != "none":
            series.setdefault(p["codec"] + (" partial" if p["partial"] else ""), []).append(p)
    for ax, key, title in ((axes[0], "bbox_AP", "bbox AP vs COCO labels"), (axes[1], "fid_bbox_AP", "task fidelity (bbox AP vs original-image predictions)")):
        for name, ps in series.items():
            ps = sorted(ps, key=lambda p: p["bpp"])
            ps = [p for p in ps if p[key] is not None]
            ax.plot([p["bpp"] for p in ps], [p[key] for p in ps], "o-", label=name, markersize=3)
        ref = [p for p in points if p["codec"] == "none"]
        if ref and key == "bbox_AP" and ref[0][key] is not None:
            ax.axhline(ref[0][key], color="k", ls="--", lw=1, label="uncompressed")
        style_axis(ax, "bpp", "AP (%)", title)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ssc eval coco", description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--ann", required=True)
    ap.add_argument("--codec", choices=CODECS, default="ssc")
    ap.add_argument("--quality", type=float, nargs="+", default=[2.0])
    ap.add_argument("--partial", action="store_true", help="ssc: decode only the annotated objects' groups")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    detector_args(ap)
    ap.add_argument("--domain", choices=["pixels", "features"], default="pixels",  # ssc.analyze.DOMAINS
                    help="ssc only: features decodes the groups' latents to the --model's detector features "
                         "(an Omni model) and runs only that detector's heads")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--min-area", type=int, default=256)
    ap.add_argument("--fidelity-score", type=float, default=FIDELITY_SCORE,
                    help="original-image predictions at or above this score are the fidelity ground truth")
    ap.add_argument("--out", default="out/eval/coco")
    ap.add_argument("--json", default=None, help="results JSON (default OUT/coco_eval.json); rate points accumulate in it")
    executor_args(ap, threads=2)
    args = ap.parse_args(argv)
    from pycocotools.coco import COCO

    from ssc.tasks.heads import resolve_detector, resolve_head

    teacher = None
    if args.domain == "features":
        if args.codec != "ssc":
            raise SystemExit("--domain features needs --codec ssc (the anchors have no latents)")
        from ssc.analyze import feature_teacher
        from ssc.batch import shared_codec

        teacher = feature_teacher(shared_codec(args.model))
    args.backend, args.det_weights = resolve_detector(args.backend, args.det_weights, teacher)

    from ssc.parallel import make_executor
    if args.codec in ("jpeg", "webp", "avif") and not pillow_available(args.codec):
        raise SystemExit(f"Pillow has no {args.codec} support here")
    if args.partial and args.codec != "ssc":
        raise SystemExit("--partial needs --codec ssc (the anchors have no groups)")
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(args.ann)
    records = sorted(coco_gt.dataset["images"], key=lambda r: r["id"])[: args.limit]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    head = resolve_head(args.backend, args.det_weights, "cpu", args.score_thresh)
    predictor = Predictor(f"{head.info.backend}|{head.info.weights}|{args.score_thresh}", out / "predictions_cache.json")
    cat_ids = scored_categories(head, coco_gt)
    scope = ("all categories" if cat_ids is None else
             "categories " + ", ".join(coco_gt.cats[c]["name"] for c in cat_ids) + " only (the detector's own classes)")
    print(f"detector {head.info.backend} {head.info.weights}: AP scored on {scope}")
    qualities = [0.0] if args.codec == "none" else args.quality
    res_path = Path(args.json) if args.json else out / "coco_eval.json"
    store = json.loads(res_path.read_text()) if res_path.is_file() else {"points": {}}
    executor = make_executor(args.ray, args.address, args.workers, args.threads)
    try:
        for q in qualities:
            t0 = time.perf_counter()
            p = evaluate_point(args, q, coco_gt, records, predictor, executor, cat_ids,
                               ("bbox", "segm") if head.info.masks else ("bbox",))
            store["points"][p.key] = asdict(p)
            store.setdefault("seconds", {})[p.key] = time.perf_counter() - t0  # kept apart: points must not depend on it
    finally:
        executor.close()
    store["meta"] = run_meta(detector=head.info.weights, detector_arch=head.info.architecture, scored=scope, images=len(records),
                             ann=args.ann, model=args.model, executor=executor.name, workers=executor.workers,
                             threads_per_image=args.threads)
    pts = sorted(store["points"].values(), key=lambda p: (p["codec"], p["partial"], p["bpp"]))
    cols = ["codec", "quality", "mode", "images", "bpp", "bbox AP", "segm AP", "bbox AP50", "fidelity bbox AP",
            "fidelity segm AP", "fidelity objects"]
    rows = [[p["codec"], p["quality"], "partial" if p["partial"] else "full", p["images"], p["bpp"], p["bbox_AP"], p["segm_AP"],
             p["bbox_AP50"], p["fid_bbox_AP"], p["fid_segm_AP"], p["fid_objects"]] for p in pts]
    lines = [f"detector: {head.info.architecture} ({head.info.weights}); AP scored on {scope}", ""] + markdown_table(cols, rows)
    write_outputs(res_path.parent, res_path.stem, store, lines)
    plot(pts, res_path.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
