"""Action recognition on partially decoded SSVC clips (video issue): the clips of
``video_action_mmaction2`` coded with ssc (groups = moving objects of :class:`ForegroundDetector`,
complement = background), then classified from (a) the original frames, (b) the full decode, (c) the
moving-objects-only partial decode, (d) x265 at a similar rate.

With ``--weights`` (your torchvision checkpoint, e.g. Kinetics-400 r3d_18; ssc ships none) it reports
top-1 agreement with the original's prediction, top-5 overlap, and accuracy on the clips whose label is
known (``demo.mp4`` = "arm wrestling", K400). Without weights it reports rates, the partial share and
decode speed only: recognition accuracy is then *not measured*.
Run: ``python -m ssc.eval.action --out out/eval/action [--weights r3d_18_k400.pth]``.
"""
from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ssc.defaults import DEFAULT_VIDEO_MODEL
from ssc.video.masks import DetectorMasks, ForegroundDetector
from ssc.models.zoo import load_codec
from ssc.video import RateControl, VideoDecoder, VideoReader
from ssc.video.io import open_frames

from .report import markdown_table, run_meta, write_outputs
from .video import _ffmpeg_code, encode_clip

CLIPS = {  # path under video_action_mmaction2 -> known Kinetics-400 label (None: not stated upstream)
    "demo/demo.mp4": "arm wrestling",
    "tests/data/test.mp4": None,
    "tests/data/test.avi": None,
    "demo/test_video_structuralize.mp4": None,
    "tools/data/skeleton/S001C001P001R001A001_rgb.avi": None,  # NTU "drink water": not a K400 class
}


def _clip(path: Path, frames: int, max_side: int) -> tuple[np.ndarray, float]:
    src = open_frames(path)
    out = []
    for f in itertools.islice(src, frames):
        h, w = f.shape[:2]
        s = max_side / max(h, w)
        if s < 1:  # bound the cost of 1080p clips; even sizes for the 4:4:4 anchors
            f = np.asarray(Image.fromarray(f).resize((int(w * s) // 2 * 2, int(h * s) // 2 * 2), Image.BILINEAR))
        out.append(f)
    return np.stack(out), float(src.fps)


def _ssc(frames: np.ndarray, fps: float, codec, qp: int) -> dict:
    masks = DetectorMasks(ForegroundDetector(history=10, stride=2), every=4, score=0.0)
    maps = [masks(i, f) for i, f in enumerate(frames)]
    data, _ = encode_clip(frames, maps, fps, codec, qp, gop=16, roi_offset=RateControl.roi_offset)
    out = {"bytes": len(data), "object_area": float(np.mean([(gm.labels != 0).mean() for gm in maps]))}
    t0 = time.perf_counter()
    with VideoReader(data) as rd:
        out["full"] = np.stack([fr.image for fr in VideoDecoder(rd, codec).frames()])
    out["dec_fps"] = len(frames) / (time.perf_counter() - t0)
    with VideoReader(data) as rd:
        objs = [t for t in rd.index.tracks if t != 0]
        out["partial"] = np.stack([fr.image for fr in VideoDecoder(rd, codec, tracks=objs).frames()]) if objs else np.zeros_like(frames)
        out["partial_bytes"] = rd.bytes_read if objs else 0
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/video_action_mmaction2")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--max-side", type=int, default=480)
    ap.add_argument("--qp", type=int, default=32)
    ap.add_argument("--crf", type=int, default=32)
    ap.add_argument("--arch", default="r3d_18")
    ap.add_argument("--weights", default=None, help="action checkpoint (.pth / .safetensors); none ships with ssc")
    ap.add_argument("--label-map", default=None, help="default: the data's label_map_k400.txt")
    ap.add_argument("--model", default=DEFAULT_VIDEO_MODEL)
    ap.add_argument("--out", default="out/eval/action")
    args = ap.parse_args(argv)
    data = Path(args.data)
    codec = load_codec(args.model)
    head = None
    if args.weights:
        from ssc.tasks.action import VideoClassifier

        head = VideoClassifier(args.arch, args.weights, args.label_map or data / "tools/data/kinetics/label_map_k400.txt")
    rows, recs = [], []
    for rel, label in CLIPS.items():
        if not (data / rel).is_file():
            continue
        frames, fps = _clip(data / rel, args.frames, args.max_side)
        secs = len(frames) / fps
        s = _ssc(frames, fps, codec, args.qp)
        nb, x265, _ = _ffmpeg_code(frames, fps, "libx265", args.crf, 16, None, 0.0)
        mse = lambda a: float(((a.astype(np.float64) - frames) ** 2).mean())  # noqa: E731
        rec = {"clip": rel, "label": label, "size": list(frames.shape[1:3]), "frames": len(frames),
               "ssc_psnr": 10 * np.log10(255**2 / mse(s["full"])), "x265_psnr": 10 * np.log10(255**2 / mse(x265)),
               "object_area": s["object_area"], "ssc_kbps": 8 * s["bytes"] / 1000 / secs,
               "ssc_partial_kbps": 8 * s["partial_bytes"] / 1000 / secs, "x265_kbps": 8 * nb / 1000 / secs,
               "ssc_dec_fps": s["dec_fps"]}
        if head is not None:
            ref = head.predict(frames)
            for k, clip in (("ssc_full", s["full"]), ("ssc_partial", s["partial"]), ("x265", x265)):
                p = head.predict(clip)
                rec[k + "_top1"] = p.labels[0]
                rec[k + "_agrees"] = p.labels[0] == ref.labels[0]
                rec[k + "_top5_overlap"] = len(set(p.labels) & set(ref.labels)) / len(ref.labels)
                rec[k + "_correct"] = None if label is None else p.labels[0] == label
            rec["original_top1"] = ref.labels[0]
            rec["original_correct"] = None if label is None else ref.labels[0] == label
        recs.append(rec)
        rows.append([rel, label, rec["object_area"], rec["ssc_kbps"], rec["ssc_psnr"], rec["ssc_partial_kbps"], rec["x265_kbps"],
                     rec["x265_psnr"], rec["ssc_dec_fps"],
                     rec.get("original_top1", "not measured"), rec.get("ssc_partial_top1", "not measured")])
    lines = ["## Action recognition on partially decoded clips", "",
             "weights: " + (args.weights or "none available here: recognition accuracy NOT measured (rates and speed only)"), ""]
    lines += markdown_table(["clip", "label", "moving area", "ssc kbit/s", "ssc PSNR", "ssc moving-only kbit/s",
                             "x265 kbit/s", "x265 PSNR", "ssc dec fps", "top-1 original", "top-1 moving-only"], rows)
    write_outputs(args.out, "action", {"meta": run_meta(**vars(args)), "clips": recs}, lines)


if __name__ == "__main__":
    main()
