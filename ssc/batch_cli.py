"""``ssc batch encode | decode | analyze`` argument parsing: inputs become jobs (:mod:`ssc.batch`),
jobs run here or over Ray (:mod:`ssc.parallel`), results land in one JSON."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .args import EXIT_PARTIAL, detector_args, executor_args, force_arg
from .defaults import DEFAULT_LOOKAHEAD, lookahead_for
from .errors import SSCError



def _run(args: argparse.Namespace, command: str, fn, jobs: list, settings: dict, out_json: Path) -> dict:
    """Run ``jobs`` where the execution arguments say, write and return the results JSON."""
    from .batch import run_batch
    from .outputs import check_new
    from .parallel import make_executor

    for out in [Path(j.output) for j in jobs if hasattr(j, "output")] + [out_json]:
        check_new(out, args.force)  # before any job runs: a rerun never half-overwrites a previous one
    ex = make_executor(args.ray, args.address, args.workers, args.threads)
    try:
        return run_batch(command, ex, fn, jobs, settings, out_json)
    finally:
        ex.close()


def _out_dir(args: argparse.Namespace) -> Path:
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _finish(doc: dict, out_json: Path) -> int:
    run = doc["run"]
    print(f"{out_json}: {run['jobs']} jobs on {run['executor']} ({run['workers']} workers) in {run['seconds']:.1f} s, "
          f"{run['failed']} failed")
    bad = 0
    for it in doc["items"]:
        if "error" in it:
            bad += 1
            print(f"ssc: error: {it['input']}: {it['error']}", file=sys.stderr)
        for why in it.get("failed", {}).values():
            bad += 1
            print(f"ssc: error: {it.get('stream')}: {why}", file=sys.stderr)
    return EXIT_PARTIAL if bad else 0


def cmd_batch_encode(args: argparse.Namespace) -> int:
    from .batch import (IMAGE_SUFFIXES, VIDEO_SUFFIXES, ImageEncodeJob, VideoEncodeJob, encode_image_job, encode_video_job,
                        expand_inputs, resolve_spec, unique_outputs, video_chunks)

    inputs = expand_inputs(args.inputs, IMAGE_SUFFIXES + VIDEO_SUFFIXES)
    videos = [p for p in inputs if p.suffix.lower() in VIDEO_SUFFIXES]
    if videos and len(videos) != len(inputs):
        raise SSCError("ssc batch encode takes images or videos, not both in one run")
    out_dir = _out_dir(args)
    model = args.weights or args.model
    if videos:
        jobs = []
        for p, o in zip(videos, unique_outputs(videos, out_dir, ".ssv")):
            chunks = video_chunks(p, args.chunk_frames, args.fps)
            for start, stop in chunks:
                out = o if len(chunks) == 1 else o.with_suffix(f".{start:06d}.ssv")
                jobs.append(VideoEncodeJob(str(p), str(out), resolve_spec(args.masks, p), model, args.qp, args.gop, args.kbps,
                                           args.roi_offset, start, stop, args.fps, args.device, args.background_gop,
                                           args.inner, args.lookahead))
        fn = encode_video_job
        settings = {"kind": "video", "masks": args.masks, "model": model, "qp": args.qp, "gop": args.gop,
                    "background_gop": args.background_gop, "kbps": args.kbps,
                    "roi_offset": args.roi_offset, "inner": args.inner, "lookahead": lookahead_for(args.kbps, args.lookahead), "chunk_frames": args.chunk_frames,
                    "threads": args.threads}
    else:
        jobs = [ImageEncodeJob(str(p), str(o), resolve_spec(args.masks, p), model, args.quality, args.policy, args.min_area,
                               args.tile, args.device, args.refine)
                for p, o in zip(inputs, unique_outputs(inputs, out_dir, ".ssc"))]
        fn = encode_image_job
        settings = {"kind": "image", "masks": args.masks, "model": model, "quality": args.quality, "policy": args.policy,
                    "min_area": args.min_area, "refine": args.refine, "threads": args.threads}
    out_json = Path(args.json) if args.json else out_dir / "batch_encode.json"
    return _finish(_run(args, "encode", fn, jobs, settings, out_json), out_json)


def _selection(text: str | None, cast=str) -> tuple | None:
    return tuple(cast(t) for t in text.split(",") if t.strip()) if text else None


def cmd_batch_decode(args: argparse.Namespace) -> int:
    from .batch import STREAM_SUFFIXES, DecodeJob, check_unique, decode_job, expand_inputs
    from .video.format import is_video_file

    streams = expand_inputs(args.streams, STREAM_SUFFIXES)
    out_dir = _out_dir(args)
    groups = _selection(args.groups, int)
    classes = _selection(args.classes)
    outputs = check_unique([out_dir / (s.stem + (args.video_format if is_video_file(s) else ".png")) for s in streams])
    jobs = [DecodeJob(str(s), str(o), groups, classes, args.start, args.stop, args.fill, args.device)
            for s, o in zip(streams, outputs)]
    settings = {"groups": groups, "classes": classes, "start": args.start, "stop": args.stop, "fill": args.fill,
                "threads": args.threads}
    out_json = Path(args.json) if args.json else out_dir / "batch_decode.json"
    return _finish(_run(args, "decode", decode_job, jobs, settings, out_json), out_json)


def image_ids(streams: list[Path], ann: str | None) -> list[int]:
    """COCO image ids by file stem from ``ann`` when given, else 1, 2, ... in input order."""
    if not ann:
        return list(range(1, len(streams) + 1))
    import json

    recs = json.loads(Path(ann).read_text())["images"]
    by_stem = {Path(r["file_name"]).stem: int(r["id"]) for r in recs}
    missing = [s.name for s in streams if s.stem not in by_stem]
    if missing:
        raise SSCError(f"{ann} has no image named like {', '.join(missing[:3])}")
    return [by_stem[s.stem] for s in streams]


def cmd_batch_analyze(args: argparse.Namespace) -> int:
    from .batch import STREAM_SUFFIXES, AnalyzeJob, analyze_job, expand_inputs

    streams = expand_inputs(args.streams, STREAM_SUFFIXES)
    if args.every < 1:
        raise SSCError("--every must be at least 1")
    groups, classes = _selection(args.groups, int), _selection(args.classes)
    from ssc.tasks.heads import resolve_detector

    # features: each stream's feature codec names its detector (a --backend given is checked against it)
    backend = args.backend if args.domain == "features" else resolve_detector(args.backend, args.det_weights)[0]
    jobs = [AnalyzeJob(str(s), args.task, iid, backend, args.det_weights, groups, classes, args.score_thresh,
                       args.every, args.start, args.stop, args.device, args.domain)
            for s, iid in zip(streams, image_ids(streams, args.ann))]
    settings = {"task": args.task, "domain": args.domain, "backend": backend, "det_weights": args.det_weights, "groups": groups,
                "classes": classes, "score_thresh": args.score_thresh, "every": args.every, "threads": args.threads}
    doc = _run(args, "analyze", analyze_job, jobs, settings, Path(args.output))
    print(f"{args.output}: {len(doc['results'])} {args.task} results from {len(jobs)} streams")
    return _finish(doc, Path(args.output))


def add_batch_commands(sub, model_args) -> None:
    b = sub.add_parser("batch", help="encode, decode or analyze many inputs as jobs, locally or over Ray")
    bsub = b.add_subparsers(dest="batch_cmd", required=True)

    e = bsub.add_parser("encode", help="images -> .ssc, or videos (whole or in chunks) -> .ssv, one job each")
    e.add_argument("inputs", nargs="+", help="image or video files, or folders of them")
    e.add_argument("--masks", required=True,
                   help="mask source per input; {stem} is the input's name: coco:ANN.json, png:maps/{stem}.png, "
                        "folder:ann/{stem}, detect:foreground")
    e.add_argument("-o", "--output", required=True, help="output folder")
    force_arg(e)
    e.add_argument("--json", default=None, help="results JSON (default OUTPUT/batch_encode.json)")
    e.add_argument("--quality", type=float, default=None, help="images: quality level")
    e.add_argument("--policy", default="instance", choices=["instance", "class", "objects"])
    e.add_argument("--min-area", type=int, default=0)
    e.add_argument("--tile", type=int, default=None)
    e.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="images: encoder-side latent refinement steps per group (slower, fewer bits); 0 = off")
    e.add_argument("--qp", type=float, default=32.0, help="videos: quantiser")
    e.add_argument("--gop", type=int, default=16, help="videos: I-frame period of the object tracks")
    e.add_argument("--background-gop", type=int, default=None, help="videos: the background's I-frame period (default 4x --gop)")
    e.add_argument("--kbps", type=float, default=None, help="videos: target bitrate per stream")
    e.add_argument("--roi-offset", type=float, default=None,
                   help="videos: background qp minus object qp (default: 2 for hevc, 6 for learned)")
    e.add_argument("--inner", choices=["hevc", "learned"], default="hevc",
                   help="videos: the tracks' inner codec (hevc: libx265 tubes, the default; learned: --model)")
    e.add_argument("--lookahead", type=int, default=None,
                   help=f"videos, hevc: frames x265 may look ahead, with its CU-tree (frames written up to that late; "
                        f"default {DEFAULT_LOOKAHEAD} at a constant qp, 0 with --kbps)")
    e.add_argument("--fps", type=float, default=None)
    e.add_argument("--chunk-frames", type=int, default=None,
                   help="videos: split each file into chunks of this many frames, one job and one .ssv each")
    model_args(e)
    executor_args(e)
    e.set_defaults(fn=cmd_batch_encode)

    d = bsub.add_parser("decode", help="decode all or chosen groups/tracks of many streams, one job each")
    d.add_argument("streams", nargs="+", help=".ssc/.ssv files or folders of them")
    d.add_argument("-o", "--output", required=True, help="output folder (PNG per image, frames per video)")
    force_arg(d)
    d.add_argument("--json", default=None, help="results JSON (default OUTPUT/batch_decode.json)")
    d.add_argument("--groups", default=None, help="image groups or video tracks, comma-separated ids")
    d.add_argument("--classes", default=None, help="image classes or video labels, comma-separated")
    d.add_argument("--start", type=int, default=0)
    d.add_argument("--stop", type=int, default=None)
    d.add_argument("--fill", type=int, default=0)
    d.add_argument("--video-format", default="", choices=["", ".mkv", ".mp4"],
                   help="videos: a folder of PNG frames (default) or a video file")
    d.add_argument("--device", default="cpu")
    executor_args(d)
    d.set_defaults(fn=cmd_batch_decode)

    a = bsub.add_parser("analyze", help="task heads (or the header alone) on many streams, one JSON of COCO results")
    a.add_argument("streams", nargs="+")
    a.add_argument("--task", default="detect", choices=["detect", "segment", "header"])
    a.add_argument("-o", "--output", required=True, help="results JSON")
    force_arg(a)
    a.add_argument("--groups", default=None)
    a.add_argument("--classes", default=None)
    a.add_argument("--ann", default=None, help="COCO annotations: image ids by file name (default 1, 2, ...)")
    detector_args(a)
    a.add_argument("--domain", choices=["pixels", "features"], default="pixels",  # ssc.analyze.DOMAINS
                   help="features: image streams of an Omni model feed decoded latents to its detector's heads")
    a.add_argument("--every", type=int, default=1, help="videos: analyse every N-th frame")
    a.add_argument("--start", type=int, default=0)
    a.add_argument("--stop", type=int, default=None)
    a.add_argument("--device", default="cpu")
    executor_args(a)
    a.set_defaults(fn=cmd_batch_analyze)
