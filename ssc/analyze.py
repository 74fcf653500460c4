"""Machine analytics on semantically structured streams (SSIC): detection / instance segmentation on
the selected groups only, and decoding-free answers from the group table (class and box of every
group, read from the header without touching a segment)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from .api import decode_image, select_groups
from .bitstream import StreamReader
from .models.zoo import LoadedCodec

PIXEL_TASKS = ("detect", "segment")
#: the pixel tasks and the decoding-free "header" answer (the CLI's --task choices)
TASK_CHOICES = (*PIXEL_TASKS, "header")
#: grey level of groups that are not decoded: mid-grey gives detectors the least to see
FILL = 128


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
                x0, y0, x1, y1 = g.box
                out.append({"image_id": int(image_id), "category_id": g.class_id, "label": g.label,
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "area": g.area, "score": 1.0, "group_id": g.group_id})
        res = AnalyzeResult("header", (hdr.height, hdr.width), out, bytes_read=rd.bytes_read, total_bytes=rd.total_length)
    res.seconds = time.perf_counter() - t0
    return res


def analyze_stream(source: bytes | str | Path, head, task: str = "segment", codec: LoadedCodec | None = None,
                   groups: Iterable[int] | None = None, classes: Iterable[str] | None = None, image_id: int = 0,
                   keep_inside_frac: float = 0.5, device: str = "cpu") -> AnalyzeResult:
    """Decode only the selected groups (all by default), run ``head`` on the composite (undecoded
    pixels mid-grey) and keep the predictions lying mostly inside the decoded groups."""
    from ssc.tasks.coco_results import instances_to_coco, keep_inside

    if task not in PIXEL_TASKS:
        raise ValueError(f"task must be detect or segment, got {task!r}")
    t0 = time.perf_counter()
    dec = decode_image(source, codec, groups=groups, classes=classes, fill=FILL, device=device)
    inst = head.predict(dec.image)
    region = np.isin(dec.group_map, dec.decoded)
    if keep_inside_frac > 0 and not region.all():
        inst = keep_inside(inst, region, keep_inside_frac)
    total = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
    return AnalyzeResult(task, dec.image.shape[:2], instances_to_coco(inst, image_id, task), dec.decoded, dec.failed,
                         dec.bytes_read, total, time.perf_counter() - t0)
