"""SSVC encoder speed, step by step (surveillance issue): the same clips and qps encoded by the encoders
of earlier revisions (``--baseline-rev``, each run from a git worktree in a subprocess, decoded by this
revision; the first is the anchor of the ratios) and by this revision step by step: the motion search's tools (:class:`ssc.video.motion.SearchTools`)
from the exhaustive search to the default, then the background's intra period (every GOP, then the
default of every ``BACKGROUND_GOP_FACTOR`` GOPs); each row's encode frames/s, whole-stream and
object-only bits, object and background PSNR and object-only decode frames/s, in one run. Every encoder is warmed up on two
frames before it is timed; each row's time is the fastest of ``--repeats`` encodes.

Stop background training first: figures taken on a busy CPU are not figures.

    python -m ssc.eval.video_speed --frames 32 --qp 28 32 36 --baseline-rev 9828d96
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

from ssc.defaults import DEFAULT_VIDEO_MODEL
from ssc.video.masks import DetectorMasks, FolderMasks, ForegroundDetector
from ssc.models.zoo import load_codec
from ssc.video import RateControl, VideoDecoder, VideoEncoder, VideoReader
from ssc.video.codec import BACKGROUND_GOP_FACTOR
from ssc.video.motion import EXHAUSTIVE, WIDE, SearchTools

from .report import markdown_table, run_meta, write_outputs
from .video import clip_source

#: (label, search tools, background intra period in GOPs)
STEPS = [
    ("exhaustive search", EXHAUSTIVE, 1),
    ("wide windows (+-2 / +-3 / +-2)", WIDE, 1),
    ("narrow windows (+-1)", SearchTools(), 1),
    (f"+ background intra every {BACKGROUND_GOP_FACTOR} GOPs (default)", SearchTools(), BACKGROUND_GOP_FACTOR),
]


def load(spec: str, data: Path, frames: int):
    """(name, frames, group maps, fps) of ``surveillance`` or ``davis:NAME``."""
    name, src = clip_source(spec, data)
    if spec.startswith("davis:"):
        masks = FolderMasks(data / "davis2016/Annotations/480p" / name, {1: (1, "person")})
    else:
        masks = DetectorMasks(ForegroundDetector(), every=5, score=0.0)
    fr = list(itertools.islice(src, frames))
    return name, fr, [masks(i, f) for i, f in enumerate(fr)], float(src.fps)


def encode(frames, maps, fps, codec, qp: int, gop: int, tools: SearchTools, repeats: int = 1,
           background_gops: int = BACKGROUND_GOP_FACTOR) -> tuple[bytes, float]:
    """(stream, seconds): the fastest of ``repeats`` encodes (the streams are identical)."""
    runs = [_encode_once(frames, maps, fps, codec, qp, gop, tools, background_gops) for _ in range(repeats)]
    return runs[0][0], min(r[1] for r in runs)


def _encode_once(frames, maps, fps, codec, qp: int, gop: int, tools: SearchTools, background_gops: int) -> tuple[bytes, float]:
    buf = io.BytesIO()
    t = time.perf_counter()
    with VideoEncoder(buf, frames[0].shape[1], frames[0].shape[0], fps, codec, gop=gop, background_gop=background_gops * gop,
                      rate=RateControl(qp=qp, roi_offset=6), keep_stats=False, tools=tools) as enc:
        for f, gm in zip(frames, maps):
            enc.encode(f, gm)
    return buf.getvalue(), time.perf_counter() - t


def measure(data: bytes, frames, maps, codec) -> tuple[int, float, float, float]:
    """(object-only bytes read, object PSNR, object-only decode frames/s, background PSNR)."""
    se, n = np.zeros(2), np.zeros(2)  # objects, background
    with VideoReader(data) as rd:
        for df in VideoDecoder(rd, codec).frames():
            m = maps[df.number].labels != 0
            err = ((df.image.astype(np.float64) - frames[df.number]) ** 2).sum(-1)
            se += err[m].sum(), err[~m].sum()
            n += 3 * m.sum(), 3 * (~m).sum()
        objs = sorted(t for t in rd.index.tracks if t != rd.header.complement_track)
    t = time.perf_counter()
    with VideoReader(data) as rd:
        for _ in VideoDecoder(rd, codec, tracks=objs).frames() if objs else []:
            pass
        obj_bytes = rd.bytes_read if objs else 0
    dec_fps = len(frames) / (time.perf_counter() - t)
    psnr = 10 * np.log10(255.0**2 / np.maximum(se / np.maximum(n, 1), 1e-12))
    return obj_bytes, float(psnr[0]), dec_fps, float(psnr[1])


BASELINE_PROGRAM = r'''
import io, pickle, sys, time
import torch
from ssc.models.zoo import load_codec
from ssc.video import RateControl, VideoEncoder
frames, maps, fps, qp, gop, model, threads, repeats, out = pickle.load(open(sys.argv[1], "rb"))
torch.set_num_threads(threads)
codec = load_codec(model)
def run(n):
    buf = io.BytesIO()
    t = time.perf_counter()
    with VideoEncoder(buf, frames[0].shape[1], frames[0].shape[0], fps, codec, gop=gop, rate=RateControl(qp=qp, roi_offset=6),
                      keep_stats=False) as enc:
        for f, gm in zip(frames[:n], maps[:n]):
            enc.encode(f, gm)
    return buf.getvalue(), time.perf_counter() - t
run(2)
runs = [run(len(frames)) for _ in range(repeats)]
open(out, "wb").write(runs[0][0])
print(min(r[1] for r in runs))
'''


class Baseline:
    """The encoder of revision ``rev`` in a subprocess (a git worktree made once, removed by close())."""

    def __init__(self, rev: str, model: str, threads: int, repeats: int) -> None:
        from .train_speed import baseline_site

        from ssc.models.zoo import resolve

        # this revision's weights file, so both encoders code with the same intra model
        self.rev, self.model, self.threads, self.repeats = rev, str(resolve(model)[0].resolve()), threads, repeats
        self.site = baseline_site(rev)

    def encode(self, frames, maps, fps, qp: int, gop: int) -> tuple[bytes, float]:
        import os
        import pickle
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            job, out = Path(d) / "job.pkl", Path(d) / "stream.ssv"
            with open(job, "wb") as f:
                pickle.dump((frames, maps, fps, qp, gop, self.model, self.threads, self.repeats, str(out)), f)
            env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
            p = subprocess.run([sys.executable, "-c", BASELINE_PROGRAM, str(job)], cwd=self.site, capture_output=True,
                               text=True, env=env)
            if p.returncode:
                raise RuntimeError(p.stderr[-2000:])
            return out.read_bytes(), float(p.stdout.strip().splitlines()[-1])

    def close(self) -> None:
        subprocess.run(["git", "worktree", "remove", "--force", str(self.site.parent / "src")], capture_output=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--clips", default="surveillance,davis:parkour")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--qp", type=int, nargs="+", default=[28, 32, 36])
    ap.add_argument("--gop", type=int, default=16)
    ap.add_argument("--model", default=DEFAULT_VIDEO_MODEL)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="timed encodes per row (the fastest counts: a shared machine is noisy)")
    ap.add_argument("--baseline-rev", nargs="+", default=[],
                    help="also encode with these git revisions' encoders, in this order (the first is the ratios' anchor)")
    ap.add_argument("--steps", type=int, nargs="+", default=None,
                    help="which of this revision's steps to run (0-based; default all): " + "; ".join(s[0] for s in STEPS))
    ap.add_argument("--out", default="out/eval/video_speed")
    args = ap.parse_args(argv)
    steps = [STEPS[i] for i in args.steps] if args.steps is not None else STEPS
    torch.set_num_threads(args.threads)
    codec = load_codec(args.model)
    bases = [Baseline(rev, args.model, args.threads, args.repeats) for rev in args.baseline_rev]
    rows = []
    try:
        for spec in args.clips.split(","):
            name, frames, maps, fps = load(spec, Path(args.data), args.frames)
            h, w = frames[0].shape[:2]
            encode(frames[:2], maps[:2], fps, codec, args.qp[0], args.gop, SearchTools())  # warm-up (compiled loops)
            for qp in args.qp:
                runs = [(f"encoder of {b.rev}", lambda b=b: b.encode(frames, maps, fps, qp, args.gop)) for b in bases]
                runs += [(label, lambda t=tools, b=bg: encode(frames, maps, fps, codec, qp, args.gop, t, args.repeats, b))
                         for label, tools, bg in steps]
                anchor = None
                for label, run in runs:
                    data, secs = run()
                    obj, psnr_o, dec_fps, psnr_b = measure(data, frames, maps, codec)
                    kbps = lambda b: 8 * b / 1000 / (len(frames) / fps)  # noqa: E731
                    row = {"clip": name, "size": f"{w}x{h}", "qp": qp, "step": label, "enc_fps": len(frames) / secs,
                           "kbps": kbps(len(data)), "object_kbps": kbps(obj), "object_psnr": psnr_o,
                           "background_psnr": psnr_b, "object_decode_fps": dec_fps, "sha256": hashlib.sha256(data).hexdigest()}
                    anchor = anchor or row
                    row["speedup"] = row["enc_fps"] / anchor["enc_fps"]
                    row["object_bits_vs_anchor"] = row["object_kbps"] / max(anchor["object_kbps"], 1e-9) - 1
                    row["object_psnr_vs_anchor"] = row["object_psnr"] - anchor["object_psnr"]
                    rows.append(row)
                    print(f"{name} qp {qp} {label}: {row['enc_fps']:.2f} frames/s, object {row['object_kbps']:.1f} kbit/s, "
                          f"{row['object_psnr']:.2f} dB, {row['kbps']:.1f} kbit/s in all, background {psnr_b:.2f} dB", flush=True)
    finally:
        for b in bases:
            b.close()
    table = [[r["clip"], r["size"], r["qp"], r["step"], r["enc_fps"], r["speedup"], r["kbps"], r["object_kbps"],
              f"{100 * r['object_bits_vs_anchor']:+.1f}%", r["object_psnr"], f"{r['object_psnr_vs_anchor']:+.3f}", r["background_psnr"],
              r["object_decode_fps"]] for r in rows]
    anchor_name = f"the encoder of {args.baseline_rev[0]}" if args.baseline_rev else "the first step"
    lines = markdown_table(["clip", "size", "qp", "step", "encode frames/s", "speed-up", "kbit/s", "object kbit/s",
                            "object bits vs anchor", "object PSNR", "dB vs anchor",
                            "background PSNR", "object-only decode frames/s"], table)
    lines += ["", f"anchor of the ratios: {anchor_name} (first row of each clip and qp)"]
    write_outputs(args.out, "video_speed", {"meta": run_meta(frames=args.frames, gop=args.gop, model=args.model,
                                                             baseline_rev=args.baseline_rev, repeats=args.repeats), "rows": rows}, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
