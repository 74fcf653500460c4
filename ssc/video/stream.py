"""Random-access reading of SSVC (``.ssv``) streams: header, frame headers, per-track records.

Reads lazily from a file (or bytes) and counts what it read, so partial decoding can show that one
track's decode touches only that track's records plus the frame headers. The frame index comes from
the trailer, or from a scan of the frame headers when the stream has none (cut short).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO, Iterable

from ..bitstream.format import unpack_mask, unpack_segment
from ..bitstream.wire import Cursor
from ..errors import BitstreamError, FrameRangeError
from . import format as vf


class VideoReader:
    def __init__(self, source: str | Path | bytes | BinaryIO) -> None:
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._f: BinaryIO = io.BytesIO(bytes(source))
            self._own = True
        elif isinstance(source, (str, Path)):
            p = Path(source)
            if not p.is_file():
                raise FileNotFoundError(f"video stream not found: {p}")
            self._f, self._own = open(p, "rb"), True
        else:
            self._f, self._own = source, False
        self._f.seek(0, io.SEEK_END)
        self.size = self._f.tell()
        self.bytes_read = 0
        pre = self.read(0, vf.PREAMBLE.size)
        n = vf.parse_preamble(pre)
        self.header = vf.parse_header(pre, self.read(vf.PREAMBLE.size, n))
        self.frames_offset = vf.PREAMBLE.size + n
        self.scan_error: str | None = None
        self._cache: dict[int, vf.FrameHeader] = {}
        self.index = self._load_index()

    # -------------------------------------------------------------- plumbing
    def read(self, offset: int, n: int) -> bytes:
        self._f.seek(offset)
        b = self._f.read(n)
        self.bytes_read += len(b)
        return b

    def close(self) -> None:
        if self._own:
            self._f.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _frame_at(self, offset: int) -> vf.FrameHeader:
        head = self.read(offset, 14)  # sync word + the longest fh_len varint
        c = Cursor(head[4:])
        try:
            n = c.varint("frame header length")
        except BitstreamError as e:
            raise BitstreamError(f"frame at offset {offset}: {e}") from e
        if n > vf.MAX_HEADER:
            raise BitstreamError(f"frame header at offset {offset} declares {n} bytes")
        data = head + self.read(offset + len(head), max(0, 4 + c.pos + n + 4 - len(head)))
        return _shift(vf.parse_frame_header(data, 0, self.header), offset)

    def _load_index(self) -> vf.Index:
        tail_at = self.size - vf.TRAILER.size
        if tail_at > self.frames_offset:
            off = vf.parse_trailer(self.read(tail_at, vf.TRAILER.size))
            if off is not None and self.frames_offset <= off < tail_at:
                try:
                    idx = vf.parse_index(self.read(off, tail_at - off))
                    self._end = off
                    return idx
                except BitstreamError as e:
                    self.scan_error = f"index unreadable ({e}); rebuilt by scanning"
        self._end = self.size
        return self._scan()

    def _scan(self) -> vf.Index:
        """Rebuild the index from the frame headers (a stream without trailer: a recording cut short)."""
        idx, pos = vf.Index(), self.frames_offset
        while pos < self._end:
            try:
                fh = self._frame_at(pos)
                if fh.number != len(idx.offsets):
                    raise BitstreamError(f"frame number {fh.number} where {len(idx.offsets)} was expected")
                if pos + fh.length > self._end:
                    raise BitstreamError(f"frame {fh.number} truncated")
            except BitstreamError as e:
                self.scan_error = f"stream ends in a damaged or incomplete frame at offset {pos} ({e}); {len(idx.offsets)} frames readable"
                break
            self._cache[pos] = fh
            idx.add_frame(pos, fh.number, fh.entries)
            pos += fh.length
        return idx

    # -------------------------------------------------------------- API
    @property
    def frames_end(self) -> int:
        """Stream offset where the frames end (the index, or the end of a stream without one)."""
        return self._end

    @property
    def num_frames(self) -> int:
        return len(self.index.offsets)

    def frame(self, i: int) -> vf.FrameHeader:
        if not 0 <= i < self.num_frames:
            raise FrameRangeError(f"frame {i} outside the stream's [0, {self.num_frames})")
        off = self.index.offsets[i]
        fh = self._cache.get(off)
        if fh is None:
            fh = self._frame_at(off)
            if fh.number != i:
                raise BitstreamError(f"index points frame {i} at a frame numbered {fh.number}")
            self._cache[off] = fh
        return fh

    def intra_start(self, i: int) -> int:
        """The nearest I-frame at or before frame i (where decoding of all tracks must start)."""
        return self.random_access(i)

    def random_access(self, i: int, tracks: Iterable[int] | None = None) -> int:
        """The latest frame at or before frame i from which ``tracks`` (all by default) decode: every
        entry of theirs in it is intra (a track absent there comes back intra), and, when the complement
        track is among them, no entry reuses its previous mask (the complement needs every mask). Object
        tracks start at their own I entries even where the background is a P entry."""
        chosen = None if tracks is None else set(tracks)
        comp = self.header.complement_track
        for j in range(i, -1, -1):
            if self.index.intra[j]:
                return j
            if chosen is None:
                continue
            entries = self.frame(j).entries
            if all(e.intra for e in entries if e.track_id in chosen) and (
                    comp not in chosen or not any(e.same_mask for e in entries)):
                return j
        raise BitstreamError(f"no I-frame at or before frame {i}")

    def mask_bytes(self, fh: vf.FrameHeader, e: vf.Entry) -> bytes:
        m_off, _ = fh.record_offsets(e.track_id)
        return unpack_mask(self.read(m_off, e.mask_len), e.track_id)

    def segment(self, fh: vf.FrameHeader, e: vf.Entry) -> bytes:
        _, s_off = fh.record_offsets(e.track_id)
        return unpack_segment(self.read(s_off, e.seg_len), e.track_id)


def _shift(fh: vf.FrameHeader, offset: int) -> vf.FrameHeader:
    fh.records_offset += offset
    fh.offset = offset
    return fh
