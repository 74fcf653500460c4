"""Trainer smoke test: a few steps on tiny data, resume from the safetensors checkpoint, export a
zoo entry that the loader accepts and the codec can use."""
import json

import numpy as np
import torch
import yaml
from PIL import Image

from ssc.api import decode_image, encode_image
from ssc.data import CropSampler, Sample, prefetched, random_blob, random_polygon
from ssc.masks import GroupMap
from ssc.models.zoo import load_codec
from ssc.train import TrainConfig, train

from .conftest import SMALL, synthetic_scene


def _config(tmp_path, steps):
    photos = tmp_path / "photos"
    photos.mkdir(exist_ok=True)
    for i in range(3):
        img, _ = synthetic_scene(80 + 10 * i, 90, seed=i)
        Image.fromarray(img).save(photos / f"p{i}.png")
    cfg = {
        "name": "tiny", "model": {"arch": "gi-hyper-ckbd", **SMALL}, "lambdas": [0.01, 0.05],
        "data": {"photos": [str(photos)], "crop": 64, "mix": {"full": 0.5, "blob": 0.25, "polygon": 0.25}},
        "steps": steps, "batch": 2, "lr": 1e-4, "ckpt_every": 2, "log_every": 1, "out_dir": str(tmp_path / "runs"),
        "threads": 1,
    }
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return TrainConfig.load(p)


def test_train_resume_export_and_use(tmp_path):
    w = train(_config(tmp_path, 2))
    log = (tmp_path / "runs" / "tiny" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log] == [1, 2]
    w = train(_config(tmp_path, 3))  # resumes at step 2, runs one more step
    log = (tmp_path / "runs" / "tiny" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log] == [1, 2, 3]
    codec = load_codec(w)
    assert codec.card.training["steps"] == 3 and codec.card.sha256
    img, lab = synthetic_scene()
    enc = encode_image(img, GroupMap.from_labels(lab), codec, quality=1.0)
    assert decode_image(enc.data, codec).decoded == [0, 1, 2]


def test_random_masks_are_irregular_and_nonempty():
    rng = np.random.default_rng(0)
    for _ in range(10):
        b, p = random_blob(64, rng), random_polygon(64, rng)
        assert 0 < b.sum() < 64 * 64 and 0 < p.sum() < 64 * 64
    img, lab = synthetic_scene()
    s = CropSampler([Sample(img, lab)], 64, {"coco": 1.0}, seed=1, num_qualities=3)
    b = s.batch(0, 4)
    x, m = b.x, b.mask
    assert x.shape == (4, 3, 64, 64) and m.shape == (4, 1, 64, 64)
    assert (m.sum((1, 2, 3)) >= 64).all()
    assert b.quality.shape == (4,) and 0 <= int(b.quality.min()) and int(b.quality.max()) < 3


def test_prefetched_batches_equal_batches_drawn_in_the_loop():
    img, lab = synthetic_scene()
    s = CropSampler([Sample(img, lab), Sample(img[::-1].copy(), None)], 48,
                    {"full": 0.3, "blob": 0.3, "coco": 0.4}, seed=3, num_qualities=4)
    ahead = list(prefetched(s, 5, 17, 3, workers=3))
    assert len(ahead) == 12
    for step, b in zip(range(5, 17), ahead):
        ref = s.batch(step, 3)
        assert torch.equal(b.x, ref.x) and torch.equal(b.mask, ref.mask) and torch.equal(b.quality, ref.quality)
    gen = prefetched(s, 0, 1000, 2, workers=2)
    next(gen)
    gen.close()  # stopping early (a deadline, SIGTERM) leaves no work behind


def test_seam_weighted_distortion_weights_only_a_groups_inner_edge():
    """``seam_weight`` (issue 35's seams): pixels near the group's edge count ``1 + weight`` times;
    a one-group sample (the whole crop, whose border is no seam) keeps the plain mean."""
    import torch

    from ssc.train import seam_weighted_mse

    err = torch.rand(2, 3, 32, 32)
    whole = torch.ones(2, 1, 32, 32)
    assert torch.allclose(seam_weighted_mse(err, whole, 4.0, 8), err.mean((1, 2, 3)))
    half = whole.clone()
    half[:, :, :, 16:] = 0
    edge_only = torch.zeros_like(err)
    edge_only[:, :, :, 12:16] = 1.0  # errors only within 4 px of the group's edge
    far_only = torch.zeros_like(err)
    far_only[:, :, :, 0:4] = 1.0  # the same number of errors 12 px or more inside
    plain = far_only.sum((1, 2, 3)) / (3 * half.sum((1, 2, 3)))
    assert torch.allclose(seam_weighted_mse(edge_only, half, 0.0, 8), plain)
    assert (seam_weighted_mse(edge_only, half, 4.0, 8) > 2 * seam_weighted_mse(far_only, half, 4.0, 8)).all()
