import math

import numpy as np
import pytest

from ssc.metrics import MS_SSIM_WEIGHTS, ms_ssim, psnr


def test_ms_ssim_identity_and_order():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (200, 240, 3), dtype=np.uint8)
    assert ms_ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    small = np.clip(x.astype(int) + rng.integers(-5, 6, x.shape), 0, 255).astype(np.uint8)
    big = np.clip(x.astype(int) + rng.integers(-60, 61, x.shape), 0, 255).astype(np.uint8)
    assert 1.0 > ms_ssim(x, small) > ms_ssim(x, big) > 0
    assert ms_ssim(x, big) == pytest.approx(ms_ssim(big, x), abs=1e-12)


def test_ms_ssim_constant_images_closed_form():
    # constant images: every contrast-structure term is exactly 1, so MS-SSIM reduces to the
    # luminance term of the coarsest scale raised to its weight.
    a = np.full((180, 180, 3), 100, np.uint8)
    b = np.full((180, 180, 3), 140, np.uint8)
    c1 = (0.01 * 255) ** 2
    lum = (2 * 100 * 140 + c1) / (100**2 + 140**2 + c1)
    assert ms_ssim(a, b) == pytest.approx(lum ** MS_SSIM_WEIGHTS[-1], rel=1e-9)


def test_ms_ssim_rejects_small_and_mismatched():
    with pytest.raises(ValueError, match="too small"):
        ms_ssim(np.zeros((100, 300, 3), np.uint8), np.zeros((100, 300, 3), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        ms_ssim(np.zeros((200, 200, 3), np.uint8), np.zeros((200, 201, 3), np.uint8))


def test_psnr_known_value():
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 10, np.uint8)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))
    assert psnr(a, a) == math.inf
