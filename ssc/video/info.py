"""What an SSVC stream holds, read from its header and index without decoding any frame."""
from __future__ import annotations


def video_info(path: str) -> dict:
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
        }
