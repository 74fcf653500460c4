"""The ssc bitstream specification (version 1). This module is the single source of truth; the prose
version is docs/bitstream.md and golden files in tests/golden pin the bytes.

Semantically structured streams (SSIC, Feng et al. ICCV 2023): the header carries each group's class
label and box, so "which objects, where" is answered without decoding any segment, and every group's
segment can be located, checked and decoded on its own.

All integers are little-endian. ``str8`` is a u8 byte count followed by that many UTF-8 bytes.

Preamble (12 bytes)::

    magic        3 bytes  b"SSC"
    version      u8       1
    header_len   u32      length H of the header body that follows
    header_crc   u32      CRC-32 of the header body

Header body (H bytes)::

    kind         u8       0 = image (1 = video, reserved)
    width        u32
    height       u32
    frames       u16      1 for images
    model_id     str8     stable architecture name from the model registry
    weights_id   8 bytes  first 8 bytes of the SHA-256 of the weights file (zeros: unregistered)
    quality      u16      default quality, in 1/256 steps of the model's quality levels
    num_groups   u16
    num_groups x group entry:
        group_id   u16    value of the group in the group map (0 = background)
        class_id   u16    COCO category id, 0 when none
        label      str8   class name ("" when none)
        box        4 x u32  x0, y0, x1, y1 (exclusive), the group's bounding box in pixels
        area       u32    number of pixels of the group
        quality    u16    quality actually used for this group (1/256 steps; ROI quality)
        seg_offset u64    offset of the group's segment, from the start of the payload
        seg_length u32    total length of the segment (prefix + body + CRC)
    map_codec    u8       group-map codec id (see groupmap.py)
    map_length   u32
    map_bytes    map_length bytes

Payload: the segments, back to back. A segment is::

    group_id     u16      must equal the table entry's group_id
    body_length  u32      must equal seg_length - 10
    body         body_length bytes (entropy-coded latents of that group only)
    crc          u32      CRC-32 of group_id | body_length | body

Group ids are unique and ascending in the table; boxes lie inside the image; the group areas sum to
width x height (every pixel belongs to exactly one group); segments lie inside the payload and do not
overlap. A reader must refuse anything else with a clear error.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from ..errors import BitstreamError, ResourceLimitError

MAGIC = b"SSC"
VERSION = 1
KIND_IMAGE = 0
KIND_VIDEO = 1
PREAMBLE = struct.Struct("<3sBII")
SEGMENT_PREFIX = struct.Struct("<HI")
SEGMENT_OVERHEAD = SEGMENT_PREFIX.size + 4
QUALITY_SCALE = 256
#: Refuse declared images larger than this many pixels unless the caller raises the limit.
DEFAULT_MAX_PIXELS = 1 << 26
MAX_HEADER_BYTES = 1 << 30

_GROUP_FIXED = struct.Struct("<HH")
_GROUP_TAIL = struct.Struct("<IIIIIHQI")


def crc32(data: bytes) -> int:
    """CRC-32 (ISO-HDLC polynomial, as zlib) of ``data``."""
    return zlib.crc32(data) & 0xFFFFFFFF


@dataclass(frozen=True)
class GroupEntry:
    """One row of the group table."""

    group_id: int
    class_id: int = 0
    label: str = ""
    box: tuple[int, int, int, int] = (0, 0, 0, 0)
    area: int = 0
    quality: int = 0
    seg_offset: int = 0
    seg_length: int = 0


@dataclass(frozen=True)
class StreamHeader:
    """Everything before the payload."""

    width: int
    height: int
    model_id: str
    weights_id: bytes = b"\x00" * 8
    quality: int = 0
    groups: tuple[GroupEntry, ...] = ()
    map_codec: int = 0
    map_bytes: bytes = b""
    kind: int = KIND_IMAGE
    frames: int = 1
    version: int = VERSION
    header_length: int = field(default=0, compare=False)

    @property
    def payload_offset(self) -> int:
        """Absolute offset of the payload in the stream."""
        return PREAMBLE.size + self.header_length

    def group(self, group_id: int) -> GroupEntry:
        for g in self.groups:
            if g.group_id == group_id:
                return g
        from ..errors import GroupNotFoundError

        known = ", ".join(str(g.group_id) for g in self.groups)
        raise GroupNotFoundError(f"group {group_id} is not in this stream (groups: {known})")

    @property
    def group_ids(self) -> tuple[int, ...]:
        return tuple(g.group_id for g in self.groups)


def _str8(s: str) -> bytes:
    b = s.encode("utf-8")
    if len(b) > 255:
        raise BitstreamError(f"string too long for str8 ({len(b)} bytes): {s[:40]!r}...")
    return bytes([len(b)]) + b


def _u(value: int, bits: int, what: str) -> int:
    if not 0 <= int(value) < (1 << bits):
        raise BitstreamError(f"{what}={value} does not fit in u{bits}")
    return int(value)


def _encode_header_body(h: StreamHeader) -> bytes:
    out = bytearray()
    out += struct.pack(
        "<BIIH",
        _u(h.kind, 8, "kind"),
        _u(h.width, 32, "width"),
        _u(h.height, 32, "height"),
        _u(h.frames, 16, "frames"),
    )
    out += _str8(h.model_id)
    if len(h.weights_id) != 8:
        raise BitstreamError("weights_id must be 8 bytes")
    out += h.weights_id
    out += struct.pack("<HH", _u(h.quality, 16, "quality"), _u(len(h.groups), 16, "num_groups"))
    for g in h.groups:
        out += _GROUP_FIXED.pack(_u(g.group_id, 16, "group_id"), _u(g.class_id, 16, "class_id"))
        out += _str8(g.label)
        x0, y0, x1, y1 = g.box
        out += _GROUP_TAIL.pack(
            _u(x0, 32, "x0"), _u(y0, 32, "y0"), _u(x1, 32, "x1"), _u(y1, 32, "y1"),
            _u(g.area, 32, "area"), _u(g.quality, 16, "quality"),
            _u(g.seg_offset, 64, "seg_offset"), _u(g.seg_length, 32, "seg_length"),
        )
    out += struct.pack("<BI", _u(h.map_codec, 8, "map_codec"), _u(len(h.map_bytes), 32, "map_length"))
    out += h.map_bytes
    return bytes(out)


def pack_segment(group_id: int, body: bytes) -> bytes:
    """Frame one group's entropy-coded body as a length-prefixed, CRC-checked segment."""
    prefix = SEGMENT_PREFIX.pack(_u(group_id, 16, "group_id"), _u(len(body), 32, "body_length"))
    return prefix + body + struct.pack("<I", crc32(prefix + body))


def unpack_segment(segment: bytes, expected_group: int) -> bytes:
    """Check a framed segment and return its body. Raises CorruptSegmentError for that group only."""
    from ..errors import CorruptSegmentError

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


def build_stream(header: StreamHeader, bodies: dict[int, bytes]) -> bytes:
    """Assemble a complete stream. ``bodies`` maps group id -> entropy-coded body; segment offsets and
    lengths in the table are filled in here, in ascending group-id order."""
    ids = [g.group_id for g in header.groups]
    if ids != sorted(set(ids)):
        raise BitstreamError(f"group ids must be unique and ascending, got {ids}")
    if set(bodies) != set(ids):
        raise BitstreamError(f"segments {sorted(bodies)} do not match group table {ids}")
    segments = [pack_segment(gid, bodies[gid]) for gid in ids]
    offset = 0
    groups = []
    for g, seg in zip(header.groups, segments):
        groups.append(GroupEntry(g.group_id, g.class_id, g.label, tuple(g.box), g.area, g.quality, offset, len(seg)))
        offset += len(seg)
    full = StreamHeader(
        width=header.width, height=header.height, model_id=header.model_id, weights_id=header.weights_id,
        quality=header.quality, groups=tuple(groups), map_codec=header.map_codec, map_bytes=header.map_bytes,
        kind=header.kind, frames=header.frames,
    )
    _validate(full, payload_length=offset)
    body = _encode_header_body(full)
    return PREAMBLE.pack(MAGIC, VERSION, len(body), crc32(body)) + body + b"".join(segments)


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise BitstreamError(f"header truncated while reading {what}")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def unpack(self, st: struct.Struct | str, what: str) -> tuple:
        st = struct.Struct(st) if isinstance(st, str) else st
        return st.unpack(self.take(st.size, what))

    def str8(self, what: str) -> str:
        (n,) = self.unpack("<B", what)
        raw = self.take(n, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BitstreamError(f"{what} is not valid UTF-8") from e


def parse_preamble(data: bytes) -> tuple[int, int]:
    """Check magic and version; return (header_length, header_crc)."""
    if len(data) < PREAMBLE.size:
        raise BitstreamError(f"not an ssc stream: {len(data)} bytes is shorter than the {PREAMBLE.size}-byte preamble")
    magic, version, hlen, hcrc = PREAMBLE.unpack_from(data, 0)
    if magic != MAGIC:
        raise BitstreamError(f"not an ssc stream (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise BitstreamError(f"unsupported ssc bitstream version {version} (this reader knows {VERSION})")
    if hlen > MAX_HEADER_BYTES:
        raise BitstreamError(f"header length {hlen} exceeds the {MAX_HEADER_BYTES}-byte limit")
    return hlen, hcrc


def parse_header(
    data: bytes, *, payload_length: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> StreamHeader:
    """Parse and validate the preamble and header body. ``data`` must hold at least the header (the
    payload may be absent). When ``payload_length`` is known (whole stream or file size), segment
    bounds are checked against it. Declared sizes above ``max_pixels`` are refused before any
    allocation."""
    hlen, hcrc = parse_preamble(data)
    if len(data) < PREAMBLE.size + hlen:
        raise BitstreamError(f"stream truncated inside the header ({len(data)} of {PREAMBLE.size + hlen} bytes)")
    body = bytes(data[PREAMBLE.size : PREAMBLE.size + hlen])
    if crc32(body) != hcrc:
        raise BitstreamError("header CRC-32 mismatch (header corrupted)")
    c = _Cursor(body)
    kind, width, height, frames = c.unpack("<BIIH", "image size")
    if kind not in (KIND_IMAGE, KIND_VIDEO):
        raise BitstreamError(f"unknown stream kind {kind}")
    if width == 0 or height == 0:
        raise BitstreamError(f"invalid image size {width}x{height}")
    if width * height > max_pixels:
        raise ResourceLimitError(f"declared size {width}x{height} exceeds the limit of {max_pixels} pixels")
    model_id = c.str8("model_id")
    weights_id = c.take(8, "weights_id")
    quality, n = c.unpack("<HH", "group count")
    groups = []
    for i in range(n):
        gid, cls = c.unpack(_GROUP_FIXED, f"group entry {i}")
        label = c.str8(f"label of group {gid}")
        x0, y0, x1, y1, area, gq, off, slen = c.unpack(_GROUP_TAIL, f"group entry {gid}")
        groups.append(GroupEntry(gid, cls, label, (x0, y0, x1, y1), area, gq, off, slen))
    map_codec, map_len = c.unpack("<BI", "group map")
    map_bytes = c.take(map_len, "group map")
    if c.pos != len(body):
        raise BitstreamError(f"{len(body) - c.pos} unexpected bytes at the end of the header")
    h = StreamHeader(
        width=width, height=height, model_id=model_id, weights_id=weights_id, quality=quality,
        groups=tuple(groups), map_codec=map_codec, map_bytes=map_bytes, kind=kind, frames=frames,
        header_length=hlen,
    )
    _validate(h, payload_length)
    return h


def _validate(h: StreamHeader, payload_length: int | None) -> None:
    ids = [g.group_id for g in h.groups]
    if ids != sorted(set(ids)):
        raise BitstreamError(f"group ids must be unique and ascending, got {ids[:20]}")
    spans = []
    for g in h.groups:
        x0, y0, x1, y1 = g.box
        if not (x0 < x1 <= h.width and y0 < y1 <= h.height):
            raise BitstreamError(f"group {g.group_id}: box {g.box} is empty or outside {h.width}x{h.height}")
        if not 0 < g.area <= (x1 - x0) * (y1 - y0):
            raise BitstreamError(f"group {g.group_id}: area {g.area} inconsistent with its box")
        if g.seg_length < SEGMENT_OVERHEAD:
            raise BitstreamError(f"group {g.group_id}: segment length {g.seg_length} too small")
        if payload_length is not None and g.seg_offset + g.seg_length > payload_length:
            raise BitstreamError(
                f"group {g.group_id}: segment [{g.seg_offset}, {g.seg_offset + g.seg_length}) lies beyond "
                f"the payload ({payload_length} bytes)"
            )
        spans.append((g.seg_offset, g.seg_offset + g.seg_length, g.group_id))
    total_area = sum(g.area for g in h.groups)
    if h.groups and total_area != h.width * h.height:
        raise BitstreamError(f"group areas sum to {total_area}, not {h.width}x{h.height} = {h.width * h.height} pixels")
    spans.sort()
    for (_, a1, ga), (b0, _, gb) in zip(spans, spans[1:]):
        if b0 < a1:
            raise BitstreamError(f"segments of groups {ga} and {gb} overlap")
