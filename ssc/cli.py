"""Command line: ``ssc encode | decode | info | analyze | eval | demo | train | encode-video | decode-video | batch``. Every failure exits non-zero with a
one-line ``ssc: error: ...`` message; a decode in which some groups' segments are corrupt writes the
other groups and exits with status 3."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .args import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_PARTIAL, force_arg
from .defaults import DEFAULT_MODEL, default_quality
from .bitstream.format import quality_value
from .errors import SSCError
from .outputs import check_new, save_image, write_bytes, write_text



def _ids(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"group ids must be comma-separated integers, got {text!r}") from None


def _codec(args: argparse.Namespace):
    from .models.zoo import load_codec

    return load_codec(args.weights or args.model, device=args.device)


def group_scales(specs: list[str], groups) -> dict[int, int]:
    """``--group-scale LABEL=F`` options -> {group id: log2 F} for the groups with that label."""
    from .bitstream.format import scale_of

    out: dict[int, int] = {}
    for spec in specs:
        label, sep, factor = spec.rpartition("=")
        if not sep or not label or factor not in ("1", "2", "4"):
            raise ValueError(f"--group-scale {spec!r}: expected LABEL=F with F one of 1, 2, 4 (e.g. background=2)")
        hits = [g.group_id for g in groups if g.label.lower() == label.strip().lower()]
        if not hits:
            known = ", ".join(sorted({g.label for g in groups})) or "none"
            raise ValueError(f"--group-scale {spec!r}: no group is labelled {label!r} (labels: {known})")
        out.update({gid: scale_of(int(factor)) for gid in hits})
    return out


def cmd_encode(args: argparse.Namespace) -> int:
    from .api import encode_image, read_image
    from .masks import apply_policy, load_masks
    from .models.refine import Refinement
    from .purpose import resolve_purpose

    purpose = resolve_purpose(args.purpose) if args.purpose else None
    masks = args.masks or (purpose.masks if purpose else None)
    if not masks:
        raise ValueError("--masks is required (or --for MACHINE, which brings its own groups)")
    if purpose and not (args.weights or args.model_given):
        args.model = purpose.model  # --model and --weights override the purpose's codec
    check_new(args.output, args.force)
    image = read_image(args.image)
    gm = load_masks(masks, args.image, image.shape[:2], image, device=args.device)
    gm = apply_policy(gm, args.policy, args.min_area)
    codec = _codec(args)
    roi = {gid: args.roi_quality for gid in gm.ids if gid != 0} if args.roi_quality is not None else None
    quality = (args.quality if args.quality is not None else purpose.quality if purpose
               else default_quality(codec.model.num_qualities))
    if purpose and roi is None:  # the machine's classes at the quality, the rest as the purpose says
        quality, roi = purpose.group_qualities(gm.groups, quality, top=codec.model.num_qualities - 1)
    res = encode_image(image, gm, codec, quality=quality, group_quality=roi, tile=args.tile,
                       refine=Refinement(steps=args.refine), cells=not args.pixel_groups, exact_masks=args.exact_masks,
                       group_scale=(group_scales(args.group_scale, gm.groups) if args.group_scale or not purpose
                                    else purpose.group_scales(gm.groups)))
    write_bytes(args.output, res.data)
    px = image.shape[0] * image.shape[1]
    print(f"{args.output}: {len(res.data)} bytes, {8 * len(res.data) / px:.4f} bpp, {len(res.header.groups)} groups, "
          f"{res.seconds:.2f} s")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from .api import decode_image

    check_new(args.output, args.force)
    codec = _codec(args) if (args.weights or args.model_given) else None
    classes = [c for c in args.classes.split(",")] if args.classes else None
    res = decode_image(args.stream, codec, groups=args.groups, classes=classes, fill=args.fill, device=args.device)
    save_image(args.output, res.image)
    print(f"{args.output}: decoded groups {res.decoded} reading {res.bytes_read} of the stream's bytes in {res.seconds:.2f} s")
    for why in res.failed.values():
        print(f"ssc: error: {why}", file=sys.stderr)
    return EXIT_PARTIAL if res.failed else 0


def header_summary(header) -> dict:
    """The group table as plain data (decoding-free analytics: class and box of each group)."""
    return {
        "width": header.width, "height": header.height, "model_id": header.model_id,
        "weights_id": header.weights_id.hex(), "quality": quality_value(header.quality),
        "version": header.version, "header_bytes": header.masks_offset, "mask_bytes": header.masks_length,
        "tile_size": header.tile_size,
        "groups": [
            {"id": g.group_id, "class_id": g.class_id, "label": g.label, "box": list(g.obj_box), "cells": list(g.box),
             "area": g.area,
             "quality": quality_value(g.quality), "size": f"1/{1 << g.scale}", "bytes": g.seg_length,
             "mask_bytes": g.mask_length}
            for g in header.groups
        ],
    }


def cmd_info(args: argparse.Namespace) -> int:
    from .bitstream import StreamReader
    from .video import format as vf

    if Path(args.stream).is_file() and vf.is_video_file(args.stream):
        from .video.cli import print_video_info

        print_video_info(args.stream, args.json, args.bytes)
        return 0
    if args.bytes:
        raise SSCError("--bytes is for video streams (an image's group table already gives each segment's bytes)")
    with StreamReader(args.stream) as rd:
        info = header_summary(rd.header)
        info["total_bytes"] = rd.total_length
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"{args.stream}: {info['width']}x{info['height']}, model {info['model_id']} ({info['weights_id']}), "
          f"{info['total_bytes']} bytes (bitstream v{info['version']}: {info['header_bytes']} header, "
          f"{info['mask_bytes']} masks" + (f", tiles of {info['tile_size']} px" if info["tile_size"] else "") + ")")
    print(f"{'id':>4} {'class':<20} {'box':<22} {'area':>8} {'q':>5} {'size':>5} {'mask B':>7} {'bytes':>8}")
    for g in info["groups"]:
        print(f"{g['id']:>4} {g['label'][:20]:<20} {','.join(map(str, g['box'])):<22} {g['area']:>8} {g['quality']:>5.2f} "
              f"{g['size']:>5} {g['mask_bytes']:>7} {g['bytes']:>8}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from .analyze import analyze_stream, header_results

    classes = args.classes.split(",") if args.classes else None
    check_new(args.output, args.force)
    if args.task == "header":
        res = header_results(args.stream, args.image_id, args.groups, classes)
    else:
        from ssc.tasks import resolve_head

        codec = _codec(args) if (args.weights or args.model_given) else None
        det, backend = args.det_weights, args.backend
        if args.domain == "features":
            from .analyze import feature_detector

            codec, backend, det = feature_detector(args.stream, codec, det, backend, args.device)
        head = resolve_head(backend, det, args.device, args.score_thresh, task=args.task)
        res = analyze_stream(args.stream, head, args.task, codec, args.groups, classes, args.image_id,
                             device=args.device, domain=args.domain, fill=args.fill)
    write_text(args.output, json.dumps(res.results))
    print(f"{args.output}: {len(res.results)} {args.task} results, read {res.bytes_read} of {res.total_bytes} bytes"
          + (f", decoded groups {res.decoded_groups}" if args.task != "header" else " (header only, no segment decoded)")
          + f", {res.seconds:.2f} s")
    for why in res.failed_groups.values():
        print(f"ssc: error: {why}", file=sys.stderr)
    return EXIT_PARTIAL if res.failed_groups else 0


#: ``ssc eval NAME [options]``: the benchmark scripts in ssc.eval (each also runs as ``python -m ssc.eval.NAME``)
BENCHMARKS = {
    "coco": "rate-accuracy on COCO val: codec -> decode -> task head -> pycocotools (AP, task fidelity)",
    "person": "person AP vs bpp with the pretrained person detector: anchors, ssc full / persons-only / ROI",
    "person_context": "persons-only ceiling: the detector on the original pixels of the person groups, by score and padding",
    "rd": "rate-distortion (PSNR, MS-SSIM) and BD-rate against JPEG, WebP, AVIF, x265 intra, the peer",
    "curve": "training campaign learning curve (Kodak PSNR/bpp vs steps and CPU hours), equal-time comparisons",
    "speed": "encode/decode time, checkerboard vs serial context",
    "partial_decode": "bytes and time of decoding one group alone against the whole image",
    "tiling": "tiled coding of large images: memory and rate",
    "omni": "Omni-ICM feature path against the pixel path and the anchors (gi-omni-person: person AP)",
    "ssdlite_scale": "person detector AP by input size (the feature path's input mapping)",
    "video": "SSVC video against x264 / x265 (+ ROI) on DAVIS and the surveillance clip",
    "video_speed": "SSVC encoder speed step by step (motion-search tools): frames/s, object bits and PSNR",
    "surveillance": "the whole-clip surveillance pipeline (decode, detect, encode) and its rate control",
    "action": "action recognition on partially decoded clips",
    "fanin": "surveillance fan-in over Ray: cameras encoded by 1, 2, 4 workers",
    "ddp": "DDP training throughput by process count",
    "train_speed": "training-step speed (pixels/s) of several settings and of an earlier revision, in one run",
    "coco_scaling": "ssc eval coco locally and as Ray tasks",
    "fuzz_bitstream": "parser and body fuzzing of image and video streams",
}


def eval_help() -> str:
    width = max(map(len, BENCHMARKS))
    lines = ["usage: ssc eval NAME [options]   (ssc eval NAME --help for its options)", "", "benchmarks:"]
    return "\n".join(lines + [f"  {n:<{width}}  {d}" for n, d in BENCHMARKS.items()])


def cmd_eval(args: argparse.Namespace) -> int:
    import importlib

    rest = list(args.rest)
    if not rest or rest[0] in ("-h", "--help"):
        print(eval_help())
        return 0
    name, rest = rest[0], rest[1:]
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)} (ssc eval --help)")
    mod = importlib.import_module(f"ssc.eval.{name}")
    argv0, sys.argv[0] = sys.argv[0], f"ssc eval {name}"  # argparse names the command in its usage line
    try:
        return int(mod.main(rest) or 0)
    finally:
        sys.argv[0] = argv0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    check_new(args.out, args.force)
    run_demo(image=args.image, ann=args.ann, out_dir=Path(args.out), model=args.weights or args.model,
             quality=args.quality, device=args.device)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import yaml

    from .train import TrainConfig, export_checkpoint, run_config

    raw = yaml.safe_load(Path(args.config).read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{args.config} is not a YAML mapping")
    if args.export_only:
        cfg = TrainConfig(**raw)
        if args.steps:
            cfg.steps = args.steps
        path = export_checkpoint(cfg)
    else:
        path = run_config(raw, resume=not args.restart, minutes=args.minutes, steps=args.steps)
    from .distributed import launched_rank

    if launched_rank() in (None, 0):  # under torchrun, rank 0 wrote them
        print(f"weights: {path} (card: {path.with_suffix('.json')})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ssc", description="Semantically structured coding for machines")
    sub = p.add_subparsers(dest="cmd", required=True)

    def model_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--model", default=None, help=f"zoo model name (default {DEFAULT_MODEL})")
        sp.add_argument("--weights", default=None, help="path to a .safetensors file with its model card beside it")
        sp.add_argument("--device", default="cpu")

    e = sub.add_parser("encode", help="encode an image with its group masks")
    e.add_argument("image")
    e.add_argument("--masks", default=None,
                   help="coco:ANN.json | png:MAP.png | masks:A.png,B.png | detect:ssdlite-person[,score=S][,pad=P] | whole "
                        "(required unless --for gives them)")
    e.add_argument("--for", dest="purpose", default=None, metavar="MACHINE",
                   help="code for this machine (ssdlite-person): its codec, groups and qualities (--quality "
                        "then sets its classes' quality); --model, --masks, --quality, --roi-quality and --group-scale "
                        "override")
    e.add_argument("-o", "--output", required=True)
    force_arg(e)
    e.add_argument("--quality", type=float, default=None,
                   help="quality level, 0 = lowest, fractional allowed (default: 2/3 of the model's range)")
    e.add_argument("--roi-quality", type=float, default=None, help="quality of every object group (ROI coding)")
    e.add_argument("--group-scale", action="append", default=[], metavar="LABEL=F",
                   help="code the groups labelled LABEL at 1/F size (F = 2 or 4), upsampled on decode, for example "
                        "background=2 for a background a detector reads only as context; repeatable")
    e.add_argument("--policy", default="instance", choices=["instance", "class", "objects"])
    e.add_argument("--exact-masks", action="store_true",
                   help="also store the objects' pixel-exact masks (metadata for compositing and segmentation)")
    e.add_argument("--pixel-groups", action="store_true",
                   help="code pixel-exact groups (bitstream v2's layout) instead of cell-owned groups")
    e.add_argument("--min-area", type=int, default=0, help="merge objects smaller than this into the background")
    e.add_argument("--tile", type=int, default=None,
                   help="code in tiles of this side (multiple of 64) to bound memory; 0 = never; "
                        "default: 1024 above 4 megapixels")
    e.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="search each group's latents at the encoder for STEPS steps (fewer bits at the same "
                        "quality, any decoder reads the stream; 50 steps: about a minute per 768x512 image on 2 "
                        "threads); 0 = off")
    model_args(e)
    e.set_defaults(fn=cmd_encode)

    d = sub.add_parser("decode", help="decode all or only selected groups")
    d.add_argument("stream")
    d.add_argument("-o", "--output", required=True)
    force_arg(d)
    d.add_argument("--groups", type=_ids, default=None, help="comma-separated group ids")
    d.add_argument("--classes", default=None, help="comma-separated class labels, e.g. person,dog")
    d.add_argument("--fill", type=int, default=0, help="grey level of pixels of groups not decoded")
    model_args(d)
    d.set_defaults(fn=cmd_decode)

    i = sub.add_parser("info", help="print the group table, or a video's track table (no segment is decoded)")
    i.add_argument("stream")
    i.add_argument("--json", action="store_true")
    i.add_argument("--bytes", action="store_true",
                   help="video: where the stream's bytes go (headers, masks, segment framing, background and object "
                        "tracks, intra and inter), read from every frame header")
    i.set_defaults(fn=cmd_info)

    a = sub.add_parser("analyze", help="detection / segmentation on the selected groups, or header-only analytics")
    a.add_argument("stream")
    a.add_argument("--task", choices=["detect", "segment", "pose", "header"], default="detect")  # ssc.analyze.TASK_CHOICES
    a.add_argument("-o", "--output", required=True, help="COCO results JSON")
    force_arg(a)
    a.add_argument("--groups", type=_ids, default=None, help="comma-separated group ids (default: all)")
    a.add_argument("--classes", default=None, help="comma-separated class labels")
    a.add_argument("--image-id", type=int, default=0, help="COCO image id written into the results")
    from .args import detector_args

    detector_args(a)
    a.add_argument("--domain", choices=["pixels", "features"], default="pixels",  # ssc.analyze.DOMAINS
                   help="pixels: decode and run the whole detector; features: the stream's Omni model feeds "
                        "decoded latents to its detector's later stages (no pixel reconstruction; e.g. gi-omni-person "
                        "streams with the ssdlite-person backend)")
    a.add_argument("--fill", choices=["grey", "extend"], default="grey",  # ssc.fill.FILLS
                   help="what the head sees where nothing was decoded: mid-grey, or the decoded pixels extended "
                        "smoothly outward (docs/results.md: better person and keypoint AP on persons-only decodes)")
    model_args(a)
    a.set_defaults(fn=cmd_analyze)

    from .video.cli import add_video_commands

    add_video_commands(sub, model_args, _ids)

    v = sub.add_parser("eval", help="benchmarks (ssc eval --help lists them)", add_help=False)
    v.add_argument("rest", nargs=argparse.REMAINDER)
    v.set_defaults(fn=cmd_eval)

    m = sub.add_parser("demo", help="encode a COCO val image, decode one object alone and all groups")
    m.add_argument("--image", default=None)
    m.add_argument("--ann", default=None)
    m.add_argument("--out", default="out/demo", help="output folder (refused when not empty, unless --force)")
    force_arg(m)
    m.add_argument("--quality", type=float, default=2.0)
    model_args(m)
    m.set_defaults(fn=cmd_demo)

    t = sub.add_parser("train", help="train a codec or the reference detector from a YAML config (resumable)")
    t.add_argument("--config", required=True)
    t.add_argument("--steps", type=int, default=None)
    t.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    t.add_argument("--minutes", type=float, default=None,
                   help="codec: stop after this many minutes (checkpoint + export; SIGTERM does the same)")
    t.add_argument("--export-only", action="store_true",
                   help="codec: export the run's latest checkpoint (weights + card) and stop; a running campaign goes on")
    t.set_defaults(fn=cmd_train)

    from .batch_cli import add_batch_commands

    add_batch_commands(sub, model_args)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["eval"]:  # everything after the name belongs to the benchmark (--help included)
        args = argparse.Namespace(fn=cmd_eval, rest=argv[1:])
    else:
        args = build_parser().parse_args(argv)
    if hasattr(args, "model"):
        args.model_given = args.model is not None
        args.model = args.model or DEFAULT_MODEL
    try:
        return args.fn(args)
    except (SSCError, FileNotFoundError, ValueError, KeyError) as e:
        msg = str(e).strip("'\"") if isinstance(e, KeyError) else str(e)
        print(f"ssc: error: {msg}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("ssc: interrupted: nothing partial was left under an output name", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

