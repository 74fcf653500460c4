"""Rate-accuracy of the Omni-ICM feature path against the pixel path and the Pillow anchors, with
the same task model, on COCO val. A feature codec of the person detector (``gi-omni-person``, the
default) is measured by :mod:`.omni_person`; this module measures FPN feature codecs (trained with ``kind: omni`` for
a torchvision detector, e.g. the reference detector det-ref) with instance-mask groups.

For every setting and image: bytes, decode + task time, the detector's predictions (COCO AP against
the annotations, and task fidelity: AP against the detector's own confident predictions on the
original image), and *feature fidelity*: the relative squared error of the detector's 1/16 feature
map against the one it computes on the original image, averaged over the pyramid's four levels (pixel
paths: the detector's backbone on the decoded image; feature path: the Omni feature head on the
decoded latents). All at the image's own scale. Feature fidelity does not depend on how well the detector was trained. Times are medians over
the images, after one warm-up image.

    python -m ssc.eval.omni --images ../shared/data/coco/val2017 \
        --ann ../shared/data/coco/annotations/instances_val2017_subset158.json --limit 20
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ssc.defaults import DEFAULT_MODEL
from ssc.api import decode_image, encode_image, read_image
from ssc.masks import apply_policy, from_coco
from ssc.models.zoo import load_codec

from .anchors import pillow_available, pillow_code
from .coco import COCOEvaluator, pseudo_ground_truth
from ssc.metrics import bpp
from .report import markdown_table, run_meta, save_figure, style_axis, subplots, write_outputs


@dataclass
class Setting:
    """One rate point of one path; per-image values accumulate in the lists."""

    path: str  # "pixels (ssc)", "features (omni)", "jpeg", "webp"
    quality: float
    bpp: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    feat_err: list[float] = field(default_factory=list)
    preds: list[tuple[int, list[dict]]] = field(default_factory=list)


class Teacher:
    """The detector's backbone at the image's own scale (no resize), for feature fidelity."""

    def __init__(self, head) -> None:
        self.head = head

    @torch.no_grad()
    def features(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255).unsqueeze(0)
        return self.head.backbone_features(x)


def rel_error(f: torch.Tensor, ref: torch.Tensor) -> float:
    """Squared error relative to the reference's energy, on the reference's extent."""
    h, w = ref.shape[-2:]
    f = f[..., :h, :w]
    return float(((f - ref) ** 2).mean() / (ref**2).mean().clamp(min=1e-12))


def pyramid_error(feats: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> float:
    """:func:`rel_error` averaged over the levels (the training objective's measure)."""
    return float(np.mean([rel_error(feats[k], ref[k]) for k in ref]))


def _predict(head, image: np.ndarray, image_id: int, task: str) -> list[dict]:
    from ssc.tasks.coco_results import instances_to_coco

    return instances_to_coco(head.predict(image, masks=task == "segment"), image_id, task)


def _record(settings: dict[tuple[str, float], Setting], path: str, quality: float, seconds: float, bits: float,
            feat_err: float, image_id: int, preds: list[dict]) -> None:
    """Add one image's measurements to the setting (path, quality)."""
    s = settings.setdefault((path, quality), Setting(path, quality))
    s.seconds.append(seconds)
    s.bpp.append(bits)
    s.feat_err.append(feat_err)
    s.preds.append((image_id, preds))


def run_image(x: np.ndarray, gm, image_id: int, head, teacher: Teacher, ref: dict, pixel_codec, omni_codec,
              settings: dict[tuple[str, float], Setting], args: argparse.Namespace) -> None:
    from ssc.tasks.coco_results import instances_to_coco
    from ssc.omni.decode import decode_features

    px = x.shape[0] * x.shape[1]
    for q in args.quality:
        enc = encode_image(x, gm, pixel_codec, quality=q)
        t0 = time.perf_counter()
        dec = decode_image(enc.data, pixel_codec)
        preds = _predict(head, dec.image, image_id, args.task)
        _record(settings, "pixels (ssc)", q, time.perf_counter() - t0, bpp(len(enc.data), px),
                pyramid_error(teacher.features(dec.image), ref), image_id, preds)

        enc = encode_image(x, gm, omni_codec, quality=q)
        t0 = time.perf_counter()
        fd = decode_features(enc.data, omni_codec)
        inst = head.predict_features(fd.features, x.shape[:2], masks=args.task == "segment")
        _record(settings, "features (omni)", q, time.perf_counter() - t0, bpp(len(enc.data), px),
                pyramid_error(fd.features, ref), image_id, instances_to_coco(inst, image_id, args.task))
    for name in args.anchors:
        for q in args.anchor_quality:
            c = pillow_code(name, x, q)
            t0 = time.perf_counter()
            preds = _predict(head, c.decoded, image_id, args.task)
            _record(settings, name, q, time.perf_counter() - t0, bpp(c.nbytes, px),
                    pyramid_error(teacher.features(c.decoded), ref), image_id, preds)


def summarize(settings: dict, coco_gt, records: list[dict], originals: list[dict], fid_score: float) -> list[dict]:
    pgt = pseudo_ground_truth(records, coco_gt.dataset["categories"], originals, fid_score)
    rows = []
    for s in settings.values():
        ev, fid = COCOEvaluator(coco_gt), COCOEvaluator(pgt)
        for iid, p in s.preds:
            ev.process(iid, p)
            fid.process(iid, p)
        with contextlib.redirect_stdout(io.StringIO()):
            m, f = ev.evaluate(), fid.evaluate()
        rows.append({"path": s.path, "quality": s.quality, "images": len(s.bpp), "bpp": statistics.mean(s.bpp),
                     "feature_error": statistics.mean(s.feat_err), "decode_task_ms": 1000 * statistics.median(s.seconds),
                     "bbox_AP": m["bbox_AP"], "segm_AP": m["segm_AP"], "fid_bbox_AP": f["bbox_AP"],
                     "fid_segm_AP": f["segm_AP"], "fid_objects": len(pgt.dataset["annotations"])})
    return rows


def targets(rows: list[dict]) -> dict:
    """Issue targets, read off the measured points: (1) the bpp at which the feature path matches the
    pixel path's best feature fidelity and fidelity AP, as a fraction of the pixel path's bpp there;
    (2) end-to-end speed-up of decode + task at equal quality settings."""
    pix = sorted((r for r in rows if r["path"] == "pixels (ssc)"), key=lambda r: r["bpp"])
    feat = sorted((r for r in rows if r["path"] == "features (omni)"), key=lambda r: r["bpp"])
    out: dict = {"speedup": [p["decode_task_ms"] / f["decode_task_ms"] for p, f in zip(
        sorted(pix, key=lambda r: r["quality"]), sorted(feat, key=lambda r: r["quality"]))]}
    for metric, better in (("feature_error", min), ("fid_bbox_AP", max)):
        if any(r[metric] is None for r in pix + feat):
            out[metric] = None
            continue
        best_pix = better(pix, key=lambda r: r[metric])
        ok = [f for f in feat if (f[metric] <= best_pix[metric] if better is min else f[metric] >= best_pix[metric])]
        out[metric] = {"pixel_best": best_pix[metric], "pixel_bpp": best_pix["bpp"],
                       "feature_bpp_needed": ok[0]["bpp"] if ok else None,
                       "ratio": (ok[0]["bpp"] / best_pix["bpp"]) if ok else None}
    return out


def plot(rows: list[dict], path: Path) -> None:
    fig, ax = subplots(1, 3, figsize=(15, 4.2))
    for name in dict.fromkeys(r["path"] for r in rows):
        rs = sorted((r for r in rows if r["path"] == name), key=lambda r: r["bpp"])
        b = [r["bpp"] for r in rs]
        ax[0].plot(b, [r["feature_error"] for r in rs], "o-", label=name)
        ax[1].plot(b, [r["fid_bbox_AP"] or 0 for r in rs], "o-", label=name)
        ax[2].plot(b, [r["decode_task_ms"] for r in rs], "o-", label=name)
    for a, yl in zip(ax, ("feature error (relative, mean of 4 levels)", "task fidelity bbox AP", "decode + task (ms / image)")):
        style_axis(a, "bpp", yl)
    fig.suptitle("Omni-ICM feature path vs pixel path (COCO val, det-ref)")
    save_figure(fig, path)


def person_codec(name: str) -> bool:
    """Whether the model card of ``name`` names the person detector as its feature head's teacher
    (False when there is no such model: this module's parser then reports it)."""
    from ssc.errors import WeightsError
    from ssc.models.zoo import ModelCard, resolve

    try:
        _, card = resolve(name)
    except WeightsError:
        return False
    return ModelCard.load(card).config.get("teacher_backend") == "ssdlite-person"


def main(argv: list[str] | None = None) -> int:
    """Feature codecs of the person detector go to :mod:`.omni_person`; FPN ones (det-ref) stay here."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--omni-model", default="gi-omni-person")
    known, _ = pre.parse_known_args(argv)
    if person_codec(known.omni_model):
        from .omni_person import main as person_main

        return person_main(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--ann", required=True)
    ap.add_argument("--pixel-model", default=DEFAULT_MODEL)
    ap.add_argument("--omni-model", default="gi-omni-person")
    ap.add_argument("--quality", type=float, nargs="+", default=[0.0, 1.5, 3.0])
    ap.add_argument("--anchors", nargs="*", default=["jpeg", "webp"])
    ap.add_argument("--anchor-quality", type=int, nargs="+", default=[10, 30, 60])
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--min-area", type=int, default=256)
    ap.add_argument("--fidelity-score", type=float, default=0.15)
    ap.add_argument("--task", choices=["segment", "detect"], default="segment",
                    help="detect skips the detector's mask branch in every path")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="out/eval/omni")
    args = ap.parse_args(argv)
    from pycocotools.coco import COCO

    from ssc.tasks import build_head

    torch.set_num_threads(args.threads)
    args.anchors = [a for a in args.anchors if pillow_available(a)]
    pixel_codec, omni_codec = load_codec(args.pixel_model), load_codec(args.omni_model)
    head = build_head("torchvision", omni_codec.model.teacher, score_thresh=0.05)
    teacher = Teacher(head)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(args.ann)
    records = sorted(coco_gt.dataset["images"], key=lambda r: r["file_name"])[: args.limit]
    settings: dict[tuple[str, float], Setting] = {}
    originals = []
    # warm-up (tables, allocator, first-call dispatch) so the first image's timings are not an outlier
    x = read_image(Path(args.images) / records[0]["file_name"])
    gm = apply_policy(from_coco(Path(args.ann), Path(args.images) / records[0]["file_name"]), "instance", min_area=args.min_area)
    run_image(x, gm, records[0]["id"], head, teacher, teacher.features(x), pixel_codec, omni_codec, {}, args)
    for rec in tqdm(records, desc="omni vs pixels"):
        path = Path(args.images) / rec["file_name"]
        x = read_image(path)
        gm = apply_policy(from_coco(Path(args.ann), path), "instance", min_area=args.min_area)
        originals.extend(_predict(head, x, rec["id"], args.task))
        run_image(x, gm, rec["id"], head, teacher, teacher.features(x), pixel_codec, omni_codec, settings, args)
    rows = summarize(settings, coco_gt, records, originals, args.fidelity_score)
    tg = targets(rows)
    meta = run_meta(pixel_model=args.pixel_model, omni_model=args.omni_model, detector=head.info.weights, task=args.task)
    lines = markdown_table(
        ["path", "setting", "bpp", "feature error", "bbox AP", "fidelity bbox AP", "decode+task ms"],
        [[r["path"], r["quality"], r["bpp"], r["feature_error"], r["bbox_AP"], r["fid_bbox_AP"], r["decode_task_ms"]]
         for r in rows])
    lines += ["", f"targets: {json.dumps(tg)}"]
    out = write_outputs(args.out, "omni", {"meta": meta, "rows": rows, "targets": tg}, lines)
    plot(rows, out / "omni.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
