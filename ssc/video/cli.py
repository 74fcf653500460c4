"""``ssc encode-video | decode-video | analyze-video`` and the video part of ``ssc info`` (SSVC, ``.ssv``)."""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

from ..args import EXIT_INTERRUPTED, EXIT_PARTIAL, force_arg
from ..defaults import DEFAULT_LOOKAHEAD, DEFAULT_VIDEO_MODEL, lookahead_for
from ..errors import SSCError
from ..outputs import atomic_output, check_new, interrupt_between, write_text
from .info import video_info
from .hevc import BACKGROUND_RATES, HevcSettings



def _names(items: list[str] | None) -> dict[int, tuple[int, str]]:
    out = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep or not k.strip().isdigit() or not v:
            raise SSCError(f"--label wants ID=NAME, got {it!r}")
        out[int(k)] = (0, v)
    return out


def cmd_encode_video(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .masks import load_video_masks
    from ..models.zoo import load_codec
    from . import RateControl, VideoEncoder
    from .ratecontrol import roi_offset_for
    from .io import open_frames

    check_new(args.output, args.force)
    src = open_frames(args.video, fps=args.fps)
    masks = load_video_masks(args.masks, _names(args.label), device=args.device)
    model = args.weights or (args.model if args.model_given else DEFAULT_VIDEO_MODEL)
    codec = load_codec(model, device=args.device) if args.inner == "learned" else None
    rate = RateControl(qp=args.qp, roi_offset=roi_offset_for(args.inner, args.roi_offset), target_kbps=args.kbps)
    hevc = HevcSettings(args.preset, args.tune, lookahead_for(args.kbps, args.lookahead), background_rate=args.background_rate)
    n = min(x for x in (src.count, args.frames) if x is not None) if (src.count or args.frames) else None
    frames = itertools.islice(src, args.frames) if args.frames else iter(src)
    interrupted = False
    with atomic_output(args.output) as tmp:
        with VideoEncoder(tmp, src.width, src.height, src.fps, codec, gop=args.gop, rate=rate, keep_stats=False,
                          background_gop=args.background_gop, inner=args.inner, hevc=hevc) as enc:
            bar = tqdm(frames, total=n, unit="frame", desc=Path(args.output).name, disable=args.quiet)
            try:
                for i, frame in enumerate(bar):
                    with interrupt_between():  # Ctrl-C lands between frames (the stream stays whole)
                        st = enc.encode(frame, masks(i, frame))
                    bar.set_postfix(kB=enc.pos // 1000, qp=min(st.track_qp.values()))
            except KeyboardInterrupt:  # keep the frames already written: the index makes them a valid stream
                interrupted = True
            finally:
                bar.close()
            try:  # x265 flushes the frames its lookahead still holds: a Ctrl-C then lands once they are written
                with interrupt_between():
                    summ = enc.close()
            except KeyboardInterrupt:
                interrupted, summ = True, enc.close()  # (closed already: its summary)
        if interrupted and not summ.frames:
            raise KeyboardInterrupt
    if interrupted:
        print(f"ssc: interrupted: {args.output} holds the first {summ.frames} frames, complete and decodable",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    secs = summ.frames / float(src.fps) if summ.frames else 0
    print(f"{args.output}: {summ.frames} frames, {summ.bytes} bytes, {8 * summ.bytes / 1000 / max(secs, 1e-9):.1f} kbit/s, "
          f"{len(summ.tracks)} tracks, {summ.frames / max(summ.seconds, 1e-9):.2f} frames/s")
    return 0


def cmd_decode_video(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..models.zoo import load_codec
    from . import VideoDecoder, VideoReader
    from .io import FrameWriter

    check_new(args.output, args.force)
    codec = load_codec(args.weights or args.model, device=args.device) if (args.weights or args.model_given) else None
    failures = 0
    with VideoReader(args.stream) as rd:
        if rd.scan_error:
            print(f"ssc: warning: {rd.scan_error}", file=sys.stderr)
        labels = args.labels.split(",") if args.labels else None
        dec = VideoDecoder(rd, codec, args.tracks, labels, args.device, backdrop=args.backdrop)
        stop = rd.num_frames if args.stop is None else args.stop
        h = rd.header
        from fractions import Fraction

        with FrameWriter(args.output, h.width, h.height, Fraction(h.fps_num, h.fps_den)) as out:
            for fr in tqdm(dec.frames(args.start, stop, args.fill), total=max(0, min(stop, rd.num_frames) - args.start),
                           unit="frame", disable=args.quiet):
                out.write(fr.image)
                for why in fr.failed.values():
                    failures += 1
                    print(f"ssc: error: {why}", file=sys.stderr)
        print(f"{args.output}: {out.n} frames of tracks {dec.tracks}, read {rd.bytes_read} of {rd.size} bytes")
    return EXIT_PARTIAL if failures else 0


def decode_clip(stream: str, tracks=None, labels=None, start: int = 0, stop: int | None = None, device: str = "cpu",
                codec=None, backdrop: bool = False):
    """(T, H, W, 3) uint8 clip of the chosen tracks over [start, stop), the reader's byte count and the
    stream size (frames outside the chosen tracks are black, or the held background with ``backdrop``)."""
    import numpy as np

    from . import VideoDecoder, VideoReader

    with VideoReader(stream) as rd:
        dec = VideoDecoder(rd, codec, tracks, labels, device, backdrop)
        frames, failed = [], {}
        for fr in dec.frames(start, stop):
            frames.append(fr.image)
            failed.update({(fr.number, k): v for k, v in fr.failed.items()})
        return np.stack(frames), dec.tracks, rd.bytes_read, rd.size, failed


def track_poses(stream: str, tracks, labels, start: int, stop: int | None, device: str = "cpu",
                backdrop: bool = False, head=None) -> tuple[list[dict], list[int], int, int, dict]:
    """Person keypoints (and box, score) of the blazepose head on every decoded frame of the chosen
    tracks, each assigned to the track holding most of its mask: (results with ``frame`` and
    ``track_id``, tracks, bytes read, stream size, failures)."""
    from ssc.analyze import results_in_region
    from ssc.tasks import resolve_head

    from . import VideoDecoder, VideoReader

    head = head or resolve_head("blazepose", device=device)
    out, failed = [], {}
    with VideoReader(stream) as rd:
        dec = VideoDecoder(rd, None, tracks, labels, device, backdrop)
        for fr in dec.frames(start, stop):
            failed.update({(fr.number, k): v for k, v in fr.failed.items()})
            people = head.predict(fr.image)
            for tid in dec.tracks:
                region = fr.track_map == tid
                if region.any():
                    out += [{**r, "frame": fr.number, "track_id": tid}
                            for r in results_in_region(people, region, fr.number, "pose")]
        return out, dec.tracks, rd.bytes_read, rd.size, failed


def cmd_analyze_video(args: argparse.Namespace) -> int:
    import time

    if args.task == "pose":
        t0 = time.perf_counter()
        res, tracks, read, size, failed = track_poses(args.stream, args.tracks, args.labels.split(",") if args.labels else None,
                                                      args.start, args.stop, args.device, args.backdrop)
        write_text(args.output, json.dumps({"stream": args.stream, "tracks": tracks, "task": "pose", "bytes_read": read,
                                            "total_bytes": size, "seconds": time.perf_counter() - t0, "results": res}))
        print(f"{args.output}: {len(res)} person keypoint results on tracks {tracks}, read {read} of {size} bytes")
        for why in failed.values():
            print(f"ssc: error: {why}", file=sys.stderr)
        return EXIT_PARTIAL if failed else 0
    if not args.action_weights:
        raise SSCError("--task action needs --action-weights (ssc ships no action model)")
    from ssc.tasks.action import VideoClassifier

    head = VideoClassifier(args.action_model, args.action_weights, args.label_map, device=args.device)
    t0 = time.perf_counter()
    clip, tracks, read, size, failed = decode_clip(args.stream, args.tracks, args.labels.split(",") if args.labels else None,
                                                   args.start, args.stop, args.device, backdrop=args.backdrop)
    t1 = time.perf_counter()
    pred = head.predict(clip)
    t2 = time.perf_counter()
    res = {"stream": args.stream, "tracks": tracks, "frames": [args.start, args.start + len(clip)], "bytes_read": read,
           "total_bytes": size, "top_k": [{"label": lab, "score": sc} for lab, sc in zip(pred.labels, pred.scores)],
           "decode_seconds": t1 - t0, "head_seconds": t2 - t1, "model": args.action_model}
    write_text(args.output, json.dumps(res, indent=1))
    print(f"{args.output}: {pred.labels[0]} ({pred.scores[0]:.3f}) on tracks {tracks}, {len(clip)} frames, "
          f"read {read} of {size} bytes")
    for why in failed.values():
        print(f"ssc: error: {why}", file=sys.stderr)
    return EXIT_PARTIAL if failed else 0


def print_video_info(path: str, as_json: bool, budget: bool = False) -> None:
    info = video_info(path, budget)
    if as_json:
        print(json.dumps(info, indent=1))
        return
    print(f"{path}: SSVC video {info['width']}x{info['height']} @ {info['fps']:.3g} fps, {info['frames']} frames "
          f"({len(info['i_frames'])} I-frames), "
          + (f"model {info['model_id']}" if info["inner"] == "learned" else f"{info['inner']} tracks")
          + f", {info['total_bytes']} bytes")
    print(f"{'track':>5} {'label':<20} {'frames':<12} {'bytes':>10}")
    for t in info["tracks"]:
        print(f"{t['id']:>5} {t['label'][:20]:<20} {str(t['first']) + '-' + str(t['last']):<12} {t['bytes']:>10}")
    if budget:
        print(f"{'part':<20} {'bytes':>10} {'share':>7}")
        for part, n in info["byte_budget"].items():
            print(f"{part:<20} {n:>10} {n / max(info['total_bytes'], 1):>7.1%}")


def add_video_commands(sub, model_args, ids_type) -> None:
    def selection_args(sp: argparse.ArgumentParser) -> None:
        """Which tracks and frames decode-video and analyze-video read."""
        sp.add_argument("--tracks", type=ids_type, default=None, help="comma-separated track ids")
        sp.add_argument("--labels", default=None, help="comma-separated track labels")
        sp.add_argument("--start", type=int, default=0, help="first frame (decoding starts where the chosen tracks were last coded intra)")
        sp.add_argument("--stop", type=int, default=None, help="frame after the last")
        sp.add_argument("--backdrop", action="store_true",
                        help="show the chosen tracks over the background held from its intra refreshes (reads only "
                             "the background's I entries) instead of a flat fill")

    e = sub.add_parser("encode-video", help="encode a video (file or folder of frames) with per-frame group masks")
    e.add_argument("video")
    e.add_argument("--masks", required=True,
                   help="folder:DIR | propagate:FIRST.png | detect:foreground[,every=N] | detect:MODEL[,every=N][,score=S]")
    e.add_argument("-o", "--output", required=True)
    force_arg(e)
    e.add_argument("--inner", choices=["hevc", "learned"], default="hevc",
                   help="the tracks' inner codec: hevc (libx265 per track, the default: fewer bits for the same person "
                        "fidelity on the surveillance clip and DAVIS parkour) or learned (ssc's image codec with motion "
                        "and residual layers; fewer bits on crowds of overlapping persons, DAVIS breakdance; "
                        "docs/results.md)")
    e.add_argument("--preset", default="medium", help="hevc: x265 preset (ultrafast ... veryslow)")
    e.add_argument("--tune", default="zerolatency", help="hevc: x265 tune (zerolatency, psnr, ssim, grain, fastdecode)")
    e.add_argument("--lookahead", type=int, default=None,
                   help=f"hevc: frames x265 may look ahead, with its CU-tree (fewer bits for the same quality at a "
                        f"constant qp; each frame is written up to this many frames late; 0 for live use: every frame "
                        f"written as it is given). Default {DEFAULT_LOOKAHEAD} at a constant qp, 0 with --kbps")
    e.add_argument("--background-rate", choices=BACKGROUND_RATES, default=HevcSettings.background_rate,
                   help="hevc: x265's rate control of the background track: auto (the default: a constant qp from a "
                        "refresh on when the background barely moved since the last one, a fixed camera; CRF otherwise), "
                        "qp (constant: a static background costs almost nothing between refreshes) or crf (as the "
                        "object tracks)")
    e.add_argument("--qp", type=int, default=30, help="base quantiser (0-51; constant quality without --kbps; hevc: "
                                                      "x265's CRF of the object tracks, the background's CRF or constant qp, "
                                                      "fixed from one intra entry of a track to the next)")
    e.add_argument("--kbps", type=float, default=None, help="target bitrate (rate control moves the qp)")
    e.add_argument("--roi-offset", type=int, default=None,
                   help="background qp minus object qp (default: 6 for learned, 2 for hevc, measured)")
    e.add_argument("--gop", type=int, default=16, help="I-frame period of the object tracks")
    e.add_argument("--background-gop", type=int, default=None,
                   help="I-frame period of the background (complement) track; default 4x --gop")
    e.add_argument("--frames", type=int, default=None, help="encode only the first N frames")
    e.add_argument("--fps", type=float, default=None, help="frame rate (folders of frames; default 25)")
    e.add_argument("--label", action="append", help="ID=NAME for a track id (repeatable)")
    e.add_argument("--quiet", action="store_true")
    model_args(e)
    e.set_defaults(fn=cmd_encode_video)

    d = sub.add_parser("decode-video", help="decode all or selected tracks over a frame range")
    d.add_argument("stream")
    d.add_argument("-o", "--output", required=True, help="folder of PNGs, or .mkv (lossless) / .mp4")
    force_arg(d)
    selection_args(d)
    d.add_argument("--fill", type=int, default=0)
    d.add_argument("--quiet", action="store_true")
    model_args(d)
    d.set_defaults(fn=cmd_decode_video)

    a = sub.add_parser("analyze-video", help="action recognition or per-track person keypoints on a partially decoded "
                                             "clip (chosen tracks, frame range)")
    a.add_argument("stream")
    a.add_argument("-o", "--output", required=True, help="results JSON")
    force_arg(a)
    selection_args(a)
    a.add_argument("--task", choices=["action", "pose"], default="action",
                   help="action: a video classifier on the clip; pose: blazepose keypoints per track and frame")
    a.add_argument("--action-model", default="r3d_18", help="torchvision video classifier (r3d_18, mc3_18, r2plus1d_18, s3d, mvit_v2_s, swin3d_t)")
    a.add_argument("--action-weights", default=None, help="--task action: your checkpoint (.pth state dict or .safetensors): ssc ships none")
    a.add_argument("--label-map", default=None, help="class names, one per line (e.g. label_map_k400.txt)")
    a.add_argument("--device", default="cpu")
    a.set_defaults(fn=cmd_analyze_video)
