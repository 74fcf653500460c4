"""Machine analytics on semantically structured streams (SSIC): detection / instance segmentation on
the selected groups only, and decoding-free answers from the group table (class and box of every
group, read from the header without touching a segment)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from .decode import decode_image, select_groups
from .fill import FILLS, GREY, apply_fill
from .bitstream import StreamReader
from .models.zoo import LoadedCodec
from .tasks.heads import WEIGHTS_BACKEND

PIXEL_TASKS = ("detect", "segment", "pose")
#: where the task head reads: decoded pixels, or decoded latents through the Omni-ICM feature head
DOMAINS = ("pixels", "features")
#: the pixel tasks and the decoding-free "header" answer (the CLI's --task choices)
TASK_CHOICES = (*PIXEL_TASKS, "header")
#: grey level of groups that are not decoded (``fill="grey"``, the default)
FILL = GREY


@dataclass
class AnalyzeResult:
    task: str
    image_size: tuple[int, int]
    results: list[dict]  # COCO result dicts
    decoded_groups: list[int] = field(default_factory=list)
    failed_groups: dict[int, str] = field(default_factory=dict)
    bytes_read: int = 0
    total_bytes: int = 0
    seconds: float = 0.0


def header_results(source: bytes | str | Path, image_id: int = 0, groups: Iterable[int] | None = None,
                   classes: Iterable[str] | None = None) -> AnalyzeResult:
    """Decoding-free analytics: the group table as COCO detections (score 1, the box of the group's
    mask). Only the header is read; background groups (class 0) are left out."""
    t0 = time.perf_counter()
    with StreamReader(source) as rd:
        hdr = rd.header
        chosen = set(select_groups(hdr, groups, classes))
        out = []
        for g in hdr.groups:
            if g.group_id in chosen and g.class_id > 0:
                x0, y0, x1, y1 = g.obj_box
                out.append({"image_id": int(image_id), "category_id": g.class_id, "label": g.label,
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "area": g.area, "score": 1.0, "group_id": g.group_id})
        res = AnalyzeResult("header", (hdr.height, hdr.width), out, bytes_read=rd.bytes_read, total_bytes=rd.total_length)
    res.seconds = time.perf_counter() - t0
    return res


def feature_detector(source: bytes | str | Path, codec: LoadedCodec | None, det_weights: str | None,
                     backend: str | None = None, device: str = "cpu") -> tuple[LoadedCodec, str, str]:
    """For ``--domain features``: the stream's codec (checked to have a feature head), and the backend
    and weights of the detector its feature head was distilled from (``backend`` None: that one);
    another detector cannot read those features."""
    from ssc.tasks.heads import resolve_detector

    from .decode import codec_for_stream

    with StreamReader(source) as rd:
        codec = codec_for_stream(rd.header, codec, device)
    return (codec, *resolve_detector(backend, det_weights, feature_teacher(codec)))


def feature_teacher(codec: LoadedCodec) -> tuple[str, str]:
    """(backend, weights) of the detector ``codec``'s feature head was distilled from, the only one
    that can read its features; refuses codecs without a feature head."""
    from .omni.decode import require_feature_codec

    require_feature_codec(codec)
    return getattr(codec.model, "teacher_backend", WEIGHTS_BACKEND), codec.model.teacher


def analyze_stream(source: bytes | str | Path, head, task: str = "segment", codec: LoadedCodec | None = None,
                   groups: Iterable[int] | None = None, classes: Iterable[str] | None = None, image_id: int = 0,
                   keep_inside_frac: float = 0.5, device: str = "cpu", domain: str = "pixels",
                   fill: str = "grey") -> AnalyzeResult:
    """Decode only the selected groups (all by default) and run ``head`` on them, then keep the
    predictions lying mostly inside the decoded groups. ``domain="pixels"``: the head sees the
    composite image, its undecoded pixels shown as ``fill`` (:mod:`ssc.fill`: mid-grey, or the decoded
    pixels extended smoothly outward). ``domain="features"``: the stream's Omni model turns
    the decoded latents into the head's features and only the detector's later stages run (RPN and
    ROI heads of an FPN detector; the last backbone blocks, extra layers and box predictors of SSDLite)
    (``head`` must be the detector the feature head was distilled from)."""
    if task not in PIXEL_TASKS:
        raise ValueError(f"task must be one of {', '.join(PIXEL_TASKS)}, got {task!r}")
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {', '.join(DOMAINS)}, got {domain!r}")
    if fill not in FILLS:  # before any decoding
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
    if task == "segment" and not getattr(head.info, "masks", True):
        raise ValueError(f"the {head.info.backend} head predicts boxes only; use --task detect")
    if task == "pose" and (domain == "features" or not hasattr(head, "pose")):
        raise ValueError(f"--task pose needs the blazepose head on pixels (got {head.info.backend}, {domain})")
    t0 = time.perf_counter()
    if domain == "features":
        from .omni.decode import decode_features

        dec = decode_features(source, codec, groups=groups, classes=classes, device=device)
        region = np.isin(dec.group_map, dec.decoded)
        inst = head.predict_features(dec.features, (dec.header.height, dec.header.width), masks=task == "segment")
    else:
        dec = decode_image(source, codec, groups=groups, classes=classes, fill=FILL, device=device)
        region = np.isin(dec.group_map, dec.decoded)
        inst = head.predict(apply_fill(dec.image, region, fill), masks=task in ("segment", "pose"))
    results = results_in_region(inst, region, image_id, task, keep_inside_frac)
    total = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
    return AnalyzeResult(task, (dec.header.height, dec.header.width), results, dec.decoded, dec.failed,
                         dec.bytes_read, total, time.perf_counter() - t0)


def results_in_region(inst, region: np.ndarray, image_id: int, task: str, keep_inside_frac: float = 0.5) -> list[dict]:
    """COCO results of the instances lying mostly (``keep_inside_frac``) inside ``region``, the
    decoded groups or tracks; all of them when everything was decoded."""
    from ssc.tasks.coco_results import instances_to_coco, keep_inside

    if keep_inside_frac > 0 and not region.all():
        inst = keep_inside(inst, region, keep_inside_frac)
    return instances_to_coco(inst, image_id, task)
