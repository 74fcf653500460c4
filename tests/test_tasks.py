"""Task heads, COCO result conversion, the evaluator, header analytics and detector training data."""
import numpy as np
import pytest
import torch

from ssc.bitstream import StreamReader

from ssc.errors import SSCError, WeightsError
from ssc.tasks import Instances, build_head
from ssc.tasks.coco_results import instances_to_coco, keep_inside
from ssc.tasks.torchvision_backend import build_maskrcnn

from .conftest import COCO_VAL_ANN, require, synthetic_scene

LITE = "maskrcnn_mobilenet_v3_lite"


def _instances() -> Instances:
    masks = torch.zeros(2, 40, 60, dtype=torch.bool)
    masks[0, 5:15, 5:25] = True
    masks[1, 20:40, 40:60] = True
    return Instances((40, 60), torch.tensor([[5.0, 5, 25, 15], [40, 20, 60, 40]]), torch.tensor([0.9, 0.4]),
                     torch.tensor([1, 18]), masks)


def test_instances_to_coco_and_keep_inside():
    inst = _instances()
    res = instances_to_coco(inst, 7)
    assert [r["category_id"] for r in res] == [1, 18]
    assert res[0]["bbox"] == [5.0, 5.0, 20.0, 10.0] and res[0]["image_id"] == 7
    from pycocotools import mask as mask_utils

    assert mask_utils.area(res[1]["segmentation"]) == 400
    assert "segmentation" not in instances_to_coco(inst, 7, task="detect")[0]
    region = np.zeros((40, 60), bool)
    region[:, :30] = True
    kept = keep_inside(inst, region)
    assert len(kept) == 1 and int(kept.classes[0]) == 1


def test_evaluator_scores_ground_truth_as_perfect_and_fidelity_pseudo_gt():
    require(COCO_VAL_ANN)
    import contextlib
    import io

    from pycocotools.coco import COCO

    from ssc.eval.coco import COCOEvaluator, pseudo_ground_truth

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(COCO_VAL_ANN))
    ids = sorted(gt.getImgIds())[:5]
    ev = COCOEvaluator(gt)
    preds = []
    for i in ids:
        anns = [a for a in gt.loadAnns(gt.getAnnIds(imgIds=i)) if not a["iscrowd"]]
        p = [{"image_id": i, "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0,
              "segmentation": gt.annToRLE(a)} for a in anns]
        ev.process(i, p)
        preds += p
    m = ev.evaluate()
    assert m["bbox_AP"] > 99 and m["segm_AP"] > 99
    ev.reset()
    for i in ids:
        ev.process(i, [])
    assert ev.evaluate()["bbox_AP"] == 0.0
    for r in preds:
        r["segmentation"]["counts"] = r["segmentation"]["counts"].decode() if isinstance(r["segmentation"]["counts"], bytes) else r["segmentation"]["counts"]
    pgt = pseudo_ground_truth(gt.loadImgs(ids), gt.dataset["categories"], preds)
    fid = COCOEvaluator(pgt)
    for i in ids:
        fid.process(i, [r for r in preds if r["image_id"] == i])
    assert fid.evaluate()["bbox_AP"] > 99


def test_user_checkpoint_pth_is_read_tensor_only(tmp_path):
    torch.manual_seed(0)
    model = build_maskrcnn(LITE, 91, 128, 192)
    path = tmp_path / "mine.pth"
    torch.save(model.state_dict(), path)
    head = build_head("torchvision", str(path), arch=LITE)
    img, _ = synthetic_scene(96, 128)
    inst = head.predict(img)
    assert inst.image_size == (96, 128) and inst.boxes.shape[1] == 4
    bad = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "f": print}, bad)  # carries a callable: must be refused
    with pytest.raises(WeightsError):
        build_head("torchvision", str(bad), arch=LITE)
    with pytest.raises(WeightsError, match="not found"):
        build_head("torchvision", str(tmp_path / "missing.pth"))
    with pytest.raises(WeightsError, match="do not fit"):
        build_head("torchvision", str(path), arch="maskrcnn_resnet18_lite")


def test_detectron2_backend_is_optional_and_lazy():
    try:
        import detectron2  # noqa: F401
    except ImportError:
        with pytest.raises(SSCError, match="detectron2"):
            build_head("detectron2", "model.pkl")
    with pytest.raises(ValueError, match="unknown task backend"):
        build_head("nope")


def test_header_analytics_reads_no_segment(codec):
    from ssc.analyze import header_results
    from ssc.api import encode_image
    from ssc.masks import GroupMap

    img, labels = synthetic_scene()
    gm = GroupMap.from_labels(labels, {0: (0, "background"), 1: (18, "dog"), 2: (3, "car")})
    enc = encode_image(img, gm, codec, quality=0.5)
    res = header_results(enc.data, image_id=5)
    assert {r["label"] for r in res.results} == {"dog", "car"}
    dog = next(r for r in res.results if r["label"] == "dog")
    x0, y0, x1, y1 = gm.group(1).box
    assert dog["bbox"] == [x0, y0, x1 - x0, y1 - y0] and dog["category_id"] == 18 and dog["image_id"] == 5
    assert res.bytes_read == enc.header.masks_offset < enc.header.payload_offset  # no mask, no segment
    only = header_results(enc.data, classes=["car"])
    assert [r["label"] for r in only.results] == ["car"]


def test_analyze_decodes_only_selected_groups(codec):
    from ssc.analyze import analyze_stream
    from ssc.api import encode_image
    from ssc.masks import GroupMap

    class FixedHead:
        """Predicts one box on the background and one inside group 2, so the region filter is visible."""

        info = None

        def __init__(self):
            self.seen = None

        def predict(self, image, masks=True):
            self.seen = image.copy()
            h, w = image.shape[:2]
            return Instances((h, w), torch.tensor([[0.0, 0, 10, 10], [85.0, 65, 120, 85]]),
                             torch.tensor([0.9, 0.8]), torch.tensor([1, 3]))

    img, labels = synthetic_scene()
    gm = GroupMap.from_labels(labels, {0: (0, "background"), 1: (18, "dog"), 2: (3, "car")})
    enc = encode_image(img, gm, codec, quality=0.5)
    head = FixedHead()
    res = analyze_stream(enc.data, head, task="detect", codec=codec, groups=[2])
    assert res.decoded_groups == [2] and res.bytes_read < len(enc.data)
    assert (head.seen[StreamReader(enc.data).group_map != 2] == 128).all()  # beyond group 2's cells
    assert [r["category_id"] for r in res.results] == [3]  # the box over undecoded grey is dropped
    grey_seen = head.seen
    ext = analyze_stream(enc.data, head, task="detect", codec=codec, groups=[2], fill="extend")
    inside = StreamReader(enc.data).group_map == 2
    assert np.array_equal(head.seen[inside], grey_seen[inside])  # the decoded pixels are the same
    assert not (head.seen[~inside] == 128).all()  # the rest extends them
    assert [r["category_id"] for r in ext.results] == [3]
    with pytest.raises(ValueError, match="fill must be one of"):
        analyze_stream(enc.data, head, task="detect", codec=codec, groups=[2], fill="blur")


def test_copy_paste_sampler_keeps_masks_and_labels_consistent():
    from ssc.train_detector import Annotated, CopyPasteSampler, to_target

    rng = np.random.default_rng(0)
    data = []
    for k in range(3):
        m = np.zeros((2, 64, 80), bool)
        m[0, 5:30, 5:40] = True
        m[1, 30:60, 40:78] = True
        data.append(Annotated(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8), m, np.array([1 + k, 10 + k])))
    s = CopyPasteSampler(data, p=1.0, jitter=(0.8, 1.2), seed=0)
    for a in s.batch(0, 5) + s.batch(1, 5):
        assert len(a.masks) == len(a.labels) and a.masks.shape[1:] == a.image.shape[:2]
        assert (a.masks.reshape(len(a.masks), -1).sum(1) >= 16).all()
        img, tgt = to_target(a, "cpu")
        assert tgt["boxes"].shape == (len(a.labels), 4) and bool((tgt["boxes"][:, 2:] > tgt["boxes"][:, :2]).all())


def test_detect_only_skips_the_mask_branch_and_keeps_the_boxes():
    from ssc.tasks.heads import HeadInfo
    from ssc.tasks.torchvision_backend import TorchvisionMaskRCNN

    torch.manual_seed(0)
    head = TorchvisionMaskRCNN(build_maskrcnn(LITE, min_size=96, max_size=160), HeadInfo("torchvision", LITE, "random"),
                               score_thresh=0.0)
    img, _ = synthetic_scene()
    with_masks, boxes_only = head.predict(img), head.predict(img, masks=False)
    assert boxes_only.masks is None and with_masks.masks is not None
    assert torch.equal(with_masks.boxes, boxes_only.boxes) and torch.equal(with_masks.scores, boxes_only.scores)
    assert head.model.roi_heads.has_mask()  # the switch is restored


def test_torchvision_backend_needs_weights():
    with pytest.raises(WeightsError, match="needs --det-weights"):
        build_head("torchvision")
