"""Error types raised by ssc. Every failure mode a user can trigger maps to one of these."""
from __future__ import annotations


class SSCError(Exception):
    """Base class for all ssc errors (the CLI prints these as a one-line message)."""


class BitstreamError(SSCError):
    """The container is malformed: bad magic, unsupported version, truncated or inconsistent header."""


class CorruptSegmentError(BitstreamError):
    """One group's segment failed its CRC or length check; other groups are unaffected."""

    def __init__(self, group_id: int, reason: str) -> None:
        super().__init__(f"group {group_id}: {reason}")
        self.group_id = group_id
        self.reason = reason


class GroupNotFoundError(SSCError):
    """A requested group id or class label is not present in the stream."""


class FrameRangeError(SSCError):
    """A requested frame (range) is empty or lies outside the video stream."""


class MaskError(SSCError):
    """A group map or mask source is invalid (wrong size, bad values, unreadable)."""


class WeightsError(SSCError):
    """Model weights are missing, do not match their model card, or do not fit the architecture."""


class ResourceLimitError(SSCError):
    """A declared size exceeds the configured limit; refused before allocating."""
