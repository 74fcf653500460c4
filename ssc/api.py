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
from typing import Iterable, Protocol

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .bitstream import GroupEntry, StreamHeader, StreamReader, build_stream, encode_group_masks
from .bitstream.format import DEFAULT_MAX_PIXELS, QUALITY_SCALE, pack_tiles, unpack_tiles
from .errors import BitstreamError, CorruptSegmentError, GroupNotFoundError, SSCError, WeightsError
from .masks import GroupMap
from .models.codec import ALIGN
from .models.refine import Refinement, check_refinable, quality_lambda, refine_latents
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


#: A tile in image coordinates: (x0, y0, width, height).
Tile = tuple[int, int, int, int]
#: Images with more pixels than this are coded in tiles of DEFAULT_TILE unless the caller chooses.
AUTO_TILE_PIXELS = 1 << 22
DEFAULT_TILE = 1024


def group_tiles(box: tuple[int, int, int, int], tile: int = 0) -> list[Tile]:
    """The tiles of a group's coding crop in raster order: the whole crop when ``tile`` is 0, else
    ``tile x tile`` pieces from its top-left corner (bitstream v2, tile_size)."""
    x0, y0, w, h = crop_box(box)
    if not tile:
        return [(x0, y0, w, h)]
    return [(x0 + tx, y0 + ty, min(tile, w - tx), min(tile, h - ty)) for ty in range(0, h, tile) for tx in range(0, w, tile)]


def tile_input(image: np.ndarray, labels: np.ndarray, gid: int, t: Tile, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder side: (x, mask) tensors (1, 3, h, w) / (1, 1, h, w) of group ``gid`` on tile ``t``;
    x is zero outside the group and past the image edge."""
    x0, y0, w, h = t
    mask = torch.from_numpy(_take(labels, x0, y0, w, h, fill=-1) == gid).float().view(1, 1, h, w).to(device)
    x = torch.from_numpy(_take(image, x0, y0, w, h)).permute(2, 0, 1).float().div(255).unsqueeze(0).to(device)
    return x * mask, mask


def _box_part(box_mask: np.ndarray, box: tuple[int, int, int, int], t: Tile) -> np.ndarray:
    """The part of a group's box mask that tile ``t`` covers (smaller than the tile at the crop's edge)."""
    x0, y0, w, h = t
    return box_mask[y0 - box[1] : y0 - box[1] + h, x0 - box[0] : x0 - box[0] + w]


def tile_mask(box_mask: np.ndarray, box: tuple[int, int, int, int], t: Tile, device: torch.device) -> torch.Tensor:
    """Decoder side: (1, 1, h, w) mask of tile ``t`` from the group's mask on its box (as stored in the
    stream); equal to the encoder's, since the box is the mask's bounding box."""
    w, h = t[2], t[3]
    part = _box_part(box_mask, box, t)
    out = np.zeros((h, w), dtype=np.float32)
    out[: part.shape[0], : part.shape[1]] = part
    return torch.from_numpy(out).view(1, 1, h, w).to(device)


def group_crop(image: np.ndarray, labels: np.ndarray, box: tuple[int, int, int, int], gid: int,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, mask) of one group on its whole (untiled) coding crop."""
    return tile_input(image, labels, gid, group_tiles(box)[0], device)


def box_mask_crop(mask: np.ndarray, box: tuple[int, int, int, int], device: torch.device) -> torch.Tensor:
    """(1, 1, h, w) mask on the whole (untiled) coding crop from the group's mask on its box."""
    return tile_mask(mask, box, group_tiles(box)[0], device)


def codec_device(codec: LoadedCodec) -> torch.device:
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
    tile: int | None = None,
    refine: Refinement | None = None,
) -> EncodeResult:
    """Encode an (H, W, 3) uint8 image; every group of ``group_map`` gets its own segment.
    ``group_quality`` overrides the quality per group id (ROI coding). ``tile`` (a multiple of 64)
    codes every group in tiles of that side, which bounds memory on very large images; None tiles
    with DEFAULT_TILE above AUTO_TILE_PIXELS pixels, 0 never tiles. ``refine`` searches each group's
    latents at the encoder (:mod:`ssc.models.refine`): fewer bits for the same quality, slower, same
    decoder."""
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
    refining = refine is not None and refine.steps > 0
    if refining:
        check_refinable(codec.model, codec.card.name, codec.card.lambdas)
    if tile is None:
        tile = DEFAULT_TILE if h * w > AUTO_TILE_PIXELS else 0
    if tile % ALIGN or tile < 0:
        raise ValueError(f"tile size {tile} must be a non-negative multiple of {ALIGN}")
    t0 = time.perf_counter()
    dev = codec_device(codec)
    bodies, entries = {}, []
    for g in group_map.groups:
        gq = group_quality.get(g.group_id, quality)
        gq_code = int(round(gq * QUALITY_SCALE))
        coded = []
        for t in group_tiles(g.box, tile):
            x, mask = tile_input(image, group_map.labels, g.group_id, t, dev)
            if mask.any():
                q = gq_code / QUALITY_SCALE
                if refining:
                    y = refine_latents(codec.model, x, mask, q, quality_lambda(codec.card.lambdas, q), refine)
                    coded.append(codec.model.compress_latents(x, mask, q, y=y)[0])
                else:
                    coded.append(codec.model.compress_group(x, mask, q))
        bodies[g.group_id] = pack_tiles(coded) if tile else coded[0]
        entries.append(GroupEntry(g.group_id, g.class_id, g.label, g.box, g.area, gq_code))
    header = StreamHeader(
        width=w, height=h, model_id=codec.card.name, weights_id=codec.weights_id,
        quality=int(round(quality * QUALITY_SCALE)), groups=tuple(entries), tile_size=tile,
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


class CodedWith(Protocol):
    """What a stream header says about its codec (image and video headers both have it)."""

    model_id: str
    weights_id: bytes


def codec_for_stream(header: CodedWith, codec: LoadedCodec | None, device: str = "cpu") -> LoadedCodec:
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


def group_latents(codec: LoadedCodec, body: bytes, e: GroupEntry, sel: np.ndarray, tile: int,
                  dev: torch.device) -> list[tuple[Tile, torch.Tensor, torch.Tensor]]:
    """Entropy-decode one group's body: (tile, tile mask (1, 1, h, w), quantised latents y_hat) for
    every coded tile (one when the stream is untiled). Raises an SSCError for a malformed body."""
    tiles = [t for t in group_tiles(e.box, tile) if _box_part(sel, e.box, t).any()]
    coded = unpack_tiles(body, len(tiles), e.group_id) if tile else [body]
    out = []
    for t, data in zip(tiles, coded):
        m = tile_mask(sel, e.box, t, dev)
        out.append((t, m, codec.model.decompress_latents(data, m)))
    return out


def crop_pixels(x: torch.Tensor) -> np.ndarray:
    """A synthesised crop (1, 3, h, w) in [0, 1] -> (h, w, 3) uint8. Non-finite values come only from
    forged latents (valid CRC, absurd values) and raise a BitstreamError."""
    if not torch.isfinite(x).all():
        raise BitstreamError("segment decodes to non-finite pixels (corrupt or forged)")
    return (x[0].permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def _paint_group(codec: LoadedCodec, tiles: list[tuple[Tile, torch.Tensor, torch.Tensor]], e: GroupEntry,
                 sel: np.ndarray, out: np.ndarray) -> None:
    """Synthesise a group's decoded tiles into ``out`` at its pixels."""
    x0, y0, x1, y1 = e.box
    pix = np.zeros((y1 - y0, x1 - x0, 3), dtype=np.uint8)
    for (tx, ty, _, _), m, y_hat in tiles:
        x = crop_pixels(codec.model.synthesize(y_hat, m, e.quality / QUALITY_SCALE))
        part = pix[ty - y0 :, tx - x0 :]
        h, w = min(part.shape[0], x.shape[0]), min(part.shape[1], x.shape[1])
        part[:h, :w] = x[:h, :w]
    out[y0:y1, x0:x1][sel] = pix[sel]


def decode_groups(rd: StreamReader, codec: LoadedCodec, chosen: list[int], on_group) -> tuple[list[int], dict[int, str], np.ndarray]:
    """Read and entropy-decode the chosen groups of an open stream; ``on_group(entry, mask, tiles)``
    consumes each group (pixels or features). Returns (decoded ids, {failed id: reason}, group map
    with the ids of the groups whose masks were read, -1 elsewhere). A group that fails (mask,
    segment or body) is reported and skipped; the others are unaffected."""
    hdr = rd.header
    dev = codec_device(codec)
    labels = np.full((hdr.height, hdr.width), -1, dtype=np.int32)
    decoded, failed = [], {}
    for gid in chosen:
        e = hdr.group(gid)
        x0, y0, x1, y1 = e.box
        try:
            sel = rd.group_mask(gid)
            labels[y0:y1, x0:x1][sel] = gid
            on_group(e, sel, group_latents(codec, rd.read_segment(gid), e, sel, hdr.tile_size, dev))
        except SSCError as err:  # one message per group, always naming it
            failed[gid] = f"group {gid}: {err.reason if isinstance(err, CorruptSegmentError) else err}"
            continue
        decoded.append(gid)
    return decoded, failed, labels


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
        out = np.full((hdr.height, hdr.width, 3), fill, dtype=np.uint8)
        decoded, failed, labels = decode_groups(rd, codec, chosen, lambda e, sel, tiles: _paint_group(codec, tiles, e, sel, out))
        res = DecodeResult(out, labels, hdr, decoded, failed, rd.bytes_read)
    res.seconds = time.perf_counter() - t0
    return res
