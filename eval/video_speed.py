"""SSVC encoder speed, step by step (surveillance issue): the same clips and qps encoded with the
motion search's speed tools switched on one after another (:class:`ssc.video.motion.SearchTools`),
each step's encode frames/s, whole-stream and object-only bits, and object PSNR, in one run. The
first step (every tool off) is the exhaustive search of the earlier encoder; its streams are
byte-identical to the earlier encoder's (the region-limited search is exact), which
``--baseline-rev`` checks by encoding with that revision's code in a subprocess.

Stop background training first: figures taken on a busy CPU are not figures.

    python -m ssc.eval.video_speed --frames 32 --qp 28 32 36
"""
from __future__ import annotations

import argparse
import hashlib
import io
import itertools
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ssc.defaults import DEFAULT_MODEL
from ssc.masks.video import DetectorMasks, FolderMasks, ForegroundDetector
from ssc.models.zoo import load_codec
from ssc.video import RateControl, VideoDecoder, VideoEncoder, VideoReader
from ssc.video.io import open_frames
from ssc.video.motion import EXHAUSTIVE, SearchTools

from .report import markdown_table, run_meta, write_outputs

STEPS = [
    ("exhaustive search (earlier encoder)", EXHAUSTIVE),
    ("+ quadrant / second-reference refinement", SearchTools(None, 2, 3, None)),
    ("+ predicted vectors", SearchTools(None, 2, 3, 2)),
    ("+ static-block skip (default)", SearchTools()),
]


def load(spec: str, data: Path, frames: int):
    """(name, frames, group maps, fps) of ``surveillance`` or ``davis:NAME``."""
    if spec.startswith("davis:"):
        name = spec.split(":", 1)[1]
        src = open_frames(data / "davis2016/JPEGImages/480p" / name, fps=24)
        masks = FolderMasks(data / "davis2016/Annotations/480p" / name, {1: (1, "person")})
    else:
        name = spec
        src = open_frames(data / "video_surveillance/vtest_480x360_h264.avi")
        masks = DetectorMasks(ForegroundDetector(), every=5, score=0.0)
    fr = list(itertools.islice(src, frames))
    return name, fr, [masks(i, f) for i, f in enumerate(fr)], float(src.fps)


def encode(frames, maps, fps, codec, qp: int, gop: int, tools: SearchTools) -> tuple[bytes, float]:
    buf = io.BytesIO()
    t = time.perf_counter()
    with VideoEncoder(buf, frames[0].shape[1], frames[0].shape[0], fps, codec, gop=gop,
                      rate=RateControl(qp=qp, roi_offset=6), keep_stats=False, tools=tools) as enc:
        for f, gm in zip(frames, maps):
            enc.encode(f, gm)
    return buf.getvalue(), time.perf_counter() - t


def measure(data: bytes, frames, maps, codec) -> tuple[int, float]:
    """(object-only bytes read, object PSNR)."""
    se = n = 0.0
    with VideoReader(data) as rd:
        for df in VideoDecoder(rd, codec).frames():
            m = maps[df.number].labels != 0
            se += ((df.image.astype(np.float64) - frames[df.number]) ** 2)[m].sum()
            n += 3 * m.sum()
        objs = sorted(t for t in rd.index.tracks if t != rd.header.complement_track)
    with VideoReader(data) as rd:
        for _ in VideoDecoder(rd, codec, tracks=objs).frames() if objs else []:
            pass
        obj_bytes = rd.bytes_read if objs else 0
    return obj_bytes, float(10 * np.log10(255.0**2 / max(se / max(n, 1), 1e-12)))


BASELINE_PROGRAM = r'''
import hashlib, io, sys, pickle
from ssc.models.zoo import load_codec
from ssc.video import RateControl, VideoEncoder
frames, maps, fps, qp, gop, model = pickle.load(open(sys.argv[1], "rb"))
codec = load_codec(model)
buf = io.BytesIO()
with VideoEncoder(buf, frames[0].shape[1], frames[0].shape[0], fps, codec, gop=gop, rate=RateControl(qp=qp, roi_offset=6),
                  keep_stats=False) as enc:
    for f, gm in zip(frames, maps):
        enc.encode(f, gm)
print(hashlib.sha256(buf.getvalue()).hexdigest())
'''


def baseline_digest(rev: str, frames, maps, fps, qp: int, gop: int, model: str, threads: int) -> str:
    """SHA-256 of the stream revision ``rev``'s encoder writes for the same input."""
    import os
    import pickle
    import tempfile

    from .train_speed import baseline_site

    site = baseline_site(rev)
    try:
        with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as f:
            pickle.dump((frames, maps, fps, qp, gop, model), f)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        p = subprocess.run([sys.executable, "-c", BASELINE_PROGRAM, f.name], cwd=site, capture_output=True, text=True, env=env)
        if p.returncode:
            raise RuntimeError(p.stderr[-2000:])
        return p.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(site.parent / "src")], capture_output=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--clips", default="surveillance,davis:parkour")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--qp", type=int, nargs="+", default=[28, 32, 36])
    ap.add_argument("--gop", type=int, default=16)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--baseline-rev", default=None, help="also encode with this git revision (first clip, first qp)")
    ap.add_argument("--out", default="out/eval/video_speed")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    codec = load_codec(args.model)
    rows, checks = [], {}
    for spec in args.clips.split(","):
        name, frames, maps, fps = load(spec, Path(args.data), args.frames)
        h, w = frames[0].shape[:2]
        for qp in args.qp:
            base = None
            for label, tools in STEPS:
                data, secs = encode(frames, maps, fps, codec, qp, args.gop, tools)
                obj, psnr_o = measure(data, frames, maps, codec)
                kbps = lambda b: 8 * b / 1000 / (len(frames) / fps)  # noqa: E731
                row = {"clip": name, "size": f"{w}x{h}", "qp": qp, "step": label, "enc_fps": len(frames) / secs,
                       "kbps": kbps(len(data)), "object_kbps": kbps(obj), "object_psnr": psnr_o,
                       "sha256": hashlib.sha256(data).hexdigest()}
                if base is None:
                    base = row
                row["speedup"] = row["enc_fps"] / base["enc_fps"]
                row["object_bits_vs_first"] = row["object_kbps"] / max(base["object_kbps"], 1e-9) - 1
                row["object_psnr_vs_first"] = row["object_psnr"] - base["object_psnr"]
                rows.append(row)
                print(f"{name} qp {qp} {label}: {row['enc_fps']:.2f} frames/s, object {row['object_kbps']:.1f} kbit/s, "
                      f"{row['object_psnr']:.2f} dB")
            if args.baseline_rev and not checks:
                d = baseline_digest(args.baseline_rev, frames, maps, fps, qp, args.gop, args.model, args.threads)
                checks = {"clip": name, "qp": qp, "rev": args.baseline_rev, "identical": d == base["sha256"]}
    table = [[r["clip"], r["size"], r["qp"], r["step"], r["enc_fps"], r["speedup"], r["kbps"], r["object_kbps"],
              f"{100 * r['object_bits_vs_first']:+.1f}%", r["object_psnr"], f"{r['object_psnr_vs_first']:+.3f}"] for r in rows]
    lines = markdown_table(["clip", "size", "qp", "step", "encode frames/s", "speed-up", "kbit/s", "object kbit/s",
                            "object bits vs first", "object PSNR", "dB vs first"], table)
    if checks:
        lines += ["", f"exhaustive step vs revision {checks['rev']} ({checks['clip']}, qp {checks['qp']}): "
                      f"{'byte-identical' if checks['identical'] else 'DIFFERENT'} streams"]
    write_outputs(args.out, "video_speed", {"meta": run_meta(frames=args.frames, gop=args.gop, model=args.model),
                                            "rows": rows, "baseline": checks}, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
