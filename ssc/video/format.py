"""The SSVC container (``.ssv``), version 3: semantically structured video. This module is its single
specification (the inner codecs' body syntax is :mod:`ssc.video.texture`'s and :mod:`ssc.video.hevc`'s);
docs/video.md is the prose version and tests/golden/video_texture*.bin pin the texture layer's bytes.
Version 3 added the header's ``inner`` codec (version 2 streams are ``learned``); version 2 changed only
the P layers' motion-vector syntax (median prediction); readers take 1, 2 and 3.

A video is a sequence of frames; every frame holds one entry per *track* (a group that persists over
time with a stable id: an object, a person, the background). Each entry has its own CRC-checked mask
record and CRC-checked segment, so a reader can follow one track through time reading only that
track's bytes plus the small frame headers (SSVC; Feng et al., ICCV 2023 for the per-group coding).
Entries are intra (the image codec's latents of the group plus a refinement layer) or inter (motion
and residual against that track's own previous reconstruction, :mod:`ssc.video.texture`). A frame whose
entries are all intra is an I-frame: decoding may start there. The stream is written front to back in
one pass (bounded memory); an index at the end makes random access O(1) and is rebuilt by scanning
when it is missing (a recording cut short).

Integers are little-endian, ``varint``/``str8`` as in :mod:`ssc.bitstream.format`.

Stream::

    preamble     magic b"SSV" | version u8 (2; 1 is read too) | header_len u32 | header_crc u32 (CRC-32 of the body)
    header body  width varint | height varint | fps_num varint | fps_den varint
                 | model_id str8 | weights_id 8 bytes (the intra image codec, as in image streams)
                 | gop varint (intended I-frame period, informative) | complement_track varint
                   (0 = none, else track id + 1: the track whose mask is the complement of the others)
                 | inner u8 (version 3): the tracks' inner codec, 0 = learned (below), 1 = hevc
                   (:mod:`ssc.video.hevc`: an HEVC access unit per entry, intra entries IDR pictures;
                   model_id is then empty and weights_id zero)
    frames       frame*
    index        (optional) see below
    trailer      (present iff the index is) magic b"SSVX" | index_offset u64 | crc u32 of the previous 12 bytes

Frame::

    sync         b"SSVF"
    fh_len       varint   length of the frame header body
    fh body      frame_number varint | num_entries varint | entry*
    fh_crc       u32      CRC-32 of the frame header body
    records      for each entry in order: its mask record (mask_len bytes) then its segment (seg_len bytes)

Entry (in ascending track id)::

    track_id     varint
    flags        u8       bit0 intra, bit1 first appearance (class and label follow),
                          bit2 mask unchanged (same box and mask as the track's previous entry; mask_len 0)
    [class_id varint | label str8]     when bit1
    x0, y0, w, h varint   the track's box in this frame
    area         varint
    mask_len     varint   0 for the complement track and for bit2
    seg_len      varint   the segment: track_id u16 | body_length u32 | body | crc u32 (as image segments)

Learned intra body: ``quality varint (1/256 steps) | base_len varint | base (image-codec body of the
group's crop, :mod:`ssc.models.codec`) | refinement layer``; inter body: one texture layer (see
:mod:`ssc.video.texture` for both layers' syntax). HEVC bodies: :mod:`ssc.video.hevc`.

Index: ``num_frames varint | per frame: offset delta varint (from the previous frame's offset; the
first from 0), intra u8 | num_tracks varint | per track: id varint, class_id varint, label str8, first
frame varint, last frame varint, bytes varint | crc u32`` of all of it.

Frame numbers start at 0 and increase by one. A reader refuses anything else with a clear error; a
corrupt mask or segment fails only its own track until that track's next intra entry.
"""
from __future__ import annotations

import struct
from pathlib import Path
from dataclasses import dataclass, field

from ..bitstream.wire import Cursor, crc32, str8, varint
from ..errors import BitstreamError

MAGIC = b"SSV"
VERSION = 3
#: versions this reader decodes (the texture layer is told which)
READABLE = (1, 2, 3)
#: the inner codecs of a stream's tracks, by their header code
INNER_CODECS = ("learned", "hevc")
PREAMBLE = struct.Struct("<3sBII")
FRAME_SYNC = b"SSVF"
TRAILER = struct.Struct("<4sQI")
TRAILER_MAGIC = b"SSVX"
F_INTRA, F_NEW, F_SAME_MASK = 1, 2, 4
MAX_HEADER = 1 << 20


@dataclass(frozen=True)
class VideoHeader:
    width: int
    height: int
    fps_num: int
    fps_den: int
    model_id: str
    weights_id: bytes
    gop: int
    complement_track: int | None  # track id, or None
    version: int = VERSION  # of the container that holds it (writers write VERSION)
    inner: str = "learned"  # the tracks' inner codec (INNER_CODECS)

    @property
    def fps(self) -> float:
        return self.fps_num / self.fps_den


@dataclass(frozen=True)
class Entry:
    track_id: int
    intra: bool
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    area: int
    mask_len: int
    seg_len: int
    same_mask: bool = False
    new: bool = False
    class_id: int = 0
    label: str = ""


@dataclass
class FrameHeader:
    number: int
    entries: tuple[Entry, ...]
    offset: int = 0  # stream offset of the frame's sync word
    records_offset: int = 0  # stream offset of its first record

    @property
    def intra(self) -> bool:
        return all(e.intra for e in self.entries)

    @property
    def length(self) -> int:
        return self.records_offset - self.offset + sum(e.mask_len + e.seg_len for e in self.entries)

    def entry(self, track_id: int) -> Entry | None:
        for e in self.entries:
            if e.track_id == track_id:
                return e
        return None

    def record_offsets(self, track_id: int) -> tuple[int, int]:
        """Stream offsets of a track's mask record and segment in this frame."""
        pos = self.records_offset
        for e in self.entries:
            if e.track_id == track_id:
                return pos, pos + e.mask_len
            pos += e.mask_len + e.seg_len
        raise KeyError(track_id)


@dataclass(frozen=True)
class TrackInfo:
    track_id: int
    class_id: int
    label: str
    first: int
    last: int
    bytes: int


@dataclass
class Index:
    offsets: list[int] = field(default_factory=list)
    intra: list[bool] = field(default_factory=list)
    tracks: dict[int, TrackInfo] = field(default_factory=dict)

    def add_frame(self, offset: int, number: int, entries: tuple[Entry, ...] | list[Entry]) -> None:
        """Record frame ``number`` at ``offset``: its I-frame flag and its entries' track spans and bytes
        (the writer as it writes, the reader when it rebuilds a missing index)."""
        self.offsets.append(offset)
        self.intra.append(all(e.intra for e in entries))
        for e in entries:
            t = self.tracks.get(e.track_id)
            size = e.mask_len + e.seg_len
            self.tracks[e.track_id] = TrackInfo(e.track_id, e.class_id, e.label, number, number, size) if t is None \
                else TrackInfo(t.track_id, t.class_id, t.label, t.first, number, t.bytes + size)


# ------------------------------------------------------------------ writing
def encode_header(h: VideoHeader) -> bytes:
    if len(h.weights_id) != 8:
        raise BitstreamError("weights_id must be 8 bytes")
    body = (varint(h.width, "width") + varint(h.height, "height") + varint(h.fps_num, "fps_num")
            + varint(h.fps_den, "fps_den") + str8(h.model_id) + h.weights_id + varint(h.gop, "gop")
            + varint(0 if h.complement_track is None else h.complement_track + 1, "complement_track")
            + bytes([INNER_CODECS.index(h.inner)]))
    return PREAMBLE.pack(MAGIC, VERSION, len(body), crc32(body)) + body


def encode_frame(number: int, entries: list[Entry], records: list[tuple[bytes, bytes]]) -> bytes:
    """A whole frame: sync, CRC'd frame header, then each entry's (mask record, segment)."""
    fh = bytearray(varint(number, "frame_number") + varint(len(entries), "num_entries"))
    for e, (m, s) in zip(entries, records):
        if e.mask_len != len(m) or e.seg_len != len(s):
            raise BitstreamError(f"track {e.track_id}: entry lengths do not match its records")
        x0, y0, x1, y1 = e.box
        flags = (F_INTRA if e.intra else 0) | (F_NEW if e.new else 0) | (F_SAME_MASK if e.same_mask else 0)
        fh += varint(e.track_id, "track_id") + bytes([flags])
        if e.new:
            fh += varint(e.class_id, "class_id") + str8(e.label)
        for v in (x0, y0, x1 - x0, y1 - y0, e.area, e.mask_len, e.seg_len):
            fh += varint(v, "entry field")
    return FRAME_SYNC + varint(len(fh), "fh_len") + bytes(fh) + struct.pack("<I", crc32(bytes(fh))) + b"".join(m + s for m, s in records)


def encode_index(idx: Index) -> bytes:
    out = bytearray(varint(len(idx.offsets), "num_frames"))
    prev = 0
    for off, intra in zip(idx.offsets, idx.intra):
        out += varint(off - prev, "offset delta") + bytes([int(intra)])
        prev = off
    out += varint(len(idx.tracks), "num_tracks")
    for t in sorted(idx.tracks.values(), key=lambda t: t.track_id):
        out += (varint(t.track_id, "track") + varint(t.class_id, "class") + str8(t.label)
                + varint(t.first, "first") + varint(t.last, "last") + varint(t.bytes, "bytes"))
    return bytes(out) + struct.pack("<I", crc32(bytes(out)))


def encode_trailer(index_offset: int) -> bytes:
    head = struct.pack("<4sQ", TRAILER_MAGIC, index_offset)
    return head + struct.pack("<I", crc32(head))


# ------------------------------------------------------------------ reading
def is_video_file(path: str | Path) -> bool:
    """Whether the file at ``path`` starts like an ssc video stream (``.ssv``) rather than an image one."""
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def parse_preamble(data: bytes) -> int:
    """Header body length from the 12-byte preamble."""
    if len(data) < PREAMBLE.size:
        raise BitstreamError("not an ssc video stream (too short)")
    magic, ver, n, _ = PREAMBLE.unpack_from(data)
    if magic != MAGIC:
        raise BitstreamError("not an ssc video stream (bad magic)")
    if ver not in READABLE:
        raise BitstreamError(f"unsupported ssc video version {ver} (this reader: {', '.join(map(str, READABLE))})")
    if n > MAX_HEADER:
        raise BitstreamError(f"video header length {n} exceeds the limit")
    return n


def parse_header(pre: bytes, body: bytes) -> VideoHeader:
    _, ver, n, crc = PREAMBLE.unpack_from(pre)
    if len(body) != n:
        raise BitstreamError("video header truncated")
    if crc32(body) != crc:
        raise BitstreamError("video header CRC-32 mismatch (header corrupted)")
    c = Cursor(body)
    w, h, fn, fd = (c.varint(k) for k in ("width", "height", "fps_num", "fps_den"))
    model, wid, gop, comp = c.str8("model_id"), c.take(8, "weights_id"), c.varint("gop"), c.varint("complement_track")
    inner = c.unpack("<B", "inner codec")[0] if ver >= 3 else 0
    if inner >= len(INNER_CODECS):
        raise BitstreamError(f"unknown inner codec {inner}")
    if c.pos != len(body):
        raise BitstreamError("video header has trailing bytes")
    if not (0 < w <= 1 << 16 and 0 < h <= 1 << 16):
        raise BitstreamError(f"frame size {w}x{h} out of range")
    if fn == 0 or fd == 0:
        raise BitstreamError("frame rate must be positive")
    return VideoHeader(w, h, fn, fd, model, wid, gop, None if comp == 0 else comp - 1, ver, INNER_CODECS[inner])


def parse_frame_header(data: bytes, offset: int, header: VideoHeader) -> FrameHeader:
    """Parse the frame starting at ``offset`` of ``data`` (which must hold at least its header)."""
    if data[offset : offset + 4] != FRAME_SYNC:
        raise BitstreamError(f"no frame sync word at offset {offset}")
    c = Cursor(data[offset + 4 : offset + 4 + 10])
    n = c.varint("frame header length")
    start = offset + 4 + c.pos
    body = data[start : start + n]
    crc = data[start + n : start + n + 4]
    if len(body) != n or len(crc) != 4:
        raise BitstreamError(f"frame header at offset {offset} truncated")
    if struct.unpack("<I", crc)[0] != crc32(body):
        raise BitstreamError(f"frame header at offset {offset}: CRC-32 mismatch (corrupted)")
    c = Cursor(body)
    number, count = c.varint("frame_number"), c.varint("num_entries")
    if count > 0xFFFF:
        raise BitstreamError("too many entries in a frame")
    entries, prev = [], -1
    for _ in range(count):
        tid, (flags,) = c.varint("track_id"), c.unpack("<B", "flags")
        if tid <= prev or tid > 0xFFFF:
            raise BitstreamError(f"frame {number}: track ids must be unique, ascending and <= 65535")
        prev = tid
        if flags & ~(F_INTRA | F_NEW | F_SAME_MASK):
            raise BitstreamError(f"frame {number}: unknown entry flags {flags:#x}")
        cls, label = (c.varint("class_id"), c.str8("label")) if flags & F_NEW else (0, "")
        x0, y0, w, h, area, ml, sl = (c.varint("entry field") for _ in range(7))
        if w < 1 or h < 1 or x0 + w > header.width or y0 + h > header.height or not 0 < area <= w * h:
            raise BitstreamError(f"frame {number}, track {tid}: box or area out of range")
        comp = tid == header.complement_track
        if (ml == 0) != (comp or bool(flags & F_SAME_MASK)) or (comp and flags & F_SAME_MASK):
            raise BitstreamError(f"frame {number}, track {tid}: inconsistent mask length")
        if flags & F_SAME_MASK and flags & F_NEW:
            raise BitstreamError(f"frame {number}, track {tid}: a new track cannot reuse a mask")
        entries.append(Entry(tid, bool(flags & F_INTRA), (x0, y0, x0 + w, y0 + h), area, ml, sl,
                             bool(flags & F_SAME_MASK), bool(flags & F_NEW), cls, label))
    if c.pos != len(body):
        raise BitstreamError(f"frame {number}: header has trailing bytes")
    return FrameHeader(number, tuple(entries), offset, start + n + 4)


def parse_index(data: bytes) -> Index:
    if len(data) < 4 or struct.unpack("<I", data[-4:])[0] != crc32(data[:-4]):
        raise BitstreamError("video index CRC-32 mismatch")
    c, idx, off = Cursor(data[:-4]), Index(), 0
    for _ in range(c.varint("num_frames")):
        off += c.varint("offset delta")
        idx.offsets.append(off)
        idx.intra.append(bool(c.unpack("<B", "intra")[0]))
    for _ in range(c.varint("num_tracks")):
        t = TrackInfo(c.varint("track"), c.varint("class"), c.str8("label"), c.varint("first"), c.varint("last"), c.varint("bytes"))
        idx.tracks[t.track_id] = t
    if c.pos != len(data) - 4:
        raise BitstreamError("video index has trailing bytes")
    return idx


def parse_trailer(data: bytes) -> int | None:
    """Index offset from the last TRAILER.size bytes, or None when there is no valid trailer."""
    if len(data) != TRAILER.size:
        return None
    magic, off, crc = TRAILER.unpack(data)
    if magic != TRAILER_MAGIC or crc != crc32(data[:12]):
        return None
    return off
