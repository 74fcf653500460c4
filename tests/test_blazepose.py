"""The blazepose head: the reference crop rule, keypoints and masks against the reference outputs
(shared/data/reference/mediapipe_person_reference.json), the head on a decoded stream, clear errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import DATA, require

REF = DATA / "reference" / "mediapipe_person_reference.json"
COCO_VAL = DATA / "coco" / "val2017"


def _pose():
    pytest.importorskip("ai_edge_litert")
    from ssc.errors import WeightsError
    from ssc.tasks.blazepose import BlazePose

    try:
        return BlazePose(threads=1)
    except WeightsError as e:
        pytest.skip(str(e))


def test_crop_rule_matches_the_reference_on_all_crops():
    from ssc.tasks.blazepose import Crop

    ref = json.loads(require(REF).read_text())
    got = [[*vars(Crop.around(tuple(c["box"]))).values()] for c in ref["crops"]]
    assert got == [c["crop_left_top_side"] for c in ref["crops"]] and len(got) == 164


def test_keypoints_and_masks_reproduce_the_reference():
    """Every 8th reference crop (21 of 164; all of them: eval/pose.py --check): landmarks within
    0.5 input pixels, the person mask at IoU >= 0.99."""
    from pycocotools import mask as mask_utils

    from ssc.api import read_image

    pose = _pose()
    ref = json.loads(require(REF).read_text())
    for c, seg in list(zip(ref["crops"], ref["segm_pose_results"]))[::8]:
        img = read_image(COCO_VAL / c["file_name"])
        r = pose.on_box(img, tuple(c["box"]))
        assert np.abs(r.landmarks[:8, :2] - np.array(c["pose_identity_first8"])[:, :2]).max() <= 0.5
        m = mask_utils.decode(seg["segmentation"]).astype(bool)
        assert (m & r.mask).sum() >= 0.99 * (m | r.mask).sum()


def test_head_gives_coco_keypoints_on_a_decoded_stream(zoo_env):
    """analyze --task pose on a persons-only stream: COCO keypoint results (17 x 3) inside the
    decoded region; the default backend of --task pose is blazepose; features refuse pose."""
    _pose()
    from ssc.analyze import analyze_stream
    from ssc.api import encode_image, read_image
    from ssc.masks import GroupMap
    from ssc.models.zoo import load_codec
    from ssc.tasks import build_head
    from ssc.tasks.heads import resolve_detector

    assert resolve_detector(None, None, task="pose")[0] == "blazepose"
    assert resolve_detector(None, None, task="detect")[0] == "ssdlite-person"
    img = read_image(require(COCO_VAL / "000000005001.jpg"))
    labels = np.zeros(img.shape[:2], np.int32)
    labels[60:380, 300:560] = 1
    gm = GroupMap.from_labels(labels, {1: (1, "person")})
    codec = load_codec("test-small")
    data = encode_image(img, gm, codec, quality=1.0).data
    head = build_head("blazepose")
    res = analyze_stream(data, head, "pose", codec, classes=["person"])
    assert res.decoded_groups == [1]
    for r in res.results:
        assert len(r["keypoints"]) == 51 and r["category_id"] == 1
    with pytest.raises(ValueError, match="pose"):
        analyze_stream(data, build_head("ssdlite-person"), "pose", codec)


def test_absent_packages_give_a_clear_message(monkeypatch):
    import importlib.util

    from ssc.errors import WeightsError
    from ssc.tasks import blazepose

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mediapipe" else real(name, *a))
    with pytest.raises(WeightsError, match="mediapipe==0.10.21"):
        blazepose.mediapipe_file(blazepose.POSE_MODEL)
