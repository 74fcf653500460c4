"""Read-only support for version-1 streams (written by ssc before bitstream version 2). The layout is
kept here so that old files still decode; docs/bitstream.md describes it under "Version 1" and the
golden file tests/golden/v1_three_groups.ssc pins it. Nothing writes version 1 any more.

The preamble is version 2's (:mod:`ssc.bitstream.format`) with version byte 1; segments and their
bodies are identical. Only the header body differs:

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

Payload: the segments, framed as in version 2, at the offsets the table gives.

Group ids are unique and ascending in the table; boxes lie inside the image; the group areas sum to
width x height (every pixel belongs to exactly one group); segments lie inside the payload and do not
overlap. A reader must refuse anything else with a clear error.
"""
from __future__ import annotations

import struct

from ..errors import BitstreamError
from .format import LEGACY_PARSERS, GroupEntry, StreamHeader, check_size, validate_groups
from .wire import Cursor

_GROUP_FIXED = struct.Struct("<HH")
_GROUP_TAIL = struct.Struct("<IIIIIHQI")


def parse_header_body_v1(body: bytes, *, stream_length: int | None, max_pixels: int) -> StreamHeader:
    """Parse a CRC-checked version-1 header body (see the module docstring)."""
    c = Cursor(body)
    kind, width, height, frames = c.unpack("<BIIH", "image size")
    check_size(kind, width, height, max_pixels)
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
        groups=tuple(groups), mask_codec=0, kind=kind, frames=frames, version=1, header_length=len(body),
        legacy_map=(map_codec, map_bytes),
    )
    validate_groups(h)
    payload_length = None if stream_length is None else stream_length - h.payload_offset
    spans = []
    for g in h.groups:
        if payload_length is not None and g.seg_offset + g.seg_length > payload_length:
            raise BitstreamError(
                f"group {g.group_id}: segment [{g.seg_offset}, {g.seg_offset + g.seg_length}) lies beyond "
                f"the payload ({payload_length} bytes)"
            )
        spans.append((g.seg_offset, g.seg_offset + g.seg_length, g.group_id))
    spans.sort()
    for (_, a1, ga), (b0, _, gb) in zip(spans, spans[1:]):
        if b0 < a1:
            raise BitstreamError(f"segments of groups {ga} and {gb} overlap")
    return h


LEGACY_PARSERS[1] = parse_header_body_v1
