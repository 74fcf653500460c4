"""The ssc bitstream specification (version 5). This module is the single source of truth; the prose
version is docs/bitstream.md and golden files in tests/golden pin the bytes. Versions 1 to 4 are
still read (:mod:`ssc.bitstream.v1`; version 2 is version 3 without the fields marked "v3"; version
3 is version 4 with the framing marked "v2/v3"; version 4 is version 5 without what is marked "v5");
only version 5 is written.

Semantically structured streams (SSIC, Feng et al. ICCV 2023): the header carries each group's class
label and box, so "which objects, where" is answered without decoding anything, and every group's
mask and segment can be located, checked and decoded on their own. A reader that decodes one group
reads the preamble, the compact header, that group's mask record and that group's segment only.

All integers are little-endian. ``varint`` is unsigned LEB128 (7 bits per byte, low bits first, at
most 10 bytes, no redundant trailing zero byte). ``str8`` is a u8 byte count and that many UTF-8 bytes.

Preamble (12 bytes)::

    magic        3 bytes  b"SSC"
    version      u8       5
    header_len   u32      length H of the header body that follows
    header_crc   u32      CRC-32 of the header body

Header body (H bytes)::

    kind         u8       0 = image (1 = video, reserved)
    width        varint
    height       varint
    frames       varint   1 for images
    model_id     str8     stable architecture name from the model registry
    weights_id   8 bytes  first 8 bytes of the SHA-256 of the weights file (zeros: unregistered)
    quality      varint   default quality, in 1/256 steps of the model's quality levels
    mask_codec   u8       v4: 4 = row-transition binary masks or a raw bitmap, below (v2/v3: 3 =
                          row-transition binary masks only: groupmap_rows, exclusive labels)
    tile_size    varint   0 = untiled; T > 0 (a multiple of 64): segment bodies are tiled, see below
    cell         varint   v3: 0 = pixel-exact groups (as version 2); C = 16: cell-owned groups, below
    flags        u8       v3: bit 0 = the mask records also carry pixel-exact object masks (cell > 0);
                          v5: bit 1 = the group ids are 0, 1, ..., n - 1 (no id_delta fields);
                          v5: bit 2 = every group is at the default quality (no quality fields);
                          v5: bit 3 = the group entries have a scale field
    num_labels   varint   label dictionary: (class_id varint, label str8) per entry; v5: only labels
                          that are not the vocabulary's name of their class id
    num_groups   varint
    num_groups x group entry:
        id_delta    varint  group_id = previous group_id + 1 + id_delta (first: group_id = id_delta);
                    v5: absent with flag bit 1
        label_ref   varint  0 = no class (class_id 0, label ""), 1 <= i <= D = dictionary entry i - 1
                    (D = num_labels); v5: i = D + 1 + c = class c of the vocabulary
                    (:mod:`ssc.bitstream.vocab`: COCO 2017's category ids and names, 0 = "background")
                    with its name
        x0, y0, w, h varint the group's bounding box in pixels (w, h >= 1); v3 with cell C > 0: in
                    cells, the box being (C x0, C y0, min(C (x0 + w), width), min(C (y0 + h), height))
        area        varint  number of pixels of the group
        quality     varint  0 = the default quality, else the group's quality + 1 (ROI quality);
                    v5: absent with flag bit 2
        scale       varint  v5, with flag bit 3 only: s <= 2, the group is coded at 1 / 2**s size
                    (below); without the flag s = 0
        mask_length varint  length of the group's mask record; 0 marks the complement group
        seg_length  varint  total length of the segment (body + CRC; v2/v3: prefix + body + CRC)
        v3, cell > 0 only: dx0, dy0, dx1, dy1 zigzag varints: the object's own pixel box,
                    (x0 + dx0, y0 + dy0, x1 - dx1, y1 - dy1) with x1 = x0 + w; it may reach into
                    cells of other groups where it has only a few pixels (negative deltas)

Mask section: the mask records of all groups but the complement, back to back in table order. A
record is the group's binary mask on its box (``w x h``, row-major, coded with ``mask_codec``)
followed by a u16 CRC-16/CCITT-FALSE of ``group_id (u16) | mask bytes`` (v2/v3: a u32 CRC-32). The
complement group (exactly one per stream, the background in practice) has no record: its pixels are
those no other group covers. Mask codec 4 codes an ``n``-sample binary mask in one of two forms,
told apart by length alone: exactly ``ceil(n / 8)`` bytes is the raw bitmap (row-major, the first
sample in the most significant bit, the padding bits zero); any other length is the row-transition
coding (mask codec 3), which an encoder uses only where it is shorter than the bitmap.

Payload: the segments, back to back in table order. A segment is::

    body         seg_length - 4 bytes (entropy-coded latents of that group only)
    crc          u32      CRC-32 of group_id (u16) | body

(v2/v3: ``group_id u16 | body_length u32 | body | crc u32``, the CRC over all that precedes it; the
prefix repeats what the table holds.)

An entropy-coded body (each tile's, when tiled) is the 32-bit little-endian words of the rANS coder
(:mod:`ssc.bitstream.rans`). v5: the zero high bytes of its last word (at most 3) are left out; a
reader appends zero bytes up to a whole number of words (v4 and older bodies are whole words).

Untiled (tile_size 0), the body is one coded crop: the group's box grown right and down to multiples
of 64 pixels. Tiled (very large images, bounded memory), that crop is cut into T x T tiles from its
top-left corner (the last column / row narrower), and the body is, for every tile holding at least one
of the group's pixels, in raster order: ``length varint | coded tile``; each tile is coded on its own.

Cell-owned groups (cell C > 0; Feng et al., ICCV 2023, as GIT-SSIC): every C x C cell of the image
(the codec's latent cells; partial cells at the right and bottom edges) belongs to exactly one group
(:mod:`ssc.masks.cells` gives the encoder's rule), so no latent is coded twice and a group's decoded
region is its cells. The box is then the bounding box of the group's cells (x0, y0 multiples of C;
x0 + w and y0 + h multiples of C or the image's edge), its area the pixels of its cells, and its mask
record codes its cells on that box (ceil(w / C) x ceil(h / C) binary cells, mask codec 3). With flag
bit 0 the record is ``cell_length varint | cell mask | exact mask``: the exact mask is the object's
pixels on its object box (mask codec 3), metadata for compositing and segmentation that decoding
does not need. The complement's cells (and exact pixels) are those no other group's record covers.

Scaled groups (v5, scale s > 0; f = 2**s): the group's region (its mask, as above) is unchanged; its
segment codes it at 1/f of the image's size. The image is reduced by averaging f x f blocks (blocks
aligned to the image's origin; the right and bottom edges repeat their last pixel), a reduced pixel
belongs to the group when its block holds a pixel of the group, and the group's reduced box is
(x0 // f, y0 // f, ceil(x1 / f), ceil(y1 / f)); the body codes that reduced group exactly as a
full-size group on its box. A decoder upsamples the reduced pixels by f (bilinear, half-pixel
centres, each output a weighted mean over the group's reduced pixels only) and keeps those at the
group's own pixels. Everything a scaled group's pixels depend on is still its own mask and segment.

Offsets are not stored: a record or segment starts where the previous one ends. Group ids are
unique, ascending and at most 65535; boxes lie inside the image; the group areas sum to
width x height. A reader must refuse anything else with a clear error. A segment or mask that fails
its checks fails only its own group (the complement also needs every other mask); a stream cut short
inside the payload still decodes every group whose segment is complete.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from typing import Callable

from ..errors import BitstreamError, CorruptSegmentError, GroupNotFoundError, ResourceLimitError
from .vocab import VOCABULARY
from .wire import Cursor, crc16, crc32, str8, uint, unzigzag, varint, zigzag

MAGIC = b"SSC"
VERSION = 5
#: Versions this reader understands (version 1: see :mod:`ssc.bitstream.v1`).
READABLE_VERSIONS = (1, 2, 3, 4, 5)
#: the side of a latent cell, the only non-zero ``cell`` of a version-3 stream
CELL = 16
FLAG_EXACT_MASKS = 1
#: version 5: the group ids are 0, 1, ..., n - 1 (the table has no id fields)
FLAG_DENSE_IDS = 2
#: version 5: every group is at the default quality (the table has no quality fields)
FLAG_UNIFORM_QUALITY = 4
#: version 5: the table has a scale field per group (some group is coded at a reduced size)
FLAG_SCALES = 8
#: the largest scale field: a group coded at 1 / 2**MAX_SCALE of the image's size
MAX_SCALE = 2


def scale_of(factor: int) -> int:
    """The scale field of a group coded at 1/``factor`` size (1, 2 or 4; ValueError otherwise)."""
    if factor not in [1 << s for s in range(MAX_SCALE + 1)]:
        raise ValueError(f"size factor {factor} is not one of {', '.join(str(1 << s) for s in range(MAX_SCALE + 1))}")
    return factor.bit_length() - 1
KIND_IMAGE = 0
KIND_VIDEO = 1
PREAMBLE = struct.Struct("<3sBII")
#: versions 2 and 3 (and video segments): group id and body length before the body, CRC-32 after
SEGMENT_PREFIX = struct.Struct("<HI")
SEGMENT_OVERHEAD = SEGMENT_PREFIX.size + 4
MASK_CRC = struct.Struct("<I")
#: version 4: the body and its CRC-32 only; mask records end in a CRC-16
SEGMENT_OVERHEAD_V4 = 4
MASK_CRC_V4 = struct.Struct("<H")
MASK_CODEC_ROWS_BINARY = 3
MASK_CODEC_ROWS_OR_RAW = 4
#: Tile sides are multiples of this (the codec's latent grid); and at most MAX_TILE_SIZE.
TILE_ALIGN = 64
MAX_TILE_SIZE = 1 << 16
QUALITY_SCALE = 256
MAX_GROUP_ID = 0xFFFF
#: Refuse declared images larger than this many pixels unless the caller raises the limit.
DEFAULT_MAX_PIXELS = 1 << 26
#: header-body parsers of the older versions still read, by version; each registers itself from its
#: own module (:mod:`ssc.bitstream.v1`), which the package imports
LEGACY_PARSERS: dict[int, Callable[..., "StreamHeader"]] = {}
MAX_HEADER_BYTES = 1 << 30
@dataclass(frozen=True)
class GroupEntry:
    """One row of the group table. Offsets are relative to the mask section / payload start and are
    derived from the lengths when a stream is parsed or built."""

    group_id: int
    class_id: int = 0
    label: str = ""
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # x0, y0, x1, y1 (exclusive)
    area: int = 0
    quality: int = 0
    seg_offset: int = 0
    seg_length: int = 0
    mask_offset: int = 0
    mask_length: int = 0  # 0: the complement group (no mask record)
    #: cell-owned streams: the object's own pixel box (``box`` is the bounding box of its cells; the
    #: object may reach into other groups' cells where it has few pixels)
    object_box: tuple[int, int, int, int] | None = None
    #: version 5: the group is coded at 1 / 2**scale of the image's size and upsampled on decode
    scale: int = 0

    @property
    def is_complement(self) -> bool:
        return self.mask_length == 0

    @property
    def obj_box(self) -> tuple[int, int, int, int]:
        """Where the object is, pixel-exact ("which objects, where" of the header)."""
        return self.object_box or self.box


@dataclass(frozen=True)
class StreamHeader:
    """Everything before the payload (for version 1, ``legacy_map`` holds the in-header map)."""

    width: int
    height: int
    model_id: str
    weights_id: bytes = b"\x00" * 8
    quality: int = 0
    groups: tuple[GroupEntry, ...] = ()
    mask_codec: int = MASK_CODEC_ROWS_OR_RAW
    tile_size: int = 0
    kind: int = KIND_IMAGE
    frames: int = 1
    version: int = VERSION
    header_length: int = field(default=0, compare=False)
    legacy_map: tuple[int, bytes] | None = None
    #: version 3: the side of the groups' cells (0: pixel-exact groups) and whether mask records also
    #: carry the objects' exact masks
    cell: int = 0
    exact_masks: bool = False

    @property
    def raw_masks(self) -> bool:
        """Whether a mask record may be a raw bitmap (mask codec 4, version 4)."""
        return self.mask_codec == MASK_CODEC_ROWS_OR_RAW

    @property
    def masks_offset(self) -> int:
        """Absolute offset of the mask section."""
        return PREAMBLE.size + self.header_length

    @property
    def masks_length(self) -> int:
        return sum(g.mask_length for g in self.groups)

    @property
    def payload_offset(self) -> int:
        """Absolute offset of the payload (first segment) in the stream."""
        return self.masks_offset + self.masks_length

    @property
    def payload_length(self) -> int:
        return sum(g.seg_length for g in self.groups)

    @property
    def stream_length(self) -> int:
        return self.payload_offset + self.payload_length

    def group(self, group_id: int) -> GroupEntry:
        for g in self.groups:
            if g.group_id == group_id:
                return g
        known = ", ".join(str(g.group_id) for g in self.groups)
        raise GroupNotFoundError(f"group {group_id} is not in this stream (groups: {known})")

    @property
    def group_ids(self) -> tuple[int, ...]:
        return tuple(g.group_id for g in self.groups)

    @property
    def complement(self) -> GroupEntry | None:
        """The group whose pixels are those no other group's mask covers (None for version 1)."""
        if self.version < 2:
            return None
        return next((g for g in self.groups if g.is_complement), None)


def quality_code(quality: float) -> int:
    """The stored form of a (fractional) quality: the nearest 1/QUALITY_SCALE step."""
    return int(round(quality * QUALITY_SCALE))


def quality_value(code: int) -> float:
    """The quality a stored code stands for (what encoder and decoder both use)."""
    return code / QUALITY_SCALE


def choose_complement(groups: tuple[GroupEntry, ...] | list) -> int:
    """Encoder convention: the largest group (lowest id on ties) goes without a mask record."""
    return min(groups, key=lambda g: (-g.area, g.group_id)).group_id


def _label_table(h: StreamHeader) -> tuple[list[tuple[int, str]], dict[tuple[int, str], int]]:
    """The label dictionary (in order of first use: deterministic) and every label's reference. Version
    5 refers to a vocabulary label (:mod:`ssc.bitstream.vocab`) by its class id, past the dictionary."""
    labels: list[tuple[int, str]] = []
    for g in h.groups:
        key = (g.class_id, g.label)
        if key != (0, "") and key not in labels and VOCABULARY.get(g.class_id) != g.label:
            labels.append(key)
    refs = {key: i + 1 for i, key in enumerate(labels)}
    refs[(0, "")] = 0
    for g in h.groups:
        if VOCABULARY.get(g.class_id) == g.label:
            refs[(g.class_id, g.label)] = len(labels) + 1 + g.class_id
    return labels, refs


def _encode_header_body(h: StreamHeader) -> bytes:
    """The version-5 header body of ``h`` (the module docstring)."""
    dense = [g.group_id for g in h.groups] == list(range(len(h.groups)))
    uniform = all(g.quality == h.quality for g in h.groups)
    scales = any(g.scale for g in h.groups)
    flags = (FLAG_EXACT_MASKS * h.exact_masks | FLAG_DENSE_IDS * dense | FLAG_UNIFORM_QUALITY * uniform
             | FLAG_SCALES * scales)
    out = bytearray(struct.pack("<B", uint(h.kind, 8, "kind")))
    out += varint(h.width, "width") + varint(h.height, "height") + varint(h.frames, "frames")
    out += str8(h.model_id)
    if len(h.weights_id) != 8:
        raise BitstreamError("weights_id must be 8 bytes")
    out += h.weights_id
    out += varint(h.quality, "quality")
    out += struct.pack("<B", uint(h.mask_codec, 8, "mask_codec"))
    out += varint(h.tile_size, "tile_size") + varint(h.cell, "cell") + bytes([flags])
    labels, refs = _label_table(h)
    out += varint(len(labels), "num_labels")
    for cls, name in labels:
        out += varint(cls, "class_id") + str8(name)
    out += varint(len(h.groups), "num_groups")
    prev = -1
    for g in h.groups:
        x0, y0, x1, y1 = g.box
        c = h.cell or 1
        fields = [] if dense else [g.group_id - prev - 1]
        fields += [refs[(g.class_id, g.label)], x0 // c, y0 // c, -(-x1 // c) - x0 // c, -(-y1 // c) - y0 // c, g.area]
        fields += [] if uniform else [0 if g.quality == h.quality else g.quality + 1]
        fields += [g.scale] if scales else []
        out += b"".join(varint(v, f"group {g.group_id}") for v in (*fields, g.mask_length, g.seg_length))
        if h.cell:
            a0, b0, a1, b1 = g.obj_box
            out += b"".join(varint(zigzag(v), f"group {g.group_id} object box")
                            for v in (a0 - x0, b0 - y0, x1 - a1, y1 - b1))
        prev = g.group_id
    return bytes(out)


def segment_overhead(version: int) -> int:
    """Bytes a segment adds to its body in streams of ``version``."""
    return SEGMENT_OVERHEAD_V4 if version >= 4 else SEGMENT_OVERHEAD


def mask_crc_size(version: int) -> int:
    """Bytes of the CRC ending a mask record in streams of ``version``."""
    return MASK_CRC_V4.size if version >= 4 else MASK_CRC.size


def frame_segment(group_id: int, body: bytes) -> bytes:
    """A version-4 segment: the body and the CRC-32 of ``group_id (u16) | body``."""
    return body + struct.pack("<I", crc32(struct.pack("<H", uint(group_id, 16, "group_id")) + body))


def unframe_segment(segment: bytes, group_id: int, version: int = VERSION) -> bytes:
    """Check a segment of a stream of ``version`` and return its body (CorruptSegmentError for that
    group only)."""
    if version < 4:
        return unpack_segment(segment, group_id)
    if len(segment) < SEGMENT_OVERHEAD_V4:
        raise CorruptSegmentError(group_id, f"segment truncated ({len(segment)} bytes)")
    body = segment[:-4]
    if struct.unpack_from("<I", segment, len(body))[0] != crc32(struct.pack("<H", group_id) + body):
        raise CorruptSegmentError(group_id, "CRC-32 mismatch (segment corrupted or not this group's)")
    return body


def frame_mask(group_id: int, mask_bytes: bytes) -> bytes:
    """A version-4 mask record: the coded mask and the CRC-16 of ``group_id (u16) | mask bytes``."""
    return mask_bytes + MASK_CRC_V4.pack(crc16(struct.pack("<H", uint(group_id, 16, "group_id")) + mask_bytes))


def unframe_mask(record: bytes, group_id: int, version: int = VERSION) -> bytes:
    """Check a mask record of a stream of ``version`` and return the coded mask (CorruptSegmentError
    for that group)."""
    if version < 4:
        return unpack_mask(record, group_id)
    return _checked_mask(record, group_id, MASK_CRC_V4, crc16, "CRC-16")


def _checked_mask(record: bytes, group_id: int, field: struct.Struct, crc: Callable[[bytes], int], name: str) -> bytes:
    """The coded mask of a record ending in ``field`` = ``crc(group_id (u16) | mask bytes)``."""
    if len(record) <= field.size:
        raise CorruptSegmentError(group_id, f"mask record truncated ({len(record)} bytes)")
    body = record[: -field.size]
    if field.unpack(record[-field.size :])[0] != crc(struct.pack("<H", group_id) + body):
        raise CorruptSegmentError(group_id, f"mask {name} mismatch (mask record corrupted)")
    return body


def pack_segment(group_id: int, body: bytes) -> bytes:
    """Frame one group's entropy-coded body as a length-prefixed, CRC-checked segment (versions 2
    and 3, and the video container's segments)."""
    prefix = SEGMENT_PREFIX.pack(uint(group_id, 16, "group_id"), uint(len(body), 32, "body_length"))
    return prefix + body + struct.pack("<I", crc32(prefix + body))


def unpack_segment(segment: bytes, expected_group: int) -> bytes:
    """Check a framed segment and return its body. Raises CorruptSegmentError for that group only."""
    if len(segment) < SEGMENT_OVERHEAD:
        raise CorruptSegmentError(expected_group, f"segment truncated ({len(segment)} bytes)")
    gid, blen = SEGMENT_PREFIX.unpack_from(segment, 0)
    if gid != expected_group:
        raise CorruptSegmentError(expected_group, f"segment is labelled as group {gid}")
    if blen != len(segment) - SEGMENT_OVERHEAD:
        raise CorruptSegmentError(expected_group, f"segment length field {blen} != {len(segment) - SEGMENT_OVERHEAD}")
    (crc,) = struct.unpack_from("<I", segment, len(segment) - 4)
    if crc != crc32(segment[:-4]):
        raise CorruptSegmentError(expected_group, "CRC-32 mismatch (segment corrupted)")
    return segment[SEGMENT_PREFIX.size : -4]


def pack_mask(group_id: int, mask_bytes: bytes) -> bytes:
    """A mask record: the coded mask and the CRC-32 of ``group_id (u16) | mask bytes``."""
    return mask_bytes + MASK_CRC.pack(crc32(struct.pack("<H", uint(group_id, 16, "group_id")) + mask_bytes))


def unpack_mask(record: bytes, group_id: int) -> bytes:
    """Check a mask record (versions 2 and 3, video) and return the coded mask. Raises
    CorruptSegmentError for that group."""
    return _checked_mask(record, group_id, MASK_CRC, crc32, "CRC-32")


def join_exact(cells: bytes, exact: bytes) -> bytes:
    """The coded mask of a cell-owned group whose record also carries its exact object mask."""
    return varint(len(cells), "cell mask length") + cells + exact


def split_exact(coded: bytes, group_id: int) -> tuple[bytes, bytes]:
    """Inverse of :func:`join_exact`: (cell mask, exact mask) (CorruptSegmentError for that group)."""
    c = Cursor(coded)
    try:
        cells = c.take(c.varint("cell mask length"), "cell mask")
    except BitstreamError as e:
        raise CorruptSegmentError(group_id, f"mask record is malformed ({e})") from e
    return cells, coded[c.pos :]


def pack_tiles(tiles: list[bytes]) -> bytes:
    """Body of a tiled segment: ``length varint | coded tile`` per non-empty tile."""
    return b"".join(varint(len(t), "tile length") + t for t in tiles)


def unpack_tiles(body: bytes, count: int, group_id: int) -> list[bytes]:
    """Split a tiled body into its ``count`` coded tiles (CorruptSegmentError for that group)."""
    c, out = Cursor(body), []
    try:
        for _ in range(count):
            out.append(c.take(c.varint("tile length"), "tile"))
    except BitstreamError as e:
        raise CorruptSegmentError(group_id, f"tiled segment is malformed ({e})") from e
    if c.pos != len(body):
        raise CorruptSegmentError(group_id, f"tiled segment has {len(body) - c.pos} bytes after its {count} tiles")
    return out


def build_stream(header: StreamHeader, bodies: dict[int, bytes], masks: dict[int, bytes]) -> bytes:
    """Assemble a complete version-5 stream. ``bodies`` maps group id -> entropy-coded body;
    ``masks`` maps every group id but the complement's -> its coded mask (mask codec 4, as
    :func:`ssc.bitstream.groupmap.encode_group_masks` makes them). Lengths and offsets in the table
    are filled in here, in ascending group-id order."""
    ids = [g.group_id for g in header.groups]
    if ids != sorted(set(ids)):
        raise BitstreamError(f"group ids must be unique and ascending, got {ids}")
    if set(bodies) != set(ids):
        raise BitstreamError(f"segments {sorted(bodies)} do not match group table {ids}")
    missing = [gid for gid in ids if gid not in masks]
    if len(missing) != 1 or set(masks) - set(ids):
        raise BitstreamError(f"masks must be given for every group but one (the complement); missing {missing}")
    if header.mask_codec != MASK_CODEC_ROWS_OR_RAW:
        raise BitstreamError(f"version {VERSION} streams use mask codec {MASK_CODEC_ROWS_OR_RAW}, not {header.mask_codec}")
    segments = [frame_segment(gid, bodies[gid]) for gid in ids]
    records = [frame_mask(gid, masks[gid]) if gid in masks else b"" for gid in ids]
    groups = _with_offsets(
        [replace(g, box=tuple(g.box), seg_length=len(s), mask_length=len(r))
         for g, s, r in zip(header.groups, segments, records)]
    )
    full = StreamHeader(
        width=header.width, height=header.height, model_id=header.model_id, weights_id=header.weights_id,
        quality=header.quality, groups=groups, mask_codec=header.mask_codec, tile_size=header.tile_size,
        kind=header.kind, frames=header.frames, cell=header.cell, exact_masks=header.exact_masks,
    )
    _validate(full)
    body = _encode_header_body(full)
    return PREAMBLE.pack(MAGIC, VERSION, len(body), crc32(body)) + body + b"".join(records) + b"".join(segments)


def _with_offsets(groups: list[GroupEntry]) -> tuple[GroupEntry, ...]:
    """The entries with each mask record's and segment's offset: where the previous one ends."""
    out, m_off, s_off = [], 0, 0
    for g in groups:
        out.append(replace(g, seg_offset=s_off, mask_offset=m_off))
        m_off += g.mask_length
        s_off += g.seg_length
    return tuple(out)


def parse_preamble(data: bytes) -> tuple[int, int, int]:
    """Check magic and version; return (version, header_length, header_crc)."""
    if len(data) < PREAMBLE.size:
        raise BitstreamError(f"not an ssc stream: {len(data)} bytes is shorter than the {PREAMBLE.size}-byte preamble")
    magic, version, hlen, hcrc = PREAMBLE.unpack_from(data, 0)
    if magic != MAGIC:
        raise BitstreamError(f"not an ssc stream (magic {magic!r}, expected {MAGIC!r})")
    if version not in READABLE_VERSIONS:
        raise BitstreamError(f"unsupported ssc bitstream version {version} (this reader knows {READABLE_VERSIONS})")
    if hlen > MAX_HEADER_BYTES:
        raise BitstreamError(f"header length {hlen} exceeds the {MAX_HEADER_BYTES}-byte limit")
    return version, hlen, hcrc


def parse_header(
    data: bytes, *, stream_length: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> StreamHeader:
    """Parse and validate the preamble and header body. ``data`` must hold at least the header (mask
    section and payload may be absent). When ``stream_length`` is known (file size), a stream cut
    inside its mask section or carrying bytes after its last segment is refused; a stream cut inside
    its payload is accepted (the cut groups fail when read). Declared sizes above ``max_pixels`` are
    refused before any allocation."""
    version, hlen, hcrc = parse_preamble(data)
    if len(data) < PREAMBLE.size + hlen:
        raise BitstreamError(f"stream truncated inside the header ({len(data)} of {PREAMBLE.size + hlen} bytes)")
    body = bytes(data[PREAMBLE.size : PREAMBLE.size + hlen])
    if crc32(body) != hcrc:
        raise BitstreamError("header CRC-32 mismatch (header corrupted)")
    if version in LEGACY_PARSERS:
        return LEGACY_PARSERS[version](body, stream_length=stream_length, max_pixels=max_pixels)
    c = Cursor(body)
    (kind,) = c.unpack("<B", "kind")
    width, height, frames = c.varint("width"), c.varint("height"), c.varint("frames")
    check_size(kind, width, height, max_pixels)
    model_id = c.str8("model_id")
    weights_id = c.take(8, "weights_id")
    quality = c.varint("quality")
    (mask_codec,) = c.unpack("<B", "mask_codec")
    if mask_codec != (MASK_CODEC_ROWS_OR_RAW if version >= 4 else MASK_CODEC_ROWS_BINARY):
        raise BitstreamError(f"unknown mask codec {mask_codec} for a version-{version} stream")
    tile_size = c.varint("tile_size")
    cell, flags = (c.varint("cell"), c.unpack("<B", "flags")[0]) if version >= 3 else (0, 0)
    known = FLAG_EXACT_MASKS | (FLAG_DENSE_IDS | FLAG_UNIFORM_QUALITY | FLAG_SCALES if version >= 5 else 0)
    if cell not in (0, CELL) or flags & ~known or (flags & FLAG_EXACT_MASKS and not cell):
        raise BitstreamError(f"unknown cell size {cell} or flags {flags}")
    n_labels = c.varint("num_labels")
    if n_labels > len(body):  # every entry takes at least 2 bytes: refuse before looping
        raise BitstreamError(f"label count {n_labels} exceeds the header size")
    labels = [(c.varint("class_id"), c.str8("label")) for _ in range(n_labels)]
    n = c.varint("num_groups")
    if n > len(body):
        raise BitstreamError(f"group count {n} exceeds the header size")
    groups, prev = [], -1
    for i in range(n):
        what = f"group entry {i}"
        gid = i if flags & FLAG_DENSE_IDS else prev + 1 + c.varint(what)
        if gid > MAX_GROUP_ID:
            raise BitstreamError(f"{what}: group id {gid} exceeds {MAX_GROUP_ID}")
        ref, x0, y0, w, h, area = (c.varint(what) for _ in range(6))
        q = 0 if flags & FLAG_UNIFORM_QUALITY else c.varint(what)
        scale = c.varint(what) if flags & FLAG_SCALES else 0
        if scale > MAX_SCALE:
            raise BitstreamError(f"group {gid}: scale {scale} above {MAX_SCALE} (1/{1 << MAX_SCALE} size)")
        mlen, slen = c.varint(what), c.varint(what)
        cls, name = _label(ref, labels, version, gid)
        gq = quality if q == 0 else q - 1
        box, obj = (x0, y0, x0 + w, y0 + h), None
        if cell:
            if w and h and ((x0 + w - 1) * cell >= width or (y0 + h - 1) * cell >= height):
                raise BitstreamError(f"group {gid}: cells {x0, y0, w, h} reach past the image")
            box = (x0 * cell, y0 * cell, min((x0 + w) * cell, width), min((y0 + h) * cell, height))
            d = [unzigzag(c.varint(f"{what} object box")) for _ in range(4)]
            obj = (box[0] + d[0], box[1] + d[1], box[2] - d[2], box[3] - d[3])
        groups.append(GroupEntry(gid, cls, name, box, area, gq, 0, slen, 0, mlen, obj, scale))
        prev = gid
    if c.pos != len(body):
        raise BitstreamError(f"{len(body) - c.pos} unexpected bytes at the end of the header")
    hdr = StreamHeader(
        width=width, height=height, model_id=model_id, weights_id=weights_id, quality=quality,
        groups=_with_offsets(groups), mask_codec=mask_codec, tile_size=tile_size, kind=kind, frames=frames,
        version=version, header_length=hlen, cell=cell, exact_masks=bool(flags & FLAG_EXACT_MASKS),
    )
    _validate(hdr)
    if stream_length is not None:
        if stream_length < hdr.payload_offset:
            raise BitstreamError(
                f"stream truncated inside the mask section ({stream_length} of {hdr.payload_offset} bytes)")
        if stream_length > hdr.stream_length:
            raise BitstreamError(f"{stream_length - hdr.stream_length} unexpected bytes after the last segment")
    return hdr


def _label(ref: int, labels: list[tuple[int, str]], version: int, group_id: int) -> tuple[int, str]:
    """(class_id, label) of a group's label reference: 0 none, 1..D the dictionary, and in version 5
    D + 1 + c the vocabulary's class c."""
    if ref == 0:
        return 0, ""
    if ref <= len(labels):
        return labels[ref - 1]
    cls = ref - len(labels) - 1
    if version >= 5 and cls in VOCABULARY:
        return cls, VOCABULARY[cls]
    raise BitstreamError(f"group {group_id}: label reference {ref} outside the {len(labels)}-entry dictionary"
                         + (" and the vocabulary" if version >= 5 else ""))


def check_size(kind: int, width: int, height: int, max_pixels: int) -> None:
    if kind not in (KIND_IMAGE, KIND_VIDEO):
        raise BitstreamError(f"unknown stream kind {kind}")
    if width == 0 or height == 0:
        raise BitstreamError(f"invalid image size {width}x{height}")
    if width * height > max_pixels:
        raise ResourceLimitError(f"declared size {width}x{height} exceeds the limit of {max_pixels} pixels")


def validate_groups(h: StreamHeader) -> None:
    """Checks common to every version: ids, boxes, areas, segment lengths."""
    ids = [g.group_id for g in h.groups]
    if ids != sorted(set(ids)):
        raise BitstreamError(f"group ids must be unique and ascending, got {ids[:20]}")
    for g in h.groups:
        x0, y0, x1, y1 = g.box
        if not (x0 < x1 <= h.width and y0 < y1 <= h.height):
            raise BitstreamError(f"group {g.group_id}: box {g.box} is empty or outside {h.width}x{h.height}")
        if not 0 < g.area <= (x1 - x0) * (y1 - y0):
            raise BitstreamError(f"group {g.group_id}: area {g.area} inconsistent with its box")
        if not 0 <= g.scale <= MAX_SCALE:
            raise BitstreamError(f"group {g.group_id}: scale {g.scale} outside 0..{MAX_SCALE}")
        if g.seg_length < segment_overhead(h.version):
            raise BitstreamError(f"group {g.group_id}: segment length {g.seg_length} too small")
    total_area = sum(g.area for g in h.groups)
    if h.groups and total_area != h.width * h.height:
        raise BitstreamError(f"group areas sum to {total_area}, not {h.width}x{h.height} = {h.width * h.height} pixels")


def _validate(h: StreamHeader) -> None:
    validate_groups(h)
    if h.tile_size % TILE_ALIGN or h.tile_size > MAX_TILE_SIZE:
        raise BitstreamError(f"tile size {h.tile_size} is not a multiple of {TILE_ALIGN} up to {MAX_TILE_SIZE}")
    n_comp = sum(g.is_complement for g in h.groups)
    if h.groups and n_comp != 1:
        raise BitstreamError(f"exactly one group must be the complement (mask length 0), found {n_comp}")
    for g in h.groups:
        if not g.is_complement and g.mask_length <= mask_crc_size(h.version):
            raise BitstreamError(f"group {g.group_id}: mask record length {g.mask_length} too small")
        if h.cell:
            x0, y0, x1, y1 = g.box
            a0, b0, a1, b1 = g.obj_box
            if x0 % h.cell or y0 % h.cell or (x1 % h.cell and x1 != h.width) or (y1 % h.cell and y1 != h.height):
                raise BitstreamError(f"group {g.group_id}: box {g.box} is not on the {h.cell}-pixel cell grid")
            if not (0 <= a0 < a1 <= h.width and 0 <= b0 < b1 <= h.height):
                raise BitstreamError(f"group {g.group_id}: object box {g.obj_box} is empty or outside the image")
