"""Benchmark anchors return exact sizes and decoded images of the input's shape."""
import shutil

import pytest

from ssc.eval.anchors import pillow_available, pillow_code, x265_intra_code
from ssc.metrics import psnr

from .conftest import synthetic_scene


@pytest.mark.parametrize("name", ["jpeg", "webp", "avif"])
def test_pillow_anchors(name):
    if not pillow_available(name):
        pytest.skip(f"Pillow without {name}")
    img, _ = synthetic_scene()
    lo, hi = pillow_code(name, img, 10), pillow_code(name, img, 90)
    assert lo.decoded.shape == img.shape and lo.nbytes < hi.nbytes
    assert psnr(img, hi.decoded) > psnr(img, lo.decoded)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed (sh eval/setup_anchors.sh)")
def test_x265_intra_anchor():
    img, _ = synthetic_scene(64, 96)
    lo, hi = x265_intra_code(img, 45), x265_intra_code(img, 20)
    assert lo.decoded.shape == img.shape and lo.nbytes < hi.nbytes
    assert psnr(img, hi.decoded) > psnr(img, lo.decoded) > 15
    assert lo.nbytes < 1000  # the anchor at its strongest: without x265's 2.3 kB info SEI
