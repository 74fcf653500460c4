"""The blazepose head against its reference, and a picture of it on a persons-only decode.

``--check``: every reference crop of shared/data/reference/mediapipe_person_reference.json (164 on the
158 COCO val images, on the TF reference's person boxes with score >= 0.3): the crop rule, the
landmarks (within 0.5 input pixels) and the person mask (IoU >= 0.99); then keypoint AP and mask AP of
the head's results scored like the reference's (pycocotools), and the time per person.

``--runtime torch`` runs the same check on the PyTorch graph of :mod:`ssc.tasks.tflite_torch`.

``--figure IMAGE``: encode IMAGE with detector groups, decode the persons only, run the blazepose
head on the decode and draw its keypoints and masks (docs/img/pose.png).

    python -m ssc.eval.pose --check
    python -m ssc.eval.pose --figure ../shared/data/coco/val2017/000000005001.jpg --out docs/img
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ssc.api import read_image
from ssc.tasks.blazepose import RUNTIMES

from .report import markdown_table, run_meta, save_figure, subplots, write_outputs

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: COCO's skeleton over the 17 keypoints (1-based, as in the annotations)
SKELETON = [(16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9), (8, 10),
            (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7)]


def check(ref_path: Path, images: Path, ann: Path, kp_ann: Path, threads: int, runtime: str = "litert") -> dict:
    """The reference comparison (see the module docstring)."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    from ssc.tasks.blazepose import BlazePose, Crop
    from ssc.tasks.coco_results import encode_mask

    from .coco import COCOEvaluator

    ref = json.loads(ref_path.read_text())
    pose = BlazePose(threads, runtime)
    crops_ok, kp_err, ious, seconds, masks, kps = 0, [], [], [], [], []
    cache: dict[str, np.ndarray] = {}
    for c, seg in tqdm(list(zip(ref["crops"], ref["segm_pose_results"])), desc="blazepose vs reference", unit="crop"):
        img = cache.setdefault(c["file_name"], read_image(images / c["file_name"]))
        crop = Crop.around(tuple(c["box"]))
        crops_ok += [crop.left, crop.top, crop.side] == c["crop_left_top_side"]
        t = time.perf_counter()
        r = pose.on_box(img, tuple(c["box"]))
        seconds.append(time.perf_counter() - t)
        kp_err.append(float(np.abs(r.landmarks[:8, :2] - np.array(c["pose_identity_first8"])[:, :2]).max()))
        m = mask_utils.decode(seg["segmentation"]).astype(bool)
        ious.append(float((m & r.mask).sum() / max((m | r.mask).sum(), 1)))
        base = {"image_id": c["image_id"], "category_id": 1, "score": c["score"]}
        masks.append({**base, "segmentation": encode_mask(r.mask)})
        kps.append({**base, "keypoints": [round(float(v), 2) for v in r.keypoints.flatten()]})
    with contextlib.redirect_stdout(io.StringIO()):
        gt, kp_gt = COCO(str(ann)), COCO(str(kp_ann))
    segm = COCOEvaluator(gt, ("segm",), cat_ids=[1])
    kpe = COCOEvaluator(kp_gt, ("keypoints",), cat_ids=[1])
    for iid in sorted({c["image_id"] for c in ref["crops"]} | set(gt.getImgIds())):
        segm.process(iid, [m for m in masks if m["image_id"] == iid])
        if iid in set(kp_gt.getImgIds()):
            kpe.process(iid, [k for k in kps if k["image_id"] == iid])
    n = len(ref["crops"])
    s, k = segm.evaluate(), kpe.evaluate()
    return {"crops": n, "crop_rule_equal": crops_ok, "landmarks_within_0.5px": int(sum(e <= 0.5 for e in kp_err)),
            "max_landmark_error_px": max(kp_err), "masks_iou_ge_0.99": int(sum(i >= 0.99 for i in ious)),
            "min_mask_iou": min(ious), "mask_AP": s["segm_AP"], "mask_AP50": s["segm_AP50"],
            "reference_mask_AP": ref["segm_pose_mask"]["AP"], "kp_AP": k["keypoints_AP"], "kp_AP50": k["keypoints_AP50"],
            "reference_kp_AP": ref["keypoints"]["AP"], "ms_per_person_median": 1000 * float(np.median(seconds)),
            "threads": threads, "runtime": runtime}


def figure(image: Path, out: Path, model: str, quality: float) -> Path:
    """Keypoints and masks of the blazepose head on a persons-only decode of ``image``."""
    from ssc.analyze import FILL
    from ssc.api import decode_image, encode_image
    from ssc.masks.detect import DetectSpec, detected_groups
    from ssc.models.zoo import load_codec
    from ssc.tasks import DEFAULT_BACKEND, resolve_head

    x = read_image(image)
    gm = detected_groups(x, DetectSpec(DEFAULT_BACKEND, 0.2, 16), resolve_head(), quiet=True)
    codec = load_codec(model)
    people = [g.group_id for g in gm.groups if g.class_id == 1]
    data = encode_image(x, gm, codec, quality=0.0, group_quality={g: quality for g in people}).data
    dec = decode_image(data, codec, groups=people, fill=FILL)
    inst = resolve_head("blazepose").predict(dec.image)
    fig, axes = subplots(1, 2, figsize=(11, 4.6))
    for ax, im, title in ((axes[0], x, "original"),
                          (axes[1], dec.image, f"persons only: {dec.bytes_read} of {len(data)} bytes, "
                                               f"{8 * dec.bytes_read / (x.shape[0] * x.shape[1]):.3f} bpp")):
        ax.imshow(im)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    ax = axes[1]
    for i in range(len(inst)):
        m = inst.masks[i].numpy()
        ax.imshow(np.ma.masked_where(~m, m), alpha=0.35, cmap="autumn")
        kp = inst.keypoints[i].numpy()
        for a, b in SKELETON:
            ax.plot(kp[[a - 1, b - 1], 0], kp[[a - 1, b - 1], 1], "-", color="cyan", lw=1.2)
        ax.plot(kp[:, 0], kp[:, 1], "o", color="yellow", markersize=2.5)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "pose.png"
    save_figure(fig, path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the reference outputs, time per person")
    ap.add_argument("--figure", default=None, metavar="IMAGE", help="draw the head on a persons-only decode of IMAGE")
    ap.add_argument("--reference", default=str(DATA / "reference" / "mediapipe_person_reference.json"))
    ap.add_argument("--images", default=str(DATA / "coco" / "val2017"))
    ap.add_argument("--ann", default=str(DATA / "coco" / "annotations" / "instances_val2017_subset158.json"))
    ap.add_argument("--kp-ann", default=str(DATA / "coco" / "annotations" / "orig_Obmutescence_COCO-MINI" /
                                            "person_keypoints_val2017.json"))
    ap.add_argument("--model", default=None, help="codec of --figure (default: the default model)")
    ap.add_argument("--quality", type=float, default=1.5, help="the persons' quality in --figure")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runtime", choices=RUNTIMES, default="litert",
                    help="--check with LiteRT (the head's runtime) or the PyTorch graph the pose loss trains against")
    ap.add_argument("--out", default="out/eval/pose")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.check:
        res = check(Path(args.reference), Path(args.images), Path(args.ann), Path(args.kp_ann), args.threads, args.runtime)
        write_outputs(args.out, "pose_check", {"check": res, "meta": run_meta()},
                      markdown_table(["measure", "value"], [[k, v] for k, v in res.items()]))
    if args.figure:
        from ssc.defaults import DEFAULT_MODEL

        print(figure(Path(args.figure), Path(args.out), args.model or DEFAULT_MODEL, args.quality))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
