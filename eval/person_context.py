"""What a persons-only decode leaves the person detector, before any coding (issue 37): the original
pixels inside the person groups that the encoder-side detector makes (``detect:ssdlite-person,
score=S,pad=P``, cell-owned as they are coded), mid-grey elsewhere; then the detector, and with the
``blazepose`` head its masks and keypoints, scored as ``eval person`` scores a persons-only decode
(detections lying mostly on the grey are dropped).

The gap between a coded persons-only point and this ceiling is the coding; the gap between the
ceiling and the original is the groups (persons the encoder's detector missed, too little context).

    python -m ssc.eval.person_context --images ../shared/data/coco/val2017 \\
        --ann ../shared/data/coco/annotations/instances_val2017_subset158.json
"""
from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ssc.analyze import FILL
from ssc.api import read_image
from ssc.masks.cells import owned_labels
from ssc.masks.detect import DetectSpec, detected_groups

from .person import PERSON, detect, new_accumulator
from .report import markdown_table, run_meta, write_outputs

SCORES = [0.2, 0.1]
PADS = [16, 32, 48]


def persons_region(x: np.ndarray, spec: DetectSpec, head) -> np.ndarray:
    """(H, W) bool: the pixels of the person groups ``spec`` makes on ``x``, cell-owned as coded."""
    gm = detected_groups(x, spec, head, quiet=True)
    ids = [g.group_id for g in gm.groups if g.class_id == PERSON]
    return np.isin(owned_labels(gm.labels), ids)


def persons_only(x: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``x`` inside ``region``, mid-grey (the decoder's fill of undecoded groups) elsewhere."""
    return np.where(region[..., None], x, np.asarray(FILL, dtype=x.dtype))


def run(args: argparse.Namespace) -> dict:
    from pycocotools.coco import COCO

    from ssc.tasks import resolve_head

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(args.ann)
        kp_gt = COCO(args.kp_ann) if args.pose else None
    records = sorted(gt.dataset["images"], key=lambda r: r["id"])[: args.limit]
    head = resolve_head()
    pose = resolve_head("blazepose") if args.pose else None
    kp_images = frozenset(kp_gt.getImgIds()) if kp_gt is not None else frozenset()
    specs = {f"score {s:g}, pad {p}": DetectSpec("ssdlite-person", s, p) for s in args.scores for p in args.pads}
    acc = {name: new_accumulator(gt, kp_gt, kp_images) for name in ["original", *specs]}
    share: dict[str, list[float]] = {name: [] for name in acc}
    for rec in tqdm(records, desc="persons-only ceiling", unit="image"):
        x = read_image(Path(args.images) / rec["file_name"])
        iid, px = int(rec["id"]), x.shape[0] * x.shape[1]
        views = {"original": (x, np.ones(x.shape[:2], bool))}
        for name, spec in specs.items():
            region = persons_region(x, spec, head)
            views[name] = (persons_only(x, region), region)
        for name, (y, region) in views.items():
            res, dt = detect(head, y, iid, region, pose, acc[name])
            acc[name].add(iid, 0, px, res, 0.0, dt)
            share[name].append(float(region.mean()))
    points = {name: a.point(name, 0.0) for name, a in acc.items()}
    return {"rows": [{"setting": name, "share": float(np.mean(share[name])), "AP": p.AP, "mask_AP": p.mask_AP,
                      "kp_AP": p.kp_AP} for name, p in points.items()],
            "meta": run_meta(detector=head.info.weights, images=len(records), ann=args.ann)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--ann", required=True)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--scores", type=float, nargs="+", default=SCORES, help="encoder-side detector scores")
    ap.add_argument("--pads", type=int, nargs="+", default=PADS, help="box paddings in pixels")
    ap.add_argument("--pose", action=argparse.BooleanOptionalAction, default=False,
                    help="also person mask AP and keypoint AP with the blazepose head")
    ap.add_argument("--kp-ann", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "coco" / "annotations"
                                            / "orig_Obmutescence_COCO-MINI" / "person_keypoints_val2017.json"))
    ap.add_argument("--out", default="out/eval/person_context")
    args = ap.parse_args(argv)
    data = run(args)
    lines = [f"persons-only ceiling on {data['meta']['images']} COCO val images (original pixels in the person groups)", "",
             *markdown_table(["groups", "share of the image", "person AP", "mask AP", "keypoint AP"],
                             [[r["setting"], r["share"], r["AP"], r["mask_AP"], r["kp_AP"]] for r in data["rows"]])]
    write_outputs(args.out, "person_context", data, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
