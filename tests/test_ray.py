"""``ssc batch`` and ``ssc eval coco`` over a local Ray cluster started here give the same results
JSON as the single-process run (and the same stream bytes and decoded pixels); a bad input fails
its own job only."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from ssc.batch import comparable
from ssc.cli import main
from ssc.masks import GroupMap, save_png

from .conftest import COCO_VAL, COCO_VAL_ANN, require, synthetic_scene

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster(weights_dir):
    """The test's own two-CPU Ray cluster; workers find the test zoo through SSC_WEIGHTS_DIR."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"SSC_WEIGHTS_DIR": str(weights_dir), "OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _both(args: list[str], out_flag: str, where) -> tuple[dict, dict]:
    """Run a batch command locally and on Ray; return both results JSONs."""
    docs = []
    for tag, extra in (("local", []), ("ray", ["--ray", "--workers", "2"])):
        path = where(tag)
        assert main([*args, out_flag, str(path), *extra]) in (0, 3)
        js = path if path.suffix == ".json" else next(path.glob("batch_*.json"))
        docs.append(json.loads(js.read_text()))
    assert docs[0]["run"]["executor"] == "local" and docs[1]["run"]["executor"] == "ray"
    return docs[0], docs[1]


def test_batch_images_on_ray_equal_local(tmp_path, zoo_env, cluster):
    imgs = tmp_path / "imgs"
    maps = tmp_path / "maps"
    imgs.mkdir()
    maps.mkdir()
    for i in range(3):
        img, lab = synthetic_scene(96, 128 + 8 * i, seed=i)
        Image.fromarray(img).save(imgs / f"im{i}.png")
        save_png(GroupMap.from_labels(lab, {1: (1, "person"), 2: (3, "car")}), maps / f"im{i}.png")
    (imgs / "broken.png").write_bytes(b"\x89PNG not really")  # fails its own job only
    enc_l, enc_r = _both(["batch", "encode", str(imgs), "--masks", f"png:{maps}/{{stem}}.png", "--model", "test-small",
                          "--quality", "0.5"], "-o", lambda t: tmp_path / f"enc-{t}")
    assert comparable(enc_l)["items"] == [
        {**it, "output": it["output"].replace("enc-ray", "enc-local")} if "output" in it else it
        for it in comparable(enc_r)["items"]]
    assert [("error" in it) for it in enc_l["items"]] == [True, False, False, False]
    assert enc_l["run"]["failed"] == enc_r["run"]["failed"] == 1
    for i in range(3):
        assert (tmp_path / "enc-local" / f"im{i}.ssc").read_bytes() == (tmp_path / "enc-ray" / f"im{i}.ssc").read_bytes()

    streams = str(tmp_path / "enc-local")
    dec_l, dec_r = _both(["batch", "decode", streams, "--classes", "car"], "-o", lambda t: tmp_path / f"dec-{t}")
    strip = lambda d: [{k: v for k, v in it.items() if k != "output"} for it in comparable(d)["items"]]  # noqa: E731
    assert strip(dec_l) == strip(dec_r)
    assert all(it["decoded"] == [2] and it["bytes_read"] < it["total_bytes"] for it in dec_l["items"])

    for task in ("header", "detect"):
        an_l, an_r = _both(["batch", "analyze", streams, "--task", task, "--classes", "car"], "-o",
                           lambda t: tmp_path / f"an-{task}-{t}.json")
        assert comparable(an_l) == comparable(an_r)
        assert [it["image_id"] for it in an_l["items"]] == [1, 2, 3]
        assert an_l["results"], f"{task}: nothing to compare"
    assert {r["category_id"] for r in an_l["results"]} <= set(range(1, 91))


def _write_video(path, masks_dir, frames: int = 10) -> None:
    from fractions import Fraction

    from ssc.video.io import FrameWriter

    masks_dir.mkdir(parents=True)
    base, _ = synthetic_scene(96, 128, seed=5)
    with FrameWriter(path, 128, 96, Fraction(10)) as w:
        for t in range(frames):
            lab = np.zeros((96, 128), np.int32)
            lab[30:60, 10 + 4 * t : 40 + 4 * t] = 1
            frame = base.copy()
            frame[lab == 1] = (200, 40, 40)
            w.write(frame)
            Image.fromarray(lab.astype(np.uint8)).save(masks_dir / f"{t:05d}.png")


def test_batch_video_chunks_on_ray_equal_local(tmp_path, zoo_env, cluster):
    pytest.importorskip("av")
    cams = tmp_path / "cams"
    cams.mkdir()
    for c in range(2):
        _write_video(cams / f"cam{c}.mp4", tmp_path / "ann" / f"cam{c}")
    enc_l, enc_r = _both(["batch", "encode", str(cams), "--masks", f"folder:{tmp_path}/ann/{{stem}}", "--model", "test-small",
                          "--qp", "30", "--gop", "4", "--chunk-frames", "6"], "-o", lambda t: tmp_path / f"v-{t}")
    items = enc_l["items"]
    assert [(it["first_frame"], it["frames"]) for it in items] == [(0, 6), (6, 4)] * 2
    assert [it["stream_sha256"] for it in items] == [it["stream_sha256"] for it in enc_r["items"]]
    chunk = tmp_path / "v-local" / "cam1.000006.ssv"
    from ssc.video.info import video_info

    info = video_info(str(chunk))
    assert info["frames"] == 4 and [t["id"] for t in info["tracks"]] == [0, 1]
    dec_l, dec_r = _both(["batch", "decode", str(tmp_path / "v-local"), "--groups", "1"], "-o", lambda t: tmp_path / f"vd-{t}")
    assert [it["pixels_sha256"] for it in dec_l["items"]] == [it["pixels_sha256"] for it in dec_r["items"]]
    assert all(it["decoded"] == [1] and it["bytes_read"] < it["total_bytes"] for it in dec_l["items"])
    hdr, _ = _both(["batch", "analyze", str(tmp_path / "v-local"), "--task", "header"], "-o", lambda t: tmp_path / f"vh-{t}.json")
    assert [[t["id"] for t in it["tracks"]] for it in hdr["items"]] == [[0, 1]] * 4 and hdr["items"][0]["bytes_read"] == 0
    det_l, det_r = _both(["batch", "analyze", str(tmp_path / "v-local"), "--task", "detect", "--every", "3",
                          "--score-thresh", "0.01"], "-o", lambda t: tmp_path / f"vdet-{t}.json")
    assert comparable(det_l) == comparable(det_r) and det_l["results"]
    # frames 0 and 3 of each 6-frame chunk, 0 and 3 of each 4-frame chunk; image ids name stream and frame
    assert sorted({r["image_id"] % 100_000 for r in det_l["results"]}) <= [0, 3, 6, 9]


def test_eval_coco_on_ray_equals_local(tmp_path, zoo_env, cluster):
    imgs, ann = require(COCO_VAL), require(COCO_VAL_ANN)
    docs = []
    for tag, extra in (("local", []), ("ray", ["--ray", "--workers", "2"])):
        args = ["eval", "coco", "--images", str(imgs), "--ann", str(ann), "--codec", "ssc", "--model", "test-small",
                "--quality", "0.5", "--limit", "3", "--threads", "1", "--out", str(tmp_path / tag), *extra]
        assert main(args) == 0
        docs.append(json.loads((tmp_path / tag / "coco_eval.json").read_text()))
    assert docs[0]["points"] == docs[1]["points"]
    assert docs[1]["meta"]["executor"] == "ray"
    (p,) = docs[0]["points"].values()
    assert p["images"] == 3 and p["bpp"] > 0
