"""Shared fixtures: a small random-initialised codec (tests never need trained weights), saved as a
zoo entry in a temporary weights directory for the CLI tests."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ssc.models import create_model
from ssc.models.zoo import UNREGISTERED_ID, LoadedCodec, ModelCard, export_weights

DATA = Path(os.environ.get("SSC_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
COCO_VAL = DATA / "coco" / "val2017"
COCO_VAL_ANN = DATA / "coco" / "annotations" / "instances_val2017_subset158.json"
SMALL = dict(N=32, M=48, Nz=32, depth=2, heads=2, window=8, num_qualities=2)

torch.set_num_threads(2)


def make_codec(seed: int = 0, name: str = "test-random", **extra) -> LoadedCodec:
    torch.manual_seed(seed)
    cfg = {**SMALL, **extra}
    m = create_model("gi-hyper-ckbd", **cfg).eval()
    m.update_tables()
    return LoadedCodec(m, ModelCard(name, "gi-hyper-ckbd", cfg), UNREGISTERED_ID)


@pytest.fixture(scope="session")
def codec() -> LoadedCodec:
    return make_codec()


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory) -> Path:
    """A zoo directory holding 'test-small' (random weights, real safetensors + card)."""
    d = tmp_path_factory.mktemp("weights")
    c = make_codec(1, "test-small")
    export_weights(c.model, ModelCard("test-small", "gi-hyper-ckbd", dict(SMALL)), d / "test-small.safetensors", half=False)
    torch.manual_seed(2)  # an Omni feature codec whose head speaks det-ref's 128-channel FPN
    omni_cfg = dict(SMALL, feature_channels=128, head_width=32, head_blocks=1, proj_dim=16)
    m = create_model("gi-omni", **omni_cfg).eval()
    m.update_tables()
    export_weights(m, ModelCard("test-omni", "gi-omni", omni_cfg), d / "test-omni.safetensors", half=False)
    return d


@pytest.fixture
def zoo_env(weights_dir, monkeypatch) -> Path:
    monkeypatch.setenv("SSC_WEIGHTS_DIR", str(weights_dir))
    return weights_dir


def synthetic_scene(h: int = 96, w: int = 136, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random image with three irregular groups (0 background, 1 disc, 2 box)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([np.sin(xx / 7 + c) * 60 + np.cos(yy / 5 - c) * 50 + 128 for c in range(3)], -1)
    img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
    labels = np.zeros((h, w), np.int32)
    labels[(yy - 40) ** 2 + (xx - 40) ** 2 < 22**2] = 1
    labels[60:90, 80:130] = 2
    return img, labels


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path
