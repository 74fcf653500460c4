"""The one-shot GPU recipe runs on the CPU too: pack a few images, train 3 steps from the committed
weights (continuing their step count), export; then the speed check without the CUDA tests."""
import json

import pytest

from ssc import gpu_recipe
from ssc.models.zoo import ModelCard, available

from .conftest import DATA, require

def _campaign_matches_weights() -> bool:
    import yaml

    cfg = yaml.safe_load(gpu_recipe.CAMPAIGN_CONFIG.read_text())
    if not gpu_recipe.WEIGHTS.with_suffix(".json").is_file():
        return False
    card = ModelCard.load(gpu_recipe.WEIGHTS.with_suffix(".json"))
    return card.config == {k: v for k, v in cfg["model"].items() if k != "arch"}


pytestmark = [
    pytest.mark.skipif("gi-hyper-ckbd-m" not in available(), reason="campaign weights not present"),
    pytest.mark.skipif(not _campaign_matches_weights(), reason="committed weights predate the campaign config"),
]


def test_gpu_recipe_dry_run_on_cpu(tmp_path, monkeypatch):
    require(DATA / "kodak" / "kodim01.png")
    pack = tmp_path / "pack"
    manifest = gpu_recipe.pack(DATA, pack, wheels=False, limit=3)
    assert manifest["photos"] == 3 and (pack / "train.yaml").is_file() and (pack / "data" / "kodim01.png").is_file()
    out = tmp_path / "out"
    w = gpu_recipe.train_on_device(out, minutes=None, pack_dir=pack, steps=3)
    card = ModelCard.load(w.with_suffix(".json"))
    before = ModelCard.load(gpu_recipe.WEIGHTS.with_suffix(".json")).training["steps"]
    assert card.training["steps"] == before + 3 and card.sha256
    assert (out / f"{w.stem}.train_log.jsonl").is_file()
    res = gpu_recipe.check_on_device(tmp_path / "check", pack, repeats=1, tests=False)
    assert res["cpu"]["decode"] > 0 and json.loads((tmp_path / "check" / "gpu_check.json").read_text())["cuda_available"] in (True, False)
