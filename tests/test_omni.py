"""Omni-ICM feature path: the filter keeps group independence, feature decoding reads only the
selected groups, the detector runs on decoded features, the CLI guards, and the trainer runs."""
import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from ssc.analyze import analyze_stream, feature_detector
from ssc.api import encode_image
from ssc.bitstream import StreamReader
from ssc.errors import WeightsError
from ssc.masks import GroupMap
from ssc.models import create_model
from ssc.models.zoo import UNREGISTERED_ID, LoadedCodec, ModelCard
from ssc.omni.decode import decode_features
from ssc.omni.ssl import info_nce, second_view
from ssc.tasks.heads import HeadInfo
from ssc.tasks.torchvision_backend import TorchvisionMaskRCNN, build_maskrcnn

from .conftest import SMALL, synthetic_scene

OMNI = dict(SMALL, feature_channels=32, head_width=32, head_blocks=1, proj_dim=16)


@pytest.fixture(scope="module")
def omni() -> LoadedCodec:
    torch.manual_seed(0)
    m = create_model("gi-omni", **OMNI).eval()
    with torch.no_grad():  # a filter that actually gates, so the test sees its effect
        m.filter.net[-1].weight.normal_(0, 0.3)
    m.update_tables()
    return LoadedCodec(m, ModelCard("test-omni", "gi-omni", dict(OMNI)), UNREGISTERED_ID)


@pytest.fixture(scope="module")
def scene():
    img, lab = synthetic_scene()
    return img, GroupMap.from_labels(lab, {1: (1, "person"), 2: (3, "car")})


@pytest.fixture(scope="module")
def detector() -> TorchvisionMaskRCNN:
    torch.manual_seed(0)
    # a random lite detector whose FPN width matches the test feature head (32 channels)
    m = build_maskrcnn("maskrcnn_mobilenet_v3_lite", min_size=96, max_size=160, fpn_channels=32)
    return TorchvisionMaskRCNN(m, HeadInfo("torchvision", "maskrcnn_mobilenet_v3_lite", "random"), score_thresh=0.0)


def test_filter_keeps_group_independence(omni, scene):
    img, gm = scene
    a = encode_image(img, gm, omni, quality=1.0)
    outside = StreamReader(a.data).group_map != 1  # beyond group 1's cells
    other = img.copy()
    other[outside] = 255 - other[outside]
    b = encode_image(other, gm, omni, quality=1.0)
    assert StreamReader(a.data).read_segment(1) == StreamReader(b.data).read_segment(1)


def test_feature_decode_reads_only_the_selected_group(omni, scene):
    img, gm = scene
    enc = encode_image(img, gm, omni, quality=1.0)
    full = decode_features(enc.data, omni)
    one = decode_features(enc.data, omni, groups=[2])
    h = StreamReader(enc.data).header
    assert one.bytes_read == h.masks_offset + h.group(2).mask_length + h.group(2).seg_length
    assert full.decoded == [0, 1, 2] and one.decoded == [2]
    p0 = full.features["0"]
    assert p0.shape == (1, 32, 8, 12)  # 96x136 padded to 128x192, at 1/16
    assert [tuple(full.features[k].shape[-2:]) for k in ("1", "2", "pool")] == [(4, 6), (4, 6), (2, 3)]
    # group 2 is the box [80, 130) x [60, 90): its crop lands at cell (4, 5); an interior cell agrees
    assert torch.allclose(one.features["0"][0, :, 5, 6], p0[0, :, 5, 6])
    empty = omni.model.feature_head.empty(p0)[0, :, 0, 0]
    assert torch.allclose(one.features["0"][0, :, 0, 0], empty)  # group 0 not decoded: the empty feature


def test_detector_runs_on_decoded_features(omni, scene, detector):
    img, gm = scene
    enc = encode_image(img, gm, omni, quality=1.0)
    res = analyze_stream(enc.data, detector, "segment", omni, groups=[1, 2], domain="features", keep_inside_frac=0)
    assert res.image_size == (96, 136) and res.decoded_groups == [1, 2]
    for r in res.results:
        x, y, w, h = r["bbox"]
        assert 0 <= x and x + w <= 136.01 and 0 <= y and y + h <= 96.01
    with pytest.raises(ValueError, match="domain"):
        analyze_stream(enc.data, detector, "segment", omni, domain="latents")


def test_feature_domain_needs_an_omni_stream_and_its_teacher(omni, codec, scene):
    img, gm = scene
    pixel_stream = encode_image(img, gm, codec, quality=1.0).data
    with pytest.raises(WeightsError, match="no feature head"):
        feature_detector(pixel_stream, codec, None)
    omni_stream = encode_image(img, gm, omni, quality=1.0).data
    assert feature_detector(omni_stream, omni, None)[1:] == ("torchvision", "det-ref")
    with pytest.raises(WeightsError, match="distilled from"):
        feature_detector(omni_stream, omni, "my_maskrcnn.pth")


def test_ssl_loss_and_views():
    a = torch.randn(6, 8)
    assert info_nce(a, a * 3, 0.1) < info_nce(a, torch.randn(6, 8), 0.1)
    x, m = torch.rand(4, 3, 64, 64), (torch.rand(4, 1, 64, 64) > 0.5).float()
    x2, m2 = second_view(x, m, torch.Generator().manual_seed(0))
    assert x2.shape == x.shape and set(m2.unique().tolist()) <= {0.0, 1.0} and m2.sum() == m.sum()


def test_omni_trainer_runs_resumes_and_exports(tmp_path):
    from ssc.models.zoo import load_codec
    from ssc.omni.train import train_omni
    from ssc.train import TrainConfig

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(synthetic_scene(80, 90, seed=i)[0]).save(photos / f"p{i}.png")
    cfg = {"name": "omni-tiny", "kind": "omni",
           "model": {"arch": "gi-omni", **dict(OMNI, feature_channels=128)}, "lambdas": [0.1, 0.5],
           "data": {"photos": [str(photos)], "crop": 64, "mix": {"full": 0.5, "blob": 0.5}},
           "steps": 2, "batch": 2, "ckpt_every": 1, "log_every": 1, "out_dir": str(tmp_path / "runs"), "threads": 1,
           "extra": {"freeze": ["g_a", "g_s"], "ssl_weight": 0.1}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    train_omni(TrainConfig.load(tmp_path / "c.yaml"))
    cfg["steps"] = 3
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    w = train_omni(TrainConfig.load(tmp_path / "c.yaml"))
    steps = [json.loads(x)["step"] for x in (tmp_path / "runs" / "omni-tiny" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    loaded = load_codec(w)
    img, lab = synthetic_scene()
    enc = encode_image(img, GroupMap.from_labels(lab), loaded, quality=1.0)
    assert decode_features(enc.data, loaded).features["0"].shape[1] == 128
    assert np.isfinite(decode_features(enc.data, loaded).features["pool"].numpy()).all()
