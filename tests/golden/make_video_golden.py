"""Regenerates tests/golden/video_texture_f*.bin and video_texture.json (the current syntax). Run from
the repository root, only when the texture-layer syntax changes on purpose:
``python tests/golden/make_video_golden.py``. The bodies of earlier container versions
(video_texture_v1_f*.bin) are kept as they are, with their hashes: readers must go on decoding them."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ssc.video.texture import decode_layer, encode_layer  # noqa: E402
from tests.test_video import golden_references, moving_scene  # noqa: E402

GOLD = Path(__file__).parent


def main() -> None:
    frames, maps = moving_scene()
    old = json.loads((GOLD / "video_texture.json").read_text())
    out = {"what": "texture layers of track 1 in tests/test_video.py moving_scene(), qp 24: frame 1 (one reference) "
                   "and frame 2 (two references); decoding must give these sha256 on every machine"}
    for t, (r1, r2) in golden_references(frames, maps).items():
        m, box = maps[t].labels == 1, maps[t].group(1).box
        body, _, _ = encode_layer(frames[t], m, box, 24, ref_padded=r1, ref2_padded=r2)
        dec, _ = decode_layer(body, m, box, ref_padded=r1, ref2_padded=r2)
        (GOLD / f"video_texture_f{t}.bin").write_bytes(body)
        out[f"frame{t}_sha256"] = hashlib.sha256(dec.tobytes()).hexdigest()
        out[f"frame{t}_bi_blocks"] = int(body[4] > 0)
    out["v1"] = old["v1"]  # container version 1 (video_texture_v1_f*.bin): the same scene, never regenerated
    (GOLD / "video_texture.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
