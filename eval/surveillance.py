"""Surveillance pipeline benchmark (video issue): the whole ``vtest`` clip through ``encode-video``'s
path (PyAV decode -> foreground-detector tracks -> SSVC with rate control -> file), then a full
decode and one-track decodes. Reports throughput (frames/s of each stage), the rate controller's
achieved bitrate against its target, peak memory as the clip grows (bounded memory means it stays
flat), the track table, and the bytes a one-track decode reads. The process's one-off start-up (the
compiled loops loaded, the detector's and the codec's first runs) is timed apart on the first two
frames, with a throwaway encoder and mask source, and reported beside the steady-state rates. Person
fidelity over the whole clip (untimed): the person detector on every ``--fid-every``-th frame of the
full decode, of the persons-only decode and of the persons-only decode over the held background
(``backdrop``: the background's intra refreshes only), scored as in ``eval/video.py`` against its
detections at score >= 0.5 on the original frames, with the bits each decode reads; x265, plain and
with ``addroi`` on the union of the person boxes, at a CRF ladder over the same clip, and the
persons-only streams' bits against x265-roi's at equal fidelity; and, against x265 in 4:2:0 (what
users run) at equal fidelity, the full decode's bits and the persons + held background's bits; and
where the full decode loses fidelity: the same frames with the original pixels on the person tracks
(the background track's loss alone), and with the original pixels everywhere else (the person
tracks' loss alone, seams included). The
tracks' inner codec is ``--inner`` (learned by default, or hevc), coded live (``--lookahead 0``: each
frame leaves the encoder as it comes in) unless told otherwise.
Run: ``python -m ssc.eval.surveillance --out out/eval/surveillance``.
"""
from __future__ import annotations

import argparse
import io
import itertools
import resource
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ssc.defaults import DEFAULT_VIDEO_MODEL, lookahead_for
from ssc.video.masks import load_video_masks
from ssc.models.zoo import load_codec
from ssc.video import RateControl, VideoDecoder, VideoEncoder, VideoReader
from ssc.video.hevc import BACKGROUND_RATES, HevcSettings
from ssc.video.info import byte_budget
from ssc.video.ratecontrol import roi_offset_for
from ssc.video.io import open_frames

from .report import markdown_table, run_meta, save_figure, style_axis, subplots, write_outputs


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def warm_up(video: str, spec: str, codec, gop: int, inner: str = "hevc", lookahead: int = 0,
            background_rate: str = HevcSettings.background_rate) -> float:
    """Seconds the first two frames cost once per process (compiled loops loaded from their cache, the
    detector's and the codec's first runs), with a throwaway mask source and encoder."""
    src = open_frames(video)
    frames = list(itertools.islice(src, 2))
    t = time.perf_counter()
    masks = load_video_masks(spec)
    with VideoEncoder(io.BytesIO(), src.width, src.height, src.fps, codec, gop=gop, keep_stats=False, inner=inner,
                      hevc=HevcSettings(lookahead=lookahead, background_rate=background_rate) if inner == "hevc" else None) as enc:
        for i, f in enumerate(frames):
            enc.encode(f, masks(i, f))
    return time.perf_counter() - t


def composite(inside: np.ndarray, outside: np.ndarray, where: np.ndarray) -> np.ndarray:
    """(H, W, 3): ``inside``'s pixels where ``where`` (H, W) is true, ``outside``'s elsewhere."""
    if inside.shape != outside.shape or where.shape != inside.shape[:2]:
        raise ValueError(f"composite of {inside.shape} and {outside.shape} over {where.shape}")
    return np.where(where[..., None], inside, outside)


def fidelity(path: Path, codec, video: str, every: int, full: dict, crfs: list[int], gop: int,
             person_px: dict | None = None) -> dict:
    """Person fidelity AP of the full and the persons-only decodes of the stream at ``path`` over the
    whole clip (every ``every``-th frame), against the detector on the original frames, with the
    bytes each decode reads; and of x265, plain and with ``addroi`` on the union of the person boxes,
    at ``crfs`` (the anchors, GOP ``gop``). ``full``: the full decode's frames number // every for
    those frames (kept by the timed decode, not decoded again); ``person_px`` the person tracks'
    pixels (H, W) bool of the same frames: with it, also the full decode's AP with the original
    pixels on the person tracks (``full_decode_original_persons``) and with the original pixels
    everywhere else (``full_decode_original_background``)."""
    from types import SimpleNamespace

    from ssc.analyze import FILL

    from .video import PersonFidelity, _ffmpeg_code, boxes_union, rate_at_fidelity, track_boxes

    with VideoReader(path) as rd:
        n, comp = rd.num_frames, rd.header.complement_track
        objs = sorted(t for t in rd.index.tracks if t != comp)
        boxes = np.array([e.box for i in range(n) for e in rd.frame(i).entries if e.track_id != comp]).reshape(-1, 4)
        fps = rd.header.fps_num / rd.header.fps_den
    src = open_frames(video)
    clip = np.stack(list(itertools.islice(src, n)))
    secs = n / fps
    fid = PersonFidelity(clip[::every], 1)
    out = {"every": every, "persons_in_originals": fid.objects, "full_decode": fid.ap(full)}
    if person_px:
        orig = {k: clip[k * every] for k in full}
        out["full_decode_original_persons"] = fid.ap({k: composite(orig[k], full[k], person_px[k]) for k in full})
        out["full_decode_original_background"] = fid.ap({k: composite(full[k], orig[k], person_px[k]) for k in full})
    for key, backdrop in (("persons_only", False), ("persons_backdrop", True)):
        persons, regions = {}, {}
        with VideoReader(path) as rd:
            for df in VideoDecoder(rd, codec, tracks=objs, backdrop=backdrop).frames(fill=FILL):
                if df.number % every == 0:
                    persons[df.number // every], regions[df.number // every] = df.image, track_boxes(df.track_map, df.decoded)
            out[key], out[f"{key}_kbps"] = fid.ap(persons, regions), 8 * rd.bytes_read / 1000 / secs
    roi = boxes_union(boxes)
    anchors = []
    for chroma in ("444", "420"):
        for r in ([None, roi] if roi else [None]):
            name = "x265" + ("-420" if chroma == "420" else "") + ("-roi" if r else "")
            for crf in tqdm(crfs, desc=name, unit="encode"):
                nbytes, dec, _ = _ffmpeg_code(clip, fps, "libx265", crf, gop, r, -0.3, chroma)
                anchors.append({"codec": name, "crf": crf, "kbps": 8 * nbytes / 1000 / secs,
                                "fidelity": fid.ap({k: dec[k * every] for k in range(len(fid.ids))})})
    out["anchors"], out["roi"] = anchors, roi
    pts = [SimpleNamespace(**a) for a in anchors if a["codec"] == "x265-roi"]
    for key in ("persons_only", "persons_backdrop"):
        at = rate_at_fidelity(pts, out[key]) if out[key] is not None else None
        out[f"{key}_x265_roi_kbps"], out[f"{key}_ratio"] = at, out[f"{key}_kbps"] / at if at else None
    p420 = [SimpleNamespace(**a) for a in anchors if a["codec"] == "x265-420"]
    for key in ("full_decode", "persons_backdrop"):
        at = rate_at_fidelity(p420, out[key]) if out[key] is not None else None
        out[f"{key}_x265_420_kbps"] = at
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--video", default="../shared/data/video_surveillance/vtest_480x360_h264.avi")
    ap.add_argument("--frames", type=int, default=None, help="default: the whole clip")
    ap.add_argument("--kbps", type=float, default=150.0)
    ap.add_argument("--roi-offset", type=int, default=None,
                    help="background qp minus object qp (default: the inner codec's, ssc.video.ratecontrol.ROI_OFFSETS)")
    ap.add_argument("--gop", type=int, default=32)
    ap.add_argument("--model", default=DEFAULT_VIDEO_MODEL)
    ap.add_argument("--masks", default="detect:foreground,every=5",
                    help="video mask source: detect:foreground[,every=N] or detect:ssdlite-person[,every=N][,timeout=T]")
    ap.add_argument("--fid-every", type=int, default=10, help="person fidelity: every N-th frame (0: skip)")
    ap.add_argument("--anchor-crfs", type=lambda v: [int(c) for c in v.split(",") if c], default=[28, 34, 40, 46, 51],
                    help="person fidelity: x265 (plain and addroi) at these CRFs over the whole clip (empty: none)")
    ap.add_argument("--inner", choices=["hevc", "learned"], default="learned", help="the tracks' inner codec")
    ap.add_argument("--lookahead", type=int, default=None,
                    help="hevc: x265's lookahead in frames (with its CU-tree). Default: ssc.defaults.lookahead_for, "
                         "none under rate control, as live coding (every frame leaves the encoder as it comes in; on "
                         "this clip 16 read no better per bit, docs/results.md)")
    ap.add_argument("--background-rate", choices=BACKGROUND_RATES, default=HevcSettings.background_rate,
                    help="hevc: x265's rate control of the background track (auto: a constant qp for a fixed camera, else CRF; qp; crf)")
    ap.add_argument("--out", default="out/eval/surveillance")
    args = ap.parse_args(argv)
    args.lookahead = lookahead_for(args.kbps, args.lookahead)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    codec = load_codec(args.model) if args.inner == "learned" else None
    startup = warm_up(args.video, args.masks, codec, args.gop, args.inner, args.lookahead, args.background_rate)
    src = open_frames(args.video)
    masks = load_video_masks(args.masks)
    args.roi_offset = roi_offset_for(args.inner, args.roi_offset)  # (recorded in the JSON's meta)
    rate = RateControl(qp=32, roi_offset=args.roi_offset, target_kbps=args.kbps)
    path = out / "vtest.ssv"
    n_total = args.frames or src.count
    t_mask = t_enc = 0.0
    rss, kbps_curve = [], []
    with VideoEncoder(path, src.width, src.height, src.fps, codec, gop=args.gop, rate=rate, keep_stats=False,
                      inner=args.inner, hevc=HevcSettings(lookahead=args.lookahead, background_rate=args.background_rate)
                      if args.inner == "hevc" else None) as enc:
        t_all = time.perf_counter()
        for i, frame in enumerate(tqdm(src, total=n_total, unit="frame", desc="encode")):
            if args.frames and i >= args.frames:
                break
            t0 = time.perf_counter()
            gm = masks(i, frame)
            t1 = time.perf_counter()
            enc.encode(frame, gm)
            t_enc += time.perf_counter() - t1
            t_mask += t1 - t0
            if (i + 1) % 50 == 0:
                rss.append((i + 1, _rss_mb()))
                kbps_curve.append((i + 1, 8 * enc.pos / 1000 / ((i + 1) / float(src.fps))))
        wall = time.perf_counter() - t_all
        summ = enc.close()
    n = summ.frames
    secs = n / float(src.fps)
    full: dict[int, object] = {}  # sampled frames of the full decode, for the fidelity pass
    person_px: dict[int, np.ndarray] = {}  # and the person tracks' pixels in them
    t0 = time.perf_counter()
    with VideoReader(path) as rd:
        comp = rd.header.complement_track
        for df in tqdm(VideoDecoder(rd, codec).frames(), total=n, unit="frame", desc="decode all"):
            if args.fid_every and df.number % args.fid_every == 0:
                full[df.number // args.fid_every] = df.image
                person_px[df.number // args.fid_every] = (df.track_map >= 0) & (df.track_map != (-1 if comp is None else comp))
    dec_all = time.perf_counter() - t0
    tracks = sorted((t for t in summ.tracks.values() if t.track_id != 0), key=lambda t: -(t.last - t.first))
    one = []
    for t in tracks[:3]:
        t0 = time.perf_counter()
        with VideoReader(path) as rd:
            frames = list(VideoDecoder(rd, codec, tracks=[t.track_id]).frames(t.first, t.last + 1))
            one.append({"track": t.track_id, "frames": [t.first, t.last], "decoded_frames": len(frames),
                        "bytes_read": rd.bytes_read, "track_bytes": t.bytes, "stream_bytes": rd.size,
                        "fps": len(frames) / (time.perf_counter() - t0)})
    lengths = sorted(t.last - t.first + 1 for t in tracks)
    fid = (fidelity(path, codec, args.video, args.fid_every, full, args.anchor_crfs, args.gop, person_px)
           if args.fid_every else None)
    res = {"frames": n, "size": [src.width, src.height], "fps_video": float(src.fps), "target_kbps": args.kbps,
           "achieved_kbps": 8 * summ.bytes / 1000 / secs, "tracks": len(summ.tracks) - 1, "masks": args.masks,
           "track_frames_median": lengths[len(lengths) // 2] if lengths else 0,
           "tracks_10_frames_or_more": sum(v >= 10 for v in lengths),
           "mask_fps": n / t_mask, "encode_fps": n / t_enc, "pipeline_fps": n / wall, "decode_fps": n / dec_all, "startup_s": startup,
           "peak_rss_mb": rss, "kbps_so_far": kbps_curve, "one_track": one, "fidelity": fid,
           "byte_budget": byte_budget(path)}
    lines = [f"## Surveillance pipeline (vtest, 480x360, masks {args.masks}, inner codec {args.inner})", ""]
    lines += markdown_table(["frames", "tracks", "tracks >= 10 frames", "median track frames", "target kbit/s",
                             "achieved kbit/s", "masks fps", "encode fps", "pipeline fps", "decode fps", "start-up s"],
                            [[n, res["tracks"], res["tracks_10_frames_or_more"], res["track_frames_median"], args.kbps,
                              res["achieved_kbps"], res["mask_fps"], res["encode_fps"], res["pipeline_fps"], res["decode_fps"], startup]])
    if fid:
        lines += ["", f"## Person fidelity AP over the clip (every {fid['every']}th frame, {fid['persons_in_originals']} "
                  "persons in the originals)", ""]
        rows = [["ssc full decode", res["achieved_kbps"], fid["full_decode"], None, None]]
        rows += [[f"ssc {name}", fid[f"{k}_kbps"], fid[k], fid[f"{k}_x265_roi_kbps"], fid[f"{k}_ratio"]]
                 for k, name in (("persons_only", "persons-only"), ("persons_backdrop", "persons + held background"))]
        rows += [[f"{a['codec']} crf {a['crf']}", a["kbps"], a["fidelity"], None, None] for a in fid["anchors"]]
        lines += markdown_table(["decode", "kbit/s read", "fidelity AP", "x265-roi kbit/s at that fidelity", "ratio"], rows)
        lines += ["", "against x265 4:2:0 at equal fidelity (targets: full decode <= 1.05x, persons + held background <= 0.7x)", ""]
        lines += markdown_table(["decode", "kbit/s read", "fidelity AP", "x265-420 kbit/s at that fidelity", "ratio"],
                                [[name, kb, fid[k], fid[f"{k}_x265_420_kbps"], kb / fid[f"{k}_x265_420_kbps"]
                                  if fid[f"{k}_x265_420_kbps"] else None]
                                 for k, name, kb in (("full_decode", "ssc full decode", res["achieved_kbps"]),
                                                     ("persons_backdrop", "ssc persons + held background",
                                                      fid["persons_backdrop_kbps"]))])
    if fid and fid.get("full_decode_original_persons") is not None:
        lines += ["", "where the full decode loses fidelity (the same frames, part of them replaced by the originals)", ""]
        lines += markdown_table(["frames scored", "fidelity AP"],
                                [["ssc full decode", fid["full_decode"]],
                                 ["original person tracks over ssc's background", fid["full_decode_original_persons"]],
                                 ["ssc's person tracks over the original background", fid["full_decode_original_background"]]])
    lines += ["", "peak RSS (MB) after N frames: " + ", ".join(f"{k}: {v:.0f}" for k, v in rss), ""]
    lines += markdown_table(["track", "frames", "bytes read", "track bytes", "stream bytes", "share read", "decode fps"],
                            [[o["track"], f"{o['frames'][0]}-{o['frames'][1]}", o["bytes_read"], o["track_bytes"],
                              o["stream_bytes"], o["bytes_read"] / o["stream_bytes"], o["fps"]] for o in one])
    lines += ["", "where the bytes go (`ssc info --bytes`)", ""]
    total = sum(res["byte_budget"].values())  # the stream's size
    lines += markdown_table(["part", "bytes", "kbit/s", "share"],
                            [[part, nb, 8 * nb / 1000 / secs, nb / total] for part, nb in res["byte_budget"].items()])
    write_outputs(out, "surveillance", {"meta": run_meta(**vars(args)), **res}, lines)
    fig, ax = subplots(1, 2, figsize=(9, 3.4))
    ax[0].plot(*zip(*kbps_curve), "o-", label="achieved (cumulative)")
    ax[0].axhline(args.kbps, ls="--", c="k", label="target")
    style_axis(ax[0], "frames", "kbit/s")
    ax[1].plot(*zip(*rss), "o-")
    style_axis(ax[1], "frames", "peak RSS (MB)")
    save_figure(fig, out / "surveillance.png")


if __name__ == "__main__":
    main()
