"""Forged segment bodies that pass the framing (the CRC is recomputed) must fail their own group
with an ssc error or decode to finite pixels / features: never an exception, a NaN cast or a hang.
The long run with the shipped models is ``python -m ssc.eval.fuzz_bitstream --bodies``."""
import warnings

import numpy as np
import pytest
import torch

from ssc.api import decode_image, encode_image
from ssc.bitstream import StreamReader, build_stream
from ssc.eval.fuzz_bitstream import mutate_body, stream_masks
from ssc.masks import GroupMap
from ssc.models import create_model
from ssc.models.zoo import UNREGISTERED_ID, LoadedCodec, ModelCard
from ssc.omni.decode import decode_features

from .conftest import SMALL, synthetic_scene


def _omni() -> LoadedCodec:
    torch.manual_seed(3)
    cfg = dict(SMALL, feature_channels=16, head_width=16, head_blocks=1, proj_dim=8)
    m = create_model("gi-omni", **cfg).eval()
    m.update_tables()
    return LoadedCodec(m, ModelCard("fuzz-omni", "gi-omni", cfg), UNREGISTERED_ID)


@pytest.mark.parametrize("kind", ["pixels", "features"])
def test_forged_bodies_fail_cleanly(codec, kind):
    c = codec if kind == "pixels" else _omni()
    img, lab = synthetic_scene()
    gm = GroupMap.from_labels(lab)
    stream = encode_image(img, gm, c, quality=1.0).data
    rd = StreamReader(stream)
    bodies = {g: rd.read_segment(g) for g in rd.header.group_ids}
    masks = stream_masks(stream)
    rng = np.random.default_rng(0)
    for _ in range(40):
        gid = int(rng.choice(rd.header.group_ids))
        data = build_stream(rd.header, {**bodies, gid: mutate_body(bodies[gid], rng)}, masks)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a NaN cast to pixels is a failure too
            res = decode_image(data, c) if kind == "pixels" else decode_features(data, c)
        assert set(res.failed) <= {gid}
        if kind == "pixels":
            assert res.image.dtype == np.uint8
        else:
            assert all(torch.isfinite(v).all() for v in res.features.values())
