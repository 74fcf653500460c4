"""Image encode / selective decode on top of the bitstream and a group codec.

Each group is coded on its bounding-box crop, padded at the bottom/right to the latent grid, with
everything outside the group zeroed (Feng et al., ICCV 2023). Decoding reads the header and the chosen
groups' mask records and segments only; a group whose mask or segment is corrupt is reported and
skipped while all others decode bit-exactly.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .bitstream import GroupEntry, StreamHeader, StreamReader, build_stream, encode_group_masks
from .bitstream.format import DEFAULT_MAX_PIXELS, QUALITY_SCALE
from .errors import GroupNotFoundError, SSCError, WeightsError
from .masks import GroupMap
from .models.codec import ALIGN
from .models.zoo import UNREGISTERED_ID, LoadedCodec, load_codec


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; clear errors for missing or non-image files."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image not found: {p}")
    try:
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise SSCError(f"{p} is not a readable image ({e})") from e


def crop_box(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, width, height) of the coding crop: the box grown right/down to multiples of ALIGN."""
    x0, y0, x1, y1 = box
    return x0, y0, -(-(x1 - x0) // ALIGN) * ALIGN, -(-(y1 - y0) // ALIGN) * ALIGN


def _take(arr: np.ndarray, x0: int, y0: int, w: int, h: int, fill: int = 0) -> np.ndarray:
    """arr[y0:y0+h, x0:x0+w], padded with ``fill`` where it runs past the image."""
    out = np.full((h, w) + arr.shape[2:], fill, dtype=arr.dtype)
    part = arr[y0 : y0 + h, x0 : x0 + w]
    out[: part.shape[0], : part.shape[1]] = part
    return out


def mask_crop(labels: np.ndarray, box: tuple[int, int, int, int], gid: int, device: torch.device) -> torch.Tensor:
    """(1, 1, h, w) float mask of one group on its coding crop, from the full (H, W) label map."""
    x0, y0, w, h = crop_box(box)
    return torch.from_numpy(_take(labels, x0, y0, w, h, fill=-1) == gid).float().view(1, 1, h, w).to(device)


def box_mask_crop(mask: np.ndarray, box: tuple[int, int, int, int], device: torch.device) -> torch.Tensor:
    """(1, 1, h, w) float mask on the coding crop from the group's mask on its box (as stored in the
    stream); the same tensor :func:`mask_crop` gives, since the box is the mask's bounding box."""
    _, _, w, h = crop_box(box)
    out = np.zeros((h, w), dtype=np.float32)
    out[: mask.shape[0], : mask.shape[1]] = mask
    return torch.from_numpy(out).view(1, 1, h, w).to(device)


def group_crop(image: np.ndarray, labels: np.ndarray, box: tuple[int, int, int, int], gid: int,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, mask) tensors (1, 3, h, w) / (1, 1, h, w) of one group; x is zero outside the group."""
    x0, y0, w, h = crop_box(box)
    mask = mask_crop(labels, box, gid, device)
    x = torch.from_numpy(_take(image, x0, y0, w, h)).permute(2, 0, 1).float().div(255).unsqueeze(0).to(device)
    return x * mask, mask


def _device(codec: LoadedCodec) -> torch.device:
    return next(codec.model.parameters()).device


@dataclass
class EncodeResult:
    data: bytes
    header: StreamHeader
    seconds: float

    @property
    def bytes_per_group(self) -> dict[int, int]:
        return {g.group_id: g.seg_length for g in self.header.groups}


def encode_image(
    image: np.ndarray,
    group_map: GroupMap,
    codec: LoadedCodec,
    quality: float = 2.0,
    group_quality: dict[int, float] | None = None,
) -> EncodeResult:
    """Encode an (H, W, 3) uint8 image; every group of ``group_map`` gets its own segment.
    ``group_quality`` overrides the quality per group id (ROI coding)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise SSCError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    group_map.check_size(h, w)
    nq = codec.model.num_qualities
    group_quality = dict(group_quality or {})
    unknown = set(group_quality) - set(group_map.ids)
    if unknown:
        raise GroupNotFoundError(f"quality given for groups {sorted(unknown)} that are not in the group map")
    for q in [quality, *group_quality.values()]:
        if not 0 <= q <= nq - 1:
            raise ValueError(f"quality {q} outside [0, {nq - 1}] for model {codec.card.name}")
    t0 = time.perf_counter()
    dev = _device(codec)
    bodies, entries = {}, []
    for g in group_map.groups:
        gq = group_quality.get(g.group_id, quality)
        gq_code = int(round(gq * QUALITY_SCALE))
        x, mask = group_crop(image, group_map.labels, g.box, g.group_id, dev)
        bodies[g.group_id] = codec.model.compress_group(x, mask, gq_code / QUALITY_SCALE)
        entries.append(GroupEntry(g.group_id, g.class_id, g.label, g.box, g.area, gq_code))
    header = StreamHeader(
        width=w, height=h, model_id=codec.card.name, weights_id=codec.weights_id,
        quality=int(round(quality * QUALITY_SCALE)), groups=tuple(entries),
    )
    data = build_stream(header, bodies, encode_group_masks(group_map.labels, entries))
    return EncodeResult(data, StreamReader(data).header, time.perf_counter() - t0)


@dataclass
class DecodeResult:
    image: np.ndarray  # (H, W, 3) uint8 composite of the decoded groups, ``fill`` elsewhere
    group_map: np.ndarray  # (H, W) int32: ids of the groups whose masks were read, -1 elsewhere
    header: StreamHeader
    decoded: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    bytes_read: int = 0
    seconds: float = 0.0

    def group_mask(self, gid: int) -> np.ndarray:
        return self.group_map == gid


def select_groups(header: StreamHeader, groups: Iterable[int] | None = None, classes: Iterable[str] | None = None) -> list[int]:
    """Group ids to decode: explicit ids, all groups whose label is in ``classes``, or every group."""
    chosen: list[int] = []
    if groups is not None:
        for gid in groups:
            header.group(int(gid))  # raises GroupNotFoundError
            chosen.append(int(gid))
    if classes is not None:
        want = {c.strip().lower() for c in classes}
        hits = [g.group_id for g in header.groups if g.label.lower() in want]
        missing = want - {g.label.lower() for g in header.groups}
        if missing:
            labels = sorted({g.label for g in header.groups})
            raise GroupNotFoundError(f"no group of class {', '.join(sorted(missing))} in this stream (classes: {', '.join(labels)})")
        chosen.extend(hits)
    if groups is None and classes is None:
        chosen = list(header.group_ids)
    return sorted(set(chosen))


def codec_for_stream(header: StreamHeader, codec: LoadedCodec | None, device: str = "cpu") -> LoadedCodec:
    """The codec a stream needs: the given one (checked) or the zoo entry named in the header."""
    if codec is None:
        codec = load_codec(header.model_id, device=device)
    if codec.card.name != header.model_id:
        raise WeightsError(f"stream was coded with model {header.model_id!r}, not {codec.card.name!r}")
    if header.weights_id != UNREGISTERED_ID and header.weights_id != codec.weights_id:
        raise WeightsError(
            f"stream was coded with weights {header.weights_id.hex()} but {codec.card.name} has {codec.weights_id.hex()}"
        )
    return codec


def decode_image(
    source: bytes | str | Path,
    codec: LoadedCodec | None = None,
    groups: Iterable[int] | None = None,
    classes: Iterable[str] | None = None,
    fill: int = 0,
    device: str = "cpu",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DecodeResult:
    """Decode the selected groups (all by default). Corrupt segments are listed in ``failed``."""
    t0 = time.perf_counter()
    with StreamReader(source, max_pixels=max_pixels) as rd:
        hdr = rd.header
        chosen = select_groups(hdr, groups, classes)
        codec = codec_for_stream(hdr, codec, device)
        dev = _device(codec)
        out = np.full((hdr.height, hdr.width, 3), fill, dtype=np.uint8)
        res = DecodeResult(out, np.full((hdr.height, hdr.width), -1, dtype=np.int32), hdr)
        for gid in chosen:
            e = hdr.group(gid)
            x0, y0, x1, y1 = e.box
            try:
                sel = rd.group_mask(gid)
                res.group_map[y0:y1, x0:x1][sel] = gid
                body = rd.read_segment(gid)
                x = codec.model.decompress_group(body, box_mask_crop(sel, e.box, dev), e.quality / QUALITY_SCALE)
            except SSCError as err:
                res.failed[gid] = str(err)
                continue
            pix = (x[0, :, : y1 - y0, : x1 - x0].permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
            out[y0:y1, x0:x1][sel] = pix[sel]
            res.decoded.append(gid)
        res.bytes_read = rd.bytes_read
    res.seconds = time.perf_counter() - t0
    return res
