import json

import numpy as np
import pytest
from PIL import Image

from ssc.errors import MaskError
from ssc.masks import (
    GroupMap, apply_policy, from_binary_masks, from_coco, from_png, load_masks, merge_small,
    objects_vs_background, per_class, save_png,
)
from ssc.masks.coco import ann_to_mask

from .conftest import COCO_VAL, COCO_VAL_ANN, require


def test_overlap_smallest_instance_wins_and_ids_follow_input_order():
    big = np.zeros((10, 10), bool)
    big[1:9, 1:9] = True
    small = np.zeros((10, 10), bool)
    small[3:5, 3:5] = True
    gm = from_binary_masks([big, small], [(1, "person"), (2, "ball")])
    assert gm.ids == (0, 1, 2)
    assert gm.labels[4, 4] == 2 and gm.labels[2, 2] == 1
    assert gm.group(2).area == 4 and gm.group(1).area == 64 - 4
    assert gm.group(2).box == (3, 3, 5, 5)


def test_coco_polygons_and_rle_crowd():
    ann_path = require(COCO_VAL_ANN)
    data = json.loads(ann_path.read_text())
    crowd = next(a for a in data["annotations"] if a.get("iscrowd"))
    img = next(i for i in data["images"] if i["id"] == crowd["image_id"])
    m = ann_to_mask(crowd, img["height"], img["width"])
    assert m.sum() > 0
    gm = from_coco(ann_path, img["file_name"])
    assert any(g.label.endswith("(crowd)") for g in gm.groups)
    gm_bg = from_coco(ann_path, img["file_name"], crowd="background")
    assert not any(g.label.endswith("(crowd)") for g in gm_bg.groups)
    assert len(gm_bg.groups) < len(gm.groups)
    poly = next(a for a in data["annotations"] if a["image_id"] == img["id"] and not a.get("iscrowd"))
    assert ann_to_mask(poly, img["height"], img["width"]).sum() > 0


def test_coco_ids_are_stable_and_labels_are_class_names():
    ann = require(COCO_VAL_ANN)
    a = from_coco(ann, "000000000139.jpg")
    b = from_coco(ann, COCO_VAL / "000000000139.jpg")
    assert a.ids == b.ids and np.array_equal(a.labels, b.labels)
    assert a.ids == tuple(range(len(a.ids)))
    assert {"person", "tv"} <= {g.label for g in a.groups}


def test_coco_missing_image_and_file():
    with pytest.raises(MaskError, match="not found"):
        from_coco("/nonexistent.json", "x.jpg")
    with pytest.raises(MaskError, match="not in"):
        from_coco(require(COCO_VAL_ANN), "nope.jpg")


def test_policies():
    lab = np.zeros((20, 20), np.int32)
    lab[0:5, 0:5] = 1
    lab[10:20, 10:20] = 2
    lab[0:2, 18:20] = 3
    gm = GroupMap.from_labels(lab, {1: (1, "person"), 2: (1, "person"), 3: (3, "car")})
    pc = per_class(gm)
    assert [g.label for g in pc.groups] == ["background", "person", "car"]
    assert pc.group(1).area == 25 + 100
    ob = objects_vs_background(gm)
    assert ob.ids == (0, 1) and ob.group(1).area == 129
    ms = merge_small(gm, min_area=10)
    assert ms.ids == (0, 1, 2) and ms.group(0).area == 400 - 125
    assert apply_policy(gm, "instance", min_area=30).ids == (0, 1)
    with pytest.raises(ValueError):
        apply_policy(gm, "nope")


def test_png_roundtrip_and_errors(tmp_path):
    lab = np.zeros((12, 9), np.int32)
    lab[2:6, 1:4] = 5
    gm = GroupMap.from_labels(lab, {5: (18, "dog")})
    save_png(gm, tmp_path / "map.png")
    back = from_png(tmp_path / "map.png")
    assert np.array_equal(back.labels, lab) and back.group(5).label == "dog"
    wide = lab.copy()
    wide[0, 0] = 300
    save_png(GroupMap.from_labels(wide), tmp_path / "wide.png")
    assert from_png(tmp_path / "wide.png").labels[0, 0] == 300
    Image.new("RGB", (4, 4)).save(tmp_path / "rgb.png")
    with pytest.raises(MaskError, match="single-channel"):
        from_png(tmp_path / "rgb.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(MaskError):
        from_png(tmp_path / "bad.png")


def test_wrong_size_is_rejected(tmp_path):
    save_png(GroupMap.from_labels(np.zeros((10, 10), np.int32)), tmp_path / "m.png")
    with pytest.raises(MaskError, match="does not match|but the image is"):
        load_masks(f"png:{tmp_path / 'm.png'}", "img.png", (11, 10))
    with pytest.raises(MaskError, match="must look like"):
        load_masks("m.png", "img.png", (10, 10))


def test_group_map_validation():
    with pytest.raises(MaskError):
        GroupMap.from_labels(np.zeros((3, 3), np.float32))
    with pytest.raises(MaskError):
        GroupMap.from_labels(np.full((3, 3), -1))


def test_kmeans_groups_partition_is_deterministic_and_merges_small():
    from ssc.masks import kmeans_groups

    rng = np.random.default_rng(0)
    img = np.zeros((96, 128, 3), np.uint8)
    img[:, 64:] = 200
    img[10:30, 10:30] = (0, 250, 0)
    img = np.clip(img + rng.integers(0, 10, img.shape), 0, 255).astype(np.uint8)
    a = kmeans_groups(img, k=3, min_area=100)
    b = kmeans_groups(img, k=3, min_area=100)
    assert np.array_equal(a.labels, b.labels)
    assert sum(g.area for g in a.groups) == 96 * 128
    assert set(np.unique(a.labels)) == set(a.ids) and 0 in a.ids and len(a.ids) >= 2
    merged = kmeans_groups(img, k=3, min_area=96 * 128 // 2 + 1)
    assert merged.ids == (0,)
    with pytest.raises(MaskError):
        kmeans_groups(img[..., 0])
