"""BlazePose's .tflite graph run by PyTorch (ssc.tasks.tflite_torch) against the reference outputs and
LiteRT, the ``person`` training samples (ssc.data), and the pose distortion (ssc.pose_loss)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import DATA, require

REF = DATA / "reference" / "mediapipe_person_reference.json"
COCO_VAL = DATA / "coco" / "val2017"


def _graph():
    pytest.importorskip("tflite")
    from ssc.errors import WeightsError
    from ssc.tasks.blazepose import POSE_MODEL, mediapipe_file
    from ssc.tasks.tflite_torch import TFLiteGraph

    try:
        return TFLiteGraph(mediapipe_file(POSE_MODEL)).eval()
    except WeightsError as e:
        pytest.skip(str(e))


def test_torch_graph_reproduces_the_reference_landmarks_and_masks():
    """Every 8th reference crop (21 of 164): the first 8 landmarks within 0.5 input pixels of the
    reference, and the person mask (sigmoid > 0.5, at the crop's size) at IoU >= 0.99 with LiteRT's."""
    from PIL import Image

    from ssc.api import read_image
    from ssc.tasks.blazepose import Crop, network_input

    g = _graph()
    pytest.importorskip("ai_edge_litert")
    from ssc.tasks.blazepose import POSE_MODEL, LiteRTModel, mediapipe_file

    lite = LiteRTModel(mediapipe_file(POSE_MODEL), threads=1)
    ref = json.loads(require(REF).read_text())
    for c in ref["crops"][::8]:
        img = read_image(COCO_VAL / c["file_name"])
        x = network_input(img, Crop(*c["crop_left_top_side"]))
        with torch.no_grad():
            out = g(torch.from_numpy(x))
        lm = out["Identity"].numpy().reshape(39, 5)
        assert np.abs(lm[:8, :2] - np.array(c["pose_identity_first8"])[:, :2]).max() <= 0.5
        side = c["crop_left_top_side"][2]
        masks = [np.asarray(Image.fromarray((1 / (1 + np.exp(-np.clip(m[0, :, :, 0], -80, 80))) * 255).astype(np.uint8))
                            .resize((side, side), Image.BILINEAR)) > 127
                 for m in (out["Identity_2"].numpy(), lite.run(x)["Identity_2"])]
        assert (masks[0] & masks[1]).sum() >= 0.99 * (masks[0] | masks[1]).sum()


def test_torch_graph_refuses_what_it_cannot_run(tmp_path):
    pytest.importorskip("tflite")
    from ssc.errors import WeightsError
    from ssc.tasks.tflite_torch import TFLiteGraph

    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="not a readable TFLite"):
        TFLiteGraph(bad)
    g = _graph()
    # a graph with an op the executor lacks is refused by name (the selfie model uses others)
    from ssc.tasks.blazepose import SELFIE_MODEL, mediapipe_file

    with pytest.raises(WeightsError, match="op [0-9]+ is [A-Z_0-9]+; supported"):
        TFLiteGraph(mediapipe_file(SELFIE_MODEL))
    with pytest.raises(ValueError, match="input of shape"):
        g(torch.zeros(1, 128, 128, 3))


def _person_sampler(crop: int = 128, side: tuple[int, int] = (60, 90)):
    from ssc.data import CropSampler, Sample

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    small = (100.0, 50.0, 100.0 + side[0], 50.0 + side[1])
    big = (10.0, 5.0, 200.0, 195.0)  # a square of 237 px: shrunk to fit a 128 crop
    tiny = (0.0, 0.0, 20.0, 30.0)  # under PERSON_MIN_SIDE: never drawn
    return CropSampler([Sample(img, None, [small, big, tiny])], crop, {"person": 1.0}, seed=2, cells=False)


def test_person_samples_frame_the_square_a_pose_head_reads():
    s = _person_sampler()
    assert len(s.persons) == 2
    b = s.batch(0, 8)
    assert b.square.shape == (8, 3)
    for sq, m in zip(b.square.tolist(), b.mask):
        left, top, side = sq
        assert side > 0 and 0 <= left and 0 <= top and left + side <= 128 and top + side <= 128
        # the group (the padded box) lies inside the square's neighbourhood and covers its middle
        assert m[0, top + side // 2, left + side // 2] == 1
        assert m.sum() >= 64 and (side == 128 or m.sum() < 128 * 128)
    # the small person's square is 1.25 x its longer side, the big one shrunk to the crop
    assert {sq[2] for sq in b.square.tolist()} <= {round(1.25 * 90), 128}
    # other kinds carry no square
    from ssc.data import CropSampler, Sample

    plain = CropSampler([Sample(np.zeros((64, 64, 3), np.uint8), None)], 32, {"full": 1.0})
    assert (plain.batch(0, 2).square == -1).all()
    with pytest.raises(ValueError, match="no annotated person"):
        CropSampler([Sample(np.zeros((64, 64, 3), np.uint8), None)], 32, {"person": 1.0})


def test_pose_distortion_is_zero_on_the_original_and_sends_gradients_to_the_decode():
    pytest.importorskip("tflite")
    from ssc.pose_loss import PoseDistortion, PoseLossOptions

    _graph()
    b = _person_sampler().batch(0, 2)
    squares = b.square.clone()
    squares[1] = -1  # a sample framing no person costs nothing
    d = PoseDistortion(PoseLossOptions())
    x = b.x
    assert d(x, x * b.mask, b.mask, squares).abs().max() < 1e-4
    noisy = (x * b.mask + 0.2 * torch.randn_like(x)).clamp(0, 1).requires_grad_(True)
    loss = d(x, noisy, b.mask, squares)
    assert loss[0] > 1e-3 and loss[1] == 0
    loss.sum().backward()
    g = noisy.grad
    assert g[0].abs().sum() > 0 and g[1].abs().sum() == 0
    # only the group's pixels get gradients (outside it, the decode shows grey)
    assert g[0][(b.mask[0] == 0).expand_as(g[0])].abs().sum() == 0


def test_pose_options_are_checked():
    from ssc.pose_loss import PoseLossOptions

    assert PoseLossOptions.from_config(None) is None
    with pytest.raises(ValueError, match="unknown pose options"):
        PoseLossOptions.from_config({"wieght": 1})
    with pytest.raises(ValueError, match="fill"):
        PoseLossOptions.from_config({"fill": 2})
    with pytest.raises(ValueError, match="3 values for 5"):
        PoseLossOptions.from_config({"weight": [1, 2, 3]}).level_weights(5)


def test_blazepose_runs_on_either_runtime_and_refuses_others():
    """``BlazePose(runtime="torch")`` (eval/pose.py --check --runtime torch) gives the LiteRT head's
    keypoints and mask on a reference crop."""
    pytest.importorskip("ai_edge_litert")
    _graph()
    from ssc.api import read_image
    from ssc.tasks.blazepose import BlazePose

    c = json.loads(require(REF).read_text())["crops"][0]
    img = read_image(COCO_VAL / c["file_name"])
    a, b = (BlazePose(threads=1, runtime=r).on_box(img, tuple(c["box"])) for r in ("litert", "torch"))
    assert np.abs(a.keypoints - b.keypoints).max() < 0.05
    assert (a.mask & b.mask).sum() >= 0.99 * (a.mask | b.mask).sum()
    with pytest.raises(ValueError, match="unknown BlazePose runtime"):
        BlazePose(runtime="onnx")


def test_gradient_cap_bounds_each_samples_gradient_and_keeps_its_direction():
    from ssc.pose_loss import PoseLossOptions, cap_gradient

    x = torch.randn(3, 2, 4, 4, requires_grad=True)
    g = torch.randn(3, 2, 4, 4) * torch.tensor([100.0, 0.01, 5.0]).view(3, 1, 1, 1)
    cap = torch.tensor([1.0, 1.0, 10.0])
    (cap_gradient(x, cap) * g).sum().backward()
    norms = x.grad.flatten(1).norm(dim=1)
    assert torch.allclose(norms[0], torch.tensor(1.0), atol=1e-5)  # capped
    assert torch.allclose(x.grad[1], g[1])  # under the cap: untouched
    assert torch.allclose(x.grad[2], g[2]) or torch.allclose(norms[2], torch.tensor(10.0), atol=1e-4)
    cos = torch.nn.functional.cosine_similarity(x.grad[0].flatten(), g[0].flatten(), dim=0)
    assert cos > 0.9999
    with pytest.raises(ValueError, match="grad_cap"):
        PoseLossOptions.from_config({"grad_cap": -1})
