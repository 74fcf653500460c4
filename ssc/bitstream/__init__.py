"""The ssc container: a compact header (group table), one CRC-checked mask record and one
CRC-checked segment per group. The whole specification lives in :mod:`ssc.bitstream.format`."""
from .format import (
    MAGIC,
    VERSION,
    GroupEntry,
    StreamHeader,
    build_stream,
    choose_complement,
    parse_header,
)
from .groupmap import decode_group_map, decode_group_mask, encode_group_map, encode_group_mask, encode_group_masks
from .reader import StreamReader
from . import v1  # noqa: F401,E402  (registers the version-1 header parser)

__all__ = [
    "MAGIC",
    "VERSION",
    "GroupEntry",
    "StreamHeader",
    "StreamReader",
    "build_stream",
    "choose_complement",
    "decode_group_map",
    "decode_group_mask",
    "encode_group_map",
    "encode_group_mask",
    "encode_group_masks",
    "parse_header",
]
