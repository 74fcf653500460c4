"""What an SSVC stream holds, read from its header and index without decoding any frame."""
from __future__ import annotations


def video_info(path: str, budget: bool = False) -> dict:
    """The header, frame count, key frames and track table; with ``budget`` also ``byte_budget``
    (:func:`byte_budget`), read in the same pass over the file."""
    from .stream import VideoReader

    with VideoReader(path) as rd:
        h = rd.header
        return {
            "kind": "video", "version": h.version, "width": h.width, "height": h.height, "fps": h.fps, "frames": rd.num_frames,
            "inner": h.inner, "model_id": h.model_id, "weights_id": h.weights_id.hex(), "gop": h.gop,
            "complement_track": h.complement_track, "total_bytes": rd.size,
            "i_frames": [i for i, v in enumerate(rd.index.intra) if v], "index": "trailer" if rd.scan_error is None else rd.scan_error,
            "tracks": [{"id": t.track_id, "class_id": t.class_id, "label": t.label, "first": t.first, "last": t.last,
                        "bytes": t.bytes} for t in sorted(rd.index.tracks.values(), key=lambda t: t.track_id)],
            **({"byte_budget": _budget(rd)} if budget else {}),
        }


#: the parts of :func:`byte_budget`, in the order they are reported
BUDGET_PARTS = ("stream header", "frame headers", "mask records", "segment framing", "complement intra", "complement inter",
                "objects intra", "objects inter", "index and trailer")


def byte_budget(path) -> dict[str, int]:
    """Where a stream's bytes go, read from its frame headers (no segment is decoded): the preamble and
    header; the frame headers (sync word, entries, CRC); the mask records; each segment's framing
    (track id, length and CRC-32, :data:`ssc.bitstream.format.SEGMENT_OVERHEAD`); the bodies of the
    complement (background) track's intra and inter entries and of the object tracks'; the index and
    trailer (in a stream cut short: the partial frame after the last whole one). The parts sum to the
    stream's size."""
    from .stream import VideoReader

    with VideoReader(path) as rd:
        return _budget(rd)


def _budget(rd) -> dict[str, int]:
    """:func:`byte_budget` of an open :class:`~ssc.video.stream.VideoReader`."""
    from ..bitstream.format import SEGMENT_OVERHEAD

    out = dict.fromkeys(BUDGET_PARTS, 0)
    comp = rd.header.complement_track
    out["stream header"] = rd.frames_offset
    end = rd.frames_offset
    for i in range(rd.num_frames):
        fh = rd.frame(i)
        out["frame headers"] += fh.records_offset - fh.offset
        end = fh.offset + fh.length
        for e in fh.entries:
            out["mask records"] += e.mask_len
            framing = min(e.seg_len, SEGMENT_OVERHEAD)
            out["segment framing"] += framing
            kind = "complement" if e.track_id == comp else "objects"
            out[f"{kind} {'intra' if e.intra else 'inter'}"] += e.seg_len - framing
    out["index and trailer"] = rd.size - end
    return out
