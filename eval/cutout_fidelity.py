"""Where a persons-only stream loses person fidelity before any coding (surveillance issue): on original
frames, the person detector's fidelity (COCO bbox AP against its own detections at score >= 0.5 on
the whole frames, as ``eval/video.py`` scores it) when it sees

- the whole frames, with only the detections inside the tracks' boxes counted (what the tracks cover);
- the tracks cut out on mid-grey (what a persons-only decode shows, without coding loss);
- the tracks over the background held from its refreshes every ``--refresh`` frames (what a
  ``backdrop`` persons-only decode shows, :class:`ssc.video.VideoDecoder`: padded from the held pixels
  where no refresh held background yet);
- each track's crop alone, with a margin, detections mapped back and merged by NMS.

    python -m ssc.eval.cutout_fidelity --clip surveillance --frames 32 \\
        --masks detect:ssdlite-person,every=5 detect:ssdlite-person,every=1,pad=32
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch

from ssc.analyze import FILL, results_in_region
from ssc.video.masks import load_video_masks
from ssc.tasks.structures import Instances

from .report import markdown_table, run_meta, write_outputs
from .video import PersonFidelity, clip_source, track_boxes


def per_track(head, image: np.ndarray, boxes: list[tuple[int, int, int, int]], margin: float) -> Instances:
    """Detections of each box's square crop (side ``(1 + 2 margin)`` x its longer side), merged by NMS."""
    from torchvision.ops import nms

    h, w = image.shape[:2]
    found_b, found_s = [], []
    for x0, y0, x1, y1 in boxes:
        side, cx, cy = max(x1 - x0, y1 - y0) * (1 + 2 * margin), (x0 + x1) / 2, (y0 + y1) / 2
        a, b = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        c, d = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
        inst = head.predict(image[b:d, a:c], masks=False)
        if len(inst):
            found_b.append(inst.boxes + torch.tensor([a, b, a, b], dtype=inst.boxes.dtype))
            found_s.append(inst.scores)
    if not found_b:
        return Instances((h, w), torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), None)
    bb, ss = torch.cat(found_b), torch.cat(found_s)
    keep = nms(bb, ss, 0.5)
    return Instances((h, w), bb[keep], ss[keep], torch.ones(len(keep), dtype=torch.long), None)


def held_backdrops(frames: np.ndarray, maps, refresh: int) -> list[np.ndarray]:
    """Per frame, the background as a backdrop decode holds it: each ``refresh``-th frame's
    background pixels (group 0) painted over the previous ones, padded where none was held yet."""
    from ssc.video.motion import MARGIN, pad_reference

    held, seen = np.zeros_like(frames[0]), np.zeros(frames.shape[1:3], bool)
    out, cur = [], held
    for i, (f, gm) in enumerate(zip(frames, maps)):
        if i % refresh == 0:
            bg = gm.labels == 0
            held[bg] = f[bg]
            seen |= bg
            cur = pad_reference(held, seen)[MARGIN:-MARGIN, MARGIN:-MARGIN]
        out.append(cur)
    return out


def measure(frames: np.ndarray, spec: str, fid: PersonFidelity, margin: float, refresh: int) -> dict:
    from .coco import COCOEvaluator

    source = load_video_masks(spec)
    maps = [source(i, f) for i, f in enumerate(frames)]
    cut, over, regions = {}, {}, {}
    crops = COCOEvaluator(fid.gt, ("bbox",))
    for i, (gm, bd) in enumerate(zip(maps, held_backdrops(frames, maps, refresh))):
        ids = [g.group_id for g in gm.groups if g.group_id]
        cut[i] = np.where((gm.labels != 0)[..., None], frames[i], FILL).astype(np.uint8)
        over[i] = np.where((gm.labels != 0)[..., None], frames[i], bd).astype(np.uint8)
        regions[i] = track_boxes(gm.labels, ids)
        if i in fid.ids:
            inst = per_track(fid.head, cut[i], [g.box for g in gm.groups if g.group_id], margin)
            crops.process(i, results_in_region(inst, regions[i], i, "detect"))
    return {"masks": spec, "area": float(np.mean([(gm.labels != 0).mean() for gm in maps])),
            "covered": fid.ap({i: frames[i] for i in range(len(frames))}, regions),
            "cutout": fid.ap(cut, regions), "backdrop": fid.ap(over, regions), "per_track": crops.evaluate()["bbox_AP"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--clip", default="surveillance")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--det-every", type=int, default=2, help="the detector scores every N-th frame")
    ap.add_argument("--margin", type=float, default=0.5, help="per-track crops: margin in box sides")
    ap.add_argument("--refresh", type=int, default=64, help="the background's refresh period (4 GOPs of 16 by default)")
    ap.add_argument("--masks", nargs="+", default=["detect:ssdlite-person,every=5", "detect:ssdlite-person,every=1,pad=32"])
    ap.add_argument("--out", default="out/eval/cutout_fidelity")
    args = ap.parse_args(argv)
    frames = np.stack(list(itertools.islice(clip_source(args.clip, Path(args.data))[1], args.frames)))
    fid = PersonFidelity(frames, args.det_every)
    rows = []
    for spec in args.masks:
        rows.append(measure(frames, spec, fid, args.margin, args.refresh))
        print(rows[-1], flush=True)
    lines = markdown_table(["tracks", "area", "originals, inside the tracks' boxes", "cut out on grey",
                            "over the held background", "per-track crops"],
                           [[r["masks"], f"{100 * r['area']:.1f}%", r["covered"], r["cutout"], r["backdrop"], r["per_track"]]
                            for r in rows])
    write_outputs(args.out, "cutout_fidelity", {"meta": run_meta(**vars(args)), "rows": rows}, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
