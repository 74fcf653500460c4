"""``ssc train`` under ``torchrun --nproc_per_node 2`` (DDP over gloo on the CPU): the same weights
as the single-process run, rank-0 logs and checkpoints, resumable at a different process count."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from ssc.distributed import DistContext, ShardedStream

from .conftest import SMALL, synthetic_scene


def test_ranks_split_the_single_process_batches():
    """Per step, the ranks' (index, key) pairs together are the single-process batch of that step,
    across epoch boundaries, when the dataset size is a multiple of the process count."""
    single = ShardedStream(6, DistContext(), seed=3)
    ranks = [ShardedStream(6, DistContext(rank=r, world_size=2), seed=3) for r in range(2)]
    for step in range(7):  # 4 samples a step: epochs of 6 end mid-batch
        want = sorted(single.take(step, 4))
        got = sorted(p for s in ranks for p in s.take(step, 2))
        assert got == want
    assert len({i for i, _ in single.take(0, 6)}) == 6  # an epoch visits every sample once
    with pytest.raises(ValueError, match="does not split"):
        DistContext(world_size=3).local_batch(8)


def _config(tmp_path, out: str, steps: int) -> str:
    photos = tmp_path / "photos"
    if not photos.is_dir():
        photos.mkdir()
        for i in range(4):
            img, _ = synthetic_scene(80 + 8 * i, 96, seed=i)
            Image.fromarray(img).save(photos / f"p{i}.png")
    cfg = {
        "name": "ddp", "model": {"arch": "gi-hyper-ckbd", **SMALL}, "lambdas": [0.01, 0.05],
        "data": {"photos": [str(photos)], "crop": 64, "mix": {"full": 0.4, "blob": 0.3, "polygon": 0.3}},
        # no noise (hard quantisation throughout) and no lr step inside the run: a run's numbers are
        # then a function of its data, which is what the comparison is about
        "steps": steps, "batch": 4, "lr": 1e-3, "hard_from": 0.0, "lr_decay_at": 1.0, "ckpt_every": 2,
        "log_every": 1, "out_dir": str(tmp_path / out), "threads": 1,
    }
    p = tmp_path / f"{out}-{steps}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


def _run(cmd: list[str]) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def _torchrun(config: str, procs: int = 2) -> None:
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
          "-m", "ssc.cli", "train", "--config", config])


def _model(path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(path)).items() if k.startswith("model.")}


def test_torchrun_two_processes_match_one_and_resume(tmp_path):
    _run([sys.executable, "-m", "ssc.cli", "train", "--config", _config(tmp_path, "single", 4)])
    _torchrun(_config(tmp_path, "ddp", 2))
    run = tmp_path / "ddp" / "ddp"
    shutil.copy(run / "checkpoint.safetensors", tmp_path / "step2.safetensors")
    _torchrun(_config(tmp_path, "ddp", 4))  # resumes at step 2

    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # rank 0 logs once per step
    assert all(r["processes"] == 2 for r in log)
    single_log = [json.loads(line) for line in (tmp_path / "single" / "ddp" / "log.jsonl").read_text().splitlines()]
    for a, b in zip(single_log, log):  # the mean over ranks is the single-process batch mean
        assert abs(a["loss"] - b["loss"]) <= 1e-3 * abs(a["loss"])

    one, two = _model(tmp_path / "single" / "ddp" / "checkpoint.safetensors"), _model(run / "checkpoint.safetensors")
    early = _model(tmp_path / "step2.safetensors")
    assert one.keys() == two.keys()
    diff = max(float((one[k] - two[k]).abs().max()) for k in one)
    moved = max(float((one[k] - early[k]).abs().max()) for k in one)
    assert moved > 1e-3, "two steps of training should move the weights"
    print(f"max weight difference 1 vs 2 processes {diff:.2e}, moved by two steps {moved:.2e}")
    assert diff < moved / 20, (diff, moved)

    card = json.loads((run / "ddp.json").read_text())
    assert card["training"]["processes"] == 2
    assert card["training"]["command"].startswith("torchrun --nproc_per_node 2")
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.safetensors", "config.yaml", "ddp.json", "ddp.safetensors",
                                                     "log.jsonl"]


def test_torchrun_one_process_matches_plain_run(tmp_path):
    """One process under torchrun goes through the process group and DDP (NCCL on a GPU machine,
    gloo here) and trains what the plain run trains. On a CUDA machine this is the one-GPU check."""
    _run([sys.executable, "-m", "ssc.cli", "train", "--config", _config(tmp_path, "plain", 2)])
    _torchrun(_config(tmp_path, "one", 2), procs=1)
    run = tmp_path / "one" / "ddp"
    card = json.loads((run / "ddp.json").read_text())
    assert card["training"]["processes"] == 1 and card["training"]["command"].startswith("torchrun --nproc_per_node 1")
    assert card["training"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert [json.loads(x)["processes"] for x in (run / "log.jsonl").read_text().splitlines()] == [1, 1]
    a, b = _model(tmp_path / "plain" / "ddp" / "checkpoint.safetensors"), _model(run / "checkpoint.safetensors")
    assert max(float((a[k].cpu() - b[k].cpu()).abs().max()) for k in a) < 1e-4


def _tiny_coco(tmp_path) -> tuple[str, str]:
    """Four synthetic images with two box-shaped instances each, as a COCO file with polygons."""
    images = tmp_path / "coco"
    images.mkdir()
    recs, anns = [], []
    for i in range(4):
        img, _ = synthetic_scene(96, 128, seed=20 + i)
        Image.fromarray(img).save(images / f"{i}.png")
        recs.append({"id": i + 1, "file_name": f"{i}.png", "height": 96, "width": 128})
        for k, (x, y, w, h) in enumerate(((10 + 5 * i, 10, 40, 30), (70, 40 + 3 * i, 30, 40))):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1 + k * 2, "iscrowd": 0, "area": w * h,
                         "bbox": [x, y, w, h], "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": recs, "annotations": anns,
                               "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]}))
    return str(images), str(ann)


def test_torchrun_detector_and_omni_trainers(tmp_path):
    """The other two trainers under DDP: rank 0 logs once per step and exports."""
    images, ann = _tiny_coco(tmp_path)
    det = {"name": "det-ddp", "kind": "detector", "arch": "maskrcnn_mobilenet_v3_lite", "data": {"images": images, "ann": ann},
           "min_size": 96, "max_size": 160, "steps": 2, "batch": 2, "log_every": 1, "ckpt_every": 2, "threads": 1,
           "out_dir": str(tmp_path / "runs")}
    omni = {"name": "omni-ddp", "kind": "omni", "lambdas": [0.1, 0.5],
            "model": {"arch": "gi-omni", **SMALL, "feature_channels": 128, "head_width": 32, "head_blocks": 1, "proj_dim": 16},
            "data": {"photos": [images], "crop": 64, "mix": {"full": 0.5, "blob": 0.5}}, "steps": 2, "batch": 4,
            "log_every": 1, "ckpt_every": 2, "threads": 1, "out_dir": str(tmp_path / "runs"), "extra": {"freeze": ["g_a", "g_s"]}}
    for cfg in (det, omni):
        path = tmp_path / f"{cfg['name']}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        _torchrun(str(path))
        run = tmp_path / "runs" / cfg["name"]
        log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log] == [1, 2] and all(r["processes"] == 2 for r in log)
        card = json.loads((run / f"{cfg['name']}.json").read_text())
        assert card["training"]["processes"] == 2 and (run / f"{cfg['name']}.safetensors").is_file()
