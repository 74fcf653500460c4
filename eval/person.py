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

Undecoded pixels are mid-grey and detections lying mostly on them are dropped (as ``ssc analyze``
does). Outputs ``person.json`` / ``person.md`` / ``person.png`` with per-image decode and detector
times (median).

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
from ssc.masks import apply_policy, from_coco
from ssc.masks.detect import DetectSpec, detected_groups, whole_image
from ssc.models.zoo import load_codec

from .anchors import Coded, pillow_available, pillow_code, x265_intra_code
from .coco import COCOEvaluator
from .report import markdown_table, run_meta, save_figure, style_axis, subplots, write_outputs

PERSON = 1
ANCHORS = {"jpeg": [5, 10, 20, 40, 70], "webp": [2, 10, 30, 60], "avif": [10, 30, 50, 70], "x265": [45, 40, 35, 30]}
SSC_FULL = [0.0, 1.0, 2.0, 3.0]
SSC_PERSONS = [0.0, 1.5, 3.0]
SSC_ROI = [1.5, 3.0]  # detector groups: persons at q, background at 0 (the persons-only points' streams)


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


@dataclass
class Accumulator:
    """One operating point over the images: bytes, pixels, results and timings."""

    ev: COCOEvaluator
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

    def point(self, kind: str, setting: float, notes: str = "") -> PersonPoint:
        m = self.ev.evaluate()
        return PersonPoint(kind, setting, len(self.decode_s), self.bpp, m["bbox_AP"],
                           m["bbox_AP50"], 1000 * float(np.median(self.decode_s)), 1000 * float(np.median(self.detect_s)), notes)


def detect(head, image: np.ndarray, image_id: int, region: np.ndarray | None) -> tuple[list[dict], float]:
    """COCO results of the person detector on ``image`` (inside ``region`` when given) and its time."""
    t = time.perf_counter()
    inst = head.predict(image, masks=False)
    dt = time.perf_counter() - t
    return results_in_region(inst, region if region is not None else np.ones(image.shape[:2], bool), image_id, "detect"), dt


def anchor_code(kind: str, x: np.ndarray, setting: float) -> Coded:
    return x265_intra_code(x, int(setting)) if kind == "x265" else pillow_code(kind, x, int(setting))


def ssc_point(codec, x: np.ndarray, data: bytes, decode_ids: list[int] | None) -> tuple[np.ndarray, int, np.ndarray | None, float]:
    """Decode ``decode_ids`` (all when None) of stream ``data``: (image, bytes counted, decoded region
    or None, decode seconds). A persons-only decode of a stream without persons reads the header only."""
    if decode_ids is not None and not decode_ids:  # the receiver reads the header, finds no person
        with StreamReader(data) as rd:
            return np.full_like(x, FILL), rd.bytes_read, np.zeros(x.shape[:2], bool), 0.0
    t = time.perf_counter()
    dec = decode_image(data, codec, groups=decode_ids, fill=FILL)
    dt = time.perf_counter() - t
    if dec.failed:
        raise RuntimeError(f"decode failed: {dec.failed}")
    region = np.isin(dec.group_map, dec.decoded) if decode_ids is not None else None
    return dec.image, (dec.bytes_read if decode_ids is not None else len(data)), region, dt


def persons(gm) -> list[int]:
    return [g.group_id for g in gm.groups if g.class_id == PERSON]


def run(args: argparse.Namespace) -> dict:
    from pycocotools.coco import COCO

    from ssc.tasks import resolve_head

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(args.ann)
    records = sorted(gt.dataset["images"], key=lambda r: r["id"])[: args.limit]
    head = resolve_head()
    codec = load_codec(args.model)
    det_spec = DetectSpec("ssdlite-person", args.det_score, args.det_pad)
    plan: list[tuple[str, float]] = [("original", 0.0)]
    for kind, settings in ANCHORS.items():
        if kind == "x265" or pillow_available(kind):
            plan += [(kind, s) for s in settings]
    plan += [("ssc", q) for q in args.ssc] + [("ssc-persons-det", q) for q in args.persons]
    plan += [("ssc-persons-ann", q) for q in args.persons] + [("ssc-roi", q) for q in args.roi]
    acc = {p: Accumulator(COCOEvaluator(gt, ("bbox",), cat_ids=[PERSON])) for p in plan}
    for rec in tqdm(records, desc="person benchmark", unit="image"):
        path = Path(args.images) / rec["file_name"]
        x = read_image(path)
        iid, px = int(rec["id"]), x.shape[0] * x.shape[1]
        det_groups = detected_groups(x, det_spec, head, quiet=True)
        ann_groups = apply_policy(from_coco(args.ann, path), "instance", min_area=args.min_area)
        streams: dict[tuple[str, float], bytes] = {}

        def stream(groups, kind: str, q: float, persons_only_quality: bool) -> bytes:
            """One encode per (groups, quality): the detector-group stream codes persons at q and the
            background at 0, so its persons-only decode and its full (ROI) decode share it (group
            independence: the person segments do not depend on the background's quality)."""
            if (kind, q) not in streams:
                roi = {g: q for g in persons(groups)} if persons_only_quality else None
                streams[(kind, q)] = encode_image(x, groups, codec, quality=0.0 if persons_only_quality else q,
                                                  group_quality=roi or None).data
            return streams[(kind, q)]

        for kind, s in plan:
            if kind == "original":
                res, dt = detect(head, x, iid, None)
                acc[(kind, s)].add(iid, 0, px, res, 0.0, dt)
                continue
            if kind in ANCHORS:
                t = time.perf_counter()
                c = anchor_code(kind, x, s)
                y, nbytes, region, dec_s = c.decoded, c.nbytes, None, time.perf_counter() - t  # encode + decode
            elif kind == "ssc":
                y, nbytes, region, dec_s = ssc_point(codec, x, stream(whole_image(*x.shape[:2]), "whole", s, False), None)
            elif kind == "ssc-persons-det":
                y, nbytes, region, dec_s = ssc_point(codec, x, stream(det_groups, "det", s, True), persons(det_groups))
            elif kind == "ssc-persons-ann":
                y, nbytes, region, dec_s = ssc_point(codec, x, stream(ann_groups, "ann", s, False), persons(ann_groups))
            else:  # ssc-roi
                y, nbytes, region, dec_s = ssc_point(codec, x, stream(det_groups, "det", s, True), None)
            res, dt = detect(head, y, iid, region)
            acc[(kind, s)].add(iid, nbytes, px, res, dec_s, dt)
    notes = {"x265": "decode_ms: ffmpeg encode + decode", "jpeg": "decode_ms: encode + decode",
             "webp": "decode_ms: encode + decode", "avif": "decode_ms: encode + decode",
             "ssc-persons-det": f"groups: detector boxes, score >= {args.det_score:g}, padded {args.det_pad} px",
             "ssc-roi": "persons at the quality given, background at 0"}
    points = [acc[p].point(p[0], p[1], notes.get(p[0], "")) for p in plan]
    return {"points": [asdict(p) for p in points], "targets": targets(points),
            "meta": run_meta(model=args.model, weights_sha256=codec.card.sha256, detector=head.info.weights,
                             images=len(records), ann=args.ann, det_score=args.det_score, det_pad=args.det_pad)}


def targets(points: list[PersonPoint]) -> dict:
    """The issue's targets: T1 (full decode within 1 AP of the original at <= 0.5x the bpp of the best
    anchor that reaches it) and T2 (persons-only, detector groups: AP >= 17 at <= 0.10 bpp)."""
    orig = next(p.AP for p in points if p.kind == "original")
    need = orig - 1.0
    anchors = [p for p in points if p.kind in ANCHORS and p.AP is not None and p.AP >= need]
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


def plot(points: list[dict], path: Path) -> None:
    fig, axes = subplots(1, 2, figsize=(11, 4.3))
    orig = next(p for p in points if p["kind"] == "original")
    for ax, key in zip(axes, ("AP", "AP50")):
        for kind in dict.fromkeys(p["kind"] for p in points if p["kind"] != "original"):
            ps = sorted((p for p in points if p["kind"] == kind and p[key] is not None), key=lambda p: p["bpp"])
            ax.plot([p["bpp"] for p in ps], [p[key] for p in ps], "o-" if kind.startswith("ssc") else "s--",
                    label=kind, markersize=3)
        if orig[key] is not None:
            ax.axhline(orig[key], color="k", ls=":", lw=1, label="original")
        ax.set_xscale("log")
        style_axis(ax, "bpp (all pixels)", f"person {key} (%)", f"person {key}, ssdlite-person, COCO val")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--ann", required=True)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--ssc", type=float, nargs="*", default=SSC_FULL, help="qualities of the full-decode points")
    ap.add_argument("--persons", type=float, nargs="*", default=SSC_PERSONS, help="qualities of the persons-only points")
    ap.add_argument("--roi", type=float, nargs="*", default=SSC_ROI, help="person qualities of the ROI points")
    ap.add_argument("--det-score", type=float, default=0.2, help="encoder-side detector: score of a person group")
    ap.add_argument("--det-pad", type=int, default=16, help="encoder-side detector: box padding in pixels")
    ap.add_argument("--min-area", type=int, default=256, help="annotation groups: smaller objects join the background")
    ap.add_argument("--out", default="out/eval/person")
    args = ap.parse_args(argv)
    data = run(args)
    pts = data["points"]
    rows = [[p["kind"], p["setting"], p["bpp"], p["AP"], p["AP50"], p["decode_ms"], p["detect_ms"], p["notes"]] for p in pts]
    t = data["targets"]
    lines = [f"person AP on {data['meta']['images']} COCO val images, detector {data['meta']['detector']}, "
             f"codec {args.model} (sha256 {data['meta']['weights_sha256'][:12]})", "",
             *markdown_table(["kind", "setting", "bpp", "person AP", "AP50", "decode ms", "detector ms", "notes"], rows), "",
             f"T1 (full decode >= {t['T1']['needed_AP']:.2f} AP at <= 0.5x the best anchor's bpp): "
             f"{'met' if t['T1']['met'] else 'missed'}; ssc {t['T1']['ssc_bpp']}, best anchor {t['T1']['best_anchor_bpp']}",
             f"T2 (persons-only, detector groups, AP >= 17 at <= 0.10 bpp): {'met' if t['T2']['met'] else 'missed'}; "
             f"best (AP, bpp) {t['T2']['best']}"]
    out = write_outputs(args.out, "person", data, lines)
    plot(pts, out / "person.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
