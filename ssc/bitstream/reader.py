"""Random-access reader. Decoding group g reads the preamble, the header, g's mask record and g's
segment only (the complement group also reads the other mask records); ``bytes_read`` counts what
was actually read, for partial-decode accounting."""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import BitstreamError, CorruptSegmentError
from .format import (DEFAULT_MAX_PIXELS, PREAMBLE, GroupEntry, StreamHeader, parse_header,
                     parse_preamble, split_exact, unframe_mask, unframe_segment)
from .groupmap import cell_box, cells_to_pixels, decode_group_map, decode_group_mask


class StreamReader:
    """Open an ssc stream (version 1 to 5) from bytes, a path or a seekable binary file."""

    def __init__(self, source: bytes | bytearray | str | os.PathLike | BinaryIO, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self._owned = False
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._f: BinaryIO = io.BytesIO(bytes(source))
        elif isinstance(source, (str, os.PathLike)):
            p = Path(source)
            if not p.is_file():
                raise FileNotFoundError(f"no such stream file: {p}")
            self._f = open(p, "rb")
            self._owned = True
        else:
            self._f = source
        self._f.seek(0, io.SEEK_END)
        self.total_length = self._f.tell()
        self.bytes_read = 0
        pre = self._read_at(0, min(PREAMBLE.size, self.total_length))
        _, hlen, _ = parse_preamble(pre)
        if PREAMBLE.size + hlen > self.total_length:
            raise BitstreamError(
                f"stream truncated inside the header ({self.total_length} of {PREAMBLE.size + hlen} bytes)"
            )
        head = pre + self._read_at(PREAMBLE.size, hlen)
        self.header: StreamHeader = parse_header(head, stream_length=self.total_length, max_pixels=max_pixels)
        self._masks: dict[int, np.ndarray | CorruptSegmentError] = {}
        self._exact: dict[int, bytes] = {}
        self._legacy_map: np.ndarray | None = None

    def _read_at(self, offset: int, n: int) -> bytes:
        self._f.seek(offset)
        b = self._f.read(n)
        self.bytes_read += len(b)
        if len(b) != n:
            raise BitstreamError(f"stream truncated: wanted {n} bytes at offset {offset}, got {len(b)}")
        return b

    # -- masks -------------------------------------------------------------------------------------

    def group_mask(self, group_id: int) -> np.ndarray:
        """The (h, w) boolean mask of one group on its box (x0, y0, x1, y1): its pixels, or in a
        cell-owned stream the pixels of its cells (what its segment codes). Raises
        CorruptSegmentError when the group's mask record (for the complement: any other record)
        fails its checks; other groups are unaffected."""
        g = self.header.group(group_id)
        if group_id not in self._masks:
            try:
                self._masks[group_id] = self._load_mask(g)
            except CorruptSegmentError as e:
                self._masks[group_id] = e
        m = self._masks[group_id]
        if isinstance(m, CorruptSegmentError):
            raise m
        return m

    def _load_mask(self, g: GroupEntry) -> np.ndarray:
        x0, y0, x1, y1 = g.box
        if self.header.version == 1:
            return self._legacy()[y0:y1, x0:x1] == g.group_id
        if g.is_complement:
            return self._complement_mask(g)
        record = self._read_at(self.header.masks_offset + g.mask_offset, g.mask_length)
        coded = unframe_mask(record, g.group_id, self.header.version)
        cell = self.header.cell
        if self.header.exact_masks:
            coded, self._exact[g.group_id] = split_exact(coded, g.group_id)
        try:
            if cell:
                c0, r0, c1, r1 = cell_box(g.box, cell)
                cells = decode_group_mask(coded, r1 - r0, c1 - c0, self.header.raw_masks)
                m = cells_to_pixels(cells, (y1 - y0, x1 - x0), cell)
            else:
                m = decode_group_mask(coded, y1 - y0, x1 - x0, self.header.raw_masks)
        except BitstreamError as e:
            raise CorruptSegmentError(g.group_id, f"mask does not decode ({e})") from e
        area = int(m.sum())
        if area != g.area:
            raise CorruptSegmentError(g.group_id, f"mask has {area} pixels but the table says {g.area}")
        if not (m[0].any() and m[-1].any() and m[:, 0].any() and m[:, -1].any()):
            raise CorruptSegmentError(g.group_id, f"mask does not fill its box {g.box}")
        return m

    def object_mask(self, group_id: int) -> np.ndarray | None:
        """The object's exact pixels on its object box, where a cell-owned stream carries them (None
        where it does not; elsewhere :meth:`group_mask`). The complement's are the pixels no other
        group's exact mask covers. CorruptSegmentError when a record needed fails its checks."""
        h = self.header
        if not h.cell:
            return self.group_mask(group_id)
        if not h.exact_masks:
            return None
        g = h.group(group_id)
        a0, b0, a1, b1 = g.obj_box
        if not g.is_complement:
            self.group_mask(group_id)  # reads and checks the record
            try:
                return decode_group_mask(self._exact[group_id], b1 - b0, a1 - a0, h.raw_masks)
            except BitstreamError as e:
                raise CorruptSegmentError(group_id, f"exact mask does not decode ({e})") from e
        covered = np.zeros((h.height, h.width), dtype=bool)
        for other in h.groups:
            if other.group_id != group_id:
                o0, p0, o1, p1 = other.obj_box
                covered[p0:p1, o0:o1] |= self.object_mask(other.group_id)
        return ~covered[b0:b1, a0:a1]

    def _complement_mask(self, g: GroupEntry) -> np.ndarray:
        h = self.header
        covered = np.zeros((h.height, h.width), dtype=bool)
        for other in h.groups:
            if other.group_id == g.group_id:
                continue
            try:
                m = self.group_mask(other.group_id)
            except CorruptSegmentError as e:
                raise CorruptSegmentError(g.group_id, f"needs the mask of group {other.group_id}: {e.reason}") from e
            a0, b0, a1, b1 = other.box
            region = covered[b0:b1, a0:a1]
            if (region & m).any():
                raise CorruptSegmentError(g.group_id, f"mask of group {other.group_id} overlaps another group")
            region |= m
        x0, y0, x1, y1 = g.box
        rest = ~covered
        inside = rest[y0:y1, x0:x1]
        if int(inside.sum()) != g.area or int(rest.sum()) != g.area:
            raise CorruptSegmentError(g.group_id, f"the pixels no other group covers do not match its area {g.area} and box {g.box}")
        return inside.copy()

    def _legacy(self) -> np.ndarray:
        if self._legacy_map is None:
            h = self.header
            assert h.legacy_map is not None
            m = decode_group_map(h.legacy_map[0], h.legacy_map[1], h.height, h.width, h.group_ids)
            unknown = sorted(set(np.unique(m).tolist()) - set(h.group_ids))
            if unknown:
                raise BitstreamError(f"group map holds ids {unknown[:10]} that are not in the group table")
            self._legacy_map = m
        return self._legacy_map

    @property
    def group_map(self) -> np.ndarray:
        """The complete (H, W) int32 group map (reads every mask record). Raises BitstreamError when
        any mask is corrupt."""
        if self.header.version == 1:
            return self._legacy()
        h = self.header
        out = np.full((h.height, h.width), -1, dtype=np.int32)
        for g in h.groups:
            x0, y0, x1, y1 = g.box
            out[y0:y1, x0:x1][self.group_mask(g.group_id)] = g.group_id
        if (out < 0).any():
            raise BitstreamError("group masks do not cover the image")
        return out

    # -- segments ----------------------------------------------------------------------------------

    def read_segment(self, group_id: int) -> bytes:
        """Return the checked body of one group's segment (CorruptSegmentError if it fails)."""
        g = self.header.group(group_id)
        start = self.header.payload_offset + g.seg_offset
        if start + g.seg_length > self.total_length:
            raise CorruptSegmentError(group_id, f"segment missing: the stream ends at byte {self.total_length}, "
                                                f"the segment at {start + g.seg_length}")
        return unframe_segment(self._read_at(start, g.seg_length), group_id, self.header.version)

    def close(self) -> None:
        if self._owned:
            self._f.close()

    def __enter__(self) -> "StreamReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
