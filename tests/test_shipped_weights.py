"""The shipped zoo weights: card/hash verification, and a golden stream that must decode to the same
quantised latents on every machine (the entropy-parameter path is exact fixed point).

Regenerate the golden files after retraining with: python -m tests.test_shipped_weights"""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ssc.api import decode_image, encode_image, read_image
from ssc.crop import box_mask_crop
from ssc.bitstream import StreamReader
from ssc.masks import apply_policy, from_coco
from ssc.models.zoo import available, load_codec

from .conftest import COCO_VAL, COCO_VAL_ANN

MODEL = "gi-hyper-ckbd-s"
GOLD = Path(__file__).parent / "golden"
STREAM = GOLD / f"{MODEL}_139_crop.ssc"
#: the same image coded by ssc 0.x in bitstream version 1: old files must keep decoding identically
STREAM_V1 = GOLD / f"{MODEL}_139_crop.v1.ssc"
EXPECT = GOLD / f"{MODEL}_139_crop.json"

pytestmark = pytest.mark.skipif(MODEL not in available(), reason="shipped weights not present")


def _latent_digests(codec, data: bytes, device: str = "cpu") -> dict[str, str]:
    rd = StreamReader(data)
    out = {}
    for g in rd.header.groups:
        m = box_mask_crop(rd.group_mask(g.group_id), g.box, torch.device(device))
        y = codec.model.decompress_latents(rd.read_segment(g.group_id), m)
        out[str(g.group_id)] = hashlib.sha256(y.cpu().numpy().tobytes()).hexdigest()
    return out


def golden_scene():
    """The COCO 139 crop (256x192) and its instance groups that the golden stream codes."""
    img = read_image(COCO_VAL / "000000000139.jpg")
    gm = apply_policy(from_coco(COCO_VAL_ANN, "000000000139.jpg"), "instance", min_area=256)
    y0, x0 = 200, 300
    crop_img = np.ascontiguousarray(img[y0 : y0 + 192, x0 : x0 + 256])
    from ssc.masks import GroupMap

    sub = GroupMap.from_labels(gm.labels[y0 : y0 + 192, x0 : x0 + 256], {g.group_id: (g.class_id, g.label) for g in gm.groups})
    return crop_img, sub


def build_golden() -> None:
    codec = load_codec(MODEL)
    crop_img, sub = golden_scene()
    enc = encode_image(crop_img, sub, codec, quality=2.0)
    STREAM.write_bytes(enc.data)
    EXPECT.write_text(json.dumps({"model": MODEL, "weights_sha256": codec.card.sha256,
                                  "latents_sha256": _latent_digests(codec, enc.data)}, indent=1) + "\n")


def test_shipped_weights_verify_against_their_card():
    codec = load_codec(MODEL)
    assert codec.card.architecture == "gi-hyper-ckbd"
    assert codec.weights_id == bytes.fromhex(codec.card.sha256[:16])


@pytest.mark.parametrize("stream", [STREAM, STREAM_V1], ids=["v2", "v1"])
def test_golden_stream_decodes_to_identical_latents_and_an_image(stream):
    codec = load_codec(MODEL)
    expect = json.loads(EXPECT.read_text())
    assert expect["weights_sha256"] == codec.card.sha256, "weights changed: regenerate the golden stream"
    data = stream.read_bytes()
    assert _latent_digests(codec, data) == expect["latents_sha256"]
    res = decode_image(data)  # model taken from the header via the zoo
    assert not res.failed and res.image.shape == (192, 256, 3)


if __name__ == "__main__":
    build_golden()
