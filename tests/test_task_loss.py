"""The detector distortion that tunes a codec to the person detector (issue 37): zero for a perfect
decode, per crop (a crop's error lands on its own tile), differentiable in the decode only, and a
codec config's ``task`` section trains, records itself in the card and is checked."""
import json

import pytest
import torch

from ssc.tasks import ssdlite
from ssc.task_loss import DetectorDistortion, TaskLossOptions, level_weights
from ssc.train import train

from .test_train import _config

needs_detector = pytest.mark.skipif(not ssdlite.available(), reason=ssdlite.INSTALL_HINT)


def _crops(n: int = 4, side: int = 96) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, side, side, generator=g)
    return torch.nn.functional.avg_pool2d(x, 5, 1, 2)  # some spatial structure


@needs_detector
def test_distortion_is_zero_for_a_perfect_decode_and_lands_on_the_damaged_crop():
    dist = DetectorDistortion(TaskLossOptions(tile=150))
    x = _crops()
    assert torch.allclose(dist(x, x.clone()), torch.zeros(4), atol=1e-4)  # KL as BCE - entropy: float rounding
    for i in range(4):
        y = x.clone()
        y[i] = (y[i] + 0.3 * torch.randn_like(y[i])).clamp(0, 1)
        d = dist(x, y)
        others = torch.cat([d[:i], d[i + 1:]])
        # the detector's receptive field crosses tile borders (its stride-32 map sees most of the view):
        # a neighbour picks up some of the damage, the damaged crop most of it
        assert d[i] > 0 and d[i] > 2 * others.max(), (i, d)


@needs_detector
def test_gradients_reach_the_decode_only_and_more_crops_than_a_mosaic_holds():
    dist = DetectorDistortion(TaskLossOptions(tile=150))
    x = _crops(5)  # two views: four crops, then one with three grey tiles
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1).requires_grad_(True)
    d = dist(x, y)
    assert d.shape == (5,) and bool((d > 0).all())
    d.sum().backward()
    assert y.grad is not None and float(y.grad.abs().sum()) > 0
    assert all(p.grad is None for p in dist.det.net.parameters())


def test_options_are_checked():
    assert TaskLossOptions.from_config(None) is None
    with pytest.raises(ValueError, match="unknown task options"):
        TaskLossOptions.from_config({"wieght": 1.0})
    with pytest.raises(ValueError, match="only 'ssdlite-person'"):
        TaskLossOptions.from_config({"detector": "yolo"})
    with pytest.raises(ValueError, match="tile"):
        TaskLossOptions.from_config({"tile": 301})
    with pytest.raises(ValueError, match="3 values for 2 quality levels"):
        level_weights(TaskLossOptions(weight=[1.0, 2.0, 3.0]), 2)
    assert level_weights(TaskLossOptions(weight=2.0), 3).tolist() == [2.0, 2.0, 2.0]


@needs_detector
def test_a_codec_trains_with_the_task_term_and_its_card_says_so(tmp_path):
    cfg = _config(tmp_path, 2)
    cfg.task = {"weight": [50.0, 100.0], "tile": 64}
    w = train(cfg)
    log = [json.loads(line) for line in (tmp_path / "runs" / "tiny" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(r["task"] >= 0 for r in log)
    card = json.loads(w.with_suffix(".json").read_text())
    assert card["training"]["task"] == {"weight": [50.0, 100.0], "tile": 64}
