"""The decoder's core, shared by the image API, the Omni feature path, analysis and video: which
groups to decode, the codec a stream needs, and the entropy decode of the chosen groups' segments.
A group whose mask, segment or body is corrupt fails alone (Feng et al., ICCV 2023: independence)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np
import torch

from .bitstream import GroupEntry, StreamHeader, StreamReader
from .bitstream.format import DEFAULT_MAX_PIXELS, quality_value, unpack_tiles
from .crop import Tile, box_part, codec_device, group_tiles, reduced_region, tile_mask, upsample_group
from .errors import BitstreamError, CorruptSegmentError, GroupNotFoundError, SSCError, WeightsError
from .models.zoo import UNREGISTERED_ID, LoadedCodec, load_codec


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
    every coded tile (one when the stream is untiled), in the coordinates of what the segment codes
    (:func:`ssc.crop.reduced_region`). Raises an SSCError for a malformed body."""
    box, sel = reduced_region(e.box, sel, e.scale)
    tiles = [t for t in group_tiles(box, tile) if box_part(sel, box, t).any()]
    coded = unpack_tiles(body, len(tiles), e.group_id) if tile else [body]
    out = []
    for t, data in zip(tiles, coded):
        m = tile_mask(sel, box, t, dev)
        out.append((t, m, codec.model.decompress_latents(data, m)))
    return out


def crop_pixels(x: torch.Tensor) -> np.ndarray:
    """A synthesised crop (1, 3, h, w) in [0, 1] -> (h, w, 3) uint8. Non-finite values come only from
    forged latents (valid CRC, absurd values) and raise a BitstreamError."""
    if not torch.isfinite(x).all():
        raise BitstreamError("segment decodes to non-finite pixels (corrupt or forged)")
    return (x[0].permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def paint_group(codec: LoadedCodec, tiles: list[tuple[Tile, torch.Tensor, torch.Tensor]], e: GroupEntry,
                sel: np.ndarray, out: np.ndarray) -> None:
    """Synthesise a group's decoded tiles into ``out`` at its pixels (a scaled group's upsampled)."""
    box, csel = reduced_region(e.box, sel, e.scale)
    x0, y0, x1, y1 = box
    pix = np.zeros((y1 - y0, x1 - x0, 3), dtype=np.uint8)
    for (tx, ty, _, _), m, y_hat in tiles:
        x = crop_pixels(codec.model.synthesize(y_hat, m, quality_value(e.quality)))
        part = pix[ty - y0 :, tx - x0 :]
        h, w = min(part.shape[0], x.shape[0]), min(part.shape[1], x.shape[1])
        part[:h, :w] = x[:h, :w]
    if e.scale:
        f = 1 << e.scale
        up = upsample_group(pix, csel, f)
        (a0, b0, a1, b1), (u0, v0) = e.box, (x0 * f, y0 * f)
        pix = up[b0 - v0 : b1 - v0, a0 - u0 : a1 - u0]
    x0, y0, x1, y1 = e.box
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
        decoded, failed, labels = decode_groups(rd, codec, chosen, lambda e, sel, tiles: paint_group(codec, tiles, e, sel, out))
        res = DecodeResult(out, labels, hdr, decoded, failed, rd.bytes_read)
    res.seconds = time.perf_counter() - t0
    return res
