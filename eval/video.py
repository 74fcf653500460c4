"""SSVC benchmark (video issue): per-group rate and PSNR of ssc against x264 / x265, with and without
ffmpeg's ``addroi`` ROI coding, on the DAVIS sequences and the surveillance clip; frames per second.

For every sequence (first ``--frames`` frames) and every operating point it measures, in one run:

- ssc (constant qp, GOP ``--gop``, background qp + ``--roi-offset``): whole-stream bits, **object-only
  stream** bits (every byte a decoder of the object tracks reads: preamble, header, frame headers, the
  objects' mask records and segments -- counted by the reader, not estimated), object PSNR and
  background PSNR (RGB, MSE pooled over all frames' object / background pixels), encode and decode
  frames/s, object-only decode frames/s;
- x264 and x265 (ffmpeg, preset medium, 4:4:4, GOP ``--gop``, CRF ladder), plain and with ``addroi``
  on the union of the object boxes over the clip (addroi's region cannot move), qoffset ``--qoffset``.

Headline (issue target): at equal object PSNR, ssc's object-only bits / x265-ROI's bits, the anchor's
rate interpolated log-linearly on its object-PSNR curve (no extrapolation: points outside its PSNR
range are reported as n/a). Run: ``python -m ssc.eval.video --out out/eval/video``.

**Person fidelity** (``--fidelity``, on by default): the person detector (``ssdlite-person``) runs on
every ``--det-every``-th decoded frame of every operating point; its detections are scored (COCO
bbox AP, pycocotools) against its own detections at score >= 0.5 on the original frames. For ssc
also the persons-only decode (the object tracks only, the rest mid-grey; detections mostly on grey
dropped: a detection counts where it lies mostly inside a decoded track's box), and the persons-only
decode over the held background (``backdrop``: the background's intra refreshes only, every
``--background-gop`` frames; its bits are every byte that decoder reads). The tracks of the
surveillance clip and of the DAVIS sequences with people (``--people``) then come from the same
detector (``detect:ssdlite-person``, :class:`ssc.masks.track.PersonTracks`), so the objects are the
people the detector sees: DAVIS annotates one person per sequence, and breakdance's audience would
otherwise count as people the persons-only stream never held.
Target: persons-only fidelity >= 90 at <= 0.5x the bits x265 with addroi needs for the same fidelity.

**Pose fidelity** (``--pose``, the default when the blazepose head is installed): on the same frames,
BlazePose's person masks and keypoints on the decoded frames (top-down on the detector's boxes with
score >= 0.3) are scored (mask AP, keypoint AP) against its own results at box score >= 0.5 on the
originals: for the full decode, the persons-only decode and the persons over the held background.
"""
from __future__ import annotations

import argparse
import io
import itertools
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ssc.defaults import DEFAULT_LOOKAHEAD, DEFAULT_VIDEO_MODEL
from ssc.video.masks import DetectorMasks, FolderMasks, ForegroundDetector, load_video_masks
from ssc.models.zoo import load_codec
from ssc.video import RateControl, VideoDecoder, VideoEncoder, VideoReader
from ssc.video.io import open_frames
from ssc.video.hevc import BACKGROUND_RATES, HevcSettings
from ssc.video.ratecontrol import roi_offset_for

from .anchors import require_ffmpeg

#: the ssc points' codec label by inner codec
SSC_LABEL = {"learned": "ssc", "hevc": "ssc-hevc"}
from .person import pose_installed
from .report import markdown_table, run_meta, save_figure, style_axis, subplots, write_outputs


@dataclass
class Point:
    seq: str
    codec: str
    setting: str
    kbps: float
    object_kbps: float | None  # object-only stream (ssc)
    psnr_object: float
    psnr_background: float
    enc_fps: float | None = None
    dec_fps: float | None = None
    object_dec_fps: float | None = None
    fidelity: float | None = None  # person detector on the full decode vs its detections on the originals
    fidelity_objects_only: float | None = None  # ssc: on the persons-only decode
    backdrop_kbps: float | None = None  # ssc: persons-only over the held background refreshes
    fidelity_backdrop: float | None = None
    #: blazepose fidelity {"full" | "persons" | "backdrop": {"mask": AP, "keypoints": AP}}
    pose: dict | None = None


def _psnr(mse: float) -> float:
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


class _Err:
    """Pooled squared error over object / background pixels of a clip."""

    def __init__(self) -> None:
        self.se = np.zeros(2)
        self.n = np.zeros(2)

    def add(self, ref: np.ndarray, dec: np.ndarray, obj: np.ndarray) -> None:
        d = ((ref.astype(np.float64) - dec) ** 2).sum(-1)
        for k, m in enumerate((obj, ~obj)):
            self.se[k] += d[m].sum() / 3
            self.n[k] += m.sum()

    def psnr(self) -> tuple[float, float]:
        return tuple(_psnr(s / max(n, 1)) for s, n in zip(self.se, self.n))  # type: ignore[return-value]


def _ffmpeg_code(frames: np.ndarray, fps: float, lib: str, crf: int, gop: int, roi: tuple[int, int, int, int] | None,
                 qoffset: float, chroma: str = "444") -> tuple[int, np.ndarray, float]:
    """(bytes, decoded frames, encode frames/s) of an ffmpeg anchor; x265 without its SEI of version
    and options (``info=0``: 2.3 kB at every key frame, which the x265 anchors carried until
    2026-12-02's sixth session)."""
    exe = require_ffmpeg()
    n, h, w = frames.shape[:3]
    vf = ["-vf", f"addroi=x={roi[0]}:y={roi[1]}:w={roi[2] - roi[0]}:h={roi[3] - roi[1]}:qoffset={qoffset}"] if roi else []
    params = ["-x265-params", f"keyint={gop}:min-keyint={gop}:info=0:log-level=error"] if lib == "libx265" else ["-g", str(gop), "-keyint_min", str(gop)]
    fmt = "hevc" if lib == "libx265" else "h264"
    t0 = time.perf_counter()
    enc = subprocess.run([exe, "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
                          *vf, "-c:v", lib, "-preset", "medium", "-crf", str(crf), "-pix_fmt", f"yuv{chroma}p", *params, "-f", fmt, "-"],
                         input=frames.tobytes(), capture_output=True, check=False)
    secs = time.perf_counter() - t0
    if enc.returncode:
        raise RuntimeError(f"ffmpeg {lib}: {enc.stderr.decode(errors='replace')[-400:]}")
    dec = subprocess.run([exe, "-v", "error", "-f", fmt, "-i", "-", "-fps_mode", "passthrough", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"],
                         input=enc.stdout, capture_output=True, check=True)
    out = np.frombuffer(dec.stdout, np.uint8).reshape(-1, h, w, 3)
    if len(out) != n:
        raise RuntimeError(f"ffmpeg {lib} returned {len(out)} of {n} frames")
    return len(enc.stdout), out, n / secs


def clip_source(spec: str, data: Path):
    """(name, frame source) of ``davis:NAME`` (24 frames/s) or ``surveillance`` (the vtest clip)."""
    if spec.startswith("davis:"):
        name = spec.split(":", 1)[1]
        return name, open_frames(data / "davis2016/JPEGImages/480p" / name, fps=24)
    return "surveillance", open_frames(data / "video_surveillance/vtest_480x360_h264.avi")


def load_clip(spec: str, frames: int):
    """(name, frames (N, H, W, 3), group maps, fps) for ``davis:NAME`` or ``surveillance``."""
    data = Path(ARGS.data)
    name, src = clip_source(spec, data)
    if spec.startswith("davis:"):
        masks = (load_video_masks(ARGS.person_masks) if ARGS.fidelity and name in ARGS.people
                 else FolderMasks(data / "davis2016/Annotations/480p" / name, {1: (0, "object")}))
    else:
        masks = load_video_masks(ARGS.person_masks) if ARGS.fidelity else \
            DetectorMasks(ForegroundDetector(), every=5, score=0.0)
    fr = list(itertools.islice(src, frames))
    maps = [masks(i, f) for i, f in enumerate(fr)]
    return name, np.stack(fr), maps, float(src.fps)


class PersonFidelity:
    """Person-detector fidelity of decoded frames against its detections on the originals."""

    def __init__(self, frames: np.ndarray, every: int, min_score: float = 0.5, pose: bool = False) -> None:
        from ssc.tasks import resolve_head

        from .coco import pseudo_ground_truth

        self.head = resolve_head()
        self.pose_head = resolve_head("blazepose") if pose else None
        self.ids = list(range(0, len(frames), every))
        orig = [r for i in self.ids for r in self._detect(frames[i], i, None)]
        recs = [{"id": i, "width": frames.shape[2], "height": frames.shape[1], "file_name": str(i)} for i in self.ids]
        self.gt = pseudo_ground_truth(recs, [{"id": 1, "name": "person"}], orig, min_score)
        self.objects = len(self.gt.dataset["annotations"])
        if pose:
            people = [r for i in self.ids for r in self._pose(frames[i], i, None)]
            self.pose_gt = pseudo_ground_truth(recs, [{"id": 1, "name": "person"}], people, min_score)

    def _pose(self, frame: np.ndarray, i: int, region: np.ndarray | None) -> list[dict]:
        """BlazePose results (masks and keypoints in one dict each) inside ``region``."""
        from ssc.analyze import results_in_region

        people = self.pose_head.predict(frame)
        region = region if region is not None else np.ones(frame.shape[:2], bool)
        return [{**m, "keypoints": k["keypoints"]} for m, k in zip(results_in_region(people, region, i, "segment"),
                                                                     results_in_region(people, region, i, "pose"))]

    def pose_ap(self, decoded, regions=None) -> dict | None:
        """{"mask": AP, "keypoints": AP} of BlazePose on decoded frames against the originals' (None
        without --pose or without confident persons)."""
        from .coco import COCOEvaluator

        if self.pose_head is None or not self.pose_gt.dataset["annotations"]:
            return None
        ev = COCOEvaluator(self.pose_gt, ("segm", "keypoints"))
        for i in self.ids:
            ev.process(i, self._pose(decoded[i], i, None if regions is None else regions[i]))
        m = ev.evaluate()
        return {"mask": m["segm_AP"], "keypoints": m["keypoints_AP"]}

    def _detect(self, frame: np.ndarray, i: int, region: np.ndarray | None) -> list[dict]:
        from ssc.analyze import results_in_region

        inst = self.head.predict(frame, masks=False)
        return results_in_region(inst, region if region is not None else np.ones(frame.shape[:2], bool), i, "detect")

    def ap(self, decoded, regions=None) -> float | None:
        """Fidelity AP of decoded frames (indexable by frame number); ``regions`` the decoded tracks'
        pixels per frame (persons-only decodes), None for whole frames."""
        from .coco import COCOEvaluator

        if not self.objects:
            return None
        ev = COCOEvaluator(self.gt, ("bbox",))
        for i in self.ids:
            ev.process(i, self._detect(decoded[i], i, None if regions is None else regions[i]))
        return ev.evaluate()["bbox_AP"]


def encode_clip(frames: np.ndarray, maps, fps: float, codec, qp: int, gop: int, roi_offset: int,
                background_gop: int | None = None, inner: str = "learned", preset: str = "medium", lookahead: int = 0,
                kbps: float | None = None, background_rate: str = HevcSettings.background_rate):
    """(stream bytes, encoder summary with each frame's stats) of a clip held in memory, at constant
    ``qp`` or, with ``kbps``, rate-controlled from it, its tracks coded by the ``inner`` codec (hevc:
    with x265's ``preset``, the background at x265's ``background_rate``)."""
    buf = io.BytesIO()
    with VideoEncoder(buf, frames.shape[2], frames.shape[1], fps, codec if inner == "learned" else None, gop=gop,
                      background_gop=background_gop, rate=RateControl(qp=qp, roi_offset=roi_offset, target_kbps=kbps),
                      inner=inner,
                      hevc=HevcSettings(preset, lookahead=lookahead, background_rate=background_rate)
                      if inner == "hevc" else None) as enc:
        for f, gm in zip(frames, maps):
            enc.encode(f, gm)
    return buf.getvalue(), enc.close()


def track_boxes(track_map: np.ndarray, tracks: list[int]) -> np.ndarray:
    """(H, W) bool: the union of the decoded tracks' bounding boxes. A person detection on a persons-only
    decode counts where it lies mostly inside one: a box detector's box is not mostly inside a
    silhouette mask (DAVIS), so the pixels themselves would drop true detections."""
    out = np.zeros(track_map.shape, bool)
    for t in tracks:
        ys, xs = np.nonzero(track_map == t)
        if ys.size:
            out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = True
    return out


def run_ssc(name: str, frames: np.ndarray, maps, fps: float, codec, qp: int, fid: PersonFidelity | None = None,
            inner: str = "learned") -> Point:
    from ssc.analyze import FILL

    data, summ = encode_clip(frames, maps, fps, codec, qp, ARGS.gop, roi_offset_for(inner, ARGS.roi_offset),
                             ARGS.background_gop, inner, ARGS.preset, ARGS.lookahead, background_rate=ARGS.background_rate)
    codec = codec if inner == "learned" else None
    err = _Err()
    full, objects, regions = {}, {}, {}
    t0 = time.perf_counter()
    with VideoReader(data) as rd:
        for df in VideoDecoder(rd, codec).frames():
            err.add(frames[df.number], df.image, maps[df.number].labels != 0)
            full[df.number] = df.image
    dec_s = time.perf_counter() - t0
    objs = sorted(t for t in summ.tracks if t != 0)
    t0 = time.perf_counter()
    with VideoReader(data) as rd:
        for df in VideoDecoder(rd, codec, tracks=objs).frames(fill=FILL) if objs else []:
            objects[df.number], regions[df.number] = df.image, track_boxes(df.track_map, df.decoded)
        obj_bytes = rd.bytes_read if objs else 0
    obj_s = time.perf_counter() - t0
    secs = len(frames) / fps
    po, pb = err.psnr()
    if objs and len(objects) < len(frames):  # frames without any object track: nothing decoded there
        for i in range(len(frames)):
            objects.setdefault(i, np.full_like(frames[i], FILL))
            regions.setdefault(i, np.zeros(frames.shape[1:3], bool))
    held, held_bytes = {}, None
    if fid and objs:
        with VideoReader(data) as rd:
            held = {df.number: df.image for df in VideoDecoder(rd, codec, tracks=objs, backdrop=True).frames(fill=FILL)}
            held_bytes = rd.bytes_read
    return Point(name, SSC_LABEL[inner], f"qp {qp}", 8 * len(data) / 1000 / secs, 8 * obj_bytes / 1000 / secs, po, pb,
                 len(frames) / summ.seconds, len(frames) / dec_s, len(frames) / obj_s if objs else None,
                 fid.ap(full) if fid else None, fid.ap(objects, regions) if (fid and objs) else None,
                 8 * held_bytes / 1000 / secs if held_bytes else None, fid.ap(held, regions) if held else None,
                 {"full": fid.pose_ap(full), "persons": fid.pose_ap(objects, regions) if objs else None,
                  "backdrop": fid.pose_ap(held, regions) if held else None} if (fid and fid.pose_head) else None)


def run_anchor(name: str, frames: np.ndarray, maps, fps: float, lib: str, crf: int, roi, fid: PersonFidelity | None = None,
               chroma: str = "444") -> Point:
    nbytes, dec, efps = _ffmpeg_code(frames, fps, lib, crf, ARGS.gop, roi, ARGS.qoffset, chroma)
    err = _Err()
    for f, d, gm in zip(frames, dec, maps):
        err.add(f, d, gm.labels != 0)
    po, pb = err.psnr()
    label = {"libx264": "x264", "libx265": "x265"}[lib] + ("-420" if chroma == "420" else "") + ("-roi" if roi else "")
    return Point(name, label, f"crf {crf}", 8 * nbytes / 1000 / (len(frames) / fps), None, po, pb, efps,
                 fidelity=fid.ap(dec) if fid else None,
                 pose={"full": fid.pose_ap(dec)} if (fid and fid.pose_head) else None)


def rate_at(points: list[Point], psnr: float) -> float | None:
    """Anchor kbps at an object PSNR, log-linear between its two bracketing points (None outside)."""
    pts = sorted((p.psnr_object, p.kbps) for p in points)
    for (p0, r0), (p1, r1) in zip(pts, pts[1:]):
        if p0 <= psnr <= p1 and p1 > p0:
            return float(np.exp(np.log(r0) + (psnr - p0) / (p1 - p0) * (np.log(r1) - np.log(r0))))
    return None


def union_box(maps) -> tuple[int, int, int, int] | None:
    """The even-aligned union of the object groups' boxes over the clip (addroi's fixed region)."""
    return boxes_union([g.box for gm in maps for g in gm.groups if g.group_id != 0])


def boxes_union(boxes) -> tuple[int, int, int, int] | None:
    """The union of xyxy ``boxes``, its corners on even pixels (outwards, for 4:2:0 anchors); None if empty."""
    if not len(boxes):
        return None
    b = np.array(boxes)
    x0, y0, x1, y1 = int(b[:, 0].min()), int(b[:, 1].min()), int(b[:, 2].max()), int(b[:, 3].max())
    return x0 // 2 * 2, y0 // 2 * 2, x1 + x1 % 2, y1 + y1 % 2


def rate_at_fidelity(points: list[Point], fid: float) -> float | None:
    """Anchor kbps at a fidelity AP, log-linear between its two bracketing points (None outside)."""
    pts = sorted((p.fidelity, p.kbps) for p in points if p.fidelity is not None)
    for (f0, r0), (f1, r1) in zip(pts, pts[1:]):
        if f0 <= fid <= f1 and f1 > f0:
            return float(np.exp(np.log(r0) + (fid - f0) / (f1 - f0) * (np.log(r1) - np.log(r0))))
    return None


def evaluate(spec: str, codec) -> tuple[list[Point], list[dict]]:
    name, frames, maps, fps = load_clip(spec, ARGS.frames)
    fid = (PersonFidelity(frames, ARGS.det_every, pose=ARGS.pose and spec != "surveillance")
           if ARGS.fidelity and (spec == "surveillance" or name in ARGS.people) else None)
    roi = union_box(maps)
    pts = []
    jobs = [(inner, qp, None, None) for inner in ARGS.inners for qp in ARGS.qps]
    jobs += [(lib, crf, r, chroma) for lib, chroma in (("libx264", "444"), ("libx265", "444"), ("libx265", "420"))
             for r in (None, roi) for crf in ARGS.crfs]
    for what, setting, r, chroma in tqdm(jobs, desc=name, unit="encode"):
        pts.append(run_ssc(name, frames, maps, fps, codec, setting, fid, what) if what in SSC_LABEL
                   else run_anchor(name, frames, maps, fps, what, setting, r, fid, chroma))
    heads = []
    roi265 = [p for p in pts if p.codec == "x265-roi"]
    plain265 = [p for p in pts if p.codec == "x265"]
    plain420 = [p for p in pts if p.codec == "x265-420"]
    for p in pts:
        if p.codec in SSC_LABEL.values():
            a, b = rate_at(roi265, p.psnr_object), rate_at(plain265, p.psnr_object)
            f, fb = p.fidelity_objects_only, p.fidelity_backdrop
            fa = rate_at_fidelity(roi265, f) if f is not None else None
            fba = rate_at_fidelity(roi265, fb) if fb is not None else None
            fx = rate_at_fidelity(plain420, p.fidelity) if p.fidelity is not None else None
            px = rate_at(plain420, p.psnr_object)
            fbx = rate_at_fidelity(plain420, fb) if fb is not None else None
            heads.append({"seq": name, "codec": p.codec, "setting": p.setting, "psnr_object": p.psnr_object,
                          "object_kbps": p.object_kbps, "kbps": p.kbps, "fidelity": p.fidelity,
                          "x265_420_kbps_at_fidelity": fx, "full_ratio_vs_x265_420": p.kbps / fx if fx else None,
                          "x265_420_kbps_at_psnr": px, "full_ratio_vs_x265_420_psnr": p.kbps / px if px else None,
                          "x265_420_kbps_at_backdrop_fidelity": fbx,
                          "backdrop_ratio_vs_x265_420": p.backdrop_kbps / fbx if fbx else None,
                          "x265_roi_kbps": a, "ratio_vs_x265_roi": p.object_kbps / a if a else None,
                          "x265_kbps": b, "ratio_vs_x265": p.object_kbps / b if b else None,
                          "object_area": float(np.mean([(gm.labels != 0).mean() for gm in maps])),
                          "fidelity_objects_only": f, "fidelity_objects": fid.objects if fid else None,
                          "x265_roi_kbps_at_fidelity": fa, "fidelity_ratio_vs_x265_roi": p.object_kbps / fa if fa else None,
                          "fidelity_backdrop": fb, "backdrop_kbps": p.backdrop_kbps, "x265_roi_kbps_at_backdrop_fidelity": fba,
                          "backdrop_ratio_vs_x265_roi": p.backdrop_kbps / fba if fba else None})
    return pts, heads


def plot(points: list[Point], out: Path) -> None:
    seqs = sorted({p.seq for p in points})
    fig, axes = subplots(1, len(seqs), figsize=(4.2 * len(seqs), 3.6), squeeze=False)
    for ax, s in zip(axes[0], seqs):
        for c, style in (("ssc", "o-"), ("x264", "s--"), ("x265", "^--"), ("x264-roi", "s:"), ("x265-roi", "^:")):
            ps = sorted((p for p in points if p.seq == s and p.codec == c), key=lambda p: p.kbps)
            if ps:
                ax.plot([p.kbps for p in ps], [p.psnr_object for p in ps], style, label=c + " (whole stream)")
        ps = sorted((p for p in points if p.seq == s and p.codec == "ssc"), key=lambda p: p.kbps)
        ax.plot([p.object_kbps for p in ps], [p.psnr_object for p in ps], "o-", lw=2.5, label="ssc object-only stream")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter("")  # minor labels of a short log range overlap
        style_axis(ax, "kbit/s", "object PSNR (dB)", s, legend_size=6)
    save_figure(fig, out / "video_rd.png")


def main(argv: list[str] | None = None) -> None:
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--clips", default="davis:car-shadow,davis:breakdance,davis:car-roundabout,davis:parkour,surveillance")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--gop", type=int, default=16)
    ap.add_argument("--background-gop", type=int, default=None, help="the background's I-frame period (default 4x --gop)")
    ap.add_argument("--person-masks", default="detect:ssdlite-person,every=5",
                    help="the person tracks of the surveillance clip and the --people sequences (fidelity runs)")
    ap.add_argument("--qps", type=lambda s: [int(v) for v in s.split(",")], default=[26, 32, 38])
    ap.add_argument("--crfs", type=lambda s: [int(v) for v in s.split(",")], default=[22, 28, 34, 40, 46, 51])
    ap.add_argument("--roi-offset", type=int, default=None,
                    help="background qp minus object qp (default: each inner codec's, ssc.video.ratecontrol.ROI_OFFSETS)")
    ap.add_argument("--qoffset", type=float, default=-0.3, help="addroi qoffset (-1..1, negative = better ROI)")
    ap.add_argument("--model", default=DEFAULT_VIDEO_MODEL)
    ap.add_argument("--fidelity", action=argparse.BooleanOptionalAction, default=True,
                    help="person-detector fidelity per point (surveillance tracks then come from the person detector)")
    ap.add_argument("--people", default="breakdance,parkour", help="DAVIS sequences with people (fidelity measured)")
    ap.add_argument("--det-every", type=int, default=2, help="fidelity: detector on every N-th frame")
    ap.add_argument("--inners", default="hevc,learned", help="the ssc points' inner codecs (hevc, learned)")
    ap.add_argument("--preset", default="medium", help="the hevc tracks' x265 preset (the anchors stay at medium)")
    ap.add_argument("--background-rate", choices=BACKGROUND_RATES, default=HevcSettings.background_rate,
                    help="hevc: x265's rate control of the background track (auto: a constant qp for a fixed camera, else CRF; qp; crf)")
    ap.add_argument("--lookahead", type=int, default=DEFAULT_LOOKAHEAD,
                    help="the hevc tracks' x265 lookahead in frames (with its CU-tree; 0: none, as live coding)")
    ap.add_argument("--pose", action=argparse.BooleanOptionalAction, default=pose_installed(),
                    help="blazepose mask and keypoint fidelity on the DAVIS --people sequences (default: when installed)")
    ap.add_argument("--out", default="out/eval/video")
    ARGS = ap.parse_args(argv)
    ARGS.people = ARGS.people.split(",")
    ARGS.inners = ARGS.inners.split(",")
    codec = load_codec(ARGS.model)
    points, heads = [], []
    for spec in ARGS.clips.split(","):
        p, h = evaluate(spec, codec)
        points += p
        heads += h
    rows = [[p.seq, p.codec, p.setting, p.kbps, p.object_kbps, p.psnr_object, p.psnr_background, p.enc_fps, p.dec_fps,
             p.object_dec_fps, p.fidelity, p.fidelity_objects_only, p.backdrop_kbps, p.fidelity_backdrop] for p in points]
    lines = ["## SSVC vs x264 / x265 (object PSNR = PSNR over object pixels, RGB)", ""]
    lines += markdown_table(["seq", "codec", "setting", "kbit/s", "object-only kbit/s", "PSNR obj", "PSNR bg",
                             "enc fps", "dec fps", "obj dec fps", "person fidelity AP", "fidelity, persons-only",
                             "persons + held background kbit/s", "fidelity, persons + held background"], rows)
    lines += ["", "## Target: ssc object-only bits / x265-ROI bits at equal object PSNR (<= 0.5)", ""]
    lines += markdown_table(["seq", "ssc", "PSNR obj", "object area", "ssc obj kbit/s", "x265-ROI kbit/s", "ratio",
                             "x265 kbit/s", "ratio vs x265"],
                            [[h["seq"], f'{h["codec"]} {h["setting"]}', h["psnr_object"], h["object_area"], h["object_kbps"], h["x265_roi_kbps"],
                              h["ratio_vs_x265_roi"], h["x265_kbps"], h["ratio_vs_x265"]] for h in heads])
    lines += ["", "## Target: persons-only fidelity >= 90 at <= 0.5x the bits of x265-ROI at equal fidelity", ""]
    lines += markdown_table(["seq", "ssc", "fidelity persons-only", "ssc obj kbit/s", "x265-ROI kbit/s at that fidelity",
                             "ratio"],
                            [[h["seq"], f'{h["codec"]} {h["setting"]}', h["fidelity_objects_only"], h["object_kbps"], h["x265_roi_kbps_at_fidelity"],
                              h["fidelity_ratio_vs_x265_roi"]] for h in heads if h["fidelity_objects_only"] is not None])
    pose_rows = [[p.seq, p.codec, p.setting, p.kbps, p.object_kbps, p.backdrop_kbps,
                  *(None if (p.pose or {}).get(k) is None else f"{p.pose[k]['mask']:.1f} / {p.pose[k]['keypoints']:.1f}"
                    for k in ("full", "persons", "backdrop"))] for p in points if p.pose]
    if pose_rows:
        lines += ["", "## BlazePose fidelity (mask AP / keypoint AP against its results on the originals)", ""]
        lines += markdown_table(["seq", "codec", "setting", "kbit/s", "persons-only kbit/s", "persons + held bg kbit/s",
                                 "full decode", "persons only", "persons + held background"], pose_rows)
    lines += ["", "## Full decode and persons + held background against x265 4:2:0 at equal person fidelity", ""]
    lines += markdown_table(["seq", "ssc", "kbit/s", "fidelity", "x265-420 kbit/s at it", "ratio (target <= 1.05)",
                             "persons + held bg kbit/s", "its fidelity", "x265-420 kbit/s at it", "ratio (target <= 0.7)",
                             "x265-420 kbit/s at the object PSNR", "ratio at equal object PSNR"],
                            [[h["seq"], f'{h["codec"]} {h["setting"]}', h["kbps"], h["fidelity"], h["x265_420_kbps_at_fidelity"],
                              h["full_ratio_vs_x265_420"], h["backdrop_kbps"], h["fidelity_backdrop"],
                              h["x265_420_kbps_at_backdrop_fidelity"], h["backdrop_ratio_vs_x265_420"],
                              h["x265_420_kbps_at_psnr"], h["full_ratio_vs_x265_420_psnr"]]
                             for h in heads if h["fidelity"] is not None])
    lines += ["", "## The same target for persons over the held background (backdrop decode)", ""]
    lines += markdown_table(["seq", "ssc", "fidelity", "kbit/s read", "x265-ROI kbit/s at that fidelity", "ratio"],
                            [[h["seq"], f'{h["codec"]} {h["setting"]}', h["fidelity_backdrop"], h["backdrop_kbps"],
                              h["x265_roi_kbps_at_backdrop_fidelity"], h["backdrop_ratio_vs_x265_roi"]]
                             for h in heads if h["fidelity_backdrop"] is not None])
    out = write_outputs(ARGS.out, "video", {"meta": run_meta(**{k: v for k, v in vars(ARGS).items()}),
                                            "points": [asdict(p) for p in points], "target": heads}, lines)
    plot(points, out)


ARGS: argparse.Namespace

if __name__ == "__main__":
    main()
