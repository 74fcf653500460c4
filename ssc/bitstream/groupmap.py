"""Lossless coding of group masks and group maps.

Bitstream version 2 codes one binary mask per group on the group's box (:func:`encode_group_mask`,
mask codec 3 = the row-transition coder of :mod:`ssc.bitstream.groupmap_rows` with exclusive labels),
so a reader decodes one group's mask without the others. Version 4's mask codec 4 keeps whichever is
shorter of that coding and the raw bitmap (``raw=True``; small cell masks are often cheaper raw:
the row coder's adaptive models and its 32-bit rANS words cost more than a few dozen bits).

Version 1 coded the whole (H x W) label map in the header with one of two codecs (the encoder kept the
smaller); :func:`decode_group_map` still reads them and :func:`encode_group_map` remains for tests.

Codec 1 ("delta-deflate"): one byte giving the sample width (1 or 2 bytes per label), then
DEFLATE (zlib container) of the label plane after a vertical prediction: each row is replaced by
``row - previous_row`` modulo 2**(8*width). Object maps are piecewise constant, so the residual is
almost all zeros and DEFLATE's run/match coding removes it. Decoding is bounded: the decompressor
never produces more than H*W*width bytes, so a forged map cannot blow up memory.
"""
from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np

from ..errors import BitstreamError
from .format import CELL, GroupEntry, choose_complement, join_exact
from .groupmap_rows import decode_rows, encode_rows

MAP_CODEC_DELTA_DEFLATE = 1
MAP_CODEC_ROWS = 2


def raw_length(n: int) -> int:
    """Bytes of the raw bitmap of ``n`` samples: the length that marks a mask-codec-4 record as raw."""
    return -(-n // 8)


def encode_group_mask(mask: np.ndarray, raw: bool = False) -> bytes:
    """Code a 2-D boolean mask (a group's pixels on its box) with mask codec 3, or with ``raw`` with
    mask codec 4: the row coding where it is shorter than the raw bitmap, else the bitmap."""
    if mask.ndim != 2 or mask.size == 0:
        raise ValueError(f"mask must be a non-empty 2-D array, got shape {mask.shape}")
    rows = encode_rows(mask.astype(np.int32), 2, exclusive=True)
    if raw and len(rows) >= raw_length(mask.size):
        return np.packbits(mask.astype(bool).ravel()).tobytes()
    return rows


def encode_group_masks(labels: np.ndarray, groups: Sequence[GroupEntry]) -> dict[int, bytes]:
    """Coded masks of every group but the complement (:func:`choose_complement`), each on its box,
    ready for :func:`ssc.bitstream.format.build_stream`."""
    comp = choose_complement(groups)
    out = {}
    for g in groups:
        if g.group_id != comp:
            x0, y0, x1, y1 = g.box
            out[g.group_id] = encode_group_mask(labels[y0:y1, x0:x1] == g.group_id, raw=True)
    return out


def cell_box(box: tuple[int, int, int, int], cell: int) -> tuple[int, int, int, int]:
    """A cell-owned group's box in cells (x0, y0, x1, y1; the image's partial edge cells count)."""
    x0, y0, x1, y1 = box
    return x0 // cell, y0 // cell, -(-x1 // cell), -(-y1 // cell)


def cells_to_pixels(cells: np.ndarray, shape: tuple[int, int], cell: int = CELL) -> np.ndarray:
    """A per-cell array expanded to pixels and cut to ``shape``."""
    return np.repeat(np.repeat(cells, cell, 0), cell, 1)[: shape[0], : shape[1]]


def encode_cell_masks(owners: np.ndarray, labels: np.ndarray | None, groups: Sequence[GroupEntry],
                      cell: int) -> dict[int, bytes]:
    """Coded masks of a cell-owned stream's groups but the complement: each group's cells on its box
    (``owners``: the owning id of every cell), followed by its exact object mask on its object box
    when ``labels`` (the pixel group map) is given."""
    comp = choose_complement(groups)
    out = {}
    for g in groups:
        if g.group_id != comp:
            c0, r0, c1, r1 = cell_box(g.box, cell)
            coded = encode_group_mask(owners[r0:r1, c0:c1] == g.group_id, raw=True)
            if labels is not None:
                a0, b0, a1, b1 = g.obj_box
                coded = join_exact(coded, encode_group_mask(labels[b0:b1, a0:a1] == g.group_id, raw=True))
            out[g.group_id] = coded
    return out


def decode_group_mask(data: bytes, height: int, width: int, raw: bool = False) -> np.ndarray:
    """Inverse of :func:`encode_group_mask`: a (height, width) bool array (``raw``: mask codec 4)."""
    n = height * width
    if raw and len(data) == raw_length(n):
        bits = np.unpackbits(np.frombuffer(data, np.uint8))
        if bits[n:].any():
            raise BitstreamError("raw mask has non-zero padding bits")
        return bits[:n].reshape(height, width).astype(bool)
    return decode_rows(data, height, width, 2, exclusive=True).astype(bool)


def encode_group_map(labels: np.ndarray, ids: np.ndarray | None = None) -> tuple[int, bytes]:
    """Code an (H, W) label map whose values are all in ``ids`` (the group table's ids, ascending;
    default: the values present). Returns (codec id, bytes) of the smaller codec."""
    ids = np.unique(labels) if ids is None else np.asarray(ids)
    idx = np.searchsorted(ids, labels)
    if labels.size and (idx.max() >= len(ids) or not np.array_equal(ids[idx], labels)):
        raise ValueError("group map holds values that are not in the group id list")
    c1 = _encode_deflate(labels)
    c2 = encode_rows(idx.astype(np.int32), len(ids)) if labels.size else c1
    return (MAP_CODEC_ROWS, c2) if len(c2) < len(c1) else (MAP_CODEC_DELTA_DEFLATE, c1)


def _encode_deflate(labels: np.ndarray) -> bytes:
    if labels.ndim != 2:
        raise ValueError(f"group map must be 2-D, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 0xFFFF):
        raise ValueError("group ids must lie in [0, 65535]")
    width = 1 if labels.size == 0 or labels.max() <= 0xFF else 2
    dtype = np.uint8 if width == 1 else np.dtype("<u2")
    plane = labels.astype(dtype)
    resid = plane.copy()
    resid[1:] = plane[1:] - plane[:-1]  # modular arithmetic in the unsigned dtype
    return bytes([width]) + zlib.compress(resid.tobytes(), 9)


def decode_group_map(codec: int, data: bytes, height: int, width: int, ids: tuple[int, ...] | None = None) -> np.ndarray:
    """Inverse of :func:`encode_group_map`; returns an int32 (H, W) array. Codec 2 needs ``ids``."""
    if codec == MAP_CODEC_ROWS:
        if not ids:
            raise BitstreamError("group map codec 2 needs the group table's ids")
        return np.asarray(ids, dtype=np.int32)[decode_rows(data, height, width, len(ids))]
    if codec != MAP_CODEC_DELTA_DEFLATE:
        raise BitstreamError(f"unknown group-map codec {codec}")
    if len(data) < 1 or data[0] not in (1, 2):
        raise BitstreamError("group map: bad sample width")
    sample = data[0]
    expected = height * width * sample
    d = zlib.decompressobj()
    try:
        raw = d.decompress(data[1:], expected)
        if len(raw) < expected:
            raw += d.flush(expected - len(raw))
    except zlib.error as e:
        raise BitstreamError(f"group map is corrupted ({e})") from e
    if len(raw) != expected or d.unconsumed_tail or not d.eof:
        raise BitstreamError(f"group map has the wrong size (expected {height}x{width})")
    dtype = np.uint8 if sample == 1 else np.dtype("<u2")
    resid = np.frombuffer(raw, dtype=dtype).reshape(height, width)
    plane = np.cumsum(resid, axis=0, dtype=dtype)  # wraps modulo 2**bits exactly like the encoder
    return plane.astype(np.int32)
