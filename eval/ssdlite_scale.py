"""How the person detector's AP depends on the size it sees: the input mapping of the Omni-ICM feature
path for ``ssdlite-person`` (issue 17). The graph squashes every image to 300x300; its convolutional
part also runs at any other size (``SSDLitePerson(input_size=None)``, anchors on the grids it gets).
Each setting resizes the original image (OpenCV-exact bilinear) and runs the detector on it:

* ``square S``: squashed to S x S (``square 300`` is the graph's own input);
* ``short S``: aspect kept, shorter side S;
* ``own``: the image's own size, not resized.

Person bbox AP / AP50 on COCO val (boxes mapped back to the original pixels), one run.

    python -m ssc.eval.ssdlite_scale --images ../shared/data/coco/val2017 \\
        --ann ../shared/data/coco/annotations/instances_val2017_subset158.json
"""
from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import torch
from tqdm import tqdm

from .coco import COCOEvaluator
from .report import markdown_table, run_meta, write_outputs

SETTINGS = ["square 240", "square 288", "square 300", "square 320", "square 400", "short 300", "short 360", "own"]


def target_size(setting: str, h: int, w: int) -> tuple[int, int]:
    """(height, width) the setting resizes an h x w image to."""
    if setting == "own":
        return h, w
    kind, v = setting.split()
    n = int(v)
    if kind == "square":
        return n, n
    if kind == "short":
        s = n / min(h, w)
        return max(1, round(h * s)), max(1, round(w * s))
    raise ValueError(f"unknown setting {setting!r} (square N, short N or own)")


def run(args: argparse.Namespace) -> dict:
    from pycocotools.coco import COCO

    from ssc.api import read_image
    from ssc.tasks.ssdlite.detector import SSDLitePerson
    from ssc.tasks.ssdlite.preprocess import resize_linear_u8

    torch.set_num_threads(args.threads)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(args.ann)
    records = sorted(gt.dataset["images"], key=lambda r: r["id"])[: args.limit]
    det = SSDLitePerson(input_size=None)
    ev = {s: COCOEvaluator(gt, ("bbox",), cat_ids=[1]) for s in args.settings}
    for rec in tqdm(records, desc="detector input sizes", unit="image"):
        x = read_image(Path(args.images) / rec["file_name"])
        h, w = x.shape[:2]
        for s in args.settings:
            th, tw = target_size(s, h, w)
            y = x if (th, tw) == (h, w) else resize_linear_u8(x, tw, th)
            d = det.detect(y)
            boxes = d.boxes * torch.tensor([w / tw, h / th, w / tw, h / th])
            ev[s].process(int(rec["id"]), [
                {"image_id": int(rec["id"]), "category_id": 1, "score": float(sc),
                 "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
                for b, sc in zip(boxes.tolist(), d.scores.tolist())])
    rows = []
    for s in args.settings:
        m = ev[s].evaluate()
        rows.append({"setting": s, "AP": m["bbox_AP"], "AP50": m["bbox_AP50"]})
    return {"rows": rows, "meta": run_meta(images=len(records), ann=args.ann, detector=det.card.sha256[:12])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--ann", required=True)
    ap.add_argument("--settings", nargs="+", default=SETTINGS)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="out/eval/ssdlite_scale")
    args = ap.parse_args(argv)
    for s in args.settings:
        target_size(s, 480, 640)  # refuse unknown settings before any work
    out = run(args)
    lines = markdown_table(["input", "person AP", "AP50"], [[r["setting"], r["AP"], r["AP50"]] for r in out["rows"]])
    write_outputs(args.out, "ssdlite_scale", out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
