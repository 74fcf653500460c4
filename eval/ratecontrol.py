"""Rate control against a constant qp on the whole surveillance clip (video issue 36): the person
tracks' hevc pipeline (``encode-video``'s path, masks from the person detector) coded once per
setting, at constant qps and at target bitrates, each scored by the person detector's fidelity on its
full decode (every ``--fid-every``-th frame, against the detector on the originals, as in
``eval/surveillance.py``). A rate controller that spends its bits well lies on or above the
constant-qp curve at its rate; one that swings its qp through the clip falls below it. Reports, per
setting (all with the same x265 lookahead, ``--lookahead``, none by default as in the live
pipeline): kbit/s (and its error against the target), fidelity, the range of the GOP qps (the person
tracks' at I-frames) and of the person tracks' qps in all frames, the background's bits, and the constant-qp curve's fidelity at that rate
(interpolated, never extrapolated).
Run: ``python -m ssc.eval.ratecontrol --qps 30,34,38 --kbps 150 --out out/eval/ratecontrol``.
"""
from __future__ import annotations

import argparse
import io
import itertools
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ssc.video import VideoDecoder, VideoReader
from ssc.video.io import open_frames
from ssc.video.masks import load_video_masks
from ssc.video.ratecontrol import roi_offset_for

from .report import markdown_table, run_meta, save_figure, style_axis, subplots, write_outputs
from .video import PersonFidelity, encode_clip


@dataclass
class Setting:
    """One coding of the clip: a constant ``qp``, or a target ``kbps`` (started at ``qp``)."""

    qp: int
    kbps: float | None = None

    @property
    def name(self) -> str:
        return f"{self.kbps:g} kbit/s" if self.kbps else f"qp {self.qp}"


@dataclass
class Result:
    setting: str
    target_kbps: float | None
    kbps: float
    rate_error: float | None
    background_kbps: float
    fidelity: float | None
    gop_qp_range: tuple[int, int]
    frame_qp_range: tuple[int, int]
    constant_qp_fidelity_at_rate: float | None = None


def code(clip: np.ndarray, maps: list, fps: float, s: Setting, gop: int, roi_offset: float,
         lookahead: int) -> tuple[bytes, list[tuple[int, int] | None], int]:
    """(stream, the (finest, coarsest) qp of the person tracks of each frame (None: no person), background
    bytes) of the clip coded at ``s``."""
    data, summ = encode_clip(clip, maps, fps, None, s.qp, gop, roi_offset, inner="hevc", lookahead=lookahead, kbps=s.kbps)
    persons = [[q for t, q in st.track_qp.items() if t != 0] for st in summ.stats]
    bg = summ.tracks[0].bytes if 0 in summ.tracks else 0
    return data, [(min(p), max(p)) if p else None for p in persons], bg


def full_decode(data: bytes, every: int) -> dict[int, np.ndarray]:
    """Every ``every``-th frame of the full decode, keyed by frame number // every."""
    out = {}
    with VideoReader(io.BytesIO(data)) as rd:
        for df in VideoDecoder(rd, None).frames():
            if df.number % every == 0:
                out[df.number // every] = df.image
    return out


def fidelity_at(curve: list[Result], kbps: float) -> float | None:
    """The constant-qp curve's fidelity at ``kbps`` (linear in log rate; None outside the curve)."""
    pts = sorted((r.kbps, r.fidelity) for r in curve if r.fidelity is not None)
    for (r0, f0), (r1, f1) in zip(pts, pts[1:]):
        if r0 <= kbps <= r1:
            t = np.log(kbps / r0) / np.log(r1 / r0)
            return float(f0 + t * (f1 - f0))
    return None


def evaluate(args) -> list[Result]:
    src = open_frames(args.video)
    clip = np.stack(list(itertools.islice(src, args.frames) if args.frames else src))
    fps = float(src.fps)
    masks = load_video_masks(args.masks)
    maps = [masks(i, f) for i, f in enumerate(tqdm(clip, unit="frame", desc="masks"))]
    fid = PersonFidelity(clip[:: args.fid_every], 1)
    secs = len(clip) / fps
    settings = [Setting(q) for q in args.qps] + [Setting(args.start_qp, k) for k in args.kbps]
    results = []
    for s in tqdm(settings, unit="setting", desc="settings"):
        data, qps, bg = code(clip, maps, fps, s, args.gop, roi_offset_for("hevc", args.roi_offset), args.lookahead)
        kbps = 8 * len(data) / 1000 / secs
        gops = [q[0] for q in qps[:: args.gop] if q]  # a GOP's qp: its I-frame's finest person track
        frames = [q[1] for q in qps if q]  # the coarsest, with streams started mid-GOP
        results.append(Result(s.name, s.kbps, kbps, (kbps - s.kbps) / s.kbps if s.kbps else None, 8 * bg / 1000 / secs,
                              fid.ap(full_decode(data, args.fid_every)), (min(gops), max(gops)),
                              (min(q[0] for q in qps if q), max(frames))))
    curve = [r for r in results if r.target_kbps is None]
    for r in results:
        if r.target_kbps is not None:
            r.constant_qp_fidelity_at_rate = fidelity_at(curve, r.kbps)
    return results


def report(results: list[Result], args, out: Path) -> None:
    rows = [[r.setting, r.kbps, None if r.rate_error is None else f"{100 * r.rate_error:+.1f}%", r.background_kbps,
             r.fidelity, r.constant_qp_fidelity_at_rate, f"{r.gop_qp_range[0]}-{r.gop_qp_range[1]}",
             f"{r.frame_qp_range[0]}-{r.frame_qp_range[1]}"] for r in results]
    lines = [f"## Rate control against a constant qp (whole clip, {args.masks}, hevc tracks, GOP {args.gop})", ""]
    lines += markdown_table(["setting", "kbit/s", "rate error", "background kbit/s", "fidelity AP",
                             "constant-qp fidelity at that rate", "GOP qps", "frame qps"], rows)
    write_outputs(out, "ratecontrol", {"meta": run_meta(**vars(args)), "results": [asdict(r) for r in results]}, lines)
    fig, ax = subplots(1, 1, figsize=(5, 3.4))
    curve = sorted((r.kbps, r.fidelity) for r in results if r.target_kbps is None and r.fidelity is not None)
    if curve:
        ax.plot(*zip(*curve), "o-", label="constant qp")
    for r in results:
        if r.target_kbps is not None and r.fidelity is not None:
            ax.plot([r.kbps], [r.fidelity], "s", label=f"target {r.target_kbps:g} kbit/s")
    style_axis(ax, "kbit/s", "person fidelity AP")
    save_figure(fig, out / "ratecontrol.png")


def main(argv: list[str] | None = None) -> None:
    ints = lambda v: [int(x) for x in v.split(",") if x]  # noqa: E731
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--video", default="../shared/data/video_surveillance/vtest_480x360_h264.avi")
    ap.add_argument("--frames", type=int, default=None, help="default: the whole clip")
    ap.add_argument("--masks", default="detect:ssdlite-person,every=5")
    ap.add_argument("--qps", type=ints, default=[30, 34, 38], help="constant qps (the curve)")
    ap.add_argument("--kbps", type=lambda v: [float(x) for x in v.split(",") if x], default=[150.0],
                    help="target bitrates (rate control)")
    ap.add_argument("--start-qp", type=int, default=32, help="the rate controller's first qp")
    ap.add_argument("--gop", type=int, default=32)
    ap.add_argument("--roi-offset", type=float, default=None, help="background qp above the persons' (hevc default)")
    ap.add_argument("--lookahead", type=int, default=0,
                    help="x265's lookahead for every setting (default 0: the live pipeline's, as under rate control)")
    ap.add_argument("--fid-every", type=int, default=10)
    ap.add_argument("--out", default="out/eval/ratecontrol")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report(evaluate(args), args, out)


if __name__ == "__main__":
    main()
