"""The wire primitives of the ssc container, torch-free: CRC-32, unsigned LEB128 varints, str8
strings, range-checked unsigned fields and the bounds-checked :class:`Cursor` that parsers read with.
The stream layouts built from them are specified in :mod:`ssc.bitstream.format`."""
from __future__ import annotations

import binascii
import struct
import zlib

from ..errors import BitstreamError

_VARINT_MAX_BYTES = 10


def crc32(data: bytes) -> int:
    """CRC-32 (ISO-HDLC polynomial, as zlib) of ``data``."""
    return zlib.crc32(data) & 0xFFFFFFFF


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection) of ``data``."""
    return binascii.crc_hqx(data, 0xFFFF)


def varint(value: int, what: str = "value") -> bytes:
    """Unsigned LEB128 encoding of ``value`` (< 2**64)."""
    value = int(value)
    if not 0 <= value < (1 << 64):
        raise BitstreamError(f"{what}={value} does not fit in a varint")
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(value: int) -> int:
    """A signed integer as the unsigned one a varint stores (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...)."""
    return 2 * value if value >= 0 else -2 * value - 1


def unzigzag(u: int) -> int:
    """Inverse of :func:`zigzag`."""
    return u >> 1 if u % 2 == 0 else -((u + 1) >> 1)


def str8(s: str) -> bytes:
    b = s.encode("utf-8")
    if len(b) > 255:
        raise BitstreamError(f"string too long for str8 ({len(b)} bytes): {s[:40]!r}...")
    return bytes([len(b)]) + b


def uint(value: int, bits: int, what: str) -> int:
    if not 0 <= int(value) < (1 << bits):
        raise BitstreamError(f"{what}={value} does not fit in u{bits}")
    return int(value)


class Cursor:
    """Bounds-checked reads from a header body."""

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

    def varint(self, what: str) -> int:
        value = 0
        for i in range(_VARINT_MAX_BYTES):
            (b,) = self.take(1, what)
            value |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if b == 0 and i > 0:
                    raise BitstreamError(f"{what}: varint has a redundant zero byte")
                if value >= 1 << 64:
                    raise BitstreamError(f"{what}: varint exceeds 64 bits")
                return value
        raise BitstreamError(f"{what}: varint longer than {_VARINT_MAX_BYTES} bytes")
