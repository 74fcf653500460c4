"""``ssc batch encode | decode | analyze``: dataset-scale work as independent jobs, one per image,
video file, video chunk or stream, run here or over Ray (:mod:`ssc.parallel`). Every run writes one
results JSON with a record per job in input order; records hold no timings (those are under
``timing``), so a local and a Ray run of the same inputs give the same records."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ssc.tasks.heads import DEFAULT_BACKEND, resolve_head

from .defaults import lookahead_for
from .errors import SSCError
from .outputs import atomic_output, save_image, write_bytes, write_text
from .parallel import Executor, JobError, RunStats, run_all
from .video.format import is_video_file

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".ts")
STREAM_SUFFIXES = (".ssc", ".ssv")


# ----------------------------------------------------------------------------- worker-side caches
# (the task heads' cache, one head per worker process, is ssc.tasks.heads.shared_head: masks use it too)
@lru_cache(maxsize=4)
def shared_codec(name: str, device: str = "cpu"):
    """One loaded codec per (weights, device) in each worker process, reused by its jobs."""
    from .models.zoo import load_codec

    return load_codec(name, device=device)


def stream_codec(path: str, video: bool, device: str = "cpu"):
    """The loaded codec a stream's header names (shared per worker); None for a video stream whose
    tracks are libx265 tubes (no learned codec decodes them)."""
    name = stream_model(path, video)
    return shared_codec(name, device) if name else None


def stream_model(path: str, video: bool) -> str:
    """The zoo model a stream (a video one when ``video``) names in its header ("" for hevc video)."""
    if video:
        from .video import VideoReader

        with VideoReader(path) as rd:
            return rd.header.model_id
    from .bitstream import StreamReader

    with StreamReader(path) as rd:
        return rd.header.model_id


def short_digest(h: "hashlib._Hash") -> str:
    """The first 16 hex digits of a SHA-256: what records carry for streams and decoded pixels."""
    return h.hexdigest()[:16]


def pixels_digest(*arrays: np.ndarray) -> str:
    """Digest of decoded pixels: equal digests, equal pixels."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return short_digest(h)


# ----------------------------------------------------------------------------- inputs
def expand_inputs(items: Sequence[str], suffixes: tuple[str, ...]) -> list[Path]:
    """Files as given, folders as their files with ``suffixes`` (sorted), all absolute."""
    out: list[Path] = []
    for it in items:
        p = Path(it).expanduser().resolve()
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in suffixes)
            if not found:
                raise SSCError(f"{it}: no {'/'.join(suffixes)} files in the folder")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"input not found: {it}")
    return out


def resolve_spec(spec: str, path: Path) -> str:
    """A mask source for one input: ``{stem}`` becomes the input's name without suffix
    (``png:maps/{stem}.png``, ``folder:annotations/{stem}``)."""
    return spec.replace("{stem}", path.stem)


def check_unique(outputs: Sequence[Path]) -> list[Path]:
    """``outputs`` when no two are the same file, else an error naming the clashes."""
    dup = sorted({n.name for n in outputs if outputs.count(n) > 1})
    if dup:
        raise SSCError(f"inputs with the same name would overwrite each other's output: {', '.join(dup)}")
    return list(outputs)


def unique_outputs(inputs: Sequence[Path], out_dir: Path, suffix: str) -> list[Path]:
    return check_unique([out_dir / (p.stem + suffix) for p in inputs])


# ----------------------------------------------------------------------------- encode
@dataclass(frozen=True)
class ImageEncodeJob:
    image: str
    output: str
    masks: str
    model: str
    quality: float | None = None
    policy: str = "instance"
    min_area: int = 0
    tile: int | None = None
    device: str = "cpu"
    refine: int = 0  # encoder-side latent refinement steps (ssc.models.refine); 0 = off


@dataclass(frozen=True)
class VideoEncodeJob:
    video: str
    output: str
    masks: str
    model: str
    qp: float = 32.0
    gop: int = 16
    kbps: float | None = None
    roi_offset: float | None = None  # None: the inner codec's (ssc.video.ratecontrol.ROI_OFFSETS)
    start: int = 0
    stop: int | None = None  # exclusive; None: to the end
    fps: float | None = None
    device: str = "cpu"
    background_gop: int | None = None  # None: the encoder's default (4x gop)
    inner: str = "hevc"  # the tracks' inner codec (hevc: libx265 tubes; learned: ``model``)
    lookahead: int | None = None  # hevc: x265's lookahead in frames (None: ssc.defaults.lookahead_for)


@dataclass
class EncodeRecord:
    input: str
    output: str
    kind: str  # "image" | "video"
    width: int
    height: int
    frames: int
    first_frame: int
    bytes: int
    groups: int  # image: groups; video: tracks
    bpp: float | None = None
    kbps: float | None = None
    stream_sha256: str = ""
    timing: dict = field(default_factory=dict)


def _file_digest(path: str | Path) -> str:
    return short_digest(hashlib.sha256(Path(path).read_bytes()))


def encode_image_job(job: ImageEncodeJob) -> EncodeRecord:
    from .api import encode_image, read_image
    from .defaults import default_quality
    from .masks import apply_policy, load_masks
    from .models.refine import Refinement

    t0 = time.perf_counter()
    image = read_image(job.image)
    gm = apply_policy(load_masks(job.masks, job.image, image.shape[:2], image), job.policy, job.min_area)
    codec = shared_codec(job.model, job.device)
    q = job.quality if job.quality is not None else default_quality(codec.model.num_qualities)
    res = encode_image(image, gm, codec, quality=q, tile=job.tile, refine=Refinement(steps=job.refine))
    write_bytes(job.output, res.data)
    h, w = image.shape[:2]
    return EncodeRecord(job.image, job.output, "image", w, h, 1, 0, len(res.data), len(gm.groups),
                        bpp=8 * len(res.data) / (h * w), stream_sha256=short_digest(hashlib.sha256(res.data)),
                        timing={"seconds": time.perf_counter() - t0})


def encode_video_job(job: VideoEncodeJob) -> EncodeRecord:
    from .video.masks import load_video_masks
    from .video import RateControl, VideoEncoder
    from .video.io import open_frames
    from .video.hevc import HevcSettings
    from .video.ratecontrol import roi_offset_for

    t0 = time.perf_counter()
    src = open_frames(job.video, fps=job.fps)
    masks = load_video_masks(job.masks, device=job.device)
    codec = shared_codec(job.model, job.device) if job.inner == "learned" else None
    rate = RateControl(qp=job.qp, roi_offset=roi_offset_for(job.inner, job.roi_offset), target_kbps=job.kbps)
    frames = src.range(job.start, job.stop)
    with atomic_output(job.output) as tmp:
        with VideoEncoder(tmp, src.width, src.height, src.fps, codec, gop=job.gop, rate=rate, keep_stats=False,
                          background_gop=job.background_gop, inner=job.inner,
                          hevc=HevcSettings(lookahead=lookahead_for(job.kbps, job.lookahead)) if job.inner == "hevc" else None) as enc:
            for i, frame in enumerate(frames, start=job.start):
                enc.encode(frame, masks(i, frame))
            summ = enc.close()
        if summ.frames == 0:
            raise SSCError(f"{job.video}: no frames in [{job.start}, {job.stop})")
    secs = summ.frames / float(src.fps)
    return EncodeRecord(job.video, job.output, "video", src.width, src.height, summ.frames, job.start, summ.bytes,
                        len(summ.tracks), kbps=8 * summ.bytes / 1000 / secs, stream_sha256=_file_digest(job.output),
                        timing={"seconds": time.perf_counter() - t0, "encode_seconds": summ.seconds,
                                "frames_per_s": summ.frames / max(time.perf_counter() - t0, 1e-9)})


def video_chunks(path: Path, chunk_frames: int | None, fps: float | None) -> list[tuple[int, int | None]]:
    """[start, stop) frame ranges of one video: the whole file, or ``chunk_frames`` at a time. When
    the container does not state its frame count (Matroska), it is estimated from the duration and
    the last chunk runs to the end of the file, so no frame is lost to the estimate."""
    if not chunk_frames:
        return [(0, None)]
    if chunk_frames < 1:
        raise SSCError("--chunk-frames must be at least 1")
    from .video.io import estimate_frames, open_frames

    n = open_frames(path, fps=fps).count or estimate_frames(path)
    if not n:
        raise SSCError(f"{path}: neither the frame count nor the duration is known, so it cannot be chunked; "
                       f"encode it whole (no --chunk-frames)")
    starts = list(range(0, n, chunk_frames))
    return [(s, s + chunk_frames) for s in starts[:-1]] + [(starts[-1], None)]


# ----------------------------------------------------------------------------- decode
@dataclass(frozen=True)
class DecodeJob:
    stream: str
    output: str
    groups: tuple[int, ...] | None = None  # image streams; video streams: tracks
    classes: tuple[str, ...] | None = None  # image streams; video streams: labels
    start: int = 0
    stop: int | None = None
    fill: int = 0
    device: str = "cpu"


@dataclass
class DecodeRecord:
    stream: str
    output: str
    kind: str
    decoded: list[int]
    frames: int
    bytes_read: int
    total_bytes: int
    pixels_sha256: str
    failed: dict[str, str] = field(default_factory=dict)
    timing: dict = field(default_factory=dict)


def decode_job(job: DecodeJob) -> DecodeRecord:
    t0 = time.perf_counter()
    video = is_video_file(job.stream)
    codec = stream_codec(job.stream, video, job.device)
    if video:
        return _decode_video(job, codec, t0)
    from .api import decode_image

    res = decode_image(job.stream, codec, groups=job.groups, classes=job.classes, fill=job.fill, device=job.device)
    save_image(job.output, res.image)
    total = Path(job.stream).stat().st_size
    return DecodeRecord(job.stream, job.output, "image", list(res.decoded), 1, res.bytes_read, total,
                        pixels_digest(res.image), {str(k): v for k, v in res.failed.items()},
                        {"seconds": time.perf_counter() - t0})


def _decode_video(job: DecodeJob, codec, t0: float) -> DecodeRecord:
    from fractions import Fraction

    from .video import VideoDecoder, VideoReader
    from .video.io import FrameWriter

    h = hashlib.sha256()
    failed: dict[str, str] = {}
    with VideoReader(job.stream) as rd:
        dec = VideoDecoder(rd, codec, job.groups, job.classes, job.device)
        hdr = rd.header
        with FrameWriter(job.output, hdr.width, hdr.height, Fraction(hdr.fps_num, hdr.fps_den)) as out:
            for fr in dec.frames(job.start, job.stop, job.fill):
                out.write(fr.image)
                h.update(fr.image.tobytes())
                failed.update({f"{fr.number}:{k}": v for k, v in fr.failed.items()})
            n = out.n
        read, size = rd.bytes_read, rd.size
    secs = time.perf_counter() - t0
    return DecodeRecord(job.stream, job.output, "video", dec.tracks, n, read, size, short_digest(h), failed,
                        {"seconds": secs, "frames_per_s": n / max(secs, 1e-9)})


# ----------------------------------------------------------------------------- analyze
@dataclass(frozen=True)
class AnalyzeJob:
    stream: str
    task: str  # detect | segment | header
    image_id: int
    backend: str | None = DEFAULT_BACKEND  # None: the feature codec's detector
    det_weights: str | None = None
    groups: tuple[int, ...] | None = None
    classes: tuple[str, ...] | None = None
    score_thresh: float | None = None
    every: int = 1  # video streams: every N-th frame
    start: int = 0
    stop: int | None = None
    device: str = "cpu"
    domain: str = "pixels"  # ssc.analyze.DOMAINS


@dataclass
class AnalyzeRecord:
    stream: str
    kind: str
    task: str
    image_id: int
    results: list[dict]  # COCO results; video: one image id per analysed frame (image_id * 100000 + frame)
    decoded: list[int]
    bytes_read: int
    total_bytes: int
    failed: dict[str, str] = field(default_factory=dict)
    tracks: list[dict] = field(default_factory=list)  # video: the track table (header only)
    timing: dict = field(default_factory=dict)


#: video frames get image ids ``image_id * VIDEO_ID_STRIDE + frame``, unique across streams
VIDEO_ID_STRIDE = 100_000


def analyze_job(job: AnalyzeJob) -> AnalyzeRecord:
    t0 = time.perf_counter()
    if is_video_file(job.stream):
        if job.domain == "features" and job.task != "header":
            raise SSCError(f"{job.stream}: feature-domain analysis reads image streams; use --domain pixels for video")
        rec = _analyze_video(job)
    else:
        from .analyze import analyze_stream, feature_teacher, header_results

        if job.task == "header":
            res = header_results(job.stream, job.image_id, job.groups, job.classes)
        else:
            codec = stream_codec(job.stream, False, job.device)
            teacher = feature_teacher(codec) if job.domain == "features" else None
            head = resolve_head(job.backend, job.det_weights, job.device, job.score_thresh, teacher)
            res = analyze_stream(job.stream, head, job.task, codec, job.groups, job.classes, job.image_id,
                                 device=job.device, domain=job.domain)
        rec = AnalyzeRecord(job.stream, "image", job.task, job.image_id, res.results, list(res.decoded_groups),
                            res.bytes_read, res.total_bytes, {str(k): v for k, v in res.failed_groups.items()})
    rec.timing = {"seconds": time.perf_counter() - t0}
    return rec


def _analyze_video(job: AnalyzeJob) -> AnalyzeRecord:
    """Header: the track table (nothing decoded). detect/segment: the head on every ``every``-th
    frame of a partial decode of the chosen tracks, predictions kept inside the decoded tracks."""
    from .analyze import FILL, results_in_region
    from .video import VideoDecoder, VideoReader
    from .video.info import video_info

    if job.task == "header":
        info = video_info(job.stream)
        chosen = [t for t in info["tracks"] if (job.groups is None and job.classes is None)
                  or t["id"] in (job.groups or ()) or t["label"] in (job.classes or ())]
        return AnalyzeRecord(job.stream, "video", "header", job.image_id, [], [t["id"] for t in chosen], 0,
                             info["total_bytes"], tracks=chosen)
    head = resolve_head(job.backend, job.det_weights, job.device, job.score_thresh)
    codec = stream_codec(job.stream, True, job.device)
    results: list[dict] = []
    failed: dict[str, str] = {}
    with VideoReader(job.stream) as rd:
        dec = VideoDecoder(rd, codec, job.groups, job.classes, job.device)
        for fr in dec.frames(job.start, job.stop, FILL):
            failed.update({f"{fr.number}:{k}": v for k, v in fr.failed.items()})
            if (fr.number - job.start) % job.every:
                continue
            inst = head.predict(fr.image, masks=job.task == "segment")
            results.extend(results_in_region(inst, np.isin(fr.track_map, fr.decoded), job.image_id * VIDEO_ID_STRIDE + fr.number,
                                             job.task))
        read, size = rd.bytes_read, rd.size
    return AnalyzeRecord(job.stream, "video", job.task, job.image_id, results, dec.tracks, read, size, failed)


# ----------------------------------------------------------------------------- the results JSON
def record_dict(r: Any, job: Any) -> dict:
    """A record as JSON-ready data; a failed job as its input and error."""
    if isinstance(r, JobError):
        first = next(iter(asdict(job).values()))
        return {"input": first, "error": r.error, "error_kind": r.kind}
    return asdict(r)


def results_document(command: str, jobs: Sequence[Any], records: Sequence[Any], stats: RunStats, settings: dict) -> dict:
    """The results JSON of a batch run: settings, one item per job (input order), how it ran."""
    from .outputs import run_meta

    items = [record_dict(r, j) for r, j in zip(records, jobs)]
    doc = {"command": command, "settings": settings, "items": items,
           "run": {**asdict(stats), **run_meta()}}
    if command == "analyze":
        doc["results"] = [res for it in items for res in it.get("results", [])]
    return doc


def comparable(doc: dict) -> dict:
    """The parts of a results JSON that must not depend on how it ran (no timings, no run info)."""
    return {"command": doc["command"], "settings": doc["settings"],
            "items": [{k: v for k, v in it.items() if k != "timing"} for it in doc["items"]],
            "results": doc.get("results")}


def run_batch(command: str, executor: Executor, fn, jobs: Sequence[Any], settings: dict, out_json: Path) -> dict:
    records, stats = run_all(executor, fn, jobs, f"batch {command}")
    doc = results_document(command, jobs, records, stats, settings)
    write_text(out_json, json.dumps(doc, indent=1))
    return doc
