"""Surveillance fan-in (scale-out issue): several camera files encoded in parallel as Ray tasks,
then each stream's tracks queried from its header and one track partially decoded.

The shared data holds one fixed-camera clip (``vtest``), so the cameras are disjoint segments of it,
each written as its own lossless file. Every configuration encodes the same camera files with the
same settings (foreground-detector tracks, rate control, one torch thread per job); the anchor is
the same jobs one after another in this process. Reported: wall time and frames/s of each
configuration (after its workers have started and loaded the weights), speed-up and efficiency
against one Ray worker, the start-up time (cluster, worker processes, imports, weights), whether every
configuration wrote the same bytes, and per camera the track table and a one-track decode.
Run: ``python -m ssc.eval.fanin --out out/eval/fanin`` (``make bench-fanin``).
"""
from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

from ssc.defaults import DEFAULT_VIDEO_MODEL
from ssc.batch import AnalyzeJob, DecodeJob, VideoEncodeJob, analyze_job, decode_job, encode_video_job
from ssc.parallel import JobError, LocalExecutor, RayExecutor

from .report import markdown_table, run_meta, save_figure, style_axis, subplots, write_outputs


def make_cameras(video: str, cameras: int, frames: int, out: Path) -> list[Path]:
    """``cameras`` disjoint ``frames``-long segments of ``video``, spread over it, as lossless .mkv."""
    from ssc.video.io import FrameWriter, open_frames

    src = open_frames(video)
    n = src.count or cameras * frames
    gap = max(frames, (n - frames) // max(cameras - 1, 1))
    starts = [i * gap for i in range(cameras)]
    paths = [out / f"cam{i}.mkv" for i in range(cameras)]
    if all(p.is_file() for p in paths):
        return paths
    out.mkdir(parents=True, exist_ok=True)
    writers = [FrameWriter(p, src.width, src.height, Fraction(src.fps)) for p in paths]
    for t, frame in enumerate(itertools.islice(src, starts[-1] + frames)):
        for s, w in zip(starts, writers):
            if s <= t < s + frames:
                w.write(frame)
    for w in writers:
        w.close()
    return paths


def encode_jobs(cams: list[Path], out: Path, args) -> list[VideoEncodeJob]:
    out.mkdir(parents=True, exist_ok=True)
    return [VideoEncodeJob(str(c), str(out / f"{c.stem}.ssv"), "detect:foreground", args.model, gop=args.gop,
                           kbps=args.kbps, roi_offset=args.roi_offset) for c in cams]


def warm_up(model: str) -> int:
    """Load the codec into this worker's cache (what a worker's first job would do anyway)."""
    import os

    from ssc.batch import shared_codec

    shared_codec(model)
    return os.getpid()


def run_config(name: str, workers: int, jobs, make, model: str) -> dict:
    """Start the executor, warm its workers (process start, imports, weights), then time the jobs."""
    t0 = time.perf_counter()
    ex = make()
    pids = ex.map(warm_up, [model] * workers, f"warm {name}")
    started = time.perf_counter() - t0
    t1 = time.perf_counter()
    res = ex.map(encode_video_job, jobs, f"encode {name}")
    wall = time.perf_counter() - t1
    ex.close()
    bad = [r for r in res if isinstance(r, JobError)]
    if bad:
        raise RuntimeError(f"{name}: {bad[0].error}")
    frames = sum(r.frames for r in res)
    return {"config": name, "workers": workers, "warm_pids": len(set(pids)), "startup_s": started, "wall_s": wall, "frames": frames,
            "frames_per_s": frames / wall, "streams": [r.stream_sha256 for r in res], "records": [asdict(r) for r in res]}


def query_and_decode(streams: list[str], out: Path) -> list[dict]:
    """Per stream: the track table from the header (nothing decoded) and the partial decode of its
    biggest object track."""
    rows = []
    for s in streams:
        hdr = analyze_job(AnalyzeJob(s, "header", 0))
        objects = [t for t in hdr.tracks if t["label"] != "background"]
        if not objects:
            rows.append({"stream": Path(s).name, "tracks": 0})
            continue
        big = max(objects, key=lambda t: t["bytes"])
        dec = decode_job(DecodeJob(s, str(out / f"{Path(s).stem}-track{big['id']}"), groups=(big["id"],)))
        rows.append({"stream": Path(s).name, "tracks": len(objects), "track": big["id"], "track_frames": [big["first"], big["last"]],
                     "bytes_read": dec.bytes_read, "total_bytes": dec.total_bytes, "read_fraction": dec.bytes_read / dec.total_bytes,
                     "decode_frames_per_s": dec.timing["frames_per_s"], "frames": dec.frames})
    return rows


def plot(configs: list[dict], path: Path) -> None:
    fig, axes = subplots(1, 1, figsize=(5.5, 4))
    ax = axes if not isinstance(axes, (list, tuple)) else axes[0]
    ray = [c for c in configs if c["config"].startswith("ray")]
    ax.plot([c["workers"] for c in ray], [c["frames_per_s"] for c in ray], "o-", label="Ray workers")
    local = [c for c in configs if c["config"].startswith("local")]
    for c, colour in zip(local, ("k", "tab:orange", "tab:green")):
        ax.axhline(c["frames_per_s"], ls="--", lw=1, color=colour, label=c["config"])
    style_axis(ax, "workers", "frames/s (all cameras)", "surveillance fan-in encode throughput")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--video", default="../shared/data/video_surveillance/vtest_480x360_h264.avi")
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--frames", type=int, default=96, help="frames per camera")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--kbps", type=float, default=150.0)
    ap.add_argument("--roi-offset", type=float, default=8.0)
    ap.add_argument("--gop", type=int, default=32)
    ap.add_argument("--model", default=DEFAULT_VIDEO_MODEL)
    ap.add_argument("--out", default="out/eval/fanin")
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    cams = make_cameras(args.video, args.cameras, args.frames, out / "cameras")
    configs = []
    for threads in (1, 2):
        name = f"local, 1 process, {threads} thread{'s' * (threads > 1)}"
        configs.append(run_config(name, 1, encode_jobs(cams, out / f"local{threads}", args), lambda t=threads: LocalExecutor(t), args.model))
    for w in args.workers:
        configs.append(run_config(f"ray, {w} workers", w, encode_jobs(cams, out / f"ray{w}", args),
                                  lambda w=w: RayExecutor(None, w, 1), args.model))
    same = all(c["streams"] == configs[0]["streams"] for c in configs)
    base = next(c for c in configs if c["config"] == "ray, 1 workers")
    for c in configs:
        c["speedup"] = c["frames_per_s"] / base["frames_per_s"]
        c["efficiency"] = c["speedup"] / c["workers"]
    streams = [r["output"] for r in configs[-1]["records"]]
    per_cam = query_and_decode(streams, out / "decoded")
    cols = ["configuration", "workers", "start-up s (not in wall)", "wall s", "frames", "frames/s", "speed-up vs 1 Ray worker", "efficiency"]
    rows = [[c["config"], c["workers"], c["startup_s"], c["wall_s"], c["frames"], c["frames_per_s"], c["speedup"], c["efficiency"]]
            for c in configs]
    lines = markdown_table(cols, rows)
    lines += ["", f"identical streams in every configuration: {same}", ""]
    lines += markdown_table(["stream", "object tracks", "decoded track", "its frames", "bytes read", "of stream", "decode frames/s"],
                            [[r["stream"], r["tracks"], r.get("track"), r.get("track_frames"), r.get("bytes_read"),
                              r.get("read_fraction"), r.get("decode_frames_per_s")] for r in per_cam])
    data = {"configs": configs, "identical_streams": same, "cameras": per_cam,
            "meta": run_meta(video=args.video, cameras=args.cameras, frames_per_camera=args.frames, kbps=args.kbps, gop=args.gop,
                             roi_offset=args.roi_offset, model=args.model, masks="detect:foreground")}
    write_outputs(out, "fanin", data, lines)
    plot(configs, out / "fanin.png")


if __name__ == "__main__":
    main()
