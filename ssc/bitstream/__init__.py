"""The ssc container: one header (with group table and lossless group map) plus one CRC-checked
segment per group. The whole specification lives in :mod:`ssc.bitstream.format`."""
from .format import (
    MAGIC,
    VERSION,
    GroupEntry,
    StreamHeader,
    build_stream,
    parse_header,
)
from .groupmap import decode_group_map, encode_group_map
from .reader import StreamReader

__all__ = [
    "MAGIC",
    "VERSION",
    "GroupEntry",
    "StreamHeader",
    "StreamReader",
    "build_stream",
    "decode_group_map",
    "encode_group_map",
    "parse_header",
]
