"""``ssc eval coco`` as local jobs and as Ray tasks (scale-out issue): the same rate point computed
by one process with 1 and 2 threads per image and by a local Ray cluster with 2 single-threaded
workers, each from a cold prediction cache. Reports wall time, images/s, speed-up over the
single-threaded local run, and whether each configuration's rate point equals that run's (Ray at
the same threads per image must; 2 threads per image may differ in float rounding).
Run: ``python -m ssc.eval.coco_scaling --limit 40`` (``make bench-coco-ray``).
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from .coco import main as coco_main
from .report import markdown_table, run_meta, write_outputs

CONFIGS = (("local, 1 thread", ["--threads", "1"]), ("local, 2 threads", ["--threads", "2"]),
           ("ray, 2 workers x 1 thread", ["--threads", "1", "--ray", "--workers", "2"]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", default="../shared/data/coco/val2017")
    ap.add_argument("--ann", default="../shared/data/coco/annotations/instances_val2017_subset158.json")
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--quality", default="1.5")
    ap.add_argument("--out", default="out/eval/coco_scaling")
    args = ap.parse_args(argv)
    out = Path(args.out)
    rows, runs = [], {}
    for name, extra in CONFIGS:
        d = out / name.replace(", ", "_").replace(" ", "")
        shutil.rmtree(d, ignore_errors=True)  # cold: no cached original-image predictions
        coco_main(["coco", "--images", args.images, "--ann", args.ann, "--codec", "ssc", "--quality", args.quality,
                   "--limit", str(args.limit), "--fidelity-score", "0.15", "--out", str(d), *extra])
        doc = json.loads((d / "coco_eval.json").read_text())
        (key, point), = doc["points"].items()
        runs[name] = {"point": point, "seconds": doc["seconds"][key]}
    base = runs[CONFIGS[0][0]]
    for name, r in runs.items():
        r["images_per_s"] = args.limit / r["seconds"]
        r["speedup"] = base["seconds"] / r["seconds"]
        r["same_point_as_local_1_thread"] = r["point"] == base["point"]
        rows.append([name, r["seconds"], r["images_per_s"], r["speedup"], r["point"]["bpp"], r["point"]["bbox_AP"],
                     r["point"]["fid_bbox_AP"], r["same_point_as_local_1_thread"]])
    lines = markdown_table(["configuration", "wall s", "images/s", "speed-up", "bpp", "bbox AP", "fidelity bbox AP",
                            "point = local 1 thread"], rows)
    write_outputs(out, "coco_scaling", {"runs": runs, "meta": run_meta(images=args.limit, quality=args.quality)}, lines)


if __name__ == "__main__":
    main()
