"""Person rate-accuracy benchmark with the pretrained person detector (``ssdlite-person``): person
bbox AP / AP50 on COCO val against bpp (all pixels of the image), every codec measured in one run.

Operating points (``kind``):

* ``original``: the detector on the uncompressed images;
* ``jpeg`` / ``webp`` / ``avif`` (Pillow) and ``x265`` (HEVC intra, ffmpeg): whole-image anchors;
* ``ssc``: one group per image (``--masks whole``), full decode;
* ``ssc-persons-det``: groups made on the encoder side by the same detector on the original
  (``detect:ssdlite-person,score=S,pad=P``), persons at quality Q and the background at the lowest,
  only the person groups decoded (the realistic case; the background's quality changes no byte a
  persons-only receiver reads);
* ``ssc-persons-ann``: groups from the COCO annotations, only the person instances decoded (an upper
  bound: an encoder in the field has no annotations);
* ``ssc-roi``: detector groups, persons at quality Q and the background at the lowest, full decode.
* ``ssc-persons-det-sF`` (``--persons-scale F``): persons-only decodes of streams whose person groups
  are coded at 1/F size (bitstream v5 scaled groups).
* ``ssc-roi-bgF`` (``--roi-bg F``): the same with the background coded at 1/F size and upsampled on
  decode (bitstream v5 scaled groups), full decode.
* ``ssc-for`` / ``ssc-for-persons`` (``--for-qualities Q ...``): the stream ``ssc encode --for
  PURPOSE --quality Q`` writes (the purpose's codec, groups, qualities and sizes), decoded whole and
  persons only; the first ``--purpose``'s kinds carry no name, the others' are ``KIND/PURPOSE``.

With the ``blazepose`` head installed (``--pose``, the default when it is), every point also gets
person mask AP (BlazePose's masks, top-down on the same detections with score >= 0.3, against the
instance masks) and keypoint AP (its 17 COCO keypoints, on the images of the keypoint annotations,
``--kp-ann``), and the time per person.

Undecoded pixels are mid-grey (``--fill extend``: the decoded pixels extended smoothly outward,
:mod:`ssc.fill`) and detections lying mostly on them are dropped (as ``ssc analyze`` does). Outputs
``person.json`` / ``person.md`` / ``person.png`` with per-image decode and detector times (median).

    python -m ssc.eval.person --images ../shared/data/coco/val2017 \
        --ann ../shared/data/coco/annotations/instances_val2017_subset158.json
"""
from __future__ import annotations

import argparse
import contextlib
import io
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ssc.defaults import DEFAULT_MODEL
from ssc.analyze import FILL, results_in_region
from ssc.api import decode_image, encode_image, read_image
from ssc.bitstream import StreamReader
from ssc.bitstream.format import scale_of
from ssc.masks import apply_policy, from_coco
from ssc.masks.detect import DetectSpec, detect_spec, detected_groups, whole_image
from ssc.models.zoo import load_codec
from ssc.fill import apply_fill
from ssc.purpose import resolve_purpose

from .anchors import Coded, at_scale, pillow_available, pillow_code, x265_intra_code
from .coco import COCOEvaluator
from .report import markdown_table, run_meta, save_figure, style_axis, subplots, write_outputs

PERSON = 1
#: the anchors at their strongest: x265 intra in 4:2:0 (what users run) beside 4:4:4, AVIF down to
#: qualities that reach 0.08 bpp; every anchor also coded at half size and upsampled (``--anchor-scales``)
ANCHORS = {"jpeg": [5, 10, 20, 40, 70], "webp": [2, 10, 30, 60], "avif": [2, 10, 30, 50, 70], "x265": [45, 40, 35, 30],
           "x265-420": [45, 40, 35, 30]}
#: the bpp of issue 37's gain table
GAIN_BPP = (0.08, 0.12, 0.2, 0.3)
SSC_FULL = [0.0, 1.0, 2.0, 3.0]
SSC_PERSONS = [0.0, 1.5, 3.0]
SSC_ROI = [1.5, 3.0]  # detector groups: persons at q, background at 0 (the persons-only points' streams)
SSC_FOR = [2.0, 2.5, 3.0]  # the streams of ssc encode --for PURPOSE --quality Q


@dataclass
class PersonPoint:
    kind: str
    setting: float
    images: int
    bpp: float
    AP: float | None
    AP50: float | None
    decode_ms: float  # median per image (0 for the original)
    detect_ms: float  # median per image
    notes: str = ""
    mask_AP: float | None = None  # blazepose person masks (None: not measured)
    mask_AP50: float | None = None
    kp_AP: float | None = None  # blazepose keypoints, on the keypoint-annotated images
    kp_AP50: float | None = None
    pose_ms_per_person: float | None = None


@dataclass
class Accumulator:
    """One operating point over the images: bytes, pixels, results and timings."""

    ev: COCOEvaluator
    segm: COCOEvaluator | None = None
    kps: COCOEvaluator | None = None
    kp_images: frozenset = frozenset()
    pose_s: list[float] = field(default_factory=list)
    nbytes: int = 0
    pixels: int = 0
    decode_s: list[float] = field(default_factory=list)
    detect_s: list[float] = field(default_factory=list)

    def count(self, image_id: int, nbytes: int, pixels: int, results: list[dict]) -> None:
        """One image's results, bytes and pixels."""
        self.ev.process(image_id, results)
        self.nbytes += nbytes
        self.pixels += pixels

    @property
    def bpp(self) -> float:
        return 8 * self.nbytes / max(self.pixels, 1)

    def add(self, image_id: int, nbytes: int, pixels: int, results: list[dict], decode_s: float, detect_s: float) -> None:
        self.count(image_id, nbytes, pixels, results)
        self.decode_s.append(decode_s)
        self.detect_s.append(detect_s)

    def add_pose(self, image_id: int, masks: list[dict], keypoints: list[dict], seconds: float, persons: int) -> None:
        """One image's blazepose results (mask results, keypoint results) and its time per person."""
        self.segm.process(image_id, masks)
        if image_id in self.kp_images:
            self.kps.process(image_id, keypoints)
        if persons:
            self.pose_s.append(seconds / persons)

    def point(self, kind: str, setting: float, notes: str = "") -> PersonPoint:
        m = self.ev.evaluate()
        p = PersonPoint(kind, setting, len(self.decode_s), self.bpp, m["bbox_AP"],
                        m["bbox_AP50"], 1000 * float(np.median(self.decode_s)), 1000 * float(np.median(self.detect_s)), notes)
        if self.segm is not None:
            s, k = self.segm.evaluate(), self.kps.evaluate()
            p.mask_AP, p.mask_AP50, p.kp_AP, p.kp_AP50 = s["segm_AP"], s["segm_AP50"], k["keypoints_AP"], k["keypoints_AP50"]
            p.pose_ms_per_person = 1000 * float(np.median(self.pose_s)) if self.pose_s else None
        return p


def new_accumulator(gt, kp_gt=None, kp_images: frozenset = frozenset()) -> Accumulator:
    """An empty operating point scored on ``gt`` (person boxes), and with keypoint ground truth
    ``kp_gt`` also on person masks and (on ``kp_images``) keypoints."""
    ev = COCOEvaluator(gt, ("bbox",), cat_ids=[PERSON])
    if kp_gt is None:
        return Accumulator(ev)
    return Accumulator(ev, COCOEvaluator(gt, ("segm",), cat_ids=[PERSON]),
                       COCOEvaluator(kp_gt, ("keypoints",), cat_ids=[PERSON]), kp_images)


def detect(head, image: np.ndarray, image_id: int, region: np.ndarray | None, pose=None,
           acc: Accumulator | None = None) -> tuple[list[dict], float]:
    """COCO results of the person detector on ``image`` (inside ``region`` when given) and its time;
    with ``pose`` (a blazepose head) its masks and keypoints on the same detections go into ``acc``."""
    t = time.perf_counter()
    inst = head.predict(image, masks=False)
    dt = time.perf_counter() - t
    region = region if region is not None else np.ones(image.shape[:2], bool)
    if pose is not None:
        t = time.perf_counter()
        people = pose.predict_on(image, inst)
        acc.add_pose(image_id, results_in_region(people, region, image_id, "segment"),
                     results_in_region(people, region, image_id, "pose"), time.perf_counter() - t, len(people))
    return results_in_region(inst, region, image_id, "detect"), dt


def is_anchor(kind: str) -> bool:
    return kind.split("@")[0] in ANCHORS


def base_kind(kind: str) -> str:
    """``kind`` without its model (``ssc-roi/gi-cell-m-person`` -> ``ssc-roi``): the first ``--model``'s
    points carry none."""
    return kind.split("/")[0]


def is_full_decode(kind: str) -> bool:
    """Whether an ssc point decodes every pixel: an even stream, or an ROI stream (persons at their
    quality, the background at 0, at full or reduced size), decoded whole."""
    return base_kind(kind) in ("ssc", "ssc-for") or base_kind(kind).startswith("ssc-roi")


def is_persons_only(kind: str) -> bool:
    """Whether an ssc point decodes the persons of encoder-side detector groups only (at any size)."""
    return base_kind(kind).startswith("ssc-persons-det") or base_kind(kind) == "ssc-for-persons"


def for_kind(kind: str, purpose: str, first: str) -> str:
    """The ``ssc-for`` kind ``kind`` of ``purpose``: the first ``--purpose``'s carry no name."""
    return kind if purpose == first else f"{kind}/{purpose}"


def with_model(kind: str, model: str, first: str) -> str:
    return kind if model == first else f"{kind}/{model}"


def anchor_code(kind: str, x: np.ndarray, setting: float) -> Coded:
    """Anchor ``kind`` (``NAME`` or ``NAME@SCALE``, coded at that scale of the image) at ``setting``."""
    name, _, scale = kind.partition("@")
    if name.startswith("x265"):
        chroma = "420" if name == "x265-420" else "444"
        return at_scale(lambda im: x265_intra_code(im, int(setting), chroma=chroma), x, float(scale or 1))
    return at_scale(lambda im: pillow_code(name, im, int(setting)), x, float(scale or 1))


def ssc_point(codec, x: np.ndarray, data: bytes, decode_ids: list[int] | None,
              fill: str = "grey") -> tuple[np.ndarray, int, np.ndarray | None, float]:
    """Decode ``decode_ids`` (all when None) of stream ``data``: (image, bytes counted, decoded region
    or None, decode seconds), the undecoded pixels shown as ``fill`` (:mod:`ssc.fill`, as ``ssc analyze
    --fill``). A persons-only decode of a stream without persons reads the header only."""
    if decode_ids is not None and not decode_ids:  # the receiver reads the header, finds no person
        with StreamReader(data) as rd:
            return np.full_like(x, FILL), rd.bytes_read, np.zeros(x.shape[:2], bool), 0.0
    t = time.perf_counter()
    dec = decode_image(data, codec, groups=decode_ids, fill=FILL)
    dt = time.perf_counter() - t
    if dec.failed:
        raise RuntimeError(f"decode failed: {dec.failed}")
    region = np.isin(dec.group_map, dec.decoded) if decode_ids is not None else None
    image = dec.image if region is None else apply_fill(dec.image, region, fill)
    return image, (dec.bytes_read if decode_ids is not None else len(data)), region, dt


def persons(gm) -> list[int]:
    return [g.group_id for g in gm.groups if g.class_id == PERSON]


def run(args: argparse.Namespace) -> dict:
    from pycocotools.coco import COCO

    from ssc.tasks import resolve_head

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(args.ann)
    records = sorted(gt.dataset["images"], key=lambda r: r["id"])
    if args.kp_images_only:  # the images of the keypoint annotations (a subset of the 158)
        with contextlib.redirect_stdout(io.StringIO()):
            kp_ids = set(COCO(args.kp_ann).getImgIds())
        records = [r for r in records if r["id"] in kp_ids]
    records = records[: args.limit]
    head = resolve_head()
    codecs = {m: load_codec(m) for m in args.model}
    first = args.model[0]
    det_spec = DetectSpec("ssdlite-person", args.det_score, args.det_pad)
    purposes = {for_kind(k, name, args.purpose[0]): resolve_purpose(name)
                for name in args.purpose for k in ("ssc-for", "ssc-for-persons")}
    for purpose in purposes.values():
        if args.for_qualities and purpose.model not in codecs:
            codecs[purpose.model] = load_codec(purpose.model)
    plan: list[tuple[str, float, str | None]] = [("original", 0.0, None)]
    for kind, settings in ANCHORS.items():
        if kind.startswith("x265") or pillow_available(kind):
            plan += [(kind if sc == 1 else f"{kind}@{sc:g}", s, None) for sc in args.anchor_scales for s in settings]
    for m in args.model:
        plan += [("ssc", q, m) for q in args.ssc] + [("ssc-persons-det", q, m) for q in args.persons]
        plan += [("ssc-persons-ann", q, m) for q in args.persons if args.ann_groups] + [("ssc-roi", q, m) for q in args.roi]
        plan += [(f"ssc-roi-bg{f}", q, m) for f in args.roi_bg for q in args.roi]
        plan += [(f"ssc-persons-det-s{f}", q, m) for f in args.persons_scale for q in args.persons]
    plan += [(k, q, purpose.model) for k, purpose in purposes.items() for q in args.for_qualities]
    pose, kp_gt = pose_head(args)
    kp_images = frozenset(kp_gt.getImgIds()) if kp_gt is not None else frozenset()
    acc = {p: new_accumulator(gt, kp_gt if pose is not None else None, kp_images) for p in plan}
    for rec in tqdm(records, desc="person benchmark", unit="image"):
        path = Path(args.images) / rec["file_name"]
        x = read_image(path)
        iid, px = int(rec["id"]), x.shape[0] * x.shape[1]
        det_groups = detected_groups(x, det_spec, head, quiet=True)
        ann_groups = apply_policy(from_coco(args.ann, path), "instance", min_area=args.min_area)
        for_groups = {spec: detected_groups(x, detect_spec(spec), head, quiet=True)
                      for spec in dict.fromkeys(pp.masks for pp in purposes.values())} if args.for_qualities else {}
        streams: dict[tuple[str, float, str], bytes] = {}

        def stream(groups, kind: str, q: float, persons_only_quality: bool, model: str, bg_scale: int = 1,
                   person_scale: int = 1) -> bytes:
            """One encode per (groups, quality): the detector-group stream codes persons at q and the
            background at 0, so its persons-only decode and its full (ROI) decode share it (group
            independence: the person segments do not depend on the background's quality).
            ``bg_scale`` / ``person_scale``: the groups other than persons / the persons coded at
            1/bg_scale / 1/person_scale size."""
            if (kind, q, model, bg_scale, person_scale) not in streams:
                roi = {g: q for g in persons(groups)} if persons_only_quality else None
                scale = {g: scale_of(person_scale if g in (roi or {}) else bg_scale) for g in groups.ids}
                streams[(kind, q, model, bg_scale, person_scale)] = encode_image(
                    x, groups, codecs[model], quality=0.0 if persons_only_quality else q, group_quality=roi or None,
                    group_scale=scale).data
            return streams[(kind, q, model, bg_scale, person_scale)]

        def for_stream(purpose, q: float) -> bytes:
            """What ``ssc encode --for PURPOSE --quality q`` writes (one encode for both decodes)."""
            if ("for", purpose.name, q) not in streams:
                c, gm = codecs[purpose.model], for_groups[purpose.masks]
                dq, roi = purpose.group_qualities(gm.groups, q, top=c.model.num_qualities - 1)
                streams[("for", purpose.name, q)] = encode_image(x, gm, c, quality=dq, group_quality=roi,
                                                                 group_scale=purpose.group_scales(gm.groups)).data
            return streams[("for", purpose.name, q)]

        for kind, s, m in plan:
            a = acc[(kind, s, m)]
            if kind == "original":
                res, dt = detect(head, x, iid, None, pose, a)
                a.add(iid, 0, px, res, 0.0, dt)
                continue
            codec = codecs.get(m)
            if is_anchor(kind):
                t = time.perf_counter()
                c = anchor_code(kind, x, s)
                y, nbytes, region, dec_s = c.decoded, c.nbytes, None, time.perf_counter() - t  # encode + decode
            elif kind == "ssc":
                y, nbytes, region, dec_s = ssc_point(codec, x, stream(whole_image(*x.shape[:2]), "whole", s, False, m), None)
            elif kind.startswith("ssc-persons-det-s"):
                f = int(kind.removeprefix("ssc-persons-det-s"))
                y, nbytes, region, dec_s = ssc_point(codec, x, stream(det_groups, "det", s, True, m, person_scale=f),
                                                     persons(det_groups), args.fill)
            elif kind == "ssc-persons-det":
                y, nbytes, region, dec_s = ssc_point(codec, x, stream(det_groups, "det", s, True, m), persons(det_groups), args.fill)
            elif base_kind(kind) == "ssc-for":
                y, nbytes, region, dec_s = ssc_point(codec, x, for_stream(purposes[kind], s), None)
            elif base_kind(kind) == "ssc-for-persons":
                pp = purposes[kind]
                y, nbytes, region, dec_s = ssc_point(codec, x, for_stream(pp, s), persons(for_groups[pp.masks]), args.fill)
            elif kind == "ssc-persons-ann":
                y, nbytes, region, dec_s = ssc_point(codec, x, stream(ann_groups, "ann", s, False, m), persons(ann_groups), args.fill)
            else:  # ssc-roi, ssc-roi-bgF
                f = int(kind.removeprefix("ssc-roi-bg")) if kind.startswith("ssc-roi-bg") else 1
                y, nbytes, region, dec_s = ssc_point(codec, x, stream(det_groups, "det", s, True, m, f), None)
            res, dt = detect(head, y, iid, region, pose, a)
            a.add(iid, nbytes, px, res, dec_s, dt)
    notes = {"x265": "decode_ms: ffmpeg encode + decode", "jpeg": "decode_ms: encode + decode",
             "webp": "decode_ms: encode + decode", "avif": "decode_ms: encode + decode",
             "ssc-persons-det": f"groups: detector boxes, score >= {args.det_score:g}, padded {args.det_pad} px",
             "ssc-roi": "persons at the quality given, background at 0",
             **{f"ssc-roi-bg{f}": f"persons at the quality given, background at 0 coded at 1/{f} size"
                for f in args.roi_bg},
             **{f"ssc-persons-det-s{f}": f"persons only, person groups coded at 1/{f} size" for f in args.persons_scale},
             **{k: f"ssc encode --for {pp.name} --quality Q, " + ("persons only" if "persons" in k else "full decode")
                for k, pp in purposes.items()}}
    points = [acc[p].point(p[0] if p[2] is None else with_model(p[0], p[2], first), p[1], notes.get(p[0], ""))
              for p in plan]
    full = [p for p in points if is_full_decode(p.kind) and p.bpp <= 0.20 and p.AP is not None]
    people = [p for p in points if is_persons_only(p.kind) and p.bpp <= 0.10 and p.AP is not None]
    machine = {"envelope": envelope_gains(points),
               "T2_full_decode_17AP_at_0.20bpp": {"best": max(((p.AP, p.bpp) for p in full), default=None),
                                                  "by": next((p.kind for p in full if p.AP >= 17.0), None),
                                                  "met": any(p.AP >= 17.0 for p in full)},
               "T3_persons_only_16.5AP_at_0.10bpp": {"best": max(((p.AP, p.bpp) for p in people), default=None),
                                                     "by": next((p.kind for p in people if p.AP >= 16.5), None),
                                                     "met": any(p.AP >= 16.5 for p in people)}}
    return {"points": [asdict(p) for p in points],
            "targets": {**targets(points), "pose": pose_targets(points), "machine": machine},
            "meta": run_meta(model=first, models={m: c.card.sha256 for m, c in codecs.items()},
                             weights_sha256=codecs[first].card.sha256, detector=head.info.weights,
                             images=len(records), ann=args.ann, det_score=args.det_score, det_pad=args.det_pad,
                             fill=args.fill)}


def pose_head(args: argparse.Namespace):
    """(blazepose head on the person detector, keypoint ground truth), or (None, None) without --pose."""
    if not args.pose:
        return None, None
    from pycocotools.coco import COCO

    from ssc.tasks import resolve_head

    head = resolve_head("blazepose")
    with contextlib.redirect_stdout(io.StringIO()):
        return head, COCO(args.kp_ann)


def targets(points: list[PersonPoint]) -> dict:
    """The issue's targets: T1 (full decode within 1 AP of the original at <= 0.5x the bpp of the best
    anchor that reaches it) and T2 (persons-only, detector groups: AP >= 17 at <= 0.10 bpp)."""
    orig = next(p.AP for p in points if p.kind == "original")
    need = orig - 1.0
    anchors = [p for p in points if is_anchor(p.kind) and p.AP is not None and p.AP >= need]
    best_anchor = min((p.bpp for p in anchors), default=None)
    ssc_ok = [p for p in points if p.kind == "ssc" and p.AP is not None and p.AP >= need]
    ssc_bpp = min((p.bpp for p in ssc_ok), default=None)
    t2 = [p for p in points if p.kind == "ssc-persons-det" and p.AP is not None and p.AP >= 17.0 and p.bpp <= 0.10]
    return {
        "original_AP": orig,
        "T1": {"needed_AP": need, "best_anchor_bpp": best_anchor, "ssc_bpp": ssc_bpp,
               "ratio": None if (best_anchor is None or ssc_bpp is None) else ssc_bpp / best_anchor,
               "met": bool(best_anchor and ssc_bpp and ssc_bpp <= 0.5 * best_anchor)},
        "T2": {"met": bool(t2), "best": max(((p.AP, p.bpp) for p in points if p.kind == "ssc-persons-det"), default=None)},
    }


def pose_targets(points: list[PersonPoint], keep: float = 0.9, bpp_cap: float = 0.15) -> dict:
    """Issue 38: persons-only decodes (detector groups) keep >= 90% of the original's keypoint and
    mask AP at <= 0.15 bpp; a full decode (every pixel: an even stream or an ROI stream decoded
    whole) reaches the keypoint AP of 90% of the original at no more bpp than the best anchor
    reaching it."""
    orig = next(p for p in points if p.kind == "original")
    if orig.kp_AP is None:
        return {}
    persons = [p for p in points if is_persons_only(p.kind) and p.bpp <= bpp_cap]
    best = max(persons, key=lambda p: (p.kp_AP or 0) + (p.mask_AP or 0), default=None)
    need = keep * orig.kp_AP

    def cheapest(sel):
        return min((p.bpp for p in sel if p.kp_AP is not None and p.kp_AP >= need), default=None)

    by = min((p for p in points if is_full_decode(p.kind) and p.kp_AP is not None and p.kp_AP >= need),
             key=lambda p: p.bpp, default=None)
    ssc_bpp, anchor_bpp = by and by.bpp, cheapest(p for p in points if is_anchor(p.kind))
    return {
        "persons_only": {"bpp_cap": bpp_cap, "kp_AP": best and best.kp_AP, "mask_AP": best and best.mask_AP,
                         "bpp": best and best.bpp, "needed_kp_AP": need, "needed_mask_AP": keep * orig.mask_AP,
                         "met": bool(best and best.kp_AP >= need and best.mask_AP >= keep * orig.mask_AP)},
        "full_decode": {"needed_kp_AP": need, "ssc_bpp": ssc_bpp, "by": by and f"{by.kind} {by.setting:g}",
                        "best_anchor_bpp": anchor_bpp,
                        "met": bool(ssc_bpp is not None and (anchor_bpp is None or ssc_bpp <= anchor_bpp))},
    }


def curve_at(points: list[PersonPoint], bpp: float, key: str = "AP") -> float | None:
    """One codec's ``key`` at ``bpp``: log-linear between its bracketing points, its best point's
    beyond its highest rate (it can always spend less), None below its lowest."""
    pts = sorted((p.bpp, getattr(p, key)) for p in points if getattr(p, key) is not None and p.bpp > 0)
    if not pts or bpp < pts[0][0]:
        return None
    best = None
    for (b0, a0), (b1, a1) in zip(pts, pts[1:]):
        if b0 <= bpp <= b1:
            best = a0 + (np.log(bpp) - np.log(b0)) / (np.log(b1) - np.log(b0)) * (a1 - a0) if b1 > b0 else max(a0, a1)
    low = max(a for b, a in pts if b <= bpp)  # a lower rate point is always available
    return max(low, best) if best is not None else low


def envelope_gains(points: list[PersonPoint], bpps=GAIN_BPP) -> dict:
    """Issue 37's table: at each bpp, the upper envelope of every anchor at any scale, ssc's best
    configuration that a receiver in the field can have (full decode, persons-only and ROI with
    encoder-side detector groups; not the annotation groups), and ssc's gain over the envelope."""
    by_kind: dict[str, list[PersonPoint]] = {}
    for p in points:
        by_kind.setdefault(p.kind, []).append(p)
    rows = []
    for b in bpps:
        anchors = {k: curve_at(v, b) for k, v in by_kind.items() if is_anchor(k)}
        sscs = {k: curve_at(v, b) for k, v in by_kind.items()
                if is_full_decode(k) or is_persons_only(k)}
        a = max(((v, k) for k, v in anchors.items() if v is not None), default=(None, None))
        s = max(((v, k) for k, v in sscs.items() if v is not None), default=(None, None))
        rows.append({"bpp": b, "envelope_AP": a[0], "envelope_by": a[1], "ssc_AP": s[0], "ssc_by": s[1],
                     "gain": None if a[0] is None or s[0] is None else s[0] - a[0]})
    gains = [r["gain"] for r in rows]
    return {"rows": rows, "mean_gain": None if None in gains else float(np.mean(gains)),
            "T1_met": None not in gains and all(g > 0 for g in gains) and float(np.mean(gains)) >= 1.0}


def plot(points: list[dict], path: Path) -> None:
    keys = ["AP", "AP50"] + [k for k in ("mask_AP", "kp_AP") if any(p.get(k) is not None for p in points)]
    fig, axes = subplots(1, len(keys), figsize=(5.5 * len(keys), 4.3))
    orig = next(p for p in points if p["kind"] == "original")
    for ax, key in zip(axes, keys):
        for kind in dict.fromkeys(p["kind"] for p in points if p["kind"] != "original"):
            ps = sorted((p for p in points if p["kind"] == kind and p[key] is not None), key=lambda p: p["bpp"])
            ax.plot([p["bpp"] for p in ps], [p[key] for p in ps], "o-" if kind.startswith("ssc") else "s--",
                    label=kind, markersize=3)
        if orig[key] is not None:
            ax.axhline(orig[key], color="k", ls=":", lw=1, label="original")
        ax.set_xscale("log")
        style_axis(ax, "bpp (all pixels)", f"person {key} (%)", f"person {key}, COCO val")
    save_figure(fig, path)


def pose_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("ai_edge_litert", "mediapipe"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--ann", required=True)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--model", nargs="+", default=[DEFAULT_MODEL],
                    help="codecs measured in the run (each gets every ssc point; the first's kinds carry no "
                         "model name, the others' are KIND/MODEL); T1 and the pose targets read the first's")
    ap.add_argument("--ssc", type=float, nargs="*", default=SSC_FULL, help="qualities of the full-decode points")
    ap.add_argument("--persons", type=float, nargs="*", default=SSC_PERSONS, help="qualities of the persons-only points")
    ap.add_argument("--roi", type=float, nargs="*", default=SSC_ROI, help="person qualities of the ROI points")
    ap.add_argument("--persons-scale", type=int, nargs="*", default=[], choices=(2, 4),
                    help="also the persons-only points with the person groups coded at 1/F size")
    ap.add_argument("--roi-bg", type=int, nargs="*", default=[], choices=(2, 4),
                    help="also the ROI points with the background coded at 1/F size (bitstream v5 scaled groups)")
    ap.add_argument("--purpose", nargs="+", default=["ssdlite-person"],
                    help="the --for purposes of the ssc-for points (the first's kinds carry no name, the others' are KIND/PURPOSE)")
    ap.add_argument("--for-qualities", type=float, nargs="*", default=SSC_FOR,
                    help="also the streams `ssc encode --for PURPOSE --quality Q` writes, decoded whole and persons only")
    ap.add_argument("--fill", choices=["grey", "extend"], default="grey",
                    help="what the heads see where a persons-only decode decoded nothing (ssc analyze --fill)")
    ap.add_argument("--det-score", type=float, default=0.2, help="encoder-side detector: score of a person group")
    ap.add_argument("--det-pad", type=int, default=16, help="encoder-side detector: box padding in pixels")
    ap.add_argument("--min-area", type=int, default=256, help="annotation groups: smaller objects join the background")
    ap.add_argument("--kp-images-only", action="store_true",
                    help="only the images of --kp-ann (79 of the 158): every score on the same images")
    ap.add_argument("--ann-groups", action=argparse.BooleanOptionalAction, default=True,
                    help="the persons-only points with annotation groups (an upper bound no encoder in the field has)")
    ap.add_argument("--anchor-scales", type=float, nargs="*", default=[1.0, 0.5],
                    help="every anchor is coded at these scales of the image and upsampled (none: no anchors, a development run)")
    ap.add_argument("--pose", action=argparse.BooleanOptionalAction, default=pose_installed(),
                    help="also person mask AP and keypoint AP with the blazepose head (default: when installed)")
    ap.add_argument("--kp-ann", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "coco" / "annotations"
                                            / "orig_Obmutescence_COCO-MINI" / "person_keypoints_val2017.json"),
                    help="COCO keypoint annotations (the keypoint AP's images)")
    ap.add_argument("--out", default="out/eval/person")
    args = ap.parse_args(argv)
    data = run(args)
    pts = data["points"]
    rows = [[p["kind"], p["setting"], p["bpp"], p["AP"], p["AP50"], p["mask_AP"], p["kp_AP"], p["decode_ms"], p["detect_ms"],
             p["pose_ms_per_person"], p["notes"]] for p in pts]
    t = data["targets"]
    lines = [f"person AP on {data['meta']['images']} COCO val images, detector {data['meta']['detector']}, "
             "codecs " + ", ".join(f"{m} (sha256 {h[:12]})" for m, h in data["meta"]["models"].items()), "",
             *markdown_table(["kind", "setting", "bpp", "person AP", "AP50", "mask AP", "keypoint AP", "decode ms",
                              "detector ms", "pose ms/person", "notes"], rows), "",
             f"T1 (full decode >= {t['T1']['needed_AP']:.2f} AP at <= 0.5x the best anchor's bpp): "
             f"{'met' if t['T1']['met'] else 'missed'}; ssc {t['T1']['ssc_bpp']}, best anchor {t['T1']['best_anchor_bpp']}",
             f"T2 (persons-only, detector groups, AP >= 17 at <= 0.10 bpp): {'met' if t['T2']['met'] else 'missed'}; "
             f"best (AP, bpp) {t['T2']['best']}"]
    env = t["machine"]["envelope"]
    lines += ["", "ssc's best configuration against the upper envelope of every anchor at any scale (person AP)", ""]
    lines += markdown_table(["bpp", "anchor envelope", "by", "ssc", "by", "gain"],
                            [[r["bpp"], r["envelope_AP"], r["envelope_by"], r["ssc_AP"], r["ssc_by"], r["gain"]]
                             for r in env["rows"]])
    lines += [f"mean gain {env['mean_gain']} (T1: all positive and mean >= +1.0: {'met' if env['T1_met'] else 'missed'}); "
              + "; ".join(f"{k}: {'met' if d['met'] else 'missed'}, best (AP, bpp) {d['best']}"
                          for k, d in t["machine"].items() if k != "envelope")]
    for name, d in t.get("pose", {}).items():
        lines.append(f"pose {name}: {'met' if d['met'] else 'missed'}; " + ", ".join(f"{k} {v}" for k, v in d.items() if k != "met"))
    out = write_outputs(args.out, "person", data, lines)
    plot(pts, out / "person.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
