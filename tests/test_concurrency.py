"""Bounded stress test: several encoder and decoder processes at once on one machine lose nothing;
every process produces the same bytes and pixels as the others (reliability issue)."""
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from ssc.bitstream import StreamReader
from ssc.masks import GroupMap, save_png

from .conftest import synthetic_scene

PROCS = 4


def _ssc(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ssc.cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_concurrent_encoders_and_decoders_agree(tmp_path, weights_dir):
    img, lab = synthetic_scene()
    Image.fromarray(img).save(tmp_path / "img.png")
    save_png(GroupMap.from_labels(lab, {1: (1, "person"), 2: (3, "car")}), tmp_path / "map.png")
    env = dict(os.environ, SSC_WEIGHTS_DIR=str(weights_dir), OMP_NUM_THREADS="1")
    enc = [_ssc("encode", str(tmp_path / "img.png"), "--masks", f"png:{tmp_path / 'map.png'}", "--model", "test-small",
                "--quality", "0.5", "-o", str(tmp_path / f"x{i}.ssc"), env=env) for i in range(PROCS)]
    for p in enc:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    streams = [(tmp_path / f"x{i}.ssc").read_bytes() for i in range(PROCS)]
    assert all(s == streams[0] for s in streams)
    # every decoder reads the same file at once; half decode everything, half one group
    dec = [_ssc("decode", str(tmp_path / "x0.ssc"), "-o", str(tmp_path / f"d{i}.png"),
                *(["--groups", "2"] if i % 2 else []), env=env) for i in range(PROCS)]
    for p in dec:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    outs = [np.asarray(Image.open(tmp_path / f"d{i}.png")) for i in range(PROCS)]
    for i in range(2, PROCS, 2):
        assert np.array_equal(outs[i], outs[0])
    region = StreamReader(tmp_path / "x0.ssc").group_map == 2  # group 2's cells
    for i in range(1, PROCS, 2):
        assert np.array_equal(outs[i][region], outs[0][region]) and (outs[i][~region] == 0).all()
