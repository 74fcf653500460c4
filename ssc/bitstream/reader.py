"""Random-access reader: reading group g touches only the preamble, the header (group table and map)
and g's own segment. ``bytes_read`` counts what was actually read, for partial-decode accounting."""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import BitstreamError
from .format import DEFAULT_MAX_PIXELS, PREAMBLE, StreamHeader, parse_header, parse_preamble, unpack_segment
from .groupmap import decode_group_map


class StreamReader:
    """Open an ssc stream from bytes, a path or a seekable binary file."""

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
        hlen, _ = parse_preamble(pre)
        if PREAMBLE.size + hlen > self.total_length:
            raise BitstreamError(
                f"stream truncated inside the header ({self.total_length} of {PREAMBLE.size + hlen} bytes)"
            )
        head = pre + self._read_at(PREAMBLE.size, hlen)
        self.header: StreamHeader = parse_header(
            head, payload_length=self.total_length - PREAMBLE.size - hlen, max_pixels=max_pixels
        )
        self._map: np.ndarray | None = None

    def _read_at(self, offset: int, n: int) -> bytes:
        self._f.seek(offset)
        b = self._f.read(n)
        self.bytes_read += len(b)
        if len(b) != n:
            raise BitstreamError(f"stream truncated: wanted {n} bytes at offset {offset}, got {len(b)}")
        return b

    @property
    def group_map(self) -> np.ndarray:
        """The decoded (H, W) group map; every value is a group id of the table."""
        if self._map is None:
            h = self.header
            m = decode_group_map(h.map_codec, h.map_bytes, h.height, h.width, h.group_ids)
            present = np.unique(m)
            unknown = sorted(set(present.tolist()) - set(h.group_ids))
            if unknown:
                raise BitstreamError(f"group map holds ids {unknown[:10]} that are not in the group table")
            self._map = m
        return self._map

    def read_segment(self, group_id: int) -> bytes:
        """Return the checked body of one group's segment (CorruptSegmentError if it fails)."""
        g = self.header.group(group_id)
        seg = self._read_at(self.header.payload_offset + g.seg_offset, g.seg_length)
        return unpack_segment(seg, group_id)

    def close(self) -> None:
        if self._owned:
            self._f.close()

    def __enter__(self) -> "StreamReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
